/**
 * Slow start: a new endpoint's share ramps over its window (round robin by weight, least request
 * by cost), on injected monotonic and wall clocks.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { type Endpoint, EndpointSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { LoadBalancerPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { HealthStatus } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { timestampFromDate } from "@trellis/proto/timestamp";
import {
  type BalancerDeps,
  createBalancer,
  type LoadBalancer,
  reconcileEndpoints,
} from "@trellis/sidecar/balancer/balancer";
import type { EndpointState } from "@trellis/sidecar/balancer/endpoint-state";
import { createSlowStart, type SlowStartConfig } from "@trellis/sidecar/balancer/slow-start";
import { seeded } from "./fixtures.js";

/** The wall clock when the monotonic test clock reads 0. */
const WALL0 = Date.parse("2025-06-01T00:00:00Z");
const HOUR = 3_600_000;
const WINDOW = 10_000;
const NEW = "10.0.0.5:15006";

function endpoint(n: number, readyAtWallMs: number | undefined): Endpoint {
  return create(EndpointSchema, {
    address: `10.0.0.${n}`,
    port: 15006,
    appPort: 8080,
    proxyId: `orders-${n}`,
    identity: "spiffe://cluster.local/ns/shop/sa/orders",
    health: HealthStatus.HEALTHY,
    ...(readyAtWallMs === undefined ? {} : { readySince: timestampFromDate(new Date(readyAtWallMs)) }),
  });
}

/**
 * Monotonic clock `t` (starting at `start`) and a wall clock `offset` ms ahead of it — the two
 * differ, as they do in production, so a mix-up shows.
 */
function testDeps(seed = 1, start = 5_000): { clock: { t: number; wallStep: number }; deps: BalancerDeps } {
  const clock = { t: start, wallStep: 0 };
  return {
    clock,
    deps: {
      now: () => clock.t,
      random: seeded(seed),
      wallNow: () => WALL0 - start + clock.t + clock.wallStep,
    },
  };
}

/** Four endpoints ready for an hour and one (10.0.0.5) that became ready at wall time `readyAt`. */
function cluster(readyAt: number): Endpoint[] {
  return [
    endpoint(1, WALL0 - HOUR),
    endpoint(2, WALL0 - HOUR),
    endpoint(3, undefined),
    endpoint(4, WALL0 - HOUR),
    endpoint(5, readyAt),
  ];
}

/**
 * Runs a closed loop (`concurrency` requests always in flight, each lasting 5–15 ms on the test
 * clock) for `slices` consecutive slices of `sliceMs`; returns the new endpoint's share per slice.
 */
function sharesBySlice(
  lb: LoadBalancer,
  clock: { t: number },
  random: () => number,
  slices: number,
  sliceMs: number,
  concurrency: number,
): number[] {
  const inFlight: { state: EndpointState; start: number; end: number }[] = [];
  const shares: number[] = [];
  const origin = clock.t;
  for (let slice = 0; slice < slices; slice++) {
    let total = 0;
    let mine = 0;
    while (clock.t < origin + (slice + 1) * sliceMs) {
      while (inFlight.length < concurrency) {
        const s = lb.pick({});
        assert.ok(s);
        s.onStart();
        inFlight.push({ state: s, start: clock.t, end: clock.t + 5 + 10 * random() });
        total++;
        if (s.key === NEW) mine++;
      }
      let first = 0;
      for (let i = 1; i < inFlight.length; i++) if (inFlight[i]!.end < inFlight[first]!.end) first = i;
      const [done] = inFlight.splice(first, 1);
      clock.t = done!.end;
      done!.state.onFinish(done!.end - done!.start, true);
    }
    shares.push(mine / total);
  }
  return shares;
}

function assertRising(shares: number[]): void {
  const text = shares.map((s) => `${(s * 100).toFixed(1)}%`).join(" ");
  for (let i = 1; i < shares.length; i++)
    assert.ok(shares[i]! > shares[i - 1]!, `share fell at slice ${i}: ${text}`);
}

describe("slow start: the ramp", () => {
  const states = (readyAt: number): EndpointState[] =>
    reconcileEndpoints(cluster(readyAt), { now: () => 5_000 });
  const newcomer = (list: EndpointState[]): EndpointState => list.find((s) => s.key === NEW)!;

  const cases: Array<[config: Omit<SlowStartConfig, "windowMs">, elapsedMs: number, factor: number]> = [
    [{}, 2_500, 0.25],
    [{}, 500, 0.1], // below the default 10% floor
    [{ minWeightPercent: 0 }, 500, 0.05],
    [{ aggression: 2 }, 2_500, 0.5], // square root: front-loaded
    [{ aggression: 0.5 }, 5_000, 0.25], // square: held back
    [{ aggression: 0.5, minWeightPercent: 30 }, 5_000, 0.3],
    [{}, WINDOW, 1],
    [{ aggression: -1 }, 2_500, 0.25], // invalid aggression: linear
  ];
  for (const [config, elapsed, factor] of cases) {
    it(`${JSON.stringify(config)} at ${elapsed} ms of ${WINDOW} ms: factor ${factor}`, () => {
      const { clock, deps } = testDeps();
      const list = states(WALL0);
      const ramp = createSlowStart({ windowMs: WINDOW, ...config }, list, deps);
      assert.ok(ramp);
      clock.t += elapsed;
      assert.ok(Math.abs(ramp.factor(newcomer(list), clock.t) - factor) < 1e-9);
      assert.equal(ramp.factor(list[0]!, clock.t), 1, "an endpoint ready for an hour");
      assert.equal(ramp.factor(list[2]!, clock.t), 1, "an endpoint without a ready time");
    });
  }

  it("is off when no endpoint is inside its window, or the window is not positive", () => {
    const { deps } = testDeps();
    assert.equal(createSlowStart({ windowMs: WINDOW }, states(WALL0 - 2 * WINDOW), deps), undefined);
    assert.equal(createSlowStart({ windowMs: 0 }, states(WALL0), deps), undefined);
    assert.equal(createSlowStart(undefined, states(WALL0), deps), undefined);
  });

  it("reads the wall clock once: a later wall-clock step does not move the ramp", () => {
    const { clock, deps } = testDeps();
    const list = states(WALL0 - 2_000);
    const ramp = createSlowStart({ windowMs: WINDOW }, list, deps)!;
    clock.wallStep = HOUR; // NTP jumps the wall clock an hour ahead
    clock.t += 3_000;
    assert.ok(Math.abs(ramp.factor(newcomer(list), clock.t) - 0.5) < 1e-9);
    assert.equal(ramp.active(clock.t), true);
  });

  it("treats a ready time in the future (clock skew) as now: floor at once, full weight after one window", () => {
    const { clock, deps } = testDeps();
    const list = states(WALL0 + HOUR);
    const ramp = createSlowStart({ windowMs: WINDOW }, list, deps)!;
    assert.equal(ramp.factor(newcomer(list), clock.t), 0.1);
    clock.t += WINDOW;
    assert.equal(ramp.factor(newcomer(list), clock.t), 1);
    assert.equal(ramp.active(clock.t), false);
  });
});

describe("slow start: a new endpoint's share rises over its window", () => {
  it("ROUND_ROBIN: rises in each of 10 consecutive slices, then settles at an even split", () => {
    const { clock, deps } = testDeps(3);
    const lb = createBalancer(
      { policy: LoadBalancerPolicy.ROUND_ROBIN, slowStart: { windowMs: WINDOW } },
      cluster(WALL0),
      deps,
    );
    const shares = sharesBySlice(lb, clock, seeded(9), 12, WINDOW / 10, 16);
    assertRising(shares.slice(0, 10));
    assert.ok(shares[0]! < 0.03, `first slice ${shares[0]}: 10% of a weight`);
    for (const s of shares.slice(10)) assert.ok(Math.abs(s - 0.2) < 0.005, `after the window: ${s}`);
  });

  it("LEAST_REQUEST: rises in each of 5 consecutive slices, then settles near an even split", () => {
    const { clock, deps } = testDeps(4);
    const lb = createBalancer(
      { policy: LoadBalancerPolicy.LEAST_REQUEST, slowStart: { windowMs: WINDOW } },
      cluster(WALL0),
      deps,
    );
    const shares = sharesBySlice(lb, clock, seeded(11), 7, WINDOW / 5, 16);
    assertRising(shares.slice(0, 5));
    assert.ok(shares[0]! < 0.08, `first slice ${shares[0]}`);
    for (const s of shares.slice(5)) assert.ok(Math.abs(s - 0.2) < 0.03, `after the window: ${s}`);
  });

  it("without slow start the newcomer takes its full share at once (the baseline the ramp changes)", () => {
    for (const policy of [LoadBalancerPolicy.ROUND_ROBIN, LoadBalancerPolicy.LEAST_REQUEST]) {
      const { clock, deps } = testDeps(4);
      const lb = createBalancer({ policy }, cluster(WALL0), deps);
      const [first] = sharesBySlice(lb, clock, seeded(11), 1, WINDOW / 5, 16);
      assert.ok(Math.abs(first! - 0.2) < 0.03, `${LoadBalancerPolicy[policy]}: ${first}`);
    }
  });

  it("an endpoint restarted after the window ramps again; one already warm does not", () => {
    const { clock, deps } = testDeps(6);
    const config = { policy: LoadBalancerPolicy.ROUND_ROBIN, slowStart: { windowMs: WINDOW } };
    const warm = createBalancer(config, cluster(WALL0 - 2 * WINDOW), deps);
    const [even] = sharesBySlice(warm, clock, seeded(1), 1, 1_000, 8);
    assert.ok(Math.abs(even! - 0.2) < 0.005, `warm endpoint: ${even}`);
    const wallNow = WALL0 + (clock.t - 5_000);
    const restarted = createBalancer(config, cluster(wallNow), deps, warm);
    const [cold] = sharesBySlice(restarted, clock, seeded(1), 1, 1_000, 8);
    assert.ok(cold! < 0.03, `restarted endpoint: ${cold}`);
  });
});
