/**
 * Endpoint state: the endpoint's normalised data, the in-flight count, the peak-EWMA latency
 * estimate on an injected clock, and usability (health, ejection).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type Endpoint, EndpointSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { HealthStatus } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { timestampFromDate } from "@trellis/proto/timestamp";
import {
  EndpointSignals,
  EndpointState,
  endpointDataFrom,
  sameEndpointData,
  sameInstance,
} from "@trellis/sidecar/balancer/endpoint-state";
import { PEAK_EWMA_DECAY_MS, PEAK_EWMA_INITIAL_MS, PeakEwma } from "@trellis/sidecar/balancer/peak-ewma";

function endpoint(init: MessageInitShape<typeof EndpointSchema> = {}): Endpoint {
  return create(EndpointSchema, {
    address: "10.0.0.1",
    port: 15006,
    appPort: 8080,
    proxyId: "orders-1",
    identity: "spiffe://cluster.local/ns/shop/sa/orders",
    health: HealthStatus.HEALTHY,
    ...init,
  });
}

function stateAt(clock: { t: number }, init: MessageInitShape<typeof EndpointSchema> = {}): EndpointState {
  return new EndpointState(endpointDataFrom(endpoint(init)), new EndpointSignals(() => clock.t));
}

describe("endpointDataFrom", () => {
  it("normalises a proto Endpoint", () => {
    const data = endpointDataFrom(
      endpoint({
        labels: { app: "orders", version: "v2" },
        locality: { region: "eu-west", zone: "eu-west-1a" },
        readySince: timestampFromDate(new Date("2025-01-02T03:04:05.678Z")),
      }),
    );
    assert.deepEqual(data, {
      key: "10.0.0.1:15006",
      address: "10.0.0.1",
      port: 15006,
      appPort: 8080,
      proxyId: "orders-1",
      identity: "spiffe://cluster.local/ns/shop/sa/orders",
      labels: { app: "orders", version: "v2" },
      locality: { region: "eu-west", zone: "eu-west-1a", subzone: "" },
      health: HealthStatus.HEALTHY,
      weight: 1,
      readySinceMs: Date.parse("2025-01-02T03:04:05.678Z"),
    });
    assert.ok(Object.isFrozen(data) && Object.isFrozen(data.labels) && Object.isFrozen(data.locality));
  });

  it("brackets IPv6 addresses in the key and defaults locality and ready time", () => {
    const data = endpointDataFrom(endpoint({ address: "fd00::1", weight: 3 }));
    assert.equal(data.key, "[fd00::1]:15006");
    assert.equal(data.weight, 3);
    assert.deepEqual(data.locality, { region: "", zone: "", subzone: "" });
    assert.equal(data.readySinceMs, undefined);
  });

  it("tells an attribute change from a different instance", () => {
    const base = endpointDataFrom(endpoint({ labels: { a: "1" } }));
    const same = endpointDataFrom(endpoint({ labels: { a: "1" } }));
    const unhealthy = endpointDataFrom(endpoint({ labels: { a: "1" }, health: HealthStatus.UNHEALTHY }));
    const relabelled = endpointDataFrom(endpoint({ labels: { a: "2" } }));
    const restarted = endpointDataFrom(endpoint({ labels: { a: "1" }, proxyId: "orders-1-b" }));
    assert.ok(sameEndpointData(base, same));
    assert.ok(!sameEndpointData(base, unhealthy) && sameInstance(base, unhealthy));
    assert.ok(!sameEndpointData(base, relabelled) && sameInstance(base, relabelled));
    assert.ok(!sameInstance(base, restarted));
  });
});

describe("EndpointState", () => {
  it("counts requests in flight and never goes below zero", () => {
    const s = stateAt({ t: 0 });
    s.onStart();
    s.onStart();
    assert.equal(s.outstanding, 2);
    s.onFinish(5, true);
    s.onFinish(5, true);
    s.onFinish(5, true); // an extra finish must not make the count negative
    assert.equal(s.outstanding, 0);
    s.onStart();
    assert.equal(s.outstanding, 1);
  });

  it("is usable when healthy or UNSPECIFIED and not ejected", () => {
    const clock = { t: 100 };
    for (const [health, usable] of [
      [HealthStatus.UNSPECIFIED, true],
      [HealthStatus.HEALTHY, true],
      [HealthStatus.UNHEALTHY, false],
      [HealthStatus.DRAINING, false],
    ] as const) {
      assert.equal(stateAt(clock, { health }).usable(clock.t), usable, HealthStatus[health]);
    }
    const s = stateAt(clock);
    s.ejectedUntil = 200;
    assert.equal(s.usable(199), false);
    assert.equal(s.usable(200), true);
  });

  it("bumps the cluster's usability epoch when an ejection changes", () => {
    const s = stateAt({ t: 0 });
    const before = s.signals.epoch.value;
    s.ejectedUntil = 50;
    s.ejectedUntil = 50; // unchanged: no bump
    assert.equal(s.signals.epoch.value, before + 1);
  });
});

describe("peak-EWMA latency", () => {
  it("starts at the default estimate", () => {
    const s = stateAt({ t: 0 });
    assert.equal(s.latencyMs(0), PEAK_EWMA_INITIAL_MS);
  });

  it("jumps to a slower sample at once", () => {
    const clock = { t: 0 };
    const s = stateAt(clock);
    clock.t = 1;
    s.onFinish(250, true);
    assert.equal(s.latencyMs(clock.t), 250);
  });

  it("moves toward a faster sample by 1 − exp(−elapsed/τ)", () => {
    const ewma = new PeakEwma(0, 100);
    ewma.observe(PEAK_EWMA_DECAY_MS, 10, true); // one τ elapsed: weight e⁻¹ on the old estimate
    const expected = 100 * Math.exp(-1) + 10 * (1 - Math.exp(-1));
    assert.ok(Math.abs(ewma.peek() - expected) < 1e-9, `${ewma.peek()} vs ${expected}`);
    // A sample at the same instant barely moves it: recovery takes time, not request count.
    const busy = new PeakEwma(0, 100);
    for (let i = 0; i < 1_000; i++) busy.observe(0, 1, true);
    assert.equal(busy.peek(), 100);
  });

  it("decays with time when idle, so a once-slow endpoint is probed again", () => {
    const clock = { t: 0 };
    const s = stateAt(clock);
    s.onFinish(400, true);
    clock.t = PEAK_EWMA_DECAY_MS;
    assert.ok(Math.abs(s.latencyMs(clock.t) - 400 * Math.exp(-1)) < 1e-9);
    clock.t = 5 * PEAK_EWMA_DECAY_MS;
    assert.ok(s.latencyMs(clock.t) < 400 * Math.exp(-4));
  });

  it("never lowers the estimate on a failure, however fast", () => {
    const clock = { t: 0 };
    const s = stateAt(clock);
    s.onFinish(20, true);
    clock.t = 60_000; // long enough for a fast success to pull the estimate down
    const before = s.latencyMs(clock.t);
    s.onFinish(0.1, false);
    assert.ok(s.latencyMs(clock.t) >= 2 * before, `${s.latencyMs(clock.t)} < 2 × ${before}`);
    assert.ok(s.latencyMs(clock.t) >= PEAK_EWMA_INITIAL_MS);
  });

  it("ignores negative and non-finite latencies", () => {
    const ewma = new PeakEwma(0, 10);
    ewma.observe(0, Number.POSITIVE_INFINITY, true);
    ewma.observe(0, Number.NaN, true);
    ewma.observe(0, -5, true);
    assert.equal(ewma.peek(), 10);
  });
});
