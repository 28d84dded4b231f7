/**
 * Least request by the power of two choices (policy LEAST_REQUEST, the default).
 *
 * Source: Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing" (IEEE TPDS, 2001):
 * sampling two servers at random and taking the less loaded one cuts the maximum load
 * exponentially compared with one random choice, without the herding of "always the least loaded"
 * (every sidecar piling onto the same idle endpoint). The load measure is Finagle's and Linkerd's
 * peak-EWMA cost, so latency counts as well as queue length.
 *
 * A pick:
 *  1. Take the usable candidates (precomputed; see usable-set.ts). None → undefined; one → it.
 *  2. Sample a candidate uniformly at random, skipping keys in `exclude` (retry attempts go
 *     elsewhere). When every candidate is excluded, drop `exclude`: a repeat beats failing.
 *  3. Sample a second candidate, distinct from the first, the same way. None left → the first.
 *  4. Cost = (outstanding + 1) × latency estimate ÷ weight. The +1 prices the request being placed,
 *     so an idle slow endpoint still costs its latency; weight 1 (the default) leaves the plain
 *     Finagle cost. A slow endpoint loses even at equal outstanding. During slow start the weight
 *     is the ramped one (weight × factor, see slow-start.ts): a newcomer looks dearer, so it wins
 *     fewer comparisons until its window ends.
 *  5. Return the cheaper one; on a tie, the one with fewer requests in flight, then the first.
 */
import { LoadBalancerPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import type { BalancerConfig, BalancerDeps, BalancerFactory, LoadBalancer, PickContext } from "./balancer.js";
import type { EndpointState } from "./endpoint-state.js";
import { createSlowStart, type SlowStart } from "./slow-start.js";
import { UsableSet } from "./usable-set.js";

/** Random draws per sample before falling back to a scan (step 2 with many keys excluded). */
const SAMPLE_TRIES = 3;

/** Power-of-two-choices least-request over a cluster snapshot's usable endpoints. */
export class LeastRequestBalancer implements LoadBalancer {
  readonly policy = LoadBalancerPolicy.LEAST_REQUEST;
  readonly endpoints: readonly EndpointState[];
  private readonly usable: UsableSet;
  private readonly deps: BalancerDeps;
  /** The slow-start ramp; undefined when off or when no endpoint ramps. */
  private readonly ramp: SlowStart | undefined;
  /** With a ramp: each candidate's ramped weight, by index in the candidate list. */
  private weights = new Float64Array(0);
  /** The candidate-list version `weights` was computed for. */
  private weightsFor = -1;
  /** Clock time at which `weights` are next refreshed (see `SlowStart.nextStepMs`). */
  private weightsDueAt = Number.POSITIVE_INFINITY;

  constructor(endpoints: readonly EndpointState[], config: BalancerConfig, deps: BalancerDeps) {
    this.endpoints = endpoints;
    this.usable = new UsableSet(endpoints, config.minHealthPercent ?? 0);
    this.deps = deps;
    this.ramp = createSlowStart(config.slowStart, endpoints, deps);
  }

  get panicking(): boolean {
    return this.usable.panicking;
  }

  /** See the file comment for the steps. */
  pick(ctx: PickContext): EndpointState | undefined {
    const now = this.deps.now();
    const list = this.usable.list(now);
    const n = list.length;
    if (n === 0) return undefined;
    if (n === 1) return list[0];
    let exclude = ctx.exclude;
    if (exclude !== undefined && exclude.size === 0) exclude = undefined;
    let a = this.sample(list, exclude, -1);
    if (a < 0) {
      exclude = undefined;
      a = this.sample(list, undefined, -1);
    }
    const first = list[a]!;
    const b = this.sample(list, exclude, a);
    if (b < 0) return first;
    const second = list[b]!;
    let weightA = first.data.weight;
    let weightB = second.data.weight;
    if (this.ramp !== undefined) {
      if (this.weightsFor !== this.usable.version || now >= this.weightsDueAt) this.reweigh(list, now);
      weightA = this.weights[a]!;
      weightB = this.weights[b]!;
    }
    const costA = cost(first, now, weightA);
    const costB = cost(second, now, weightB);
    if (costB < costA || (costB === costA && second.outstanding < first.outstanding)) return second;
    return first;
  }

  /** Refreshes the candidates' ramped weights (slow start; see slow-start.ts). */
  private reweigh(list: readonly EndpointState[], now: number): void {
    const ramp = this.ramp!;
    if (this.weights.length < list.length) this.weights = new Float64Array(list.length);
    for (let i = 0; i < list.length; i++) this.weights[i] = ramp.weight(list[i]!, now);
    this.weightsFor = this.usable.version;
    this.weightsDueAt = ramp.nextStepMs(now);
  }

  /**
   * Index of a uniformly random candidate other than `avoid` (−1: none to avoid) whose key is not
   * in `exclude`; −1 when there is none. Rejection sampling first (exclusions are few: the
   * attempts of one request), then a scan from a random start.
   */
  private sample(
    list: readonly EndpointState[],
    exclude: ReadonlySet<string> | undefined,
    avoid: number,
  ): number {
    const n = list.length;
    const span = avoid < 0 ? n : n - 1;
    for (let tries = 0; tries < SAMPLE_TRIES; tries++) {
      let i = this.index(span);
      if (avoid >= 0 && i >= avoid) i++;
      if (exclude === undefined || !exclude.has(list[i]!.key)) return i;
    }
    const start = this.index(n);
    for (let k = 0; k < n; k++) {
      const i = start + k < n ? start + k : start + k - n;
      if (i !== avoid && exclude?.has(list[i]!.key) !== true) return i;
    }
    return -1;
  }

  /** Uniform integer in [0, n). */
  private index(n: number): number {
    return Math.min(n - 1, Math.floor(this.deps.random() * n));
  }
}

/**
 * Step 4: the expected wait for one more request on `s`, per unit of `weight`. A weight of 0 (a
 * ramp starting at minWeightPercent 0) costs +∞ rather than NaN (0 ms ÷ 0), which would win.
 */
function cost(s: EndpointState, now: number, weight: number): number {
  const load = (s.outstanding + 1) * s.latencyMs(now);
  return weight > 0 ? load / weight : Number.POSITIVE_INFINITY;
}

/** Builds `LeastRequestBalancer`s; all their state lives in the endpoint states. */
export const leastRequestFactory: BalancerFactory = {
  policy: LoadBalancerPolicy.LEAST_REQUEST,
  create: (endpoints, config, deps) => new LeastRequestBalancer(endpoints, config, deps),
};
