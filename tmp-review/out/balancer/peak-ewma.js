/**
 * Peak-EWMA latency estimate for one endpoint, as in Finagle's `PeakEwma` balancer and Linkerd's
 * `tower::load::PeakEwma`: it rises at once on a slow sample and decays with elapsed time, so the
 * balancer reacts to a slowdown within one response but forgives it over seconds.
 *
 * The algorithm (times in ms on the injected clock, τ = `decayMs`):
 *  1. Observe a sample `rtt` at time `t`. A failed request counts as at least
 *     max(2 × estimate, `initialMs`): a backend that fails fast must not look fast, or it would
 *     draw more traffic the more it fails (the "black hole" a plain latency average creates).
 *  2. If `rtt` is above the estimate, the estimate becomes `rtt` (the peak): one slow response is
 *     enough to steer new requests away.
 *  3. Otherwise w = exp(-(t - lastUpdate) / τ) and estimate = estimate·w + rtt·(1 − w): a faster
 *     sample pulls the estimate down, more strongly the longer since the last update.
 *  4. When the estimate is read for a pick (`read(t)`), it is first decayed toward 0 with the same
 *     w, as if a 0 ms sample had arrived: an endpoint that has not been sampled for a while looks
 *     cheaper again, so it is probed rather than starved forever after one slow spell. Its next
 *     real sample restores the truth (step 2).
 *
 * Known cost of step 4 (shared with tower): after a long idle period an endpoint's estimate is
 * near 0, so it can draw a burst of picks until its first response lands.
 */
/** Decay time constant τ, in ms (Finagle and Linkerd both use 10 s). */
export const PEAK_EWMA_DECAY_MS = 10_000;
/** Estimate for an endpoint with no samples and no peers to copy from, in ms (Linkerd's default). */
export const PEAK_EWMA_INITIAL_MS = 30;
/** Factor applied to the current estimate when a request fails (step 1). */
const FAILURE_PENALTY_FACTOR = 2;
/**
 * One endpoint's latency estimate. Owned by its `EndpointSignals`; not shared across endpoints.
 * All times are milliseconds on the caller's clock; only differences matter.
 */
export class PeakEwma {
    // Initialised at the declaration, not only in the constructor: an ES class field starts as
    // `undefined`, and a field that held `undefined` makes V8 box every later double store into a
    // fresh heap object (measured: 32 bytes of garbage per P2C pick).
    estimate = 0;
    stampMs = 0;
    decayMs = PEAK_EWMA_DECAY_MS;
    /**
     * @param nowMs the clock reading at creation (the decay starts here).
     * @param initialMs the starting estimate, ms ≥ 0 (default `PEAK_EWMA_INITIAL_MS`).
     * @param decayMs τ, ms > 0 (default `PEAK_EWMA_DECAY_MS`).
     */
    constructor(nowMs, initialMs = PEAK_EWMA_INITIAL_MS, decayMs = PEAK_EWMA_DECAY_MS) {
        this.estimate = initialMs;
        this.stampMs = nowMs;
        this.decayMs = decayMs;
    }
    /** The estimate at `nowMs` after the time decay of step 4, in ms. Advances the decay stamp. */
    read(nowMs) {
        const w = this.weight(nowMs);
        this.estimate *= w;
        this.stampMs = Math.max(this.stampMs, nowMs);
        return this.estimate;
    }
    /** The estimate as last updated, without decay; for admin output and tests. */
    peek() {
        return this.estimate;
    }
    /**
     * Records one response (steps 1–3). `latencyMs` is the request's duration; a negative or
     * non-finite value counts as 0 (an Infinity would otherwise stick forever). `ok` false marks a
     * failure, which never lowers the estimate.
     */
    observe(nowMs, latencyMs, ok) {
        let rtt = Number.isFinite(latencyMs) && latencyMs > 0 ? latencyMs : 0;
        if (!ok)
            rtt = Math.max(rtt, this.estimate * FAILURE_PENALTY_FACTOR, PEAK_EWMA_INITIAL_MS);
        if (rtt > this.estimate) {
            this.estimate = rtt;
        }
        else {
            const w = this.weight(nowMs);
            this.estimate = this.estimate * w + rtt * (1 - w);
        }
        this.stampMs = Math.max(this.stampMs, nowMs);
    }
    /** exp(−elapsed/τ); 1 when the clock has not moved (or went backwards). */
    weight(nowMs) {
        const elapsed = nowMs - this.stampMs;
        return elapsed > 0 ? Math.exp(-elapsed / this.decayMs) : 1;
    }
}
