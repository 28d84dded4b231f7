/**
 * Local rate limits (`RateLimitPolicy.local`): token buckets counted by this sidecar instance alone,
 * checked by the inbound proxy after authorization and before the app (INTERFACES.md).
 *
 * Bucket semantics (pinned here and in docs/reference.md):
 *  - Capacity is `burst` (at least 1: a bucket that cannot hold one token admits nothing). It
 *    refills continuously at `requestsPerSecond`, in fractions of a token. A bucket starts full.
 *  - So `burst` is how many requests may arrive at once; a caller pacing itself at the sustained
 *    rate keeps the bucket full and can still send `burst` at once — the "extra requests above
 *    the sustained rate" of the proto comment. Over any t seconds at most `burst + rate × t`
 *    requests are admitted; `{requestsPerSecond: 100, burst: 20}` means "100/s, with spikes of up
 *    to 20 at once". `burst: 0` means capacity 1: requests must be spaced by 1/rate.
 *  - A request takes one token when at least one is there; otherwise it is refused and takes
 *    nothing (a refused caller does not dig the hole deeper).
 *  - `perIdentity`: one bucket per verified caller identity (SPIFFE id); callers without one share
 *    a single bucket. Identity buckets are bounded (LRU, `maxIdentities`).
 *  - `reconfigure()` rescales, never resets: each bucket keeps its fill fraction
 *    (tokens × newCapacity / oldCapacity), after crediting the time elapsed at the old rate.
 *
 * Time is injected (`now`, milliseconds, monotonic), so tests count exactly.
 */
/** Tolerance for float drift in refills (a token computed as 0.9999999999 is a token). */
const EPSILON = 1e-9;
/** Default bound on identity buckets per limiter. */
export const DEFAULT_MAX_IDENTITIES = 10_000;
/** One bucket's state: fractional tokens as of `last` (ms). */
class TokenBucket {
    tokens;
    last;
    constructor(tokens, last) {
        this.tokens = tokens;
        this.last = last;
    }
    /** Credits the time since `last` at `rate`/s, capped at `capacity`. A clock going back credits nothing. */
    refill(now, rate, capacity) {
        const elapsed = now - this.last;
        if (elapsed <= 0)
            return;
        this.last = now;
        if (this.tokens < capacity)
            this.tokens = Math.min(capacity, this.tokens + (elapsed * rate) / 1000);
    }
}
/** A token bucket limiter for one (policy, port): one shared bucket, plus identity buckets when `perIdentity`. */
export class LocalRateLimiter {
    name;
    now;
    rate;
    capacity;
    perIdentity;
    current;
    /** Callers without an identity, and everyone when not perIdentity. */
    shared;
    /** Identity → bucket, least recently used first (Map keeps insertion order). */
    byIdentity = new Map();
    maxIdentities;
    /**
     * @param name who the limiter belongs to (`<namespace>/<policy>`): the `policy` label of the
     *   decisions metric and the message of the 429.
     * @param now monotonic milliseconds.
     */
    constructor(name, limits, now, opts = {}) {
        this.name = name;
        this.now = now;
        this.current = { ...limits };
        this.rate = limits.requestsPerSecond;
        this.capacity = capacityOf(limits);
        this.perIdentity = limits.perIdentity;
        this.maxIdentities = Math.max(1, opts.maxIdentities ?? DEFAULT_MAX_IDENTITIES);
        this.shared = new TokenBucket(this.capacity, now());
    }
    /** The limits in force. */
    get limits() {
        return this.current;
    }
    /** Identity buckets held now (at most `maxIdentities`). */
    get identityBuckets() {
        return this.byIdentity.size;
    }
    /**
     * Takes one token from the caller's bucket. Returns undefined when the request is admitted, else
     * the refused bucket's quota for the 429's headers (nothing is allocated on the admitted path).
     * `identity` is the verified caller identity, undefined for callers without one.
     */
    take(identity) {
        const now = this.now();
        const bucket = this.bucketFor(identity, now);
        bucket.refill(now, this.rate, this.capacity);
        if (bucket.tokens >= 1 - EPSILON) {
            bucket.tokens = Math.max(0, bucket.tokens - 1);
            return undefined;
        }
        return this.quotaOf(bucket);
    }
    /** The caller's quota now, taking nothing (a caller not seen yet has a full bucket). */
    quota(identity) {
        const now = this.now();
        const bucket = this.perIdentity && identity !== undefined ? this.byIdentity.get(identity) : this.shared;
        if (bucket === undefined)
            return this.quotaOf(new TokenBucket(this.capacity, now));
        bucket.refill(now, this.rate, this.capacity);
        return this.quotaOf(bucket);
    }
    /**
     * New limits, keeping state:
     *  1. every bucket is refilled to now at the old rate and capacity (time already passed counts
     *     at the rate that was in force);
     *  2. its tokens are rescaled to the new capacity, keeping the fill fraction — a drained bucket
     *     stays drained, a full one stays full, so a config push neither grants a fresh burst nor
     *     takes one away;
     *  3. turning `perIdentity` off drops the identity buckets (the shared bucket carries on);
     *     turning it on starts identity buckets full as they are first seen.
     */
    reconfigure(limits) {
        const now = this.now();
        const capacity = capacityOf(limits);
        const scale = capacity / this.capacity;
        const rescale = (b) => {
            b.refill(now, this.rate, this.capacity);
            b.tokens = Math.min(capacity, b.tokens * scale);
        };
        rescale(this.shared);
        if (limits.perIdentity)
            for (const b of this.byIdentity.values())
                rescale(b);
        else
            this.byIdentity.clear();
        this.rate = limits.requestsPerSecond;
        this.capacity = capacity;
        this.perIdentity = limits.perIdentity;
        this.current = { ...limits };
    }
    /**
     * The caller's bucket, made most recently used. A new identity gets a full bucket; past
     * `maxIdentities`, the least recently used one is evicted. That one has gone longest without a
     * request, so it has most likely refilled already and evicting it loses nothing; only when more
     * identities than the bound are active within one refill time (capacity / rate) can an evicted
     * caller come back to a fuller bucket than it left — the price of bounded memory under a flood
     * of identities.
     */
    bucketFor(identity, now) {
        if (!this.perIdentity || identity === undefined)
            return this.shared;
        let bucket = this.byIdentity.get(identity);
        if (bucket !== undefined) {
            this.byIdentity.delete(identity);
        }
        else {
            bucket = new TokenBucket(this.capacity, now);
            if (this.byIdentity.size >= this.maxIdentities) {
                const oldest = this.byIdentity.keys().next();
                if (oldest.done !== true)
                    this.byIdentity.delete(oldest.value);
            }
        }
        this.byIdentity.set(identity, bucket);
        return bucket;
    }
    quotaOf(b) {
        const whole = Math.floor(b.tokens + EPSILON);
        const missing = this.capacity - b.tokens;
        return {
            limit: Math.ceil(this.capacity),
            remaining: Math.max(0, whole),
            reset: missing > EPSILON ? Math.max(1, Math.ceil(missing / this.rate - EPSILON)) : 0,
            retryAfter: whole >= 1 ? 0 : Math.max(1, Math.ceil((1 - b.tokens) / this.rate - EPSILON)),
        };
    }
}
/** Bucket capacity of `limits`: burst, at least 1. */
function capacityOf(limits) {
    return Math.max(1, limits.burst);
}
function sameLimits(a, b) {
    return (a.requestsPerSecond === b.requestsPerSecond && a.burst === b.burst && a.perIdentity === b.perIdentity);
}
/**
 * The limiters of the current config, keyed by (policy, port), kept across rebuilds by the
 * RuntimeBuilder: a config push that does not change a limit leaves its buckets untouched, one
 * that changes it rescales them (see `reconfigure`), and only a limiter whose policy no longer
 * applies to that port is dropped. Without this, every unrelated update (an endpoint joining, a
 * route change) would hand every caller a fresh burst.
 */
export class LocalRateLimitRegistry {
    now;
    opts;
    limiters = new Map();
    /** @param now monotonic milliseconds, given to every limiter. */
    constructor(now, opts = {}) {
        this.now = now;
        this.opts = opts;
    }
    /** Limiters held. */
    get size() {
        return this.limiters.size;
    }
    /**
     * Makes the held set exactly `wanted`: an existing limiter is kept (reconfigured when its limits
     * differ), a new one starts full, every other one is dropped. Returns the limiters in the order
     * of `wanted`.
     */
    sync(wanted) {
        const keep = new Map();
        const out = [];
        for (const w of wanted) {
            const key = `${w.policy}:${w.port}`;
            let limiter = keep.get(key) ?? this.limiters.get(key);
            if (limiter === undefined)
                limiter = new LocalRateLimiter(w.policy, w.limits, this.now, this.opts);
            else if (!sameLimits(limiter.limits, w.limits))
                limiter.reconfigure(w.limits);
            keep.set(key, limiter);
            out.push(limiter);
        }
        this.limiters.clear();
        for (const [k, v] of keep)
            this.limiters.set(k, v);
        return out;
    }
}
