/**
 * Weighted traffic splits: a 90/10 split sends about 90/10, weight-0 backends get nothing (a
 * shift in progress), and a split that can send nowhere is refused when compiled.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { WeightedClusterSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import type { WeightedClusters } from "@trellis/sidecar/routing/weighted";
import { compileWeightedClusters, pickCluster } from "@trellis/sidecar/routing/weighted";

/** mulberry32: a small seeded PRNG with values in [0, 1), so the distribution test is reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function compile(weights: number[]): WeightedClusters {
  const errors: string[] = [];
  const input = weights.map((weight, i) => create(WeightedClusterSchema, { cluster: `c${i}`, weight }));
  const compiled = compileWeightedClusters(input, "rules[0].clusters", errors);
  assert.deepEqual(errors, []);
  assert.ok(compiled !== undefined);
  return compiled;
}

function counts(split: WeightedClusters, draws: number, random: () => number): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i < draws; i++) {
    const c = pickCluster(split, random);
    out.set(c, (out.get(c) ?? 0) + 1);
  }
  return out;
}

describe("pickCluster", () => {
  it("splits 90/10 within ±1.5 points over 10 000 draws", () => {
    for (const seed of [1, 42, 0xc0ffee]) {
      const n = 10_000;
      const got = counts(compile([90, 10]), n, seeded(seed));
      const share0 = ((got.get("c0") ?? 0) / n) * 100;
      const share1 = ((got.get("c1") ?? 0) / n) * 100;
      assert.ok(Math.abs(share0 - 90) <= 1.5, `seed ${seed}: c0 got ${share0}%`);
      assert.ok(Math.abs(share1 - 10) <= 1.5, `seed ${seed}: c1 got ${share1}%`);
    }
  });

  it("never chooses a weight-0 backend, wherever it is", () => {
    const got = counts(compile([0, 50, 0, 50, 0]), 10_000, seeded(7));
    assert.deepEqual([...got.keys()].sort(), ["c1", "c3"]);
  });

  it("follows the weights with many backends (bisection) as well", () => {
    const weights = [0, 1, 2, 3, 0, 5, 8, 13, 21, 0, 34, 55];
    const split = compile(weights);
    const total = weights.reduce((a, b) => a + b, 0);
    const n = 100_000;
    const got = counts(split, n, seeded(99));
    weights.forEach((w, i) => {
      const share = ((got.get(`c${i}`) ?? 0) / n) * 100;
      assert.ok(Math.abs(share - (w / total) * 100) <= 1, `c${i}: ${share}% for weight ${w}`);
    });
  });

  it("maps every draw to the backend whose weight interval contains it, for scan and bisection alike", () => {
    for (const weights of [
      [3, 0, 7],
      [0, 1, 0, 1, 2, 0, 0, 4, 1, 1, 0, 3],
    ]) {
      const split = compile(weights);
      const total = weights.reduce((a, b) => a + b, 0);
      for (let k = 0; k < 1000; k++) {
        const u = k / 1000;
        // Reference: the first i with weight[0..i] summed > u * total.
        let acc = 0;
        let expected = -1;
        for (let i = 0; i < weights.length && expected < 0; i++) {
          acc += weights[i] as number;
          if (acc > u * total) expected = i;
        }
        assert.equal(
          pickCluster(split, () => u),
          `c${expected}`,
          `u=${u}`,
        );
      }
    }
  });

  it("does not draw when only one backend can be chosen", () => {
    const noDraw = () => assert.fail("random() must not be called");
    assert.equal(pickCluster(compile([5]), noDraw), "c0");
    assert.equal(pickCluster(compile([0, 5, 0]), noDraw), "c1");
  });

  it("stays on weighted backends when random() breaks its contract", () => {
    const split = compile([0, 1, 1, 0]);
    // [random() value] → backend
    const cases: Array<[number, string]> = [
      [0, "c1"],
      [0.4999, "c1"],
      [0.5, "c2"],
      [0.999999, "c2"],
      [1, "c2"],
      [7, "c2"],
      [-0.5, "c1"],
      [Number.NaN, "c1"],
    ];
    for (const [r, expected] of cases)
      assert.equal(
        pickCluster(split, () => r),
        expected,
        `random() = ${r}`,
      );
  });
});

describe("compileWeightedClusters", () => {
  // [weights (undefined name = empty cluster name)] → error pattern
  const cases: Array<[string, Array<[string, number]>, RegExp]> = [
    ["no clusters", [], /^rules\[0\]\.clusters: a rule needs at least one cluster$/],
    [
      "weights summing to 0",
      [
        ["a", 0],
        ["b", 0],
      ],
      /^rules\[0\]\.clusters: the weights sum to 0/,
    ],
    ["an empty cluster name", [["", 1]], /^rules\[0\]\.clusters\[0\]\.cluster: must name a cluster$/],
  ];
  for (const [what, clusters, pattern] of cases) {
    it(`refuses ${what}`, () => {
      const errors: string[] = [];
      const input = clusters.map(([cluster, weight]) => create(WeightedClusterSchema, { cluster, weight }));
      assert.equal(compileWeightedClusters(input, "rules[0].clusters", errors), undefined);
      assert.equal(errors.length, 1, errors.join("\n"));
      assert.match(errors[0] ?? "", pattern);
    });
  }

  it("accumulates the weights", () => {
    const split = compile([90, 0, 10]);
    assert.deepEqual(split.cumulative, [90, 90, 100]);
    assert.equal(split.totalWeight, 100);
    assert.equal(split.lastPositive, 2);
    assert.equal(split.sole, undefined);
  });
});
