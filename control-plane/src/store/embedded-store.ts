/**
 * The embedded store: the whole Store contract in one process, in memory, optionally persisted to a
 * directory. For `trellis dev`, demos and single-node installs; it is single-node by construction
 * (no replication, no second control-plane replica can share it).
 *
 * Semantics follow etcd's (store.ts): one global revision, create/mod revisions per key, txns applied
 * atomically at one revision, leases whose expiry or revocation deletes their keys at one revision.
 * Watches go through the same resumable-watch.ts as the etcd store, over the store's own history of
 * the last `historyRevisions` revisions: a watch from a revision older than that horizon takes the
 * same re-list path as an etcd watch after a compaction.
 *
 * Persistence (`dir`): a write-ahead log with group commit and periodic snapshots (embedded-log.ts).
 * Each mutation is applied in memory, appended to the log, and its call resolves only once the log
 * record is fdatasync'd; watchers are told about a revision only once it is durable. (A concurrent
 * reader may see a write whose fsync is still in flight: reads are not held back. If the disk fails,
 * the store refuses every later call with UNAVAILABLE rather than serve state it could not save.)
 * After a restart the data and the revision continue where they were. Leases come back with their
 * full TTL counted from the restart: a sidecar's registration thus survives a control-plane restart
 * as long as the sidecar reconnects (and keeps its lease alive) within the TTL, and expires otherwise.
 * Watch history does not survive a restart (watchers do not either).
 */
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { type Clock, type ClockTimer, systemClock } from "./clock.js";
import { WriteAheadLog } from "./embedded-log.js";
import {
  deletedKv,
  type RawWatch,
  type RawWatchHandlers,
  type ResumableWatchOptions,
  startTrackedWatch,
  type WatchSource,
} from "./resumable-watch.js";
import type {
  Compare,
  DeleteOptions,
  KeyValue,
  Lease,
  LeaseId,
  ListResult,
  PutOptions,
  Store,
  TxnOp,
  TxnResult,
  WatchEvent,
  Watcher,
  WatchOptions,
} from "./store.js";

/** Options of the embedded store. Durations in milliseconds. */
export interface EmbeddedStoreOptions {
  /** Directory for the log and snapshots; memory only when omitted. Created if missing. */
  dir?: string;
  /** Revisions of watch history kept (default 10000); older start revisions re-list. ≥ 1. */
  historyRevisions?: number;
  /** Log records between snapshots (default 10000). */
  snapshotEveryRecords?: number;
  /** Watches: full re-list and diff this often (default 300000; 0 disables). */
  reconcileIntervalMs?: number;
  /** Watches: revisions buffered for a slow consumer before its stream is paused (default 10000). */
  watchBufferRevisions?: number;
  /** Watches: retry backoff (defaults 100 and 5000). */
  watchRetryMinMs?: number;
  watchRetryMaxMs?: number;
  /** Lease timers and watch timers (default: the system clock). */
  clock?: Clock;
}

/** Opens the embedded store, recovering `dir` if given. Fails with CONFIG on a corrupt or busy dir. */
export async function createEmbeddedStore(options: EmbeddedStoreOptions = {}): Promise<EmbeddedStore> {
  const store = new EmbeddedStore(options);
  await store.open();
  return store;
}

/** A stored key (the value is owned by the store: copied in and out). */
interface Entry {
  value: Uint8Array;
  createRevision: number;
  modRevision: number;
  lease?: LeaseId;
}

/** One revision of history: its events and, per event, the key's modRevision before (0 = absent). */
interface HistoryEntry {
  revision: number;
  events: WatchEvent[];
  before: number[];
}

interface LiveLease {
  ttlSeconds: number;
  keys: Set<string>;
  timer: ClockTimer | undefined;
}

/** A change to apply at one revision. */
type Change =
  | { type: "put"; key: string; value: Uint8Array; lease?: LeaseId }
  | { type: "delete"; key: string };

/** Log records (embedded-log.ts stores them as JSON). Values are base64. */
type LogRecord =
  | {
      t: "rev";
      rev: number;
      ops: Array<{ put: string; v: string; lease?: string } | { del: string }>;
      endLeases?: string[];
    }
  | { t: "grant"; id: string; ttl: number }
  | { t: "endLease"; id: string };

interface Snapshot {
  revision: number;
  nextLeaseId: number;
  kvs: Array<{ k: string; v: string; c: number; m: number; l?: string }>;
  leases: Array<{ id: string; ttl: number }>;
}

interface Subscriber {
  prefix: string;
  handlers: RawWatchHandlers;
  /** Next revision to send. */
  next: number;
  closed: boolean;
}

/** The embedded Store. Construct with createEmbeddedStore(). */
export class EmbeddedStore implements Store {
  readonly backend = "embedded";
  private readonly kvs = new Map<string, Entry>();
  private rev = 0;
  private readonly history: HistoryEntry[] = [];
  /** Every revision ≥ this is in `history` (if it is ≤ rev); older ones are compacted. */
  private firstRetained = 1;
  /** Watchers have been sent every revision up to this one (it is durable). */
  private notified = 0;
  private readonly leases = new Map<LeaseId, LiveLease>();
  private nextLeaseId = 1;
  private readonly subscribers = new Set<Subscriber>();
  private readonly watchers = new Set<Watcher>();
  private log: WriteAheadLog<LogRecord, Snapshot> | undefined;
  private failure: TrellisError | undefined;
  private closed = false;
  private readonly clock: Clock;
  private readonly historyRevisions: number;
  private readonly watchOptions: ResumableWatchOptions;
  private readonly source: WatchSource;

  constructor(private readonly options: EmbeddedStoreOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.historyRevisions = Math.max(1, Math.floor(options.historyRevisions ?? 10_000));
    this.watchOptions = {
      clock: this.clock,
      reconcileIntervalMs: Math.max(0, options.reconcileIntervalMs ?? 300_000),
      bufferRevisions: Math.max(1, options.watchBufferRevisions ?? 10_000),
      retryMinMs: Math.max(1, options.watchRetryMinMs ?? 100),
      retryMaxMs: Math.max(1, options.watchRetryMaxMs ?? 5000),
    };
    this.source = {
      keysAt: async (prefix, revision) => this.keysAt(prefix, revision),
      list: (prefix) => this.list(prefix),
      open: (prefix, from, handlers) => this.openRaw(prefix, from, handlers),
    };
  }

  /** Recovers the directory (if any). Called once by createEmbeddedStore. */
  async open(): Promise<void> {
    if (this.options.dir === undefined) return;
    const { log, recovered } = await WriteAheadLog.open<LogRecord, Snapshot>(
      this.options.dir,
      { snapshotEveryRecords: Math.max(1, this.options.snapshotEveryRecords ?? 10_000) },
      () => this.snapshot(),
    );
    this.log = log;
    if (recovered.snapshot !== undefined) this.restoreSnapshot(recovered.snapshot);
    for (const record of recovered.records) this.replay(record);
    this.firstRetained = this.rev + 1;
    this.notified = this.rev;
    // Leases restart with their full TTL (see the file comment for why that is the right thing).
    for (const [id, lease] of this.leases) this.armLease(id, lease);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.check();
    const e = this.kvs.get(key);
    return e === undefined ? undefined : toKeyValue(key, e);
  }

  async list(prefix: string): Promise<ListResult> {
    this.check();
    const keys = [...this.kvs.keys()].filter((k) => k.startsWith(prefix)).sort(compareKeys);
    return { items: keys.map((k) => toKeyValue(k, this.kvs.get(k)!)), revision: this.rev };
  }

  async put(key: string, value: Uint8Array, options: PutOptions = {}): Promise<number> {
    this.check();
    if (options.expectRevision !== undefined) this.checkCas(key, options.expectRevision);
    const change: Change = { type: "put", key, value };
    if (options.lease !== undefined) change.lease = options.lease;
    this.checkLeases([change]);
    return this.commit([change]);
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    this.check();
    if (options.expectRevision !== undefined) this.checkCas(key, options.expectRevision);
    if (!this.kvs.has(key)) return false;
    await this.commit([{ type: "delete", key }]);
    return true;
  }

  async txn(
    compares: readonly Compare[],
    success: readonly TxnOp[],
    failure: readonly TxnOp[] = [],
  ): Promise<TxnResult> {
    this.check();
    const succeeded = compares.every((c) => (this.kvs.get(c.key)?.modRevision ?? 0) === c.modRevision);
    const changes = this.expand(succeeded ? success : failure);
    this.checkLeases(changes);
    const revision = changes.length === 0 ? this.rev : await this.commit(changes);
    return { succeeded, revision };
  }

  watch(
    prefix: string,
    options: WatchOptions,
    onEvents: (events: WatchEvent[]) => void | Promise<void>,
  ): Watcher {
    this.check();
    return startTrackedWatch(this.watchers, this.source, prefix, options, onEvents, this.watchOptions);
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    this.check();
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
      throw new TrellisError(
        ErrorCode.INVALID_ARGUMENT,
        `lease TTL must be a whole number of seconds ≥ 1, got ${ttlSeconds}`,
      );
    }
    const id = String(this.nextLeaseId++);
    const lease: LiveLease = { ttlSeconds, keys: new Set(), timer: undefined };
    this.leases.set(id, lease);
    this.armLease(id, lease);
    await this.persist({ t: "grant", id, ttl: ttlSeconds });
    return { id, ttlSeconds };
  }

  async keepAlive(id: LeaseId): Promise<number> {
    this.check();
    const lease = this.leases.get(id);
    if (lease === undefined)
      throw new TrellisError(ErrorCode.NOT_FOUND, `lease ${id} has expired or was revoked`);
    // Not logged: after a restart every lease gets its full TTL anyway.
    this.armLease(id, lease);
    return lease.ttlSeconds;
  }

  async revokeLease(id: LeaseId): Promise<void> {
    this.check();
    await this.endLease(id);
  }

  async revision(): Promise<number> {
    this.check();
    return this.rev;
  }

  /**
   * Drops watch history before `revision` (like etcd's Compact): a watch from an older revision then
   * re-lists. The `historyRevisions` horizon does this continuously.
   */
  compact(revision: number): void {
    this.check();
    this.firstRetained = Math.max(this.firstRetained, Math.min(revision, this.rev + 1));
    this.trimHistory();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.watchers].map((w) => w.close()));
    for (const lease of this.leases.values()) lease.timer?.cancel();
    for (const sub of this.subscribers) sub.closed = true;
    this.subscribers.clear();
    await this.log?.close();
  }

  // ---- mutations ----

  /**
   * Applies `changes` at the next revision (in memory, at once), logs them and resolves with the
   * revision once the record is durable; watchers hear of it then.
   */
  private async commit(changes: readonly Change[], endLeases?: LeaseId[]): Promise<number> {
    const revision = this.rev + 1;
    this.apply(revision, changes);
    const record: LogRecord = { t: "rev", rev: revision, ops: changes.map(toLogOp) };
    if (endLeases !== undefined && endLeases.length > 0) record.endLeases = endLeases;
    await this.persist(record);
    return revision;
  }

  /** Writes `changes` at `revision` into the maps and history (also used by replay, with no history). */
  private apply(revision: number, changes: readonly Change[], recordHistory = true): void {
    const entry: HistoryEntry = { revision, events: [], before: [] };
    for (const change of changes) {
      const prev = this.kvs.get(change.key);
      if (prev?.lease !== undefined) this.leases.get(prev.lease)?.keys.delete(change.key);
      if (change.type === "put") {
        const e: Entry = {
          value: change.value.slice(),
          createRevision: prev?.createRevision ?? revision,
          modRevision: revision,
        };
        if (change.lease !== undefined) {
          e.lease = change.lease;
          this.leases.get(change.lease)?.keys.add(change.key);
        }
        this.kvs.set(change.key, e);
        entry.events.push({ type: "put", kv: toKeyValue(change.key, e) });
      } else {
        this.kvs.delete(change.key);
        entry.events.push({ type: "delete", kv: deletedKv(change.key, revision) });
      }
      entry.before.push(prev?.modRevision ?? 0);
    }
    this.rev = revision;
    if (!recordHistory) return;
    this.history.push(entry);
    this.firstRetained = Math.max(this.firstRetained, revision - this.historyRevisions + 1);
    this.trimHistory();
  }

  private async persist(record: LogRecord): Promise<void> {
    const revision = this.rev;
    if (this.log !== undefined) {
      try {
        await this.log.append(record);
      } catch (err) {
        this.failure ??= TrellisError.from(err, ErrorCode.UNAVAILABLE);
        throw this.failure;
      }
    } else {
      await Promise.resolve(); // the same asynchrony as with a log: callers never rely on sync delivery
    }
    this.notifyUpTo(revision);
  }

  /**
   * Turns txn ops into changes. Like etcd, a branch may not put a key twice, nor put a key that one
   * of its deletes covers (INVALID_ARGUMENT): within one revision a key changes at most once.
   */
  private expand(ops: readonly TxnOp[]): Change[] {
    const puts = new Map<string, Change>();
    const exact = new Set<string>();
    const prefixes: string[] = [];
    for (const op of ops) {
      if (op.type === "put") {
        if (puts.has(op.key)) throw duplicateKey(op.key);
        const change: Change = { type: "put", key: op.key, value: op.value };
        if (op.lease !== undefined) change.lease = op.lease;
        puts.set(op.key, change);
      } else if (op.type === "delete") {
        exact.add(op.key);
      } else {
        prefixes.push(op.prefix);
      }
    }
    const covered = (key: string): boolean => exact.has(key) || prefixes.some((p) => key.startsWith(p));
    for (const key of puts.keys()) if (covered(key)) throw duplicateKey(key);
    const deleted = new Set<string>();
    for (const key of exact) if (this.kvs.has(key)) deleted.add(key);
    if (prefixes.length > 0) for (const key of this.kvs.keys()) if (covered(key)) deleted.add(key);
    const deletes: Change[] = [...deleted].sort(compareKeys).map((key) => ({ type: "delete", key }));
    return [...puts.values(), ...deletes];
  }

  private checkCas(key: string, expected: number): void {
    const actual = this.kvs.get(key)?.modRevision ?? 0;
    if (actual !== expected) {
      const now = actual === 0 ? " (it does not exist)" : ` (it is at ${actual})`;
      throw new TrellisError(ErrorCode.CONFLICT, `${key}: expected revision ${expected}${now}`);
    }
  }

  private checkLeases(changes: readonly Change[]): void {
    for (const c of changes) {
      if (c.type === "put" && c.lease !== undefined && !this.leases.has(c.lease)) {
        throw new TrellisError(ErrorCode.NOT_FOUND, `lease ${c.lease} has expired or was revoked`);
      }
    }
  }

  // ---- leases ----

  private armLease(id: LeaseId, lease: LiveLease): void {
    lease.timer?.cancel();
    lease.timer = this.clock.setTimer(() => {
      this.endLease(id).catch(() => {
        // The store has failed (disk); every later call reports it.
      });
    }, lease.ttlSeconds * 1000);
  }

  /** Revocation and expiry: the lease's keys are deleted at one revision. */
  private async endLease(id: LeaseId): Promise<void> {
    const lease = this.leases.get(id);
    if (lease === undefined || this.closed) return;
    lease.timer?.cancel();
    this.leases.delete(id);
    const keys = [...lease.keys].filter((k) => this.kvs.get(k)?.lease === id).sort(compareKeys);
    if (keys.length === 0) {
      await this.persist({ t: "endLease", id });
      return;
    }
    await this.commit(
      keys.map((key) => ({ type: "delete", key })),
      [id],
    );
  }

  // ---- watch support ----

  /**
   * Key → modRevision under `prefix` at `revision`, by undoing history newer than it; undefined when
   * that history is compacted.
   */
  private keysAt(prefix: string, revision: number): Map<string, number> | undefined {
    this.check();
    const keys = new Map<string, number>();
    for (const [k, e] of this.kvs) if (k.startsWith(prefix)) keys.set(k, e.modRevision);
    if (revision >= this.rev) return keys;
    if (revision + 1 < this.firstRetained) return undefined;
    for (let i = this.history.length - 1; i >= 0; i--) {
      const entry = this.history[i]!;
      if (entry.revision <= revision) break;
      for (let j = entry.events.length - 1; j >= 0; j--) {
        const key = entry.events[j]!.kv.key;
        if (!key.startsWith(prefix)) continue;
        const before = entry.before[j]!;
        if (before === 0) keys.delete(key);
        else keys.set(key, before);
      }
    }
    return keys;
  }

  private openRaw(prefix: string, fromRevision: number, handlers: RawWatchHandlers): RawWatch {
    const sub: Subscriber = { prefix, handlers, next: fromRevision, closed: false };
    this.subscribers.add(sub);
    queueMicrotask(() => {
      if (sub.closed) return;
      handlers.ready();
      this.send(sub);
    });
    return {
      close: () => {
        sub.closed = true;
        this.subscribers.delete(sub);
      },
    };
  }

  private notifyUpTo(revision: number): void {
    if (revision <= this.notified) return;
    this.notified = revision;
    for (const sub of this.subscribers) this.send(sub);
  }

  /** Sends `sub` every durable revision from its cursor on, or "compacted" if history moved past it. */
  private send(sub: Subscriber): void {
    if (sub.closed || sub.next > this.notified) return;
    if (sub.next < this.firstRetained) {
      sub.closed = true;
      this.subscribers.delete(sub);
      sub.handlers.compacted(this.firstRetained - 1);
      return;
    }
    const first = this.history[0];
    if (first === undefined) return;
    const events: WatchEvent[] = [];
    // History holds consecutive revisions, so the cursor's entry is found by subtraction.
    for (let i = Math.max(0, sub.next - first.revision); i < this.history.length; i++) {
      const entry = this.history[i]!;
      if (entry.revision > this.notified) break;
      if (entry.revision < sub.next) continue;
      for (const ev of entry.events) if (ev.kv.key.startsWith(sub.prefix)) events.push(ev);
    }
    sub.next = this.notified + 1;
    if (events.length > 0) sub.handlers.events(events);
  }

  private trimHistory(): void {
    let drop = 0;
    while (drop < this.history.length && this.history[drop]!.revision < this.firstRetained) drop++;
    if (drop > 0) this.history.splice(0, drop);
  }

  // ---- persistence ----

  private snapshot(): Snapshot {
    return {
      revision: this.rev,
      nextLeaseId: this.nextLeaseId,
      kvs: [...this.kvs].map(([k, e]) => {
        const kv: Snapshot["kvs"][number] = { k, v: base64(e.value), c: e.createRevision, m: e.modRevision };
        if (e.lease !== undefined) kv.l = e.lease;
        return kv;
      }),
      leases: [...this.leases].map(([id, l]) => ({ id, ttl: l.ttlSeconds })),
    };
  }

  private restoreSnapshot(s: Snapshot): void {
    this.rev = s.revision;
    this.nextLeaseId = s.nextLeaseId;
    for (const l of s.leases) this.leases.set(l.id, { ttlSeconds: l.ttl, keys: new Set(), timer: undefined });
    for (const kv of s.kvs) {
      const e: Entry = { value: fromBase64(kv.v), createRevision: kv.c, modRevision: kv.m };
      if (kv.l !== undefined) {
        e.lease = kv.l;
        this.leases.get(kv.l)?.keys.add(kv.k);
      }
      this.kvs.set(kv.k, e);
    }
  }

  private replay(record: LogRecord): void {
    switch (record.t) {
      case "grant":
        this.leases.set(record.id, { ttlSeconds: record.ttl, keys: new Set(), timer: undefined });
        this.nextLeaseId = Math.max(this.nextLeaseId, Number(record.id) + 1);
        return;
      case "endLease":
        this.leases.delete(record.id);
        return;
      case "rev": {
        const changes: Change[] = record.ops.map((op) => {
          if ("del" in op) return { type: "delete", key: op.del };
          const c: Change = { type: "put", key: op.put, value: fromBase64(op.v) };
          if (op.lease !== undefined) c.lease = op.lease;
          return c;
        });
        this.apply(record.rev, changes, false);
        for (const id of record.endLeases ?? []) this.leases.delete(id);
        return;
      }
    }
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw new TrellisError(ErrorCode.CANCELLED, "embedded store is closed");
  }
}

function duplicateKey(key: string): TrellisError {
  return new TrellisError(ErrorCode.INVALID_ARGUMENT, `txn changes ${key} more than once`);
}

function toKeyValue(key: string, e: Entry): KeyValue {
  const kv: KeyValue = {
    key,
    value: e.value.slice(),
    createRevision: e.createRevision,
    modRevision: e.modRevision,
  };
  if (e.lease !== undefined) kv.lease = e.lease;
  return kv;
}

function toLogOp(c: Change): { put: string; v: string; lease?: string } | { del: string } {
  if (c.type === "delete") return { del: c.key };
  const op: { put: string; v: string; lease?: string } = { put: c.key, v: base64(c.value) };
  if (c.lease !== undefined) op.lease = c.lease;
  return op;
}

function base64(v: Uint8Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64");
}

function fromBase64(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, "base64"));
}

/** etcd's key order: by UTF-8 bytes, which is code point order (not JavaScript's UTF-16 order). */
function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}
