/**
 * P2C least-request: load- and latency-aware picks, retries that go elsewhere, and endpoints that
 * must never be picked. Time and randomness are injected, so every run is the same.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Endpoint } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { LoadBalancerPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { HealthStatus } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { type BalancerDeps, createBalancer, type LoadBalancer } from "@trellis/sidecar/balancer/balancer";
import type { EndpointState } from "@trellis/sidecar/balancer/endpoint-state";
import { LeastRequestBalancer } from "@trellis/sidecar/balancer/least-request";
import { endpoint, testDeps } from "./fixtures.js";

function p2c(endpoints: Endpoint[], deps: BalancerDeps): LoadBalancer {
  return createBalancer({ policy: LoadBalancerPolicy.LEAST_REQUEST }, endpoints, deps);
}

/**
 * A closed-loop load simulation on the injected clock: `concurrency` requests are always in flight
 * until `requests` have been sent; each occupies its endpoint for `latencyOf(endpoint)` ms.
 * Returns how many requests each endpoint key got.
 */
function simulate(
  lb: LoadBalancer,
  clock: { t: number },
  requests: number,
  concurrency: number,
  latencyOf: (s: EndpointState) => number,
): Map<string, number> {
  const counts = new Map<string, number>();
  const inFlight: { end: number; start: number; state: EndpointState }[] = [];
  let sent = 0;
  while (sent < requests || inFlight.length > 0) {
    while (inFlight.length < concurrency && sent < requests) {
      const s = lb.pick({});
      assert.ok(s, "a usable endpoint exists");
      s.onStart();
      inFlight.push({ start: clock.t, end: clock.t + latencyOf(s), state: s });
      counts.set(s.key, (counts.get(s.key) ?? 0) + 1);
      sent++;
    }
    // Advance the clock to the earliest completion and finish that request.
    let first = 0;
    for (let i = 1; i < inFlight.length; i++) if (inFlight[i]!.end < inFlight[first]!.end) first = i;
    const [done] = inFlight.splice(first, 1);
    clock.t = done!.end;
    done!.state.onFinish(done!.end - done!.start, true);
  }
  return counts;
}

describe("least-request (P2C)", () => {
  it("is the default policy", () => {
    const { deps } = testDeps();
    const lb = createBalancer({ policy: LoadBalancerPolicy.UNSPECIFIED }, [endpoint(1)], deps);
    assert.ok(lb instanceof LeastRequestBalancer);
    assert.equal(lb.policy, LoadBalancerPolicy.LEAST_REQUEST);
  });

  it("sends at most 15% to an endpoint 50 ms slower (600 requests at concurrency 6)", () => {
    const { clock, deps } = testDeps(42);
    const lb = p2c([endpoint(1), endpoint(2), endpoint(3)], deps);
    const slow = "10.0.0.3:15006";
    const counts = simulate(lb, clock, 600, 6, (s) => (s.key === slow ? 51 : 1));
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    assert.equal(total, 600);
    const share = (counts.get(slow) ?? 0) / total;
    assert.ok(share <= 0.15, `slow endpoint got ${(share * 100).toFixed(1)}% of requests`);
    // The two fast endpoints share the rest roughly evenly.
    const a = counts.get("10.0.0.1:15006") ?? 0;
    const b = counts.get("10.0.0.2:15006") ?? 0;
    assert.ok(Math.abs(a - b) <= 0.2 * (a + b), `fast endpoints split ${a}/${b}`);
  });

  it("avoids a slow endpoint even at equal outstanding (latency-aware)", () => {
    // Concurrency 1: every pick sees outstanding 0 everywhere, so a plain least-outstanding P2C
    // would give the slow endpoint about a third of the requests. Peak-EWMA keeps it to a probe.
    const { clock, deps } = testDeps(7);
    const lb = p2c([endpoint(1), endpoint(2), endpoint(3)], deps);
    const slow = "10.0.0.3:15006";
    const counts = simulate(lb, clock, 300, 1, (s) => (s.key === slow ? 51 : 1));
    const share = (counts.get(slow) ?? 0) / 300;
    assert.ok(share <= 0.05, `slow endpoint got ${(share * 100).toFixed(1)}% of requests`);
  });

  it("prefers fewer requests in flight at equal latency, and compares two distinct endpoints", () => {
    const { deps } = testDeps(3);
    const lb = p2c([endpoint(1), endpoint(2)], deps);
    const [busy, idle] = lb.endpoints;
    busy!.onStart();
    // With two endpoints, P2C samples both every time: the idle one must always win.
    for (let i = 0; i < 200; i++) assert.equal(lb.pick({}), idle);
  });

  it("picks another endpoint than the ones this request already tried", () => {
    const { deps } = testDeps(5);
    const lb = p2c([endpoint(1), endpoint(2), endpoint(3)], deps);
    const tried = new Set(["10.0.0.1:15006", "10.0.0.3:15006"]);
    for (let i = 0; i < 200; i++) assert.equal(lb.pick({ exclude: tried })?.key, "10.0.0.2:15006");
    const one = new Set(["10.0.0.2:15006"]);
    for (let i = 0; i < 200; i++) assert.notEqual(lb.pick({ exclude: one })?.key, "10.0.0.2:15006");
  });

  it("allows a repeat when every endpoint was already tried", () => {
    const { deps } = testDeps(5);
    const lb = p2c([endpoint(1), endpoint(2)], deps);
    const all = new Set(["10.0.0.1:15006", "10.0.0.2:15006"]);
    const picked = lb.pick({ exclude: all });
    assert.ok(picked);
    assert.ok(all.has(picked.key));
  });

  it("never picks unhealthy or draining endpoints; UNSPECIFIED health is usable", () => {
    const { deps } = testDeps(9);
    const lb = p2c(
      [
        endpoint(1, { health: HealthStatus.UNHEALTHY }),
        endpoint(2, { health: HealthStatus.UNSPECIFIED }),
        endpoint(3, { health: HealthStatus.DRAINING }),
        endpoint(4),
      ],
      deps,
    );
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) seen.add(lb.pick({})!.key);
    assert.deepEqual([...seen].sort(), ["10.0.0.2:15006", "10.0.0.4:15006"]);
  });

  it("returns the only usable endpoint, and undefined when none is usable", () => {
    const { deps } = testDeps();
    const one = p2c([endpoint(1, { health: HealthStatus.UNHEALTHY }), endpoint(2)], deps);
    for (let i = 0; i < 20; i++) assert.equal(one.pick({})?.key, "10.0.0.2:15006");
    const none = p2c(
      [endpoint(1, { health: HealthStatus.UNHEALTHY }), endpoint(2, { health: HealthStatus.DRAINING })],
      deps,
    );
    assert.equal(none.pick({}), undefined);
    assert.equal(p2c([], deps).pick({}), undefined);
  });

  it("skips an ejected endpoint until its ejection expires on the clock", () => {
    const { clock, deps } = testDeps(11);
    const lb = p2c([endpoint(1), endpoint(2)], deps);
    assert.ok(lb.pick({}));
    const first = lb.endpoints[0]!;
    first.ejectedUntil = 1_000;
    for (let i = 0; i < 50; i++) assert.equal(lb.pick({})?.key, "10.0.0.2:15006");
    clock.t = 1_000;
    lb.endpoints[1]!.onStart(); // make the returning endpoint the clear winner
    assert.equal(lb.pick({}), first);
  });

  it("stops sending to an endpoint that fails fast", () => {
    // A backend answering 503 in 0.1 ms would look like the fastest one to a plain latency average.
    const { clock, deps } = testDeps(13);
    const lb = p2c([endpoint(1), endpoint(2), endpoint(3)], deps);
    const failing = "10.0.0.1:15006";
    const counts = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const s = lb.pick({})!;
      counts.set(s.key, (counts.get(s.key) ?? 0) + 1);
      s.onStart();
      clock.t += s.key === failing ? 0.1 : 5;
      s.onFinish(s.key === failing ? 0.1 : 5, s.key !== failing);
    }
    const share = (counts.get(failing) ?? 0) / 300;
    assert.ok(share <= 0.1, `failing endpoint got ${(share * 100).toFixed(1)}% of requests`);
  });
});
