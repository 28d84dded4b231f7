/**
 * Weighted round robin (policy ROUND_ROBIN): each usable endpoint in turn, an endpoint of weight w
 * getting w turns per cycle, its turns spread evenly through the cycle (smooth, like nginx's
 * smooth weighted round robin, not "w in a row").
 *
 * The cycle is precomputed as a schedule when the candidate list changes, so a pick is one array
 * step instead of nginx's O(n) scan. With equal weights the schedule is the candidate list itself:
 * a plain rotation.
 *
 * Slow start (see slow-start.ts): while an endpoint ramps, the weights are its weight × ramp factor
 * at a resolution of 1/RAMP_RESOLUTION, re-evaluated every window/SLOW_START_STEPS (at the
 * first pick after that time), and the schedule is rebuilt when they changed. A pick between two
 * steps stays one array step; once every ramp has ended the weights are the plain ones again and
 * nothing is re-evaluated.
 */
import { LoadBalancerPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import type { BalancerConfig, BalancerDeps, BalancerFactory, LoadBalancer, PickContext } from "./balancer.js";
import type { EndpointState } from "./endpoint-state.js";
import { createSlowStart, type SlowStart } from "./slow-start.js";
import { allExcluded, UsableSet } from "./usable-set.js";

/** While ramping, weights are `weight × factor × RAMP_RESOLUTION`, rounded (at least 1). */
const RAMP_RESOLUTION = 100;

/**
 * Upper bound on the schedule length for `n` endpoints: weights whose exact cycle would be longer
 * are scaled down (each keeps ≥ 1 turn), trading a share error of about n/period for bounded
 * memory and rebuild time.
 */
function maxPeriod(n: number): number {
  return Math.max(4096, 8 * n);
}

/**
 * The smooth schedule for `weights` (each ≥ 1): a cycle of indices in which index i appears
 * `weights[i]` times (after dividing by their gcd, and scaling down when the cycle would exceed
 * `maxPeriod`).
 *
 * 1. Reduce the weights by their gcd ({2, 4} cycles like {1, 2}).
 * 2. If the sum exceeds the bound, scale every weight by bound/sum (rounded, at least 1).
 * 3. Give endpoint i the slots (k + ½)/wᵢ for k = 0…wᵢ−1 on a unit cycle: its turns are evenly
 *    spaced (the "virtual time" of stride scheduling).
 * 4. Order all slots by time, ties by index: that order is the schedule.
 */
export function smoothSchedule(weights: readonly number[]): number[] {
  const n = weights.length;
  if (n === 0) return [];
  let g = 0;
  for (const w of weights) g = gcd(g, w);
  let scaled = weights.map((w) => w / g);
  const total = scaled.reduce((a, b) => a + b, 0);
  const bound = maxPeriod(n);
  if (total > bound) scaled = scaled.map((w) => Math.max(1, Math.round((w * bound) / total)));
  const times: number[] = [];
  const owners: number[] = [];
  for (let i = 0; i < n; i++) {
    const w = scaled[i]!;
    for (let k = 0; k < w; k++) {
      times.push((k + 0.5) / w);
      owners.push(i);
    }
  }
  const order = times.map((_, j) => j);
  order.sort((x, y) => times[x]! - times[y]! || owners[x]! - owners[y]!);
  return order.map((j) => owners[j]!);
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Weighted round robin over a cluster snapshot's usable endpoints. */
export class RoundRobinBalancer implements LoadBalancer {
  readonly policy = LoadBalancerPolicy.ROUND_ROBIN;
  readonly endpoints: readonly EndpointState[];
  private readonly usable: UsableSet;
  private readonly deps: BalancerDeps;
  /** The slow-start ramp; undefined when off or when no endpoint ramps. */
  private readonly ramp: SlowStart | undefined;
  private schedule: EndpointState[] = [];
  /** The weights `schedule` was built from, by candidate index. */
  private weights: number[] = [];
  private builtFor = -1;
  /** Clock time of the next ramp re-evaluation; +∞ when nothing ramps. */
  private rampCheckAt = Number.POSITIVE_INFINITY;
  private cursor = 0;

  constructor(endpoints: readonly EndpointState[], config: BalancerConfig, deps: BalancerDeps) {
    this.endpoints = endpoints;
    this.usable = new UsableSet(endpoints, config.minHealthPercent ?? 0);
    this.deps = deps;
    this.ramp = createSlowStart(config.slowStart, endpoints, deps);
  }

  get panicking(): boolean {
    return this.usable.panicking;
  }

  /**
   * The next endpoint in the cycle; with `exclude`, the next one not yet tried (an excluded
   * endpoint's turn is skipped), or plainly the next when every candidate was tried.
   */
  pick(ctx: PickContext): EndpointState | undefined {
    const now = this.deps.now();
    const list = this.usable.list(now);
    if (list.length === 0) return undefined;
    if (this.builtFor !== this.usable.version || now >= this.rampCheckAt) this.rebuild(list, now);
    const schedule = this.schedule;
    const period = schedule.length;
    const exclude = ctx.exclude;
    if (exclude !== undefined && exclude.size > 0 && !allExcluded(list, exclude)) {
      let at = this.cursor;
      for (let step = 0; step < period; step++) {
        const s = schedule[at]!;
        at = at + 1 === period ? 0 : at + 1;
        if (!exclude.has(s.key)) {
          this.cursor = at;
          return s;
        }
      }
    }
    const s = schedule[this.cursor]!;
    this.cursor = this.cursor + 1 === period ? 0 : this.cursor + 1;
    return s;
  }

  /**
   * Recomputes the schedule for a new candidate list or a ramp step. The cycle starts at a random
   * position so that many sidecars built from the same snapshot do not all hit the first endpoint
   * together. A ramp step that leaves the weights as they were keeps the schedule and its cursor.
   */
  private rebuild(list: readonly EndpointState[], now: number): void {
    const ramp = this.ramp?.active(now) === true ? this.ramp : undefined;
    const weights =
      ramp === undefined
        ? list.map((s) => s.data.weight)
        : list.map((s) => Math.max(1, Math.round(ramp.weight(s, now) * RAMP_RESOLUTION)));
    this.rampCheckAt = ramp === undefined ? Number.POSITIVE_INFINITY : ramp.nextStepMs(now);
    if (this.builtFor === this.usable.version && sameNumbers(weights, this.weights)) return;
    this.weights = weights;
    const order = smoothSchedule(weights);
    this.schedule = order.map((i) => list[i]!);
    this.cursor = Math.min(order.length - 1, Math.floor(this.deps.random() * order.length));
    this.builtFor = this.usable.version;
  }
}

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Builds `RoundRobinBalancer`s; nothing is carried from a previous round-robin balancer. */
export const roundRobinFactory: BalancerFactory = {
  policy: LoadBalancerPolicy.ROUND_ROBIN,
  create: (endpoints, config, deps) => new RoundRobinBalancer(endpoints, config, deps),
};
