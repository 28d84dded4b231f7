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
    windowMs;
    /** 1 / aggression. */
    exponent;
    /** minWeightPercent / 100. */
    minFactor;
    /** Wall-clock ms minus monotonic ms, at build. */
    offsetMs;
    /** The monotonic time of the build: a ready time later than this is treated as this. */
    builtAtMs;
    /** Monotonic ms from which no endpoint of the snapshot ramps any more. */
    endMs;
    constructor(config, endpoints, deps) {
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
            if (start !== undefined && start + this.windowMs > end)
                end = start + this.windowMs;
        }
        this.endMs = end;
    }
    /** True while some endpoint of the snapshot may still be ramping at `nowMs` (monotonic). */
    active(nowMs) {
        return nowMs < this.endMs;
    }
    /**
     * When weights computed at `nowMs` are next due for a refresh: one step later, or at the end of
     * the last ramp, whichever is first; +∞ once nothing ramps.
     */
    nextStepMs(nowMs) {
        if (nowMs >= this.endMs)
            return Number.POSITIVE_INFINITY;
        return Math.min(nowMs + this.windowMs / SLOW_START_STEPS, this.endMs);
    }
    /** The factor of steps 1–3 for `s` at `nowMs` (monotonic), in [minWeightPercent/100, 1]. */
    factor(s, nowMs) {
        const ready = s.data.readySinceMs;
        if (ready === undefined)
            return 1;
        // Inline rather than `startMs()`: a `number | undefined` return boxes the double per call.
        const elapsed = nowMs - Math.min(ready - this.offsetMs, this.builtAtMs);
        if (elapsed >= this.windowMs)
            return 1;
        const x = elapsed > 0 ? elapsed / this.windowMs : 0;
        const f = this.exponent === 1 ? x : x ** this.exponent;
        return Math.max(f, this.minFactor);
    }
    /** Step 4: `s`'s weight × its factor at `nowMs`; > 0 unless minWeightPercent is 0 at the start. */
    weight(s, nowMs) {
        return s.data.weight * this.factor(s, nowMs);
    }
    /** When `s` became ready on the monotonic clock (never after the build); undefined if unknown. */
    startMs(s) {
        const ready = s.data.readySinceMs;
        if (ready === undefined)
            return undefined;
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
export function createSlowStart(config, endpoints, deps) {
    if (config === undefined || !(config.windowMs > 0) || !Number.isFinite(config.windowMs))
        return undefined;
    const ramp = new SlowStart(config, endpoints, deps);
    return ramp.active(deps.now()) ? ramp : undefined;
}
