/**
 * The discovery client: one aggregated incremental stream to the control plane (see
 * proto/trellis/v1/discovery.proto for the protocol).
 *
 * What it guarantees to its owner (the sidecar, or a simulated proxy in tests):
 *  - Responses are handed to `onResources` one at a time, in order; each is answered with an ACK,
 *    or a NACK naming the resources that failed to decode or that `onResources` rejected (the rest
 *    of the response counts as applied).
 *  - What was accepted is held here (`held(typeUrl)`), across reconnects; after a reconnect the
 *    held versions are declared so unchanged resources are not resent.
 *  - Connection loss: reconnect with exponential backoff and full jitter, rotating through the
 *    control-plane addresses, resuming the registration lease (`resume_lease_id`), so the
 *    registration does not flap. `go_away` reconnects (elsewhere) after its delay.
 *  - `deregister()` removes the registration at once; `stop()` just closes (the lease expires).
 */
import { EventEmitter } from "node:events";
import type { Message, MessageInitShape } from "@bufbuild/protobuf";
import { create, fromBinary } from "@bufbuild/protobuf";
import { durationMs } from "@trellis/proto/duration";
import { TrellisError } from "@trellis/proto/errors";
import type {
  DiscoverRequest,
  DiscoverResponse,
  Resources,
  Welcome,
} from "@trellis/proto/gen/trellis/v1/discovery_pb";
import {
  DiscoverRequestSchema,
  DiscoveryService,
  type SubscriptionSchema,
} from "@trellis/proto/gen/trellis/v1/discovery_pb";
import type { Workload } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { WorkloadSchema } from "@trellis/proto/gen/trellis/v1/workload_pb";
import type { BidiStreamingCall, GrpcClient } from "@trellis/proto/grpc-adapter";
import { createGrpcClient } from "@trellis/proto/grpc-adapter";
import { controlPlaneChannel } from "@trellis/proto/grpc-tls";
import { RESOURCE_SCHEMAS } from "@trellis/proto/resource-types";
import { Backoff, type BackoffOptions } from "./backoff.js";

/** A decoded resource as held by the client. */
export interface HeldResource {
  name: string;
  version: string;
  message: Message;
}

/** One response, decoded. */
export interface ResourceUpdate {
  typeUrl: string;
  /** Added or changed resources that decoded cleanly. */
  resources: HeldResource[];
  /** Names removed by the control plane. */
  removed: string[];
  /** Subscribed names that do not exist. */
  notFound: string[];
}

/** What the owner says about an update: resources it rejected, by name, with the reason. */
export interface UpdateResult {
  rejected?: { name: string; message: string }[];
}

export interface XdsClientOptions {
  /** Control-plane addresses (host:port), tried in turn. */
  addresses: string[];
  /** PEM bundle that verifies the control plane's certificate. */
  caPem: string;
  /** This proxy's workload (identity fields are set by the control plane). */
  workload: MessageInitShape<typeof WorkloadSchema>;
  /** Join token proving namespace and service account. */
  joinToken: string;
  /** Applies an update; may be async; throwing rejects every resource of the update. */
  onResources: (update: ResourceUpdate) => UpdateResult | undefined | Promise<UpdateResult | undefined>;
  backoff?: BackoffOptions;
  /** gRPC keepalive ping interval / timeout, ms (default 10 000 / 5 000). */
  keepaliveMs?: number;
  keepaliveTimeoutMs?: number;
  /** How long to wait for `welcome` before giving up on a connection attempt (default 10 s). */
  connectTimeoutMs?: number;
}

interface TypeSubscription {
  names: Set<string>;
  held: Map<string, HeldResource>;
}

export interface XdsClientEvents {
  connected: [Welcome];
  disconnected: [TrellisError];
  update: [ResourceUpdate];
  rejected: [ResourceUpdate, { name: string; message: string }[]];
}

export class XdsClient extends EventEmitter<XdsClientEvents> {
  private readonly subs = new Map<string, TypeSubscription>();
  private readonly backoff: Backoff;
  private client: GrpcClient<typeof DiscoveryService> | undefined;
  private call:
    | BidiStreamingCall<
        typeof DiscoveryService.method.discover.input,
        typeof DiscoveryService.method.discover.output
      >
    | undefined;
  private addressIndex = 0;
  private leaseId = 0n;
  private stopped = false;
  private connectedNow = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private queue: Promise<void> = Promise.resolve();
  private readonly workload: Workload;

  constructor(private readonly opts: XdsClientOptions) {
    super();
    if (opts.addresses.length === 0)
      throw new TrellisError("TRELLIS_ERR_CONFIG", "at least one control-plane address is needed");
    this.backoff = new Backoff(opts.backoff);
    this.workload = create(WorkloadSchema, opts.workload);
  }

  /** True while a stream is established (welcome received). */
  get connected(): boolean {
    return this.connectedNow;
  }

  /** The registration lease (0 before the first welcome). */
  get lease(): bigint {
    return this.leaseId;
  }

  /** What is held for a type, by name. */
  held(typeUrl: string): ReadonlyMap<string, HeldResource> {
    return this.subs.get(typeUrl)?.held ?? new Map();
  }

  /** Connects (and keeps reconnecting until stopped). */
  start(): void {
    this.stopped = false;
    this.connect();
  }

  /**
   * Seeds what is held for a type before the first connection (config persisted by an earlier run),
   * so the first subscription declares those versions and unchanged resources are not resent.
   */
  preload(typeUrl: string, resources: readonly HeldResource[]): void {
    const sub = this.sub(typeUrl);
    for (const r of resources) sub.held.set(r.name, r);
  }

  /** Adds names ("*" for everything meant for this proxy) to a type's subscription. */
  subscribe(typeUrl: string, names: readonly string[]): void {
    const sub = this.sub(typeUrl);
    const added = names.filter((n) => !sub.names.has(n));
    for (const n of added) sub.names.add(n);
    if (added.length > 0 && this.connectedNow) this.send({ typeUrl, subscribe: added });
  }

  /** Removes names from a type's subscription and drops what was held for them. */
  unsubscribe(typeUrl: string, names: readonly string[]): void {
    const sub = this.sub(typeUrl);
    const removed = names.filter((n) => sub.names.delete(n));
    for (const n of removed) sub.held.delete(n);
    if (removed.length > 0 && this.connectedNow) this.send({ typeUrl, unsubscribe: removed });
  }

  private sub(typeUrl: string): TypeSubscription {
    let s = this.subs.get(typeUrl);
    if (s === undefined) {
      s = { names: new Set(), held: new Map() };
      this.subs.set(typeUrl, s);
    }
    return s;
  }

  private connect(): void {
    if (this.stopped) return;
    const address = this.opts.addresses[this.addressIndex % this.opts.addresses.length] as string;
    this.client?.close();
    const channel = controlPlaneChannel(address, this.opts.caPem);
    this.client = createGrpcClient(DiscoveryService, address, channel.credentials, {
      ...channel.options,
      "grpc.keepalive_time_ms": this.opts.keepaliveMs ?? 10_000,
      "grpc.keepalive_timeout_ms": this.opts.keepaliveTimeoutMs ?? 5_000,
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.initial_reconnect_backoff_ms": 100,
    });
    const call = this.client.discover();
    this.call = call;
    let welcomed = false;
    const connectTimer = setTimeout(() => {
      if (!welcomed) call.cancel();
    }, this.opts.connectTimeoutMs ?? 10_000);
    connectTimer.unref();
    call
      .send({
        message: {
          case: "hello",
          value: {
            workload: this.workload,
            credential: { case: "joinToken", value: this.opts.joinToken },
            resumeLeaseId: this.leaseId,
          },
        },
      })
      .catch(() => undefined);
    void (async () => {
      let error: TrellisError | undefined;
      try {
        for await (const res of call.responses) {
          if (this.call !== call) break;
          if (res.message.case === "welcome") {
            welcomed = true;
            clearTimeout(connectTimer);
            this.onWelcome(res.message.value);
          } else if (res.message.case === "resources") {
            const resources = res.message.value;
            this.queue = this.queue.then(() => this.onResponse(call, resources));
          } else if (res.message.case === "goAway") {
            const after = durationMs(res.message.value.reconnectAfter, 0);
            this.addressIndex++;
            this.dropCall(
              call,
              new TrellisError("TRELLIS_ERR_UNAVAILABLE", "control plane sent go_away"),
              after,
            );
            return;
          }
        }
      } catch (err) {
        error = TrellisError.from(err);
      } finally {
        clearTimeout(connectTimer);
      }
      if (this.call === call) {
        if (!welcomed) this.addressIndex++;
        this.dropCall(
          call,
          error ?? new TrellisError("TRELLIS_ERR_UNAVAILABLE", "discovery stream ended"),
          undefined,
        );
      }
    })();
  }

  private onWelcome(w: Welcome): void {
    this.leaseId = w.leaseId;
    this.connectedNow = true;
    this.backoff.reset();
    // Re-declare every subscription with the versions held, so unchanged resources are not resent.
    for (const [typeUrl, sub] of this.subs) {
      if (sub.names.size === 0) continue;
      const initialResourceVersions: Record<string, string> = {};
      for (const [name, r] of sub.held) initialResourceVersions[name] = r.version;
      this.send({ typeUrl, subscribe: [...sub.names], initialResourceVersions });
    }
    this.emit("connected", w);
  }

  private async onResponse(call: unknown, res: Resources): Promise<void> {
    if (this.call !== call) return;
    const schema = RESOURCE_SCHEMAS.get(res.typeUrl);
    const update: ResourceUpdate = {
      typeUrl: res.typeUrl,
      resources: [],
      removed: res.removedResources,
      notFound: res.notFound,
    };
    const rejected: { name: string; message: string }[] = [];
    for (const r of res.resources) {
      try {
        if (schema === undefined) throw new Error(`unknown resource type ${res.typeUrl}`);
        if (r.resource === undefined || r.resource.typeUrl !== res.typeUrl) {
          throw new Error(`resource body is missing or of type ${r.resource?.typeUrl ?? "none"}`);
        }
        update.resources.push({
          name: r.name,
          version: r.version,
          message: fromBinary(schema, r.resource.value),
        });
      } catch (err) {
        rejected.push({ name: r.name, message: `cannot decode: ${(err as Error).message}` });
      }
    }
    try {
      const result = await this.opts.onResources(update);
      for (const e of result?.rejected ?? []) rejected.push(e);
    } catch (err) {
      for (const r of update.resources) rejected.push({ name: r.name, message: (err as Error).message });
    }
    const sub = this.sub(res.typeUrl);
    const bad = new Set(rejected.map((e) => e.name));
    for (const r of update.resources) if (!bad.has(r.name)) sub.held.set(r.name, r);
    for (const n of update.removed) sub.held.delete(n);
    if (this.call !== call) return;
    if (rejected.length > 0) {
      this.send({
        typeUrl: res.typeUrl,
        responseNonce: res.nonce,
        errorDetail: {
          message: `${rejected.length} resource${rejected.length === 1 ? "" : "s"} rejected`,
          resourceErrors: rejected,
        },
      });
      this.emit("rejected", update, rejected);
    } else {
      this.send({ typeUrl: res.typeUrl, responseNonce: res.nonce });
    }
    this.emit("update", update);
  }

  private send(subscription: MessageInitShape<typeof SubscriptionSchema>): void {
    const call = this.call;
    if (call === undefined) return;
    call
      .send(
        create(DiscoverRequestSchema, {
          message: { case: "subscription", value: subscription },
        }) as DiscoverRequest,
      )
      .catch(() => undefined);
  }

  private dropCall(call: unknown, err: TrellisError, delayMs: number | undefined): void {
    if (this.call !== call) return;
    this.call?.cancel();
    this.call = undefined;
    this.connectedNow = false;
    // Every stream end is reported, including attempts refused before `welcome` (bad credential).
    this.emit("disconnected", err);
    if (this.stopped) return;
    const delay = delayMs ?? this.backoff.next();
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.retryTimer.unref();
  }

  /**
   * Sends a raw Subscription request as is (diagnostics and protocol tests: e.g. a stale nonce).
   * Ordinary use goes through subscribe/unsubscribe, which keep the client's state consistent.
   */
  sendRaw(subscription: MessageInitShape<typeof SubscriptionSchema>): void {
    this.send(subscription);
  }

  /** Removes the registration at once (clean shutdown), then closes. */
  async deregister(reason = "shutdown", timeoutMs = 2000): Promise<void> {
    const call = this.call;
    this.stopped = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    if (call !== undefined && this.connectedNow) {
      const ended = new Promise<void>((resolve) => {
        call.call.once("status", () => resolve());
        setTimeout(resolve, timeoutMs).unref();
      });
      await call.send({ message: { case: "deregister", value: { reason } } }).catch(() => undefined);
      call.end();
      await ended;
    }
    this.close();
  }

  /** Closes without deregistering: the registration expires with its lease unless resumed. */
  stop(): void {
    this.stopped = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.close();
  }

  private close(): void {
    this.call?.cancel();
    this.call = undefined;
    this.connectedNow = false;
    this.client?.close();
    this.client = undefined;
  }
}

export type { DiscoverResponse };
