/**
 * Weighted round robin: even and smooth distribution, retries that go elsewhere, and endpoints
 * that must never be picked. Time and randomness are injected, so every run is the same.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Endpoint } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { LoadBalancerPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { HealthStatus } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { type BalancerDeps, createBalancer, type LoadBalancer } from "@trellis/sidecar/balancer/balancer";
import { RoundRobinBalancer, smoothSchedule } from "@trellis/sidecar/balancer/round-robin";
import { endpoint, testDeps } from "./fixtures.js";

function rr(endpoints: Endpoint[], deps: BalancerDeps): LoadBalancer {
  return createBalancer({ policy: LoadBalancerPolicy.ROUND_ROBIN }, endpoints, deps);
}

function countPicks(lb: LoadBalancer, picks: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < picks; i++) {
    const key = lb.pick({})!.key;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

describe("round robin", () => {
  it("is built for policy ROUND_ROBIN", () => {
    const lb = rr([endpoint(1)], testDeps().deps);
    assert.ok(lb instanceof RoundRobinBalancer);
    assert.equal(lb.policy, LoadBalancerPolicy.ROUND_ROBIN);
  });

  it("spreads 3 000 picks over 3 endpoints evenly (±1)", () => {
    const lb = rr([endpoint(1), endpoint(2), endpoint(3)], testDeps(17).deps);
    const counts = countPicks(lb, 3_000);
    assert.equal(counts.size, 3);
    for (const [key, n] of counts) assert.ok(Math.abs(n - 1_000) <= 1, `${key} got ${n}`);
  });

  it("visits every endpoint once per cycle with equal weights", () => {
    const lb = rr([endpoint(1), endpoint(2), endpoint(3), endpoint(4)], testDeps(2).deps);
    for (let cycle = 0; cycle < 5; cycle++) {
      const keys = new Set<string>();
      for (let i = 0; i < 4; i++) keys.add(lb.pick({})!.key);
      assert.equal(keys.size, 4);
    }
  });

  it("gives each endpoint its weight's share, spread through the cycle", () => {
    const lb = rr(
      [endpoint(1, { weight: 1 }), endpoint(2, { weight: 2 }), endpoint(3, { weight: 3 })],
      testDeps().deps,
    );
    const sequence: string[] = [];
    for (let i = 0; i < 600; i++) sequence.push(lb.pick({})!.key);
    const count = (k: string): number => sequence.filter((s) => s === k).length;
    assert.equal(count("10.0.0.1:15006"), 100);
    assert.equal(count("10.0.0.2:15006"), 200);
    assert.equal(count("10.0.0.3:15006"), 300);
    // Smooth: the weight-3 endpoint never takes three turns in a row.
    let run = 0;
    let longest = 0;
    for (const k of sequence) {
      run = k === "10.0.0.3:15006" ? run + 1 : 0;
      longest = Math.max(longest, run);
    }
    assert.ok(longest <= 2, `longest run ${longest}`);
  });

  it("treats weight 0 (unset) as 1", () => {
    const lb = rr([endpoint(1, { weight: 0 }), endpoint(2, { weight: 1 })], testDeps().deps);
    const counts = countPicks(lb, 100);
    assert.equal(counts.get("10.0.0.1:15006"), 50);
  });

  it("picks another endpoint than the ones this request already tried", () => {
    const lb = rr([endpoint(1), endpoint(2), endpoint(3)], testDeps(4).deps);
    for (let i = 0; i < 30; i++) {
      const first = lb.pick({})!;
      const retry = lb.pick({ exclude: new Set([first.key]) })!;
      assert.notEqual(retry.key, first.key);
      const third = lb.pick({ exclude: new Set([first.key, retry.key]) })!;
      assert.notEqual(third.key, first.key);
      assert.notEqual(third.key, retry.key);
    }
  });

  it("allows a repeat when every endpoint was already tried", () => {
    const lb = rr([endpoint(1), endpoint(2)], testDeps().deps);
    const all = new Set(["10.0.0.1:15006", "10.0.0.2:15006"]);
    const picked = lb.pick({ exclude: all });
    assert.ok(picked && all.has(picked.key));
  });

  it("never picks unhealthy or draining endpoints, and keeps the rest even", () => {
    const lb = rr(
      [
        endpoint(1, { health: HealthStatus.UNHEALTHY }),
        endpoint(2),
        endpoint(3, { health: HealthStatus.DRAINING }),
        endpoint(4, { health: HealthStatus.UNSPECIFIED }),
      ],
      testDeps().deps,
    );
    const counts = countPicks(lb, 100);
    assert.deepEqual([...counts.keys()].sort(), ["10.0.0.2:15006", "10.0.0.4:15006"]);
    assert.equal(counts.get("10.0.0.2:15006"), 50);
  });

  it("returns undefined when no endpoint is usable", () => {
    const { deps } = testDeps();
    assert.equal(rr([endpoint(1, { health: HealthStatus.UNHEALTHY })], deps).pick({}), undefined);
    assert.equal(rr([], deps).pick({}), undefined);
  });

  it("drops an ejected endpoint from the rotation and takes it back when the ejection expires", () => {
    const { clock, deps } = testDeps(8);
    const lb = rr([endpoint(1), endpoint(2), endpoint(3)], deps);
    countPicks(lb, 5);
    lb.endpoints[1]!.ejectedUntil = 500;
    const during = countPicks(lb, 100);
    assert.equal(during.get("10.0.0.2:15006"), undefined);
    assert.equal(during.get("10.0.0.1:15006"), 50);
    clock.t = 500;
    const after = countPicks(lb, 300);
    for (const [key, n] of after) assert.equal(n, 100, key);
  });
});

describe("smoothSchedule", () => {
  const cases: Array<[weights: number[], expected: number[]]> = [
    [[], []],
    [
      [1, 1, 1],
      [0, 1, 2],
    ],
    [
      [5, 5],
      [0, 1],
    ], // reduced by the gcd
    [
      [1, 2],
      [1, 0, 1],
    ],
    [
      [1, 2, 3],
      [2, 1, 0, 2, 1, 2],
    ],
  ];
  for (const [weights, expected] of cases) {
    it(`orders weights [${weights.join(", ")}] as [${expected.join(", ")}]`, () => {
      assert.deepEqual(smoothSchedule(weights), expected);
    });
  }

  it("bounds the cycle for huge weights, keeping shares and every endpoint", () => {
    const schedule = smoothSchedule([4_000_000_000, 1_000_000_000, 1]);
    assert.ok(schedule.length <= 4_096 + 1, `length ${schedule.length}`);
    const share = (i: number): number => schedule.filter((j) => j === i).length / schedule.length;
    assert.ok(Math.abs(share(0) - 0.8) < 0.01);
    assert.ok(Math.abs(share(1) - 0.2) < 0.01);
    assert.ok(share(2) > 0);
  });
});
