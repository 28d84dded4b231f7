/**
 * Circuit breaking per cluster (TrafficPolicy `connectionLimits`): caps on the connections, the
 * requests in flight, the requests waiting for a slot and the retries in flight that one caller
 * sidecar sends to one service. Over a cap a request fails fast (503 `overflow`) instead of piling
 * onto a service that is already behind — the failure stays in the caller, cheap and visible.
 *
 * One `ConnectionLimiter` per cluster, made when the cluster is compiled and kept across policy
 * updates (`reconfigure`), so requests in flight stay counted.
 *
 * Admission of a request (`admit`):
 *  1. Fewer than `maxRequests` in flight: a permit now.
 *  2. Else, fewer than `maxPendingRequests` waiting: join the queue; slots go to waiters first come,
 *     first served, as permits are released (or as `reconfigure` raises `maxRequests`).
 *  3. Else: overflow (undefined).
 * A waiter that gives up (route timeout, client gone) calls `cancel()`: it leaves the queue, or, if
 * its slot was granted in the meantime, hands the slot back — a slot can never be stranded by a
 * waiter that stopped listening.
 *
 * `onSaturation(limit, true)` when a limit becomes full, `(limit, false)` when it stops being full,
 * only on transitions (the `trellis_connection_limit_saturated{cluster,limit}` gauge). A limit is
 * full when its count is at or above it and it is above 0: a limit of 0 (no queue, no retries) is a
 * policy, not a saturation, and would otherwise pin the gauge at 1 forever.
 */
import type { ConnectionLimits } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import type { ConnectionLimitKind } from "../metrics/labels.js";

/** A cluster's connection limits, with defaults applied. All counts ≥ 0. */
export interface ConnectionLimitsConfig {
  /** Connections (HTTP/2 sessions) to all endpoints of the cluster; default 1024, ≥ 1. */
  readonly maxConnections: number;
  /** Requests waiting for a slot; default 1024; 0: no queue, overflow as soon as `maxRequests` is full. */
  readonly maxPendingRequests: number;
  /** Requests in flight; default 1024, ≥ 1. */
  readonly maxRequests: number;
  /** Retries in flight; Infinity (the default) when unset: the retry budget governs retries. */
  readonly maxRetries: number;
}

/** The pinned defaults (INTERFACES.md, TrafficPolicy). */
export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimitsConfig> = Object.freeze({
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
export function connectionLimitsConfig(spec: ConnectionLimits | undefined): ConnectionLimitsConfig {
  const d = DEFAULT_CONNECTION_LIMITS;
  return {
    maxConnections: Math.max(spec?.maxConnections ?? d.maxConnections, 1),
    maxPendingRequests: spec?.maxPendingRequests ?? d.maxPendingRequests,
    maxRequests: Math.max(spec?.maxRequests ?? d.maxRequests, 1),
    maxRetries: spec?.maxRetries ?? d.maxRetries,
  };
}

/** A slot held by one request (or one retry). */
export interface RequestPermit {
  /** Gives the slot back. Call when the request ends, however it ends; later calls do nothing. */
  release(): void;
}

/**
 * The answer to `admit()` when the request is not overflowing: exactly one of
 *  - `permit`: the slot is held now; or
 *  - `wait` and `cancel`: the request is queued.
 */
export interface Admission {
  /** Set when a slot was free: send now, `release()` when done. */
  readonly permit?: RequestPermit | undefined;
  /**
   * Set when queued: resolves with the permit once a slot is granted (FIFO), or with undefined when
   * `cancel()` came first. Never rejects.
   */
  readonly wait?: Promise<RequestPermit | undefined> | undefined;
  /**
   * Set when queued: gives the admission up. Still queued: leaves the queue (`wait` resolves
   * undefined). Already granted: releases the permit, so a value `wait` delivers after `cancel()`
   * must not be used. Idempotent. Call it when the route timeout fires or the client goes away.
   */
  readonly cancel?: (() => void) | undefined;
}

/** Told when a limit becomes full (`true`) or stops being full (`false`). Must not throw. */
export type SaturationListener = (limit: ConnectionLimitKind, saturated: boolean) => void;

/** The connection limits of one cluster (see the file comment). */
export class ConnectionLimiter {
  private readonly slots: Slots;

  constructor(config: ConnectionLimitsConfig, onSaturation?: SaturationListener) {
    this.slots = new Slots(config, onSaturation);
  }

  /**
   * One request asks for a slot: an `Admission` with a permit now, or a queued one (see
   * `Admission`); undefined when the queue is full too (overflow: fail fast with 503 `overflow`).
   * The immediate path allocates one small object (the permit, which is also the admission): a
   * per-grant object is what makes `release()` idempotent per grant.
   */
  admit(): Admission | undefined {
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
  admitRetry(): RequestPermit | undefined {
    const s = this.slots;
    if (!(s.retries < s.limits.maxRetries)) return undefined;
    s.retries++;
    s.sync();
    return new Grant(s, true);
  }

  /**
   * The transport asks to open one connection (an HTTP/2 session) to an endpoint of the cluster:
   * true (counted; call `closeConnection()` once when it closes) or false (over `maxConnections`:
   * reuse an existing session, or fail the request with `overflow`).
   */
  tryOpenConnection(): boolean {
    const s = this.slots;
    if (!(s.connections < s.limits.maxConnections)) return false;
    s.connections++;
    s.sync();
    return true;
  }

  /** A connection counted by `tryOpenConnection()` closed. Once per such connection; never below 0. */
  closeConnection(): void {
    const s = this.slots;
    if (s.connections === 0) return;
    s.connections--;
    s.sync();
  }

  /**
   * Puts new limits in force (a policy update). Counts are kept; nothing in flight is cut. A higher
   * `maxRequests` grants queued requests at once (FIFO); lower limits apply to the next admissions
   * (requests already queued beyond a lower `maxPendingRequests` stay queued).
   */
  reconfigure(config: ConnectionLimitsConfig): void {
    const s = this.slots;
    s.limits = config;
    s.drain();
    s.sync();
  }

  /** The limits in force. */
  get config(): ConnectionLimitsConfig {
    return this.slots.limits;
  }

  /** Requests holding a slot. */
  get active(): number {
    return this.slots.active;
  }

  /** Requests queued for a slot. */
  get pending(): number {
    return this.slots.pending;
  }

  /** Retries holding a retry slot. */
  get activeRetries(): number {
    return this.slots.retries;
  }

  /** Connections open (counted by `tryOpenConnection`). */
  get connections(): number {
    return this.slots.connections;
  }
}

/**
 * The counts, the queue and the saturation flags. Separate from `ConnectionLimiter` so permits and
 * waiters can give slots back without the limiter exposing a non-idempotent release.
 */
class Slots {
  limits: ConnectionLimitsConfig;
  active = 0;
  pending = 0;
  retries = 0;
  connections = 0;
  private readonly onSaturation: SaturationListener | undefined;
  // The queue: a doubly linked list of waiters, so `cancel` unlinks in O(1).
  private head: Waiter | undefined;
  private tail: Waiter | undefined;
  // What the listener was last told, per limit.
  private connectionsFull = false;
  private pendingFull = false;
  private requestsFull = false;
  private retriesFull = false;

  constructor(limits: ConnectionLimitsConfig, onSaturation: SaturationListener | undefined) {
    this.limits = limits;
    this.onSaturation = onSaturation;
  }

  enqueue(w: Waiter): void {
    w.prev = this.tail;
    if (this.tail === undefined) this.head = w;
    else this.tail.next = w;
    this.tail = w;
    this.pending++;
  }

  private unlink(w: Waiter): void {
    if (w.prev === undefined) this.head = w.next;
    else w.prev.next = w.next;
    if (w.next === undefined) this.tail = w.prev;
    else w.next.prev = w.prev;
    w.prev = undefined;
    w.next = undefined;
    w.queued = false;
    this.pending--;
  }

  /** Grants free request slots to the queue's head while there are both. */
  drain(): void {
    while (this.head !== undefined && this.active < this.limits.maxRequests) {
      const w = this.head;
      this.unlink(w);
      this.active++;
      const grant = new Grant(this, false);
      w.granted = grant;
      w.resolve(grant);
    }
  }

  releaseRequest(): void {
    if (this.active > 0) this.active--;
    this.drain();
    this.sync();
  }

  releaseRetry(): void {
    if (this.retries > 0) this.retries--;
    this.sync();
  }

  cancel(w: Waiter): void {
    if (w.queued) {
      this.unlink(w);
      this.sync();
      w.resolve(undefined);
    } else {
      w.granted?.release();
    }
  }

  /**
   * Tells the listener about every limit whose fullness changed. Called once at the end of each
   * operation, so a release that hands its slot straight to a waiter reports nothing.
   */
  sync(): void {
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

function isFull(count: number, limit: number): boolean {
  return limit > 0 && count >= limit;
}

/** One granted slot (a request's or a retry's); also the `Admission` of an immediate grant. */
class Grant implements RequestPermit, Admission {
  private slots: Slots | undefined;
  private readonly retry: boolean;

  constructor(slots: Slots, retry: boolean) {
    this.slots = slots;
    this.retry = retry;
  }

  get permit(): RequestPermit {
    return this;
  }

  release(): void {
    const s = this.slots;
    if (s === undefined) return;
    this.slots = undefined;
    if (this.retry) s.releaseRetry();
    else s.releaseRequest();
  }
}

/** A queued request: its `Admission` and its node in the queue. */
class Waiter implements Admission {
  readonly wait: Promise<RequestPermit | undefined>;
  readonly cancel: () => void;
  readonly resolve: (permit: RequestPermit | undefined) => void;
  prev: Waiter | undefined;
  next: Waiter | undefined;
  /** In the queue (neither granted nor cancelled yet). */
  queued = true;
  /** The slot granted to it, once granted. */
  granted: Grant | undefined;

  constructor(slots: Slots) {
    const { promise, resolve } = Promise.withResolvers<RequestPermit | undefined>();
    this.wait = promise;
    this.resolve = resolve;
    this.cancel = () => slots.cancel(this);
  }
}
