/**
 * The retry budget of one upstream service: retries may add at most `percent` of the requests plus
 * `minRetriesPerSecond`, counted over a sliding window. Built per target (one per service, shared by
 * all its routes); the retry layer calls it per request and per retry. Pure: time comes from the
 * injected monotonic clock.
 *
 * Why a budget rather than only a per-request attempt count: when an upstream fails as a whole,
 * `attempts: 3` turns every request into four and quadruples the load on a service that is already
 * down (a retry storm). The budget caps the extra load at a share of the real traffic, while the
 * per-second floor keeps retries working for a service with little traffic. Source: Finagle's and
 * linkerd's retry budgets (percent of requests plus a minimum rate, over a window).
 *
 * The window is a ring of BUCKETS sub-buckets of windowMs/BUCKETS each: the current bucket plus the
 * BUCKETS−1 before it. No per-request allocation; buckets are expired lazily, on each call, from the
 * injected clock.
 *
 * The guarantee. Every retry granted is counted in its bucket at once, and is granted only while
 * (retries in the window + 1) ≤ percent/100 × requests in the window + minRetriesPerSecond × window
 * seconds. Any BUCKETS consecutive buckets lie inside the window of the last retry granted in them,
 * so for steady traffic the retries over T seconds stay ≤ percent/100 × requests +
 * minRetriesPerSecond × (T + window seconds). (A request is counted in the window of up to two such
 * groups of buckets, so traffic that bursts right before a group boundary can let the percent part
 * reach twice its share over that boundary; the floor part is exact.)
 */
import { durationMs } from "@trellis/proto/duration";
/** Default `percent` (the proto's documented default). */
export const DEFAULT_RETRY_BUDGET_PERCENT = 20;
/** Default `minRetriesPerSecond` (the proto's documented default). */
export const DEFAULT_RETRY_BUDGET_MIN_PER_SECOND = 10;
/** Default `windowMs` (the proto's documented default, 10s). */
export const DEFAULT_RETRY_BUDGET_WINDOW_MS = 10_000;
/** Sub-buckets per window: the window slides in steps of windowMs/BUCKETS (1s for the default). */
export const RETRY_BUDGET_BUCKETS = 10;
/**
 * The config of a proto `RetryBudget`, defaults filled in (an unset TrafficPolicy budget gives the
 * defaults: the budget is on unless configured otherwise). Present fields are kept even when 0
 * (`percent: 0` means no percent part). Out-of-range values are clamped: percent to 0–100, a
 * negative or non-finite floor to 0, a non-positive window to the default.
 */
export function retryBudgetConfig(spec) {
    return sanitize({
        percent: spec?.percent ?? DEFAULT_RETRY_BUDGET_PERCENT,
        minRetriesPerSecond: spec?.minRetriesPerSecond ?? DEFAULT_RETRY_BUDGET_MIN_PER_SECOND,
        windowMs: durationMs(spec?.window, DEFAULT_RETRY_BUDGET_WINDOW_MS),
    });
}
function sanitize(config) {
    const { percent, minRetriesPerSecond, windowMs } = config;
    return {
        percent: Number.isFinite(percent) ? Math.min(100, Math.max(0, percent)) : DEFAULT_RETRY_BUDGET_PERCENT,
        minRetriesPerSecond: Number.isFinite(minRetriesPerSecond) ? Math.max(0, minRetriesPerSecond) : 0,
        windowMs: Number.isFinite(windowMs) && windowMs > 0 ? windowMs : DEFAULT_RETRY_BUDGET_WINDOW_MS,
    };
}
/**
 * One service's retry budget. Not thread-safe (nor needs to be: one event loop). Counts survive
 * `reconfigure`, so a config push in the middle of an outage does not hand out a fresh budget.
 */
export class RetryBudget {
    now;
    /** First tries per bucket; index `head` is the current bucket. */
    requestRing = new Float64Array(RETRY_BUDGET_BUCKETS);
    /** Retries granted per bucket. */
    retryRing = new Float64Array(RETRY_BUDGET_BUCKETS);
    head = 0;
    /** Monotonic ms at which the current bucket began. */
    headStartMs;
    /** Running sums over the ring, so a decision is O(1) instead of a walk over the buckets. */
    requests = 0;
    retries = 0;
    percent = 0;
    bucketMs = DEFAULT_RETRY_BUDGET_WINDOW_MS / RETRY_BUDGET_BUCKETS;
    /** minRetriesPerSecond × window seconds × 100: the floor, scaled like `percent × requests`. */
    floorScaled = 0;
    /** `now`: monotonic ms (performance.now or a test clock); read on every call. */
    constructor(config, now) {
        this.now = now;
        this.headStartMs = now();
        this.reconfigure(config);
    }
    /** A request's first try started: counts toward the percent part of the current window. */
    onRequest() {
        this.advance();
        this.requestRing[this.head] += 1;
        this.requests += 1;
    }
    /**
     * Asks for one retry. True — and the retry is counted at once, so a retry waiting in backoff
     * already uses budget and a burst of failures cannot all pass the check before any is counted —
     * when retries in the window + 1 ≤ percent/100 × requests in the window + minRetriesPerSecond ×
     * window seconds. False otherwise; nothing is counted, and the caller counts
     * trellis_retry_budget_exhausted_total and answers with the attempt's own outcome.
     */
    tryRetry() {
        this.advance();
        // Compared ×100 so integer inputs stay exact: 20/100 × 5 is 1.0000000000000002 in floating point.
        if ((this.retries + 1) * 100 > this.percent * this.requests + this.floorScaled)
            return false;
        this.retryRing[this.head] += 1;
        this.retries += 1;
        return true;
    }
    /**
     * New limits; the window's counts are kept (a config update must not reset the budget). A new
     * window length takes effect from the current bucket on: the buckets already counted are treated
     * as buckets of the new length, so a shorter window forgets them sooner and a longer one later.
     */
    reconfigure(config) {
        const c = sanitize(config);
        this.advance();
        this.percent = c.percent;
        this.bucketMs = c.windowMs / RETRY_BUDGET_BUCKETS;
        this.floorScaled = (c.minRetriesPerSecond * c.windowMs) / 10;
    }
    /**
     * The window's counts now, for config_dump and tests: first tries, retries granted, and `allowed`,
     * the most retries the window may hold at its current request count (granted ones included).
     */
    snapshot() {
        this.advance();
        return {
            requests: this.requests,
            retries: this.retries,
            allowed: Math.floor((this.percent * this.requests + this.floorScaled) / 100),
        };
    }
    /**
     * Expires the buckets that fell out of the window since the last call:
     *  1. Whole buckets elapsed since the current one began: 0 (or a clock that went back) → nothing.
     *  2. A window or more → every bucket is cleared at once (no loop over a long idle gap).
     *  3. Otherwise step the head forward once per elapsed bucket, clearing each bucket it enters and
     *     taking its counts off the running sums.
     *  4. The new head bucket begins at a multiple of bucketMs after the old one, so buckets keep
     *     their boundaries however irregular the calls are.
     */
    advance() {
        const elapsed = this.now() - this.headStartMs;
        if (!(elapsed >= this.bucketMs))
            return;
        const steps = Math.floor(elapsed / this.bucketMs);
        if (steps >= RETRY_BUDGET_BUCKETS) {
            this.requestRing.fill(0);
            this.retryRing.fill(0);
            this.requests = 0;
            this.retries = 0;
        }
        else {
            for (let i = 0; i < steps; i++) {
                this.head = (this.head + 1) % RETRY_BUDGET_BUCKETS;
                this.requests -= this.requestRing[this.head];
                this.retries -= this.retryRing[this.head];
                this.requestRing[this.head] = 0;
                this.retryRing[this.head] = 0;
            }
        }
        this.headStartMs += steps * this.bucketMs;
    }
}
