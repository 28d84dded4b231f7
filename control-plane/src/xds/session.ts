/**
 * The protocol state of one proxy's discovery stream: subscriptions, what was sent, nonces, and
 * what the proxy ACKed or NACKed, per resource. Pure state machine (no I/O): the stream handler
 * feeds it requests and snapshots, and writes out what it returns.
 *
 * Semantics (incremental xDS):
 *  - Every response carries a fresh nonce. A request whose nonce is not one we are waiting for is
 *    stale (already answered, or never sent) and is ignored entirely.
 *  - A request with a known nonce and no error detail ACKs that response. With error detail it is
 *    a NACK: the resources named in `resource_errors` were rejected (the rest of the response was
 *    applied); without names, the whole response was rejected. A NACKed version is not resent; the
 *    next change of that resource is.
 *  - Only changed resources are sent (versions are content hashes), so an unchanged rebuild sends
 *    nothing. Subscribed names that do not exist are answered once with `not_found`.
 *  - Upserts go out in UPSERT_ORDER (clusters and endpoints before routes), removals afterwards in
 *    REMOVAL_ORDER, so the proxy never holds a route to a cluster it lacks.
 */

import { createHash, randomBytes } from "node:crypto";
import type { Message } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { durationFromMs } from "@trellis/proto/duration";
import type { ProxyRecord } from "@trellis/proto/gen/trellis/v1/admin_pb";
import {
  PolicyOutcomeSchema,
  ProxyRecordSchema,
  ProxyResourceSchema,
  ProxyStatusSchema,
  SyncState,
  TypeStatusSchema,
} from "@trellis/proto/gen/trellis/v1/admin_pb";
import type { DiscoverResponse, Resource, Subscription } from "@trellis/proto/gen/trellis/v1/discovery_pb";
import { DiscoverResponseSchema, ResourceSchema } from "@trellis/proto/gen/trellis/v1/discovery_pb";
import type { PolicyRef } from "@trellis/proto/gen/trellis/v1/resources_pb";
import type { Workload } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { REMOVAL_ORDER, RESOURCE_SCHEMAS, UPSERT_ORDER, WILDCARD } from "@trellis/proto/resource-types";
import { timestampFromDate } from "@trellis/proto/timestamp";

/** One built resource, as the snapshot builder produces it. */
export interface SnapshotResource {
  name: string;
  version: string;
  resource: Message;
}

/** What the session needs from a proxy snapshot (the builder's ProxySnapshot satisfies it). */
export interface SnapshotView {
  resources: ReadonlyMap<string, ReadonlyMap<string, SnapshotResource>>;
  notFound: ReadonlySet<string>;
  concerns: readonly {
    ref: PolicyRef;
    supported: boolean;
    resources: readonly { typeUrl: string; name: string }[];
  }[];
}

interface Outstanding {
  upserts: Map<string, string>;
  removed: string[];
}

interface TypeState {
  wildcard: boolean;
  names: Set<string>;
  /** name → version we sent (and assume the proxy holds, unless NACKed). */
  sent: Map<string, string>;
  reportedNotFound: Set<string>;
  /** Responses awaiting ACK/NACK, by nonce. */
  outstanding: Map<string, Outstanding>;
  acked: Map<string, string>;
  nacked: Map<string, { version: string; error: string }>;
  /** Whether the first response for this type went out (sent even when empty). */
  answered: boolean;
  systemVersion: string;
}

export interface SubscriptionOutcome {
  /** The request's nonce was not one we are waiting for: it was ignored. */
  stale: boolean;
  /** The subscription set changed: push now. */
  changed: boolean;
  /** An ACK or NACK was recorded. */
  answered: boolean;
  /** The request was a NACK. */
  nack: boolean;
}

export class DiscoverySession {
  private readonly types = new Map<string, TypeState>();
  private readonly noncePrefix = randomBytes(4).toString("hex");
  private nonceSeq = 0;
  private snapshot: SnapshotView | undefined;
  readonly connectedAt: Date;
  private lastAckAt: number | undefined;

  constructor(
    readonly workload: Workload,
    private readonly now: () => number = Date.now,
  ) {
    this.connectedAt = new Date(now());
  }

  get proxyId(): string {
    return this.workload.proxyId;
  }

  /** Names of RouteConfigs (destination services) the proxy subscribed to, for the builder. */
  subscribedNames(typeUrl: string): ReadonlySet<string> {
    return this.types.get(typeUrl)?.names ?? new Set();
  }

  /** Applies one Subscription request (ACK/NACK and/or subscription change). */
  handleSubscription(sub: Subscription): SubscriptionOutcome {
    const outcome: SubscriptionOutcome = { stale: false, changed: false, answered: false, nack: false };
    let st = this.types.get(sub.typeUrl);
    if (sub.responseNonce !== "") {
      const out = st?.outstanding.get(sub.responseNonce);
      if (st === undefined || out === undefined) {
        outcome.stale = true;
        return outcome;
      }
      st.outstanding.delete(sub.responseNonce);
      outcome.answered = true;
      outcome.nack = sub.errorDetail !== undefined;
      this.recordAnswer(st, out, sub);
    }
    if (!RESOURCE_SCHEMAS.has(sub.typeUrl)) return outcome;
    if (st === undefined) {
      st = newTypeState();
      this.types.set(sub.typeUrl, st);
      outcome.changed = true; // first subscription to a type: answer it
    }
    for (const n of sub.subscribe) {
      if (n === WILDCARD) {
        if (!st.wildcard) outcome.changed = true;
        st.wildcard = true;
      } else if (!st.names.has(n)) {
        st.names.add(n);
        outcome.changed = true;
      }
    }
    for (const n of sub.unsubscribe) {
      if (n === WILDCARD) {
        if (st.wildcard) outcome.changed = true;
        st.wildcard = false;
      } else if (st.names.delete(n)) {
        outcome.changed = true;
        // The proxy drops what it unsubscribed from; forget it without a removal message.
        st.sent.delete(n);
        st.acked.delete(n);
        st.nacked.delete(n);
        st.reportedNotFound.delete(n);
      }
    }
    for (const [name, version] of Object.entries(sub.initialResourceVersions)) {
      // After a reconnect: what the proxy already holds is not resent while unchanged.
      if (!st.sent.has(name)) {
        st.sent.set(name, version);
        st.acked.set(name, version);
      }
    }
    return outcome;
  }

  private recordAnswer(st: TypeState, out: Outstanding, sub: Subscription): void {
    const detail = sub.errorDetail;
    const errors = new Map<string, string>();
    if (detail !== undefined) {
      for (const e of detail.resourceErrors) errors.set(e.name, e.message || detail.message);
      if (errors.size === 0) {
        for (const name of out.upserts.keys()) errors.set(name, detail.message || "rejected");
      }
    }
    for (const [name, version] of out.upserts) {
      const err = errors.get(name);
      if (err !== undefined) {
        st.nacked.set(name, { version, error: err });
      } else {
        st.acked.set(name, version);
        st.nacked.delete(name);
      }
    }
    for (const name of out.removed) {
      st.acked.delete(name);
      st.nacked.delete(name);
    }
    if (detail === undefined || errors.size < out.upserts.size) this.lastAckAt = this.now();
  }

  /**
   * Computes the responses that bring the proxy from what it was sent to `snapshot`, records them
   * as outstanding, and returns them in send order. Empty when nothing changed.
   */
  push(snapshot: SnapshotView): DiscoverResponse[] {
    this.snapshot = snapshot;
    const upserts: DiscoverResponse[] = [];
    const removals = new Map<string, DiscoverResponse>();
    for (const typeUrl of UPSERT_ORDER) {
      const st = this.types.get(typeUrl);
      if (st === undefined) continue;
      const desired = snapshot.resources.get(typeUrl) ?? new Map<string, SnapshotResource>();
      const wanted = (name: string) => st.wildcard || st.names.has(name);
      const changed: SnapshotResource[] = [];
      for (const r of desired.values()) {
        if (wanted(r.name) && st.sent.get(r.name) !== r.version) changed.push(r);
      }
      const notFound: string[] = [];
      for (const n of st.names) {
        if (desired.has(n)) st.reportedNotFound.delete(n);
        else if (!st.reportedNotFound.has(n) && !st.sent.has(n)) notFound.push(n);
      }
      const removed = [...st.sent.keys()].filter((n) => !desired.has(n) || !wanted(n));
      st.systemVersion = systemVersion(desired);
      if (changed.length > 0 || notFound.length > 0 || !st.answered) {
        const nonce = this.nextNonce();
        const out: Outstanding = { upserts: new Map(), removed: [] };
        for (const r of changed) {
          st.sent.set(r.name, r.version);
          out.upserts.set(r.name, r.version);
        }
        for (const n of notFound) st.reportedNotFound.add(n);
        st.outstanding.set(nonce, out);
        st.answered = true;
        upserts.push(
          response(
            typeUrl,
            nonce,
            st.systemVersion,
            changed.map((r) => packResource(typeUrl, r)),
            [],
            notFound,
          ),
        );
      }
      if (removed.length > 0) {
        const nonce = this.nextNonce();
        for (const n of removed) {
          st.sent.delete(n);
          // A name still subscribed whose resource is gone is now "not found" (reported as removed).
          if (st.names.has(n)) st.reportedNotFound.add(n);
        }
        st.outstanding.set(nonce, { upserts: new Map(), removed });
        removals.set(typeUrl, response(typeUrl, nonce, st.systemVersion, [], removed, []));
      }
    }
    for (const typeUrl of REMOVAL_ORDER) {
      const r = removals.get(typeUrl);
      if (r !== undefined) upserts.push(r);
    }
    return upserts;
  }

  private nextNonce(): string {
    this.nonceSeq++;
    return `${this.noncePrefix}-${this.nonceSeq.toString(36)}`;
  }

  /** What this proxy holds, for `trellis status`, `proxy-config` and policy status. */
  record(): ProxyRecord {
    const resources = [];
    const typeStatuses = [];
    const stateOf = new Map<string, { state: SyncState; error: string }>();
    for (const [typeUrl, st] of this.types) {
      let typeState = st.outstanding.size > 0 ? SyncState.PENDING : SyncState.ACKED;
      let typeError = "";
      const built = this.snapshot?.resources.get(typeUrl);
      for (const [name, version] of st.sent) {
        const nack = st.nacked.get(name);
        let state = SyncState.PENDING;
        let error = "";
        if (nack !== undefined && nack.version === version) {
          state = SyncState.NACKED;
          error = nack.error;
          typeState = SyncState.NACKED;
          typeError ||= `${name}: ${error}`;
        } else if (st.acked.get(name) === version) {
          state = SyncState.ACKED;
        }
        stateOf.set(`${typeUrl}\n${name}`, { state, error });
        const body = built?.get(name);
        resources.push(
          create(ProxyResourceSchema, {
            typeUrl,
            name,
            version,
            state,
            error,
            ...(body !== undefined && body.version === version
              ? { resource: packAny(typeUrl, body.resource) }
              : {}),
          }),
        );
      }
      typeStatuses.push(
        create(TypeStatusSchema, {
          typeUrl,
          version: st.systemVersion,
          state: typeState,
          error: typeError,
          resources: st.sent.size,
        }),
      );
    }
    const policies = (this.snapshot?.concerns ?? []).map((c) => {
      let state = SyncState.ACKED;
      let reason = "";
      if (!c.supported) {
        state = SyncState.NACKED;
        reason = "unsupported";
      } else {
        for (const r of c.resources) {
          const s = stateOf.get(`${r.typeUrl}\n${r.name}`);
          if (s === undefined || s.state === SyncState.PENDING) {
            if (state === SyncState.ACKED) state = SyncState.PENDING;
          } else if (s.state === SyncState.NACKED) {
            state = SyncState.NACKED;
            reason = s.error;
            break;
          }
        }
      }
      return create(PolicyOutcomeSchema, { policy: c.ref, state, reason });
    });
    const now = this.now();
    return create(ProxyRecordSchema, {
      status: create(ProxyStatusSchema, {
        workload: this.workload,
        connected: true,
        types: typeStatuses,
        connectedSince: timestampFromDate(this.connectedAt),
        ...(this.lastAckAt !== undefined ? { configAge: durationFromMs(now - this.lastAckAt) } : {}),
      }),
      resources,
      policies,
    });
  }
}

function newTypeState(): TypeState {
  return {
    wildcard: false,
    names: new Set(),
    sent: new Map(),
    reportedNotFound: new Set(),
    outstanding: new Map(),
    acked: new Map(),
    nacked: new Map(),
    answered: false,
    systemVersion: "",
  };
}

function systemVersion(resources: ReadonlyMap<string, SnapshotResource>): string {
  const h = createHash("sha256");
  for (const name of [...resources.keys()].sort()) h.update(`${name}=${resources.get(name)?.version}\n`);
  return h.digest("hex").slice(0, 16);
}

function packAny(typeUrl: string, message: Message) {
  const schema = RESOURCE_SCHEMAS.get(typeUrl);
  if (schema === undefined) throw new Error(`unknown resource type ${typeUrl}`);
  return anyPack(schema, message as never);
}

function packResource(typeUrl: string, r: SnapshotResource): Resource {
  return create(ResourceSchema, { name: r.name, version: r.version, resource: packAny(typeUrl, r.resource) });
}

function response(
  typeUrl: string,
  nonce: string,
  systemVersionInfo: string,
  resources: Resource[],
  removedResources: string[],
  notFound: string[],
): DiscoverResponse {
  return create(DiscoverResponseSchema, {
    message: {
      case: "resources",
      value: { typeUrl, nonce, systemVersionInfo, resources, removedResources, notFound },
    },
  });
}
