/**
 * Weighted backend choice for a route rule: cumulative weights are built once per snapshot, and a
 * pick is one random draw plus a scan (binary search for many backends), without allocation.
 */
import type { WeightedCluster } from "@trellis/proto/gen/trellis/v1/resources_pb";

/** Backends above this count are searched by bisection instead of a linear scan. */
const LINEAR_SCAN_MAX = 8;

/** The precompiled weighted split of one rule. */
export interface WeightedClusters {
  /** Cluster names (`<service>.<namespace>:<port>`), in the rule's backend order. */
  readonly clusters: readonly string[];
  /** cumulative[i] = weight[0] + … + weight[i]; non-decreasing, last = totalWeight. */
  readonly cumulative: readonly number[];
  /** Sum of the weights, > 0. */
  readonly totalWeight: number;
  /** Index of the last backend with a weight > 0: the answer when a draw lands on the very end. */
  readonly lastPositive: number;
  /** The only backend with a weight > 0, when there is exactly one (no draw needed); else undefined. */
  readonly sole: string | undefined;
}

/**
 * Compiles a rule's resolved clusters. Errors (the sidecar NACKs the RouteConfig with them, each
 * prefixed by `where`): no clusters, an empty cluster name, weights summing to 0. Weights above
 * 2^32-1 cannot occur (uint32 on the wire), so the sum is exact in a double.
 */
export function compileWeightedClusters(
  input: readonly WeightedCluster[],
  where: string,
  errors: string[],
): WeightedClusters | undefined {
  if (input.length === 0) {
    errors.push(`${where}: a rule needs at least one cluster`);
    return undefined;
  }
  const clusters: string[] = [];
  const cumulative: number[] = [];
  let total = 0;
  let lastPositive = -1;
  let positives = 0;
  let ok = true;
  input.forEach((wc, i) => {
    if (wc.cluster === "") {
      errors.push(`${where}[${i}].cluster: must name a cluster`);
      ok = false;
    }
    if (wc.weight > 0) {
      lastPositive = i;
      positives++;
    }
    total += wc.weight;
    clusters.push(wc.cluster);
    cumulative.push(total);
  });
  if (total === 0) {
    errors.push(`${where}: the weights sum to 0, so no cluster can be chosen`);
    return undefined;
  }
  if (!ok) return undefined;
  return {
    clusters,
    cumulative,
    totalWeight: total,
    lastPositive,
    sole: positives === 1 ? clusters[lastPositive] : undefined,
  };
}

/**
 * Picks a cluster for one request. `random` returns a number in [0, 1) (Math.random, or a seeded
 * generator in tests); it is not called when only one backend has a weight > 0.
 *  1. Draw r = random() * totalWeight, in [0, totalWeight).
 *  2. Return the first backend whose cumulative weight exceeds r. A backend of weight 0 has the
 *     same cumulative weight as the one before it, so it is never the first to exceed r.
 *  3. A draw out of contract stays safe: below 0 or NaN counts as 0, at or beyond the end returns the
 *     last backend of weight > 0.
 */
export function pickCluster(rule: WeightedClusters, random: () => number): string {
  if (rule.sole !== undefined) return rule.sole;
  const cumulative = rule.cumulative;
  let r = random() * rule.totalWeight;
  if (!(r >= 0)) r = 0; // NaN or negative: out of contract, but never a weight-0 backend
  const n = cumulative.length;
  let index: number;
  if (n <= LINEAR_SCAN_MAX) {
    index = 0;
    while (index < n && (cumulative[index] as number) <= r) index++;
  } else {
    let lo = 0;
    let hi = n; // invariant: the answer is in [lo, hi]
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cumulative[mid] as number) > r) hi = mid;
      else lo = mid + 1;
    }
    index = lo;
  }
  if (index >= n) index = rule.lastPositive;
  return rule.clusters[index] as string;
}
