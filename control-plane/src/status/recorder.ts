/**
 * Records, for this replica, what every connected proxy holds and how each policy rolled out, in
 * batches so status writes stay cheap however often proxies ACK:
 *
 *  - /trellis/v1/proxies/<replica>/<proxy>: the proxy's ProxyRecord (for `status`, `proxy-config`).
 *  - /trellis/v1/status/<replica>/<Kind>/<ns>/<name>: ProxyRollout of the policy over this
 *    replica's proxies. `get` merges the rollouts of all replicas.
 *
 * Both are attached to the replica's lease: when a replica dies its records vanish, and its proxies,
 * reconnected elsewhere, are recorded by their new replica. Status keys never share a key with
 * the policy, so writing them triggers no rebuild and never races with `apply`.
 */
import { create, equals, toBinary } from "@bufbuild/protobuf";
import type { ProxyRecord } from "@trellis/proto/gen/trellis/v1/admin_pb";
import { ProxyRecordSchema, SyncState } from "@trellis/proto/gen/trellis/v1/admin_pb";
import type { ProxyRollout } from "@trellis/proto/gen/trellis/v1/common_pb";
import { ProxyRolloutSchema, RejectionReasonSchema } from "@trellis/proto/gen/trellis/v1/common_pb";
import { proxyKey, statusKey } from "../store/keys.js";
import type { LeaseId, Store } from "../store/store.js";

export interface RecorderOptions {
  replica: string;
  /** The replica's lease; records die with it. */
  leaseId: LeaseId;
  /** Batch interval (default 1 s). */
  flushIntervalMs?: number;
  onWarning?: (message: string) => void;
}

/** Sample proxy ids kept per rejection reason. */
const MAX_PROXIES_PER_REASON = 10;

export class StatusRecorder {
  private readonly records = new Map<string, ProxyRecord>();
  private readonly dirtyProxies = new Set<string>();
  private readonly writtenRollups = new Map<string, ProxyRollout>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly store: Store,
    private readonly options: RecorderOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.options.flushIntervalMs ?? 1000);
    this.timer.unref();
  }

  /** Records a proxy's state (or its disconnection, with `undefined`); written at the next flush. */
  update(proxyId: string, record: ProxyRecord | undefined): void {
    if (record === undefined) this.records.delete(proxyId);
    else this.records.set(proxyId, record);
    this.dirtyProxies.add(proxyId);
  }

  /** Writes everything pending now (also used at shutdown and by tests). */
  flush(): Promise<void> {
    if (this.flushing !== undefined) return this.flushing.then(() => this.flush());
    this.flushing = this.doFlush().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async doFlush(): Promise<void> {
    if (this.dirtyProxies.size === 0) return;
    const dirty = [...this.dirtyProxies];
    this.dirtyProxies.clear();
    const { replica, leaseId } = this.options;
    try {
      for (const proxyId of dirty) {
        const record = this.records.get(proxyId);
        const key = proxyKey(replica, proxyId);
        if (record === undefined) await this.store.delete(key);
        else await this.store.put(key, toBinary(ProxyRecordSchema, record), { lease: leaseId });
      }
      const rollups = this.rollups();
      for (const [k, rollup] of rollups) {
        const prev = this.writtenRollups.get(k);
        if (prev !== undefined && equals(ProxyRolloutSchema, prev, rollup)) continue;
        await this.store.put(statusKeyOf(replica, k), toBinary(ProxyRolloutSchema, rollup), {
          lease: leaseId,
        });
        this.writtenRollups.set(k, rollup);
      }
      for (const k of [...this.writtenRollups.keys()]) {
        if (rollups.has(k)) continue;
        await this.store.delete(statusKeyOf(replica, k));
        this.writtenRollups.delete(k);
      }
    } catch (err) {
      // Retry at the next flush: put the proxies back as dirty.
      for (const p of dirty) this.dirtyProxies.add(p);
      this.options.onWarning?.(`status write failed, will retry: ${(err as Error).message}`);
    }
  }

  /** Per policy (`Kind/ns/name`), applied / rejected / pending over this replica's proxies. */
  private rollups(): Map<string, ProxyRollout> {
    const out = new Map<string, ProxyRollout>();
    for (const [proxyId, record] of this.records) {
      for (const o of record.policies) {
        const ref = o.policy;
        if (ref === undefined) continue;
        const k = `${ref.kind}/${ref.namespace}/${ref.name}`;
        let r = out.get(k);
        if (r === undefined) {
          r = create(ProxyRolloutSchema);
          out.set(k, r);
        }
        if (o.state === SyncState.ACKED) r.applied++;
        else if (o.state === SyncState.NACKED) {
          r.rejected++;
          let reason = r.reasons.find((x) => x.reason === o.reason);
          if (reason === undefined) {
            reason = create(RejectionReasonSchema, { reason: o.reason });
            r.reasons.push(reason);
          }
          reason.count++;
          if (reason.proxies.length < MAX_PROXIES_PER_REASON) reason.proxies.push(proxyId);
        } else r.pending++;
      }
    }
    for (const r of out.values()) {
      r.reasons.sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1));
      for (const reason of r.reasons) reason.proxies.sort();
    }
    return out;
  }

  /** Stops the timer and writes what is pending. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

function statusKeyOf(replica: string, k: string): string {
  const [kind = "", namespace = "", name = ""] = k.split("/");
  return statusKey(replica, kind, namespace, name);
}
