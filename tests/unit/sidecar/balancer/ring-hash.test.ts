/**
 * Ring hash: the hash function against MurmurHash3's published vectors, the ring's layout, and
 * the consistency a user relies on — a key stays on its endpoint across requests, rebuilds and
 * callers, and a membership change moves exactly the keys it must.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Endpoint } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { LoadBalancerPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { HealthStatus } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { createBalancer, type LoadBalancer } from "@trellis/sidecar/balancer/balancer";
import { murmur3, murmur3Uint32 } from "@trellis/sidecar/balancer/hash";
import {
  buildRing,
  DEFAULT_MINIMUM_RING_SIZE,
  RING_POINT_BUDGET,
  RingHashBalancer,
} from "@trellis/sidecar/balancer/ring-hash";
import { endpoint, testDeps } from "./fixtures.js";

const RING = { policy: LoadBalancerPolicy.RING_HASH };
const KEYS = Array.from({ length: 1_000 }, (_, i) => `user-${i}`);
const key = (n: number): string => `10.0.0.${n}:15006`;

function ringOf(endpoints: Endpoint[], seed = 1, previous?: LoadBalancer): LoadBalancer {
  return createBalancer(RING, endpoints, testDeps(seed).deps, previous);
}

/** key → endpoint key for every key in KEYS. */
function placement(lb: LoadBalancer, keys: readonly string[] = KEYS): Map<string, string> {
  const out = new Map<string, string>();
  for (const k of keys) {
    const s = lb.pick({ hashKey: k });
    assert.ok(s, `no pick for ${k}`);
    out.set(k, s.key);
  }
  return out;
}

function counts(placed: Map<string, string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of placed.values()) out.set(e, (out.get(e) ?? 0) + 1);
  return out;
}

const five = (): Endpoint[] => [1, 2, 3, 4, 5].map((n) => endpoint(n));

describe("murmur3", () => {
  // MurmurHash3_x86_32 vectors (SMHasher); our strings are their UTF-16LE bytes.
  const cases: Array<[text: string, seed: number, expected: number]> = [
    ["", 0, 0],
    ["", 1, 0x514e28b7],
    ["", 0xffffffff, 0x81f16f39],
    ["\u0000\u0000", 0, 0x2362f9de], // bytes 00 00 00 00
    ["\u4321\u8765", 0, 0xf55b516b], // bytes 21 43 65 87
    ["\u4321\u8765", 0x5082edee, 0x2362f9de],
    ["\u4321", 0, 0xa0f7b07a], // bytes 21 43 (a 2-byte tail)
  ];
  for (const [text, seed, expected] of cases) {
    it(`hashes ${JSON.stringify(text)} with seed ${seed.toString(16)} to ${expected.toString(16)}`, () => {
      assert.equal(murmur3(text, seed), expected);
    });
  }

  it("hashes a uint32 as its 4 little-endian bytes", () => {
    assert.equal(murmur3Uint32(0x87654321, 0), 0xf55b516b);
    assert.equal(murmur3Uint32(0x87654321, 0x5082edee), 0x2362f9de);
    assert.equal(murmur3Uint32(0, 0), 0x2362f9de);
  });
});

describe("buildRing", () => {
  it("gives a weight-1 endpoint minimumRingSize points, sorted, whatever the assignment order", () => {
    const members = [
      { key: "b", weight: 1 },
      { key: "a", weight: 1 },
      { key: "c", weight: 1 },
    ];
    const ring = buildRing(members);
    assert.equal(ring.size, 3 * DEFAULT_MINIMUM_RING_SIZE);
    assert.deepEqual(ring.keys, ["a", "b", "c"]);
    for (let i = 1; i < ring.size; i++) assert.ok(ring.hashes[i - 1]! <= ring.hashes[i]!, `unsorted at ${i}`);
    const reordered = buildRing([members[2]!, members[0]!, members[1]!]);
    assert.deepEqual(reordered.hashes, ring.hashes);
    assert.deepEqual(reordered.owners, ring.owners);
    assert.ok(buildRing([{ key: "a", weight: 1 }], 1).size >= 1);
  });

  it("places points in proportion to weight, reduced by the gcd", () => {
    const ring = buildRing(
      [
        { key: "a", weight: 200 },
        { key: "b", weight: 100 },
      ],
      64,
    );
    const owned = [0, 0];
    for (const o of ring.owners) owned[o]!++;
    assert.deepEqual(owned, [128, 64]);
  });

  it("stays within the point budget, keeping at least minimumRingSize points", () => {
    const members = Array.from({ length: 3_000 }, (_, i) => ({ key: `e${i}`, weight: 1 }));
    const ring = buildRing(members, 1_024);
    assert.ok(ring.size <= RING_POINT_BUDGET, `${ring.size} points`);
    assert.ok(ring.size >= RING_POINT_BUDGET / 2, `${ring.size} points`);
    const skewed = buildRing(
      [
        { key: "a", weight: 4_000_000_000 },
        { key: "b", weight: 1 },
      ],
      16,
    );
    assert.ok(skewed.size <= RING_POINT_BUDGET && skewed.owners.includes(1));
  });
});

describe("ring hash", () => {
  it("is built for policy RING_HASH", () => {
    const lb = ringOf(five());
    assert.ok(lb instanceof RingHashBalancer);
    assert.equal(lb.policy, LoadBalancerPolicy.RING_HASH);
  });

  it("1,000 keys over 5 endpoints stay put across requests, rebuilds and callers", () => {
    const lb = ringOf(five(), 1);
    const first = placement(lb);
    for (let round = 0; round < 3; round++) assert.deepEqual(placement(lb), first, `round ${round}`);
    // Another sidecar: its own random source, the endpoints in another order.
    const other = ringOf(five().reverse(), 99);
    assert.deepEqual(placement(other), first);
    // The same cluster rebuilt from an unchanged assignment.
    assert.deepEqual(placement(ringOf(five(), 5, lb)), first);
    // Spread: with 1,024 points per endpoint each gets about a fifth of the keys.
    for (const [e, n] of counts(first)) assert.ok(n >= 140 && n <= 260, `${e} got ${n} keys`);
  });

  for (const removed of [1, 3, 5]) {
    it(`removing endpoint ${removed} of 5 moves exactly its keys`, () => {
      const before = placement(ringOf(five()));
      const survivors = five().filter((_, i) => i + 1 !== removed);
      const after = placement(ringOf(survivors));
      let moved = 0;
      for (const k of KEYS) {
        if (before.get(k) === key(removed)) {
          assert.notEqual(after.get(k), key(removed));
          moved++;
        } else {
          assert.equal(after.get(k), before.get(k), `${k} moved between survivors`);
        }
      }
      assert.ok(moved > 0, "the removed endpoint owned some keys");
    });
  }

  it("adding an endpoint moves keys only to it", () => {
    const before = placement(ringOf(five()));
    const after = placement(ringOf([...five(), endpoint(6)]));
    let gained = 0;
    for (const k of KEYS) {
      if (after.get(k) === key(6)) gained++;
      else assert.equal(after.get(k), before.get(k), `${k} moved between old endpoints`);
    }
    assert.ok(gained >= 100 && gained <= 250, `newcomer got ${gained} keys`);
  });

  it("a weight-2 endpoint takes about twice the keys", () => {
    const lb = ringOf([endpoint(1, { weight: 2 }), endpoint(2), endpoint(3)]);
    const c = counts(placement(lb));
    const heavy = c.get(key(1)) ?? 0;
    assert.ok(heavy >= 430 && heavy <= 570, `weight-2 endpoint got ${heavy} of 1000`);
  });

  it("an unusable endpoint's keys go to their ring successors and come back; others never move", () => {
    const { clock, deps } = testDeps(4);
    const lb = createBalancer(RING, five(), deps);
    const before = placement(lb);
    lb.endpoints[1]!.ejectedUntil = 1_000;
    const during = placement(lb);
    for (const k of KEYS) {
      if (before.get(k) === key(2)) assert.notEqual(during.get(k), key(2));
      else assert.equal(during.get(k), before.get(k), k);
    }
    clock.t = 1_000;
    assert.deepEqual(placement(lb), before);
    // Unhealthy and draining endpoints are skipped the same way (a new snapshot, same ring).
    const degraded = createBalancer(
      RING,
      [
        endpoint(1),
        endpoint(2, { health: HealthStatus.UNHEALTHY }),
        endpoint(3, { health: HealthStatus.DRAINING }),
        endpoint(4),
        endpoint(5),
      ],
      deps,
      lb,
    );
    assert.equal((degraded as RingHashBalancer).ring, (lb as RingHashBalancer).ring, "ring reused");
    const skipped = placement(degraded);
    for (const k of KEYS) {
      const was = before.get(k)!;
      if (was === key(2) || was === key(3)) assert.ok(![key(2), key(3)].includes(skipped.get(k)!));
      else assert.equal(skipped.get(k), was, k);
    }
  });

  it("a membership change rebuilds the ring; a health change does not", () => {
    const { deps } = testDeps();
    const v1 = createBalancer(RING, five(), deps) as RingHashBalancer;
    const v2 = createBalancer(RING, [...five().slice(0, 4), endpoint(5, { weight: 3 })], deps, v1);
    assert.notEqual((v2 as RingHashBalancer).ring, v1.ring);
    const v3 = createBalancer({ ...RING, minimumRingSize: 16 }, five(), deps, v1) as RingHashBalancer;
    assert.notEqual(v3.ring, v1.ring);
    assert.equal(v3.ring.size, 5 * 16);
  });

  it("a retry goes to the key's next endpoint on the ring, and repeats only when all were tried", () => {
    const lb = ringOf(five());
    for (const k of KEYS.slice(0, 100)) {
      const first = lb.pick({ hashKey: k })!;
      const retry = lb.pick({ hashKey: k, exclude: new Set([first.key]) })!;
      assert.notEqual(retry.key, first.key);
      assert.equal(lb.pick({ hashKey: k, exclude: new Set([first.key]) })!.key, retry.key, "deterministic");
    }
    const all = new Set([1, 2, 3, 4, 5].map(key));
    assert.ok(all.has(lb.pick({ hashKey: "x", exclude: all })!.key));
  });

  it("spreads requests without a hash key at random over the usable endpoints", () => {
    const lb = ringOf([endpoint(1), endpoint(2), endpoint(3, { health: HealthStatus.UNHEALTHY })], 7);
    const c = new Map<string, number>();
    for (let i = 0; i < 3_000; i++) {
      const k = lb.pick({})!.key;
      c.set(k, (c.get(k) ?? 0) + 1);
    }
    assert.deepEqual([...c.keys()].sort(), [key(1), key(2)]);
    for (const [e, n] of c) assert.ok(n >= 1_200 && n <= 1_800, `${e} got ${n}`);
  });

  it("returns undefined when no endpoint is usable, and panics like the other policies", () => {
    const { deps } = testDeps();
    assert.equal(createBalancer(RING, [], deps).pick({ hashKey: "a" }), undefined);
    const sick = [
      endpoint(1, { health: HealthStatus.UNHEALTHY }),
      endpoint(2, { health: HealthStatus.UNHEALTHY }),
    ];
    assert.equal(createBalancer(RING, sick, deps).pick({ hashKey: "a" }), undefined);
    const panic = createBalancer({ ...RING, minHealthPercent: 50 }, sick, deps);
    assert.ok(panic.pick({ hashKey: "a" }));
    assert.ok(panic.panicking);
  });
});
