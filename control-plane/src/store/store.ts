/**
 * The one narrow storage interface of the control plane. Two implementations pass the same
 * conformance suite (tests/integration/store/): etcd (production, `etcd-store.ts`) and embedded
 * (one process, in memory with optional persistence, `embedded-store.ts`).
 *
 * Semantics follow etcd's: one global revision that every write increments; each key carries the
 * revision of its creation and last modification; watches deliver every change after a revision, in
 * order; leases expire unless kept alive, deleting their keys.
 *
 * Failures are TrellisErrors: CONFLICT for a lost compare-and-swap, UNAVAILABLE / TIMEOUT when the
 * backend cannot answer within the call's deadline, NOT_FOUND for an unknown or expired lease.
 */

/** Lease ids are decimal strings (etcd's are 64-bit). */
export type LeaseId = string;

export interface KeyValue {
  key: string;
  value: Uint8Array;
  /** Revision of the write that created the key (since its last deletion). */
  createRevision: number;
  /** Revision of the last write to the key. This is the compare-and-swap version. */
  modRevision: number;
  /** The lease the key is attached to, if any. */
  lease?: LeaseId;
}

export interface PutOptions {
  /** Attach the key to this lease (it is deleted when the lease expires or is revoked). */
  lease?: LeaseId;
  /**
   * Compare-and-swap: write only if the key's modRevision equals this (0 = the key must not exist).
   * On mismatch the put fails with CONFLICT and changes nothing.
   */
  expectRevision?: number;
}

export interface DeleteOptions {
  /** Delete only if the key's modRevision equals this; CONFLICT otherwise. */
  expectRevision?: number;
}

/** A condition of a transaction: compares one key's modRevision (0 = absent). */
export interface Compare {
  key: string;
  modRevision: number;
}

export type TxnOp =
  | { type: "put"; key: string; value: Uint8Array; lease?: LeaseId }
  | { type: "delete"; key: string }
  | { type: "deletePrefix"; prefix: string };

export interface TxnResult {
  succeeded: boolean;
  revision: number;
}

export interface ListResult {
  items: KeyValue[];
  /** The store revision the list was read at; watch from `revision + 1` to see every later change. */
  revision: number;
}

export interface WatchEvent {
  type: "put" | "delete";
  /** For deletes: the key with the deletion's revision as modRevision and an empty value. */
  kv: KeyValue;
}

export interface WatchOptions {
  /**
   * First revision to deliver. Events at or after it are delivered exactly once, in order. When the
   * backend has compacted past it, the store re-lists the prefix and delivers the difference to what
   * the watcher has seen (puts for new or changed keys, deletes for keys gone), so the consumer sees
   * neither a lost nor a repeated change.
   */
  fromRevision: number;
  /** Called for non-fatal trouble (reconnecting, re-listing after compaction), for logs and metrics. */
  onWarning?: (message: string) => void;
}

export interface Watcher {
  /** Stops the watch; no callback runs after the returned promise settles. */
  close(): Promise<void>;
}

export interface Lease {
  id: LeaseId;
  /** Granted time-to-live in seconds. */
  ttlSeconds: number;
}

export interface Store {
  /** "etcd" or "embedded", for logs and `trellis status`. */
  readonly backend: string;
  /** Reads one key. */
  get(key: string): Promise<KeyValue | undefined>;
  /** Reads every key under a prefix, in key order, at one revision. */
  list(prefix: string): Promise<ListResult>;
  /** Writes one key; returns the new revision. */
  put(key: string, value: Uint8Array, options?: PutOptions): Promise<number>;
  /** Deletes one key; returns whether it existed. */
  delete(key: string, options?: DeleteOptions): Promise<boolean>;
  /** If every compare holds, applies `success`, else `failure`; atomically. */
  txn(
    compares: readonly Compare[],
    success: readonly TxnOp[],
    failure?: readonly TxnOp[],
  ): Promise<TxnResult>;
  /**
   * Watches a prefix. `onEvents` receives each revision's events as one batch, in revision order;
   * it is not called again until its returned promise (if any) settles.
   */
  watch(
    prefix: string,
    options: WatchOptions,
    onEvents: (events: WatchEvent[]) => void | Promise<void>,
  ): Watcher;
  /** Grants a lease of at least `ttlSeconds` (whole seconds, ≥ 1). */
  grantLease(ttlSeconds: number): Promise<Lease>;
  /**
   * Renews a lease once; returns the remaining TTL in seconds. NOT_FOUND when it has expired or was
   * revoked. Any replica may keep alive any lease (that is how a reconnect resumes a registration).
   */
  keepAlive(id: LeaseId): Promise<number>;
  /** Revokes a lease, deleting its keys at once. Revoking an unknown lease is not an error. */
  revokeLease(id: LeaseId): Promise<void>;
  /** The current revision. */
  revision(): Promise<number>;
  /** Closes connections and timers. */
  close(): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** UTF-8 helpers for values. */
export function textValue(s: string): Uint8Array {
  return encoder.encode(s);
}

export function valueText(v: Uint8Array): string {
  return decoder.decode(v);
}
