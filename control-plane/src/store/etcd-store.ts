/**
 * The production store: etcd v3 through the etcd3 client (see store.ts for the contract).
 *
 * Writes are idempotent across etcd's one unpleasant failure mode: during a leader change etcd can
 * drop a proposal and answer "request timed out" / "leader changed", or the connection can die after
 * the request left, and the client cannot know whether the write committed.
 *   - A plain put or delete is simply retried (writing the same value twice is the same result).
 *   - A compare-and-swap put or delete is retried only after re-reading the key: if it already holds
 *     exactly our value at a newer revision (or, for a delete, is gone) the first attempt committed
 *     and the call succeeds; if the key is unchanged the attempt did not commit and is retried;
 *     anything else is a genuine CONFLICT.
 *   - A txn without compares is retried (its ops are puts and deletes); a txn with compares is
 *     retried only when the request certainly never left (no connection), because a re-evaluated
 *     compare could take the other branch; otherwise it fails UNAVAILABLE/TIMEOUT ("outcome
 *     unknown") and the caller re-reads.
 * Every ordinary call has a deadline (`requestTimeoutMs`) covering all its attempts; watch streams
 * have none.
 */
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import type { Etcd3, ICompare, IRangeRequest, IRequestOp } from "etcd3";
import { type Clock, systemClock } from "./clock.js";
import { type CallPolicy, callWithDeadline } from "./etcd-calls.js";
import { createEtcdClient } from "./etcd-client.js";
import { fromEtcdKv, isLeaseId, prefixRange } from "./etcd-codec.js";
import { etcdError, isAmbiguous, wasNotSent } from "./etcd-errors.js";
import { openEtcdWatch } from "./etcd-watch-stream.js";
import { type ResumableWatchOptions, startTrackedWatch, type WatchSource } from "./resumable-watch.js";
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

/** Options of the etcd store. Durations in milliseconds; every one has a production default. */
export interface EtcdStoreOptions {
  /** Client URLs of the etcd members (http://host:port), all of them. */
  endpoints: readonly string[];
  /** Deadline of each ordinary call, retries included (default 5000). */
  requestTimeoutMs?: number;
  /** Backoff between attempts of one call (defaults 50 and 1000). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Watches: full re-list and diff this often, repairing anything a stream missed (default 300000;
   * 0 disables). */
  reconcileIntervalMs?: number;
  /** Watches: revisions buffered for a slow consumer before the stream is paused (default 10000). */
  watchBufferRevisions?: number;
  /** Watches: reconnect backoff (defaults 100 and 5000). */
  watchRetryMinMs?: number;
  watchRetryMaxMs?: number;
  /** gRPC keepalive ping interval; detects a vanished etcd under a watch (default 10000, min 5000). */
  keepaliveMs?: number;
  /** Keys per range request when listing (default 1000); pages are read at one revision. */
  listPageSize?: number;
  /** Timers of the watches (default: the system clock). */
  clock?: Clock;
}

/** Creates the etcd store. Does not contact etcd: the first call does (and fails UNAVAILABLE if it cannot). */
export function createEtcdStore(options: EtcdStoreOptions): EtcdStore {
  return new EtcdStore(options);
}

const OUT_OF_RANGE_COMPACTED = "required revision has been compacted";
const OUT_OF_RANGE_FUTURE = "required revision is a future revision";

/** The etcd-backed Store. Construct with createEtcdStore(). */
export class EtcdStore implements Store {
  readonly backend = "etcd";
  private readonly client: Etcd3;
  private readonly calls: CallPolicy;
  private readonly watchOptions: ResumableWatchOptions;
  private readonly pageSize: number;
  private readonly watchers = new Set<Watcher>();
  private readonly source: WatchSource;
  private closed = false;

  constructor(options: EtcdStoreOptions) {
    if (options.endpoints.length === 0) {
      throw new TrellisError(ErrorCode.CONFIG, "etcd store: no endpoints");
    }
    this.client = createEtcdClient(options.endpoints, {
      keepaliveMs: Math.max(5000, options.keepaliveMs ?? 10_000),
    });
    this.calls = {
      timeoutMs: positive(options.requestTimeoutMs, 5000),
      retryMinMs: positive(options.retryMinMs, 50),
      retryMaxMs: positive(options.retryMaxMs, 1000),
    };
    this.watchOptions = {
      clock: options.clock ?? systemClock,
      reconcileIntervalMs: Math.max(0, options.reconcileIntervalMs ?? 300_000),
      bufferRevisions: positive(options.watchBufferRevisions, 10_000),
      retryMinMs: positive(options.watchRetryMinMs, 100),
      retryMaxMs: positive(options.watchRetryMaxMs, 5000),
    };
    this.pageSize = positive(options.listPageSize, 1000);
    this.source = {
      keysAt: (prefix, revision) => this.keysAt(prefix, revision),
      list: (prefix) => this.list(prefix),
      open: (prefix, from, handlers) => openEtcdWatch(this.client, prefix, from, handlers),
    };
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return this.call("get", async (deadline) => {
      const res = await this.client.kv.range({ key: Buffer.from(key) }, { deadline });
      const kv = res.kvs[0];
      return kv === undefined ? undefined : fromEtcdKv(kv);
    });
  }

  async list(prefix: string): Promise<ListResult> {
    return this.call("list", async (deadline) => {
      for (let attempt = 1; ; attempt++) {
        const items: KeyValue[] = [];
        try {
          const revision = await this.rangePages(prefix, 0, false, deadline, (kv) =>
            items.push(fromEtcdKv(kv)),
          );
          return { items, revision };
        } catch (err) {
          // A compaction overtook a long paged read (its later pages are pinned to the first page's
          // revision): start over at the current revision.
          if (attempt >= 3 || !(err instanceof Error) || !err.message.includes(OUT_OF_RANGE_COMPACTED))
            throw err;
        }
      }
    });
  }

  async put(key: string, value: Uint8Array, options: PutOptions = {}): Promise<number> {
    const lease = checkLease(options.lease);
    const put = {
      key: Buffer.from(key),
      value: Buffer.from(value),
      ...(lease === undefined ? {} : { lease }),
    };
    const expected = options.expectRevision;
    if (expected === undefined) {
      return this.call("put", async (deadline) => {
        const res = await this.client.kv.put(put, { deadline });
        return Number(res.header.revision);
      });
    }
    let maybeCommitted = false;
    return this.call("put", async (deadline) => {
      if (maybeCommitted) {
        // An earlier attempt's fate is unknown: find out before writing again.
        const now = await this.client.kv.range({ key: put.key }, { deadline });
        const cur = now.kvs[0] === undefined ? undefined : fromEtcdKv(now.kvs[0]);
        if (
          cur !== undefined &&
          cur.modRevision > expected &&
          sameBytes(cur.value, value) &&
          cur.lease === lease
        ) {
          return cur.modRevision; // it committed
        }
        if ((cur?.modRevision ?? 0) !== expected) throw conflict(key, expected, cur?.modRevision ?? 0);
      }
      const res = await this.attempt(
        () =>
          this.client.kv.txn(
            { compare: [modEquals(key, expected)], success: [{ request_put: put }], failure: [] },
            { deadline },
          ),
        () => {
          maybeCommitted = true;
        },
      );
      if (!res.succeeded) throw conflict(key, expected);
      return Number(res.header.revision);
    });
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    const expected = options.expectRevision;
    let maybeCommitted = false;
    if (expected === undefined) {
      return this.call("delete", async (deadline) => {
        const res = await this.attempt(
          () => this.client.kv.deleteRange({ key: Buffer.from(key) }, { deadline }),
          () => {
            maybeCommitted = true;
          },
        );
        // After an attempt of unknown fate "not found" may mean "we deleted it": report it existed.
        return Number(res.deleted) > 0 || maybeCommitted;
      });
    }
    return this.call("delete", async (deadline) => {
      if (maybeCommitted) {
        const now = await this.client.kv.range({ key: Buffer.from(key) }, { deadline });
        const mod = now.kvs[0] === undefined ? 0 : Number(now.kvs[0].mod_revision);
        if (mod === 0) return expected !== 0; // gone: the earlier attempt (or someone) deleted it
        if (mod !== expected) throw conflict(key, expected, mod);
      }
      const res = await this.attempt(
        () =>
          this.client.kv.txn(
            {
              compare: [modEquals(key, expected)],
              success: [{ request_delete_range: { key: Buffer.from(key) } }],
              failure: [],
            },
            { deadline },
          ),
        () => {
          maybeCommitted = true;
        },
      );
      if (!res.succeeded) throw conflict(key, expected);
      return Number(res.responses[0]?.response_delete_range.deleted ?? 0) > 0;
    });
  }

  async txn(
    compares: readonly Compare[],
    success: readonly TxnOp[],
    failure: readonly TxnOp[] = [],
  ): Promise<TxnResult> {
    const request = {
      compare: compares.map((c) => modEquals(c.key, c.modRevision)),
      success: success.map(toRequestOp),
      failure: failure.map(toRequestOp),
    };
    // Without compares the ops are puts and deletes: repeating them is harmless. With compares a
    // repeat could take the other branch, so only a request that never left is repeated.
    const retryable = compares.length === 0 ? isAmbiguous : wasNotSent;
    return callWithDeadline(
      "txn",
      this.calls,
      async (deadline) => {
        this.checkOpen();
        try {
          const res = await this.client.kv.txn(request, { deadline });
          return { succeeded: res.succeeded, revision: Number(res.header.revision) };
        } catch (err) {
          const e = etcdError(err, "txn");
          if (compares.length === 0 || !isAmbiguous(e) || wasNotSent(e)) throw e;
          throw new TrellisError(e.code, `${e.message} (outcome unknown: re-read before retrying)`, {
            cause: err,
          });
        }
      },
      retryable,
    );
  }

  watch(
    prefix: string,
    options: WatchOptions,
    onEvents: (events: WatchEvent[]) => void | Promise<void>,
  ): Watcher {
    this.checkOpen();
    return startTrackedWatch(this.watchers, this.source, prefix, options, onEvents, this.watchOptions);
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
      throw new TrellisError(
        ErrorCode.INVALID_ARGUMENT,
        `lease TTL must be a whole number of seconds ≥ 1, got ${ttlSeconds}`,
      );
    }
    // A retried grant after a lost answer may leave an unused lease behind; it expires on its own.
    return this.call("grant lease", async (deadline) => {
      const res = await this.client.leaseClient.leaseGrant({ TTL: ttlSeconds }, { deadline });
      if (res.error) throw new TrellisError(ErrorCode.UNAVAILABLE, `etcd grant lease: ${res.error}`);
      return { id: res.ID, ttlSeconds: Number(res.TTL) };
    });
  }

  async keepAlive(id: LeaseId): Promise<number> {
    const lease = checkLease(id)!;
    const ttl = await this.call("keep alive lease", (deadline) => this.keepAliveOnce(lease, deadline));
    if (ttl <= 0) throw new TrellisError(ErrorCode.NOT_FOUND, `lease ${id} has expired or was revoked`);
    return ttl;
  }

  async revokeLease(id: LeaseId): Promise<void> {
    const lease = checkLease(id)!;
    await this.call("revoke lease", async (deadline) => {
      try {
        await this.client.leaseClient.leaseRevoke({ ID: lease }, { deadline });
      } catch (err) {
        // Unknown (or already revoked by our own earlier attempt): nothing to do.
        if ((err as Error).message?.includes("requested lease not found")) return;
        throw err;
      }
    });
  }

  async revision(): Promise<number> {
    return this.call("revision", async (deadline) => {
      const res = await this.client.kv.range({ key: Buffer.from([0]), count_only: true }, { deadline });
      return Number(res.header.revision);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.watchers].map((w) => w.close()));
    this.client.close();
  }

  /**
   * Key → modRevision under `prefix` at `revision` (a watch's baseline); undefined when compacted.
   * A revision etcd has not reached yet reads the current state.
   */
  private async keysAt(prefix: string, revision: number): Promise<Map<string, number> | undefined> {
    return this.call("read keys at revision", async (deadline) => {
      const keys = new Map<string, number>();
      const collect = (kv: { key: Buffer; mod_revision: string }): void => {
        keys.set(kv.key.toString("utf8"), Number(kv.mod_revision));
      };
      try {
        await this.rangePages(prefix, revision, true, deadline, collect);
      } catch (err) {
        const text = err instanceof Error ? err.message : "";
        if (text.includes(OUT_OF_RANGE_COMPACTED)) return undefined;
        if (!text.includes(OUT_OF_RANGE_FUTURE)) throw err;
        keys.clear();
        await this.rangePages(prefix, 0, true, deadline, collect);
      }
      return keys;
    });
  }

  /**
   * Reads every key under `prefix` in pages of `pageSize`, all at one revision (the first page's,
   * when `revision` is 0), calling `each` in key order; returns that revision.
   */
  private async rangePages(
    prefix: string,
    revision: number,
    keysOnly: boolean,
    deadline: number,
    each: (kv: Parameters<typeof fromEtcdKv>[0]) => void,
  ): Promise<number> {
    const range = prefixRange(prefix);
    let at = revision;
    let start = range.key;
    for (;;) {
      const req: IRangeRequest = {
        key: start,
        range_end: range.range_end,
        limit: this.pageSize,
        keys_only: keysOnly,
      };
      if (at > 0) req.revision = at;
      const res = await this.client.kv.range(req, { deadline });
      if (at === 0) at = Number(res.header.revision);
      for (const kv of res.kvs) each(kv);
      const last = res.kvs.at(-1);
      if (!res.more || last === undefined) return at;
      start = Buffer.concat([last.key, Buffer.from([0])]); // the next key after `last`
    }
  }

  /** One LeaseKeepAlive round trip on its own short stream: any replica can renew any lease by id. */
  private async keepAliveOnce(id: string, deadline: number): Promise<number> {
    const stream = await this.client.leaseClient.leaseKeepAlive({ deadline });
    return new Promise<number>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        fn();
        // End our side first (see etcd-watch-stream.ts closeStream); etcd then ends the stream.
        try {
          stream.end();
          stream.cancel();
        } catch {
          // Already closed.
        }
      };
      stream.on("data", (res) => settle(() => resolve(Number(res.TTL))));
      stream.on("error", (err) => settle(() => reject(err)));
      stream.on("end", () =>
        settle(() => reject(new TrellisError(ErrorCode.UNAVAILABLE, "keepalive stream ended"))),
      );
      stream.write({ ID: id });
    });
  }

  /** Runs `fn`; on a failure that may have reached etcd, calls `onUnknownOutcome` and rethrows. */
  private async attempt<T>(fn: () => Promise<T>, onUnknownOutcome: () => void): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const e = etcdError(err, "call");
      if (isAmbiguous(e) && !wasNotSent(e)) onUnknownOutcome();
      throw err;
    }
  }

  /** A call with the deadline, retried while the failure is UNAVAILABLE/TIMEOUT. */
  private call<T>(what: string, attempt: (deadline: number) => Promise<T>): Promise<T> {
    return callWithDeadline(
      what,
      this.calls,
      (deadline) => {
        this.checkOpen();
        return attempt(deadline);
      },
      isAmbiguous,
    );
  }

  private checkOpen(): void {
    if (this.closed) throw new TrellisError(ErrorCode.CANCELLED, "etcd store is closed");
  }
}

function modEquals(key: string, modRevision: number): ICompare {
  return { key: Buffer.from(key), target: "Mod", result: "Equal", mod_revision: modRevision };
}

function toRequestOp(op: TxnOp): IRequestOp {
  switch (op.type) {
    case "put": {
      const lease = checkLease(op.lease);
      return {
        request_put: {
          key: Buffer.from(op.key),
          value: Buffer.from(op.value),
          ...(lease === undefined ? {} : { lease }),
        },
      };
    }
    case "delete":
      return { request_delete_range: { key: Buffer.from(op.key) } };
    case "deletePrefix":
      return { request_delete_range: prefixRange(op.prefix) };
  }
}

function checkLease(id: LeaseId | undefined): string | undefined {
  if (id === undefined) return undefined;
  if (!isLeaseId(id))
    throw new TrellisError(ErrorCode.INVALID_ARGUMENT, `not a lease id: ${JSON.stringify(id)}`);
  return id;
}

function conflict(key: string, expected: number, actual?: number): TrellisError {
  const now = actual === undefined ? "" : actual === 0 ? " (it does not exist)" : ` (it is at ${actual})`;
  return new TrellisError(ErrorCode.CONFLICT, `${key}: expected revision ${expected}${now}`);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

function positive(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}
