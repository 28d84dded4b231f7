/**
 * Workload registrations under store leases.
 *
 * A sidecar's registration lives at registrationKey(ns, service, proxy) attached to a lease that
 * the replica holding its stream keeps alive. The lifecycle:
 *  1. register: with `resumeLeaseId` from an earlier stream, renew that lease first; if it is still
 *     alive, keep it (the key never disappears: no endpoint flap across a control-plane restart or
 *     a reconnect to another replica). Otherwise grant a new lease. Then write the workload.
 *  2. keep alive: every ttl/3 while the stream is up.
 *  3. stream ends without a goodbye: stop renewing; the lease (and the key) expire after the TTL
 *     unless the sidecar reconnects and resumes.
 *  4. explicit deregister: delete the key and revoke the lease at once.
 */
import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ErrorCode, hasCode, TrellisError } from "@trellis/proto/errors";
import type { Workload } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { WorkloadSchema } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { timestampFromDate } from "@trellis/proto/timestamp";
import { registrationKey } from "../store/keys.js";
import type { LeaseId, Store } from "../store/store.js";

export interface RegistryOptions {
  /** Lease TTL in seconds (default 15). */
  leaseTtlSeconds?: number;
  /** This replica's id, recorded in the workload. */
  replica: string;
  now?: () => Date;
  onWarning?: (message: string) => void;
}

/** A live registration held by one stream. */
export interface Registration {
  readonly leaseId: LeaseId;
  readonly key: string;
  readonly workload: Workload;
  /** True when an earlier lease was resumed. */
  readonly resumed: boolean;
  /** Stops renewing the lease (the stream ended); the registration expires after the TTL. */
  release(): void;
  /** Removes the registration at once (explicit deregister). */
  deregister(): Promise<void>;
}

export class Registry {
  readonly ttlSeconds: number;

  constructor(
    private readonly store: Store,
    private readonly options: RegistryOptions,
  ) {
    this.ttlSeconds = options.leaseTtlSeconds ?? 15;
  }

  /** Registers `workload` (identity already verified by the caller) and starts keeping it alive. */
  async register(input: Workload, resumeLeaseId?: LeaseId): Promise<Registration> {
    const key = registrationKey(input.namespace, input.service, input.proxyId);
    let leaseId: LeaseId | undefined;
    let resumed = false;
    let registeredAt = timestampFromDate((this.options.now ?? (() => new Date()))());
    if (resumeLeaseId !== undefined && resumeLeaseId !== "" && resumeLeaseId !== "0") {
      try {
        await this.store.keepAlive(resumeLeaseId);
        const existing = await this.store.get(key);
        if (existing !== undefined && existing.lease === resumeLeaseId) {
          leaseId = resumeLeaseId;
          resumed = true;
          const prev = fromBinary(WorkloadSchema, existing.value);
          if (prev.registeredAt !== undefined) registeredAt = prev.registeredAt;
        }
      } catch (err) {
        if (!hasCode(err, ErrorCode.NOT_FOUND)) throw err;
      }
    }
    if (leaseId === undefined) leaseId = (await this.store.grantLease(this.ttlSeconds)).id;
    const workload = create(WorkloadSchema, {
      ...input,
      leaseId: BigInt(leaseId),
      replica: this.options.replica,
      registeredAt,
    });
    const existing = resumed ? await this.store.get(key) : undefined;
    // On resume with an identical record, skip the write: watchers see no event at all.
    if (
      existing === undefined ||
      !equals(WorkloadSchema, fromBinary(WorkloadSchema, existing.value), workload)
    ) {
      await this.store.put(key, toBinary(WorkloadSchema, workload), { lease: leaseId });
    }
    return this.hold(key, leaseId, workload, resumed);
  }

  private hold(key: string, leaseId: LeaseId, workload: Workload, resumed: boolean): Registration {
    const store = this.store;
    const warn = this.options.onWarning;
    let released = false;
    const intervalMs = Math.max(200, (this.ttlSeconds * 1000) / 3);
    const timer = setInterval(() => {
      store.keepAlive(leaseId).catch((err: unknown) => {
        warn?.(`lease ${leaseId} of ${workload.proxyId}: ${TrellisError.from(err).message}`);
      });
    }, intervalMs);
    timer.unref();
    return {
      leaseId,
      key,
      workload,
      resumed,
      release: () => {
        if (released) return;
        released = true;
        clearInterval(timer);
      },
      deregister: async () => {
        released = true;
        clearInterval(timer);
        await store.delete(key);
        await store.revokeLease(leaseId);
      },
    };
  }
}
