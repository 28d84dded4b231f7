/**
 * Per-endpoint state for the balancers: the endpoint as the control plane described it (immutable,
 * one `EndpointData` per snapshot) plus what the data path has observed about it (mutable
 * `EndpointSignals`: requests in flight, latency, ejection).
 *
 * Lifetimes, which is the point of the split:
 *  - An `EndpointState` is reused as-is (same object) by the next balancer when its endpoint is
 *    unchanged (same key and data), so anything holding it — a request in flight, the outlier
 *    detector — keeps working across config updates.
 *  - When only an endpoint's attributes change (health, weight, labels, locality), the next
 *    snapshot gets a new `EndpointState` with the new data but the *same* `EndpointSignals`: the old
 *    snapshot keeps its view, while in-flight counts, latency and ejection carry over. A fresh
 *    `outstanding` here would undercount requests still running on the endpoint; a fresh ejection
 *    would let a backend that flaps its health clear its own ejection.
 *  - A different instance at the same address (new proxy id, identity, app port or ready time: a
 *    restarted pod, or an IP reused by another pod) starts from fresh signals.
 */
import { formatHostPort } from "@trellis/proto/address";
import { HealthStatus } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { timestampMs } from "@trellis/proto/timestamp";
import { PEAK_EWMA_INITIAL_MS, PeakEwma } from "./peak-ewma.js";
/** The key of an endpoint: `address:port`, IPv6 addresses bracketed (`[::1]:15006`). */
export function endpointKey(address, port) {
    return formatHostPort(address, port);
}
/** Normalises a proto `Endpoint` (defaults applied, labels and locality copied and frozen). */
export function endpointDataFrom(endpoint) {
    const locality = endpoint.locality;
    return Object.freeze({
        key: endpointKey(endpoint.address, endpoint.port),
        address: endpoint.address,
        port: endpoint.port,
        appPort: endpoint.appPort,
        proxyId: endpoint.proxyId,
        identity: endpoint.identity,
        labels: Object.freeze({ ...endpoint.labels }),
        locality: Object.freeze({
            region: locality?.region ?? "",
            zone: locality?.zone ?? "",
            subzone: locality?.subzone ?? "",
        }),
        health: endpoint.health,
        weight: endpoint.weight > 0 ? endpoint.weight : 1,
        readySinceMs: endpoint.readySince === undefined ? undefined : timestampMs(endpoint.readySince),
    });
}
/**
 * True when `a` and `b` are the same running instance: same key, proxy id, identity, app port and
 * ready time. Signals (in-flight count, latency, ejection) carry over only between the same
 * instance.
 */
export function sameInstance(a, b) {
    return (a.key === b.key &&
        a.proxyId === b.proxyId &&
        a.identity === b.identity &&
        a.appPort === b.appPort &&
        a.readySinceMs === b.readySinceMs);
}
/** True when `a` and `b` describe the endpoint identically (every field, labels included). */
export function sameEndpointData(a, b) {
    return (sameInstance(a, b) &&
        a.address === b.address &&
        a.port === b.port &&
        a.health === b.health &&
        a.weight === b.weight &&
        a.locality.region === b.locality.region &&
        a.locality.zone === b.locality.zone &&
        a.locality.subzone === b.locality.subzone &&
        sameLabels(a.labels, b.labels));
}
function sameLabels(a, b) {
    const keys = Object.keys(a);
    if (keys.length !== Object.keys(b).length)
        return false;
    for (const k of keys) {
        if (!Object.hasOwn(b, k) || a[k] !== b[k])
            return false;
    }
    return true;
}
/**
 * A counter shared by the endpoints of one cluster (across its successive balancers), bumped
 * whenever an endpoint's usability changes between config updates — today an ejection. Balancers
 * compare it to the value they last saw to know their precomputed usable lists are stale, without
 * scanning the endpoints on every pick.
 */
export class UsabilityEpoch {
    /** Only increases. */
    value = 0;
}
/**
 * Outlier-detection bookkeeping of one endpoint instance. Written only by `OutlierDetector`
 * (resilience/outlier-detector.ts); lives in `EndpointSignals` so that, like `ejectedUntil`, it
 * survives config updates — a snapshot that only changes an attribute must not hand a failing
 * endpoint a clean record, and a restarted instance (new signals) rightly starts from one.
 */
export class OutlierCounters {
    /** Gateway errors (connect failure, reset, timeout, 502/503/504) since the last success or ejection. */
    consecutiveGatewayErrors = 0;
    /** 5xx responses (gateway errors included) since the last success or ejection. */
    consecutive5xx = 0;
    /** Ejections so far, minus one per full decay interval spent un-ejected since; ≥ 0. */
    timesEjected = 0;
    /**
     * Where the next decay interval starts, ms on the injected clock: the end of the last ejection,
     * then advanced one interval per decrement of `timesEjected`.
     */
    decayFromMs = 0;
}
/**
 * What the data path has observed about one endpoint instance. Shared by every `EndpointState` of
 * that instance across snapshots (see the file comment); mutate it only through `EndpointState`,
 * except `outlier`, which belongs to the outlier detector. Counters that the resilience layer adds
 * and that must survive attribute changes belong here.
 */
export class EndpointSignals {
    /** Requests in flight (started, not finished); never negative. */
    outstanding = 0;
    /** Latency estimate, ms on `now`. */
    latency;
    /** The cluster's usability epoch; bumped when `ejectedUntil` changes. */
    epoch;
    /** The injected clock, ms (monotonic; only differences matter). */
    now;
    /** Outlier detection's counters (see `OutlierCounters`); written only by the detector. */
    outlier = new OutlierCounters();
    ejectedUntilMs = 0;
    constructor(now, options = {}) {
        this.now = now;
        this.epoch = options.epoch ?? new UsabilityEpoch();
        this.latency = new PeakEwma(now(), options.initialLatencyMs ?? PEAK_EWMA_INITIAL_MS);
    }
    /** See `EndpointState.ejectedUntil`. */
    get ejectedUntil() {
        return this.ejectedUntilMs;
    }
    set ejectedUntil(ms) {
        if (ms === this.ejectedUntilMs)
            return;
        this.ejectedUntilMs = ms;
        this.epoch.value++;
    }
}
/**
 * One endpoint as a balancer sees it: immutable `data` for this snapshot plus the shared mutable
 * `signals`. The caller of `pick()` owns the request's bracket: `onStart()` when it sends,
 * `onFinish()` exactly once when it ends, however it ends.
 */
export class EndpointState {
    /** `data.key`, hoisted for the hot path (`PickContext.exclude` lookups). */
    key;
    /** The endpoint as of this snapshot. */
    data;
    /** Observed state, shared with this instance's states in other snapshots. */
    signals;
    /** Health is UNSPECIFIED or HEALTHY (precomputed from `data`). */
    healthy;
    /** Health is DRAINING: never picked, even in panic mode. */
    draining;
    constructor(data, signals) {
        this.key = data.key;
        this.data = data;
        this.signals = signals;
        this.healthy = data.health === HealthStatus.UNSPECIFIED || data.health === HealthStatus.HEALTHY;
        this.draining = data.health === HealthStatus.DRAINING;
    }
    /** Requests in flight to this endpoint (across snapshots); ≥ 0. */
    get outstanding() {
        return this.signals.outstanding;
    }
    /**
     * Ejected (by outlier detection) while the clock is below this, ms on the injected clock; 0 (the
     * default) means not ejected. Setting it invalidates every balancer's usable list for the cluster
     * at its next pick; expiry needs no call, balancers notice the time passing.
     */
    get ejectedUntil() {
        return this.signals.ejectedUntil;
    }
    set ejectedUntil(ms) {
        this.signals.ejectedUntil = ms;
    }
    /** True when the balancer may pick it at `nowMs`: healthy and not ejected. */
    usable(nowMs) {
        return this.healthy && nowMs >= this.signals.ejectedUntil;
    }
    /** The latency estimate at `nowMs`, ms (peak-EWMA, decayed; see peak-ewma.ts). */
    latencyMs(nowMs) {
        return this.signals.latency.read(nowMs);
    }
    /** A request was sent to this endpoint. */
    onStart() {
        this.signals.outstanding++;
    }
    /**
     * The request sent after `onStart()` ended after `latencyMs` ms; `ok` false for a failure (an
     * error response the caller counts as failed, a reset, a timeout). Feeds the latency estimate.
     */
    onFinish(latencyMs, ok) {
        const s = this.signals;
        if (s.outstanding > 0)
            s.outstanding--;
        s.latency.observe(s.now(), latencyMs, ok);
    }
}
