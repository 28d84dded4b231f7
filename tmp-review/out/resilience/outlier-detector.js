/**
 * Outlier detection (passive health): an endpoint whose requests keep failing is ejected — taken
 * out of its cluster's balancer — for a while, longer each time it is ejected again. One detector
 * per cluster, built when the cluster's policy is compiled; `report` runs once per finished attempt.
 *
 * The algorithm, per `report(endpoint, result, all)`:
 *  1. Disabled: do nothing (no counting, and ejections already in force are left to expire).
 *  2. The endpoint is ejected right now: ignore the result. Those are requests that were already in
 *     flight at the ejection, or panic-mode picks; the ejection has answered them, and the next one
 *     must be earned by a full run of fresh failures after the endpoint returns.
 *  3. Decay: for each full `intervalMs` the endpoint has spent un-ejected since its last ejection
 *     ended, `timesEjected` goes down by one (computed here, lazily: no timer).
 *  4. Count: success resets both consecutive counters; a gateway error (connect failure, reset,
 *     timeout, 502/503/504) increments both — it is a 5xx as well —; another 5xx increments the
 *     5xx counter and resets the gateway one (it breaks a run of *consecutive* gateway errors).
 *  5. Trip: a counter that reaches its threshold (`consecutiveGatewayErrors`; `consecutive5xx`, when
 *     not 0) asks for an ejection, and resets both counters whatever the answer — so a failing
 *     endpoint that may not be ejected asks again only after another full run of failures, and the
 *     O(n) scan of step 6 runs at most once per run, never per request.
 *  6. Eject only when the endpoint (matched by its shared signals: the same instance in the current
 *     snapshot) is in `all`, healthy and not draining there, and fewer than `maxEjectionPercent` % of
 *     `all` are ejected *before* this one. With 3 endpoints and 50%, a first (0%) and a second (33%)
 *     ejection pass and a third (67%) does not: two broken endpoints out of three are both ejected,
 *     and the balancer's panic threshold (`minHealthPercent`) then spreads load over all three.
 *  7. Ejection: `timesEjected` + 1, then `ejectedUntil = now + min(baseEjectionMs × timesEjected,
 *     maxEjectionMs)` — the first ejection lasts `baseEjectionMs`, the second twice that, and so on up
 *     to the cap. Setting `ejectedUntil` bumps the cluster's usability epoch, so every balancer of
 *     the cluster drops the endpoint at its next pick.
 *  8. Return needs no call: balancers treat an `ejectedUntil` in the past as usable.
 *
 * State lives in the endpoint's `EndpointSignals` (`ejectedUntil` and `outlier`), shared by every
 * snapshot of the same instance: a config update that changes only an attribute (or nothing about
 * this endpoint) keeps counters and ejections, and `reconfigure` touches no endpoint.
 */
import { durationMs } from "@trellis/proto/duration";
/** The pinned defaults (INTERFACES.md, TrafficPolicy). */
export const DEFAULT_OUTLIER_CONFIG = Object.freeze({
    enabled: true,
    consecutive5xx: 0,
    consecutiveGatewayErrors: 5,
    intervalMs: 10_000,
    baseEjectionMs: 30_000,
    maxEjectionMs: 300_000,
    maxEjectionPercent: 50,
    minHealthPercent: 50,
});
/**
 * The `OutlierConfig` for a cluster's proto `OutlierDetection` (undefined: every default). Values
 * the validator would refuse are made harmless rather than thrown: percentages are clamped to
 * 0–100 (NaN: the default), non-positive durations take the default, and the cap is raised to the
 * base ejection time when below it (a base of 400s with no cap ejects for 400s, not 300s). Pure.
 */
export function outlierConfig(spec) {
    const d = DEFAULT_OUTLIER_CONFIG;
    const baseEjectionMs = positiveMs(spec?.baseEjectionTime, d.baseEjectionMs);
    return {
        enabled: spec?.enabled ?? d.enabled,
        consecutive5xx: spec?.consecutive5xx ?? d.consecutive5xx,
        consecutiveGatewayErrors: spec?.consecutiveGatewayErrors ?? d.consecutiveGatewayErrors,
        intervalMs: positiveMs(spec?.interval, d.intervalMs),
        baseEjectionMs,
        maxEjectionMs: Math.max(positiveMs(spec?.maxEjectionTime, d.maxEjectionMs), baseEjectionMs),
        maxEjectionPercent: percent(spec?.maxEjectionPercent, d.maxEjectionPercent),
        minHealthPercent: percent(spec?.minHealthPercent, d.minHealthPercent),
    };
}
function positiveMs(d, fallback) {
    const ms = durationMs(d, fallback);
    return ms > 0 ? ms : fallback;
}
function percent(value, fallback) {
    if (value === undefined || Number.isNaN(value))
        return fallback;
    return Math.min(Math.max(value, 0), 100);
}
/** Outlier detection for one cluster (see the file comment for the algorithm). */
export class OutlierDetector {
    config;
    now;
    /** @param now the clock the cluster's balancers use (ms, monotonic), since `ejectedUntil` is on it. */
    constructor(config, now) {
        this.config = config;
        this.now = now;
    }
    /**
     * Records the result of one finished attempt to `endpoint` (the state `pick()` returned, from
     * whichever snapshot). `all` is the cluster's current endpoint list (`balancer.endpoints`), for
     * the membership, health and max-ejection-percent checks. Returns true when this call ejected the
     * endpoint (the caller counts `trellis_outlier_ejections_total`). Allocates nothing; O(1) except
     * when a counter trips (O(n) over `all`). Never throws.
     */
    report(endpoint, result, all) {
        const c = this.config;
        if (!c.enabled)
            return false; // step 1
        const signals = endpoint.signals;
        const now = this.now();
        if (now < signals.ejectedUntil)
            return false; // step 2
        const o = signals.outlier;
        if (o.timesEjected > 0)
            this.decay(o, now); // step 3
        if (result === "success") {
            o.consecutiveGatewayErrors = 0;
            o.consecutive5xx = 0;
            return false;
        }
        // Step 4.
        const gateway = result === "gateway-error";
        o.consecutiveGatewayErrors = gateway ? o.consecutiveGatewayErrors + 1 : 0;
        o.consecutive5xx++;
        // Step 5.
        const tripped = (gateway &&
            c.consecutiveGatewayErrors > 0 &&
            o.consecutiveGatewayErrors >= c.consecutiveGatewayErrors) ||
            (c.consecutive5xx > 0 && o.consecutive5xx >= c.consecutive5xx);
        if (!tripped)
            return false;
        o.consecutiveGatewayErrors = 0;
        o.consecutive5xx = 0;
        // Step 6, in one pass: the endpoint's state in the current snapshot, and how many are ejected.
        let current;
        let ejected = 0;
        for (let i = 0; i < all.length; i++) {
            const s = all[i];
            if (s.signals === signals)
                current = s;
            else if (now < s.ejectedUntil)
                ejected++;
        }
        if (current === undefined || !current.healthy || current.draining)
            return false;
        if (!(ejected * 100 < c.maxEjectionPercent * all.length))
            return false;
        // Step 7.
        o.timesEjected++;
        const until = now + Math.min(c.baseEjectionMs * o.timesEjected, c.maxEjectionMs);
        o.decayFromMs = until;
        current.ejectedUntil = until;
        return true;
    }
    /** How many endpoints of `all` are ejected at `now()` (the `trellis_endpoints_ejected` gauge). O(n). */
    ejectedCount(all) {
        const now = this.now();
        let n = 0;
        for (let i = 0; i < all.length; i++)
            if (now < all[i].ejectedUntil)
                n++;
        return n;
    }
    /**
     * Puts a new configuration in force (a policy update). Every endpoint's counters, ejection count
     * and ejection in force are kept — they live in the endpoints, not here — and the new thresholds
     * apply from the next report; an ejection in force keeps the length it was given.
     */
    reconfigure(config) {
        this.config = config;
    }
    /** Step 3: one ejection forgiven per full interval un-ejected since `decayFromMs`. */
    decay(o, now) {
        const interval = this.config.intervalMs;
        const elapsed = now - o.decayFromMs;
        if (!(interval > 0) || elapsed < interval)
            return;
        const steps = Math.floor(elapsed / interval);
        if (steps >= o.timesEjected) {
            o.timesEjected = 0;
        }
        else {
            o.timesEjected -= steps;
            o.decayFromMs += steps * interval;
        }
    }
}
