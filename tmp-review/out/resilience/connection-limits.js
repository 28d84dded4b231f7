/** The pinned defaults (INTERFACES.md, TrafficPolicy). */
export const DEFAULT_CONNECTION_LIMITS = Object.freeze({
    maxConnections: 1024,
    maxPendingRequests: 1024,
    maxRequests: 1024,
    maxRetries: Number.POSITIVE_INFINITY,
});
/**
 * The `ConnectionLimitsConfig` for a cluster's proto `ConnectionLimits` (undefined: every
 * default). `maxConnections` and `maxRequests` below 1 (the validator refuses them) become 1: a
 * limit of 0 would queue every request forever. Pure.
 */
export function connectionLimitsConfig(spec) {
    const d = DEFAULT_CONNECTION_LIMITS;
    return {
        maxConnections: Math.max(spec?.maxConnections ?? d.maxConnections, 1),
        maxPendingRequests: spec?.maxPendingRequests ?? d.maxPendingRequests,
        maxRequests: Math.max(spec?.maxRequests ?? d.maxRequests, 1),
        maxRetries: spec?.maxRetries ?? d.maxRetries,
    };
}
/** The connection limits of one cluster (see the file comment). */
export class ConnectionLimiter {
    slots;
    constructor(config, onSaturation) {
        this.slots = new Slots(config, onSaturation);
    }
    /**
     * One request asks for a slot: an `Admission` with a permit now, or a queued one (see
     * `Admission`); undefined when the queue is full too (overflow: fail fast with 503 `overflow`).
     * The immediate path allocates one small object (the permit, which is also the admission): a
     * per-grant object is what makes `release()` idempotent per grant.
     */
    admit() {
        const s = this.slots;
        if (s.active < s.limits.maxRequests) {
            s.active++;
            s.sync();
            return new Grant(s, false);
        }
        if (s.pending < s.limits.maxPendingRequests) {
            const w = new Waiter(s);
            s.enqueue(w);
            s.sync();
            return w;
        }
        return undefined;
    }
    /**
     * A retry asks for a slot among the retries in flight (`maxRetries`): a permit to `release()` when
     * the retry attempt ends, or undefined when the limit is reached (do not retry). Independent of
     * `admit()`: it takes no request slot.
     */
    admitRetry() {
        const s = this.slots;
        if (!(s.retries < s.limits.maxRetries))
            return undefined;
        s.retries++;
        s.sync();
        return new Grant(s, true);
    }
    /**
     * The transport asks to open one connection (an HTTP/2 session) to an endpoint of the cluster:
     * true (counted; call `closeConnection()` once when it closes) or false (over `maxConnections`:
     * reuse an existing session, or fail the request with `overflow`).
     */
    tryOpenConnection() {
        const s = this.slots;
        if (!(s.connections < s.limits.maxConnections))
            return false;
        s.connections++;
        s.sync();
        return true;
    }
    /** A connection counted by `tryOpenConnection()` closed. Once per such connection; never below 0. */
    closeConnection() {
        const s = this.slots;
        if (s.connections === 0)
            return;
        s.connections--;
        s.sync();
    }
    /**
     * Puts new limits in force (a policy update). Counts are kept; nothing in flight is cut. A higher
     * `maxRequests` grants queued requests at once (FIFO); lower limits apply to the next admissions
     * (requests already queued beyond a lower `maxPendingRequests` stay queued).
     */
    reconfigure(config) {
        const s = this.slots;
        s.limits = config;
        s.drain();
        s.sync();
    }
    /** The limits in force. */
    get config() {
        return this.slots.limits;
    }
    /** Requests holding a slot. */
    get active() {
        return this.slots.active;
    }
    /** Requests queued for a slot. */
    get pending() {
        return this.slots.pending;
    }
    /** Retries holding a retry slot. */
    get activeRetries() {
        return this.slots.retries;
    }
    /** Connections open (counted by `tryOpenConnection`). */
    get connections() {
        return this.slots.connections;
    }
}
/**
 * The counts, the queue and the saturation flags. Separate from `ConnectionLimiter` so permits and
 * waiters can give slots back without the limiter exposing a non-idempotent release.
 */
class Slots {
    limits;
    active = 0;
    pending = 0;
    retries = 0;
    connections = 0;
    onSaturation;
    // The queue: a doubly linked list of waiters, so `cancel` unlinks in O(1).
    head;
    tail;
    // What the listener was last told, per limit.
    connectionsFull = false;
    pendingFull = false;
    requestsFull = false;
    retriesFull = false;
    constructor(limits, onSaturation) {
        this.limits = limits;
        this.onSaturation = onSaturation;
    }
    enqueue(w) {
        w.prev = this.tail;
        if (this.tail === undefined)
            this.head = w;
        else
            this.tail.next = w;
        this.tail = w;
        this.pending++;
    }
    unlink(w) {
        if (w.prev === undefined)
            this.head = w.next;
        else
            w.prev.next = w.next;
        if (w.next === undefined)
            this.tail = w.prev;
        else
            w.next.prev = w.prev;
        w.prev = undefined;
        w.next = undefined;
        w.queued = false;
        this.pending--;
    }
    /** Grants free request slots to the queue's head while there are both. */
    drain() {
        while (this.head !== undefined && this.active < this.limits.maxRequests) {
            const w = this.head;
            this.unlink(w);
            this.active++;
            const grant = new Grant(this, false);
            w.granted = grant;
            w.resolve(grant);
        }
    }
    releaseRequest() {
        if (this.active > 0)
            this.active--;
        this.drain();
        this.sync();
    }
    releaseRetry() {
        if (this.retries > 0)
            this.retries--;
        this.sync();
    }
    cancel(w) {
        if (w.queued) {
            this.unlink(w);
            this.sync();
            w.resolve(undefined);
        }
        else {
            w.granted?.release();
        }
    }
    /**
     * Tells the listener about every limit whose fullness changed. Called once at the end of each
     * operation, so a release that hands its slot straight to a waiter reports nothing.
     */
    sync() {
        const l = this.limits;
        const listener = this.onSaturation;
        const connections = isFull(this.connections, l.maxConnections);
        if (connections !== this.connectionsFull) {
            this.connectionsFull = connections;
            listener?.("connections", connections);
        }
        const pending = isFull(this.pending, l.maxPendingRequests);
        if (pending !== this.pendingFull) {
            this.pendingFull = pending;
            listener?.("pending", pending);
        }
        const requests = isFull(this.active, l.maxRequests);
        if (requests !== this.requestsFull) {
            this.requestsFull = requests;
            listener?.("requests", requests);
        }
        const retries = isFull(this.retries, l.maxRetries);
        if (retries !== this.retriesFull) {
            this.retriesFull = retries;
            listener?.("retries", retries);
        }
    }
}
function isFull(count, limit) {
    return limit > 0 && count >= limit;
}
/** One granted slot (a request's or a retry's); also the `Admission` of an immediate grant. */
class Grant {
    slots;
    retry;
    constructor(slots, retry) {
        this.slots = slots;
        this.retry = retry;
    }
    get permit() {
        return this;
    }
    release() {
        const s = this.slots;
        if (s === undefined)
            return;
        this.slots = undefined;
        if (this.retry)
            s.releaseRetry();
        else
            s.releaseRequest();
    }
}
/** A queued request: its `Admission` and its node in the queue. */
class Waiter {
    wait;
    cancel;
    resolve;
    prev;
    next;
    /** In the queue (neither granted nor cancelled yet). */
    queued = true;
    /** The slot granted to it, once granted. */
    granted;
    constructor(slots) {
        const { promise, resolve } = Promise.withResolvers();
        this.wait = promise;
        this.resolve = resolve;
        this.cancel = () => slots.cancel(this);
    }
}
