/**
 * Slow start: a new endpoint's weight ramps up over a window instead of taking its full share at
 * once. A freshly started backend has cold caches, an unwarmed JIT and empty connection pools; at
 * full share it answers slowly or fails, gets ejected, and comes back to the same flood.
 *
 * Source: Envoy's `slow_start_config` (round robin and least request), whose `aggression`
 * parameter shapes the ramp. For an endpoint that became ready `elapsed` ms ago:
 *  1. Outside the window (elapsed ≥ window), or when the control plane did not say when it became
 *     ready, the factor is 1.
 *  2. Otherwise x = elapsed / window (0 when the ready time lies in the future: clock skew between
 *     the control plane and us must not stretch the ramp), and f = x^(1/aggression): aggression 1
 *     is linear, above 1 front-loads the ramp, below 1 holds the endpoint back longer.
 *  3. The factor is max(f, minWeightPercent / 100): a newcomer always gets some traffic, or its
 *     latency estimate (and caches) would never warm.
 *  4. The endpoint's effective weight is its weight × the factor. Round robin turns it into turns
 *     per cycle; least request divides its cost by it.
 *
 * Clocks: `readySinceMs` is wall-clock (ms since the Unix epoch, from the control plane); the
 * balancers run on the injected monotonic `deps.now`. The offset between the two is read once, when
 * the balancer is built, so a later wall-clock step (NTP) cannot jump a ramp mid-window.
 *
 * Not applied to RING_HASH: a ring's points are fixed by membership so every caller maps a key the
 * same way; ramping them would move keys between endpoints as time passes.
 */
import type { BalancerDeps } from "./balancer.js";
import type { EndpointState } from "./endpoint-state.js";

/** Slow start as `createBalancer` receives it (proto `SlowStart`, durations in ms). */
export interface SlowStartConfig {
  /** Ramp length, ms > 0. Non-finite or ≤ 0 turns slow start off. */
  readonly windowMs: number;
  /** Ramp shape, > 0 (step 2). Default 1 (linear); a non-finite or ≤ 0 value means 1. */
  readonly aggression?: number;
  /** The factor's floor in percent, 0–100 (step 3; clamped). Default 10. */
  readonly minWeightPercent?: number;
}

/** Default of `SlowStartConfig.minWeightPercent` (the proto's documented default). */
export const SLOW_START_DEFAULT_MIN_WEIGHT_PERCENT = 10;

/**
 * Re-evaluations of the ramp per window. Balancers keep the ramped weights precomputed and refresh
 * them every window/SLOW_START_STEPS (`nextStepMs`) rather than per pick: a per-pick `weight()`
 * call returns a boxed double (garbage on the hot path), and round robin must rebuild its schedule
 * anyway. 50 steps make each step a 2% move of a linear ramp.
 */
export const SLOW_START_STEPS = 50;

/**
 * The ramp for one balancer snapshot. Immutable; every method is allocation-free, so it can run
 * inside a pick.
 */
export class SlowStart {
  readonly windowMs: number;
  /** 1 / aggression. */
  private readonly exponent: number;
  /** minWeightPercent / 100. */
  private readonly minFactor: number;
  /** Wall-clock ms minus monotonic ms, at build. */
  private readonly offsetMs: number;
  /** The monotonic time of the build: a ready time later than this is treated as this. */
  private readonly builtAtMs: number;
  /** Monotonic ms from which no endpoint of the snapshot ramps any more. */
  readonly endMs: number;

  constructor(config: SlowStartConfig, endpoints: readonly EndpointState[], deps: BalancerDeps) {
    this.windowMs = config.windowMs;
    const aggression = config.aggression;
    this.exponent =
      aggression !== undefined && Number.isFinite(aggression) && aggression > 0 ? 1 / aggression : 1;
    const min = config.minWeightPercent ?? SLOW_START_DEFAULT_MIN_WEIGHT_PERCENT;
    this.minFactor = min > 0 ? Math.min(min, 100) / 100 : 0;
    this.builtAtMs = deps.now();
    this.offsetMs = (deps.wallNow ?? Date.now)() - this.builtAtMs;
    let end = Number.NEGATIVE_INFINITY;
    for (const s of endpoints) {
      const start = this.startMs(s);
      if (start !== undefined && start + this.windowMs > end) end = start + this.windowMs;
    }
    this.endMs = end;
  }

  /** True while some endpoint of the snapshot may still be ramping at `nowMs` (monotonic). */
  active(nowMs: number): boolean {
    return nowMs < this.endMs;
  }

  /**
   * When weights computed at `nowMs` are next due for a refresh: one step later, or at the end of
   * the last ramp, whichever is first; +∞ once nothing ramps.
   */
  nextStepMs(nowMs: number): number {
    if (nowMs >= this.endMs) return Number.POSITIVE_INFINITY;
    return Math.min(nowMs + this.windowMs / SLOW_START_STEPS, this.endMs);
  }

  /** The factor of steps 1–3 for `s` at `nowMs` (monotonic), in [minWeightPercent/100, 1]. */
  factor(s: EndpointState, nowMs: number): number {
    const ready = s.data.readySinceMs;
    if (ready === undefined) return 1;
    // Inline rather than `startMs()`: a `number | undefined` return boxes the double per call.
    const elapsed = nowMs - Math.min(ready - this.offsetMs, this.builtAtMs);
    if (elapsed >= this.windowMs) return 1;
    const x = elapsed > 0 ? elapsed / this.windowMs : 0;
    const f = this.exponent === 1 ? x : x ** this.exponent;
    return Math.max(f, this.minFactor);
  }

  /** Step 4: `s`'s weight × its factor at `nowMs`; > 0 unless minWeightPercent is 0 at the start. */
  weight(s: EndpointState, nowMs: number): number {
    return s.data.weight * this.factor(s, nowMs);
  }

  /** When `s` became ready on the monotonic clock (never after the build); undefined if unknown. */
  private startMs(s: EndpointState): number | undefined {
    const ready = s.data.readySinceMs;
    if (ready === undefined) return undefined;
    const start = ready - this.offsetMs;
    return Math.min(start, this.builtAtMs);
  }
}

/**
 * The ramp for `endpoints`, or undefined when slow start is off (no config, or a window that is
 * not a positive finite number) or no endpoint is inside its window at build time: then the
 * balancer pays nothing per pick. A new endpoint only ever arrives with a new snapshot, hence a new
 * balancer, so "nothing ramps now" stays true for this one.
 */
export function createSlowStart(
  config: SlowStartConfig | undefined,
  endpoints: readonly EndpointState[],
  deps: BalancerDeps,
): SlowStart | undefined {
  if (config === undefined || !(config.windowMs > 0) || !Number.isFinite(config.windowMs)) return undefined;
  const ramp = new SlowStart(config, endpoints, deps);
  return ramp.active(deps.now()) ? ramp : undefined;
}
