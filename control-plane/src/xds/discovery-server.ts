/**
 * The DiscoveryService stream handler: authenticates and registers a proxy from its `hello`, then
 * runs its DiscoverySession — pushing snapshots on subscription changes and (debounced) model
 * changes, recording ACK/NACK state for status.
 *
 * Stream lifecycle:
 *  1. The first message must be `hello` within `helloTimeoutMs`, else the stream ends with
 *     INVALID_ARGUMENT. The workload is validated; the credential must prove its namespace and
 *     service account (UNAUTHENTICATED / PERMISSION_DENIED otherwise).
 *  2. Register under a lease (resuming `resume_lease_id` when still alive) and answer `welcome`.
 *  3. Subscriptions are answered at once; model changes are debounced and pushed to every session.
 *  4. `deregister` removes the registration at once and ends the stream. A stream that ends or
 *     breaks otherwise only stops renewing the lease (the sidecar may reconnect anywhere).
 *  5. On shutdown every stream gets `go_away` and is ended; registrations are left to their leases.
 */
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { durationFromMs } from "@trellis/proto/duration";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { formatPath } from "@trellis/proto/field-path";
import type { ProxyRecord } from "@trellis/proto/gen/trellis/v1/admin_pb";
import type { DiscoverRequest, DiscoverResponse, Hello } from "@trellis/proto/gen/trellis/v1/discovery_pb";
import { DiscoverResponseSchema, GoAwaySchema } from "@trellis/proto/gen/trellis/v1/discovery_pb";
import type { Workload } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { WorkloadSchema } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { toGrpcError } from "@trellis/proto/grpc-adapter";
import { TypeUrl } from "@trellis/proto/resource-types";
import { formatWorkloadId } from "@trellis/proto/spiffe";
import { validate } from "@trellis/proto/validate";
import type { MeshModel, ModelChange } from "../model/types.js";
import type { Registration, Registry } from "../registry/registry.js";
import { type DebounceOptions, Debouncer } from "./debouncer.js";
import type { SnapshotView } from "./session.js";
import { DiscoverySession } from "./session.js";

/** The proven identity of a caller. */
export interface Caller {
  namespace: string;
  serviceAccount: string;
}

export interface DiscoveryServerOptions {
  registry: Registry;
  /** The current model. */
  model: () => MeshModel;
  /** Builds one proxy's snapshot; returns the consistency problems too (non-empty: not served). */
  build: (
    model: MeshModel,
    workload: Workload,
    routeNames: ReadonlySet<string>,
  ) => { snapshot: SnapshotView; problems: string[] };
  /** Proves who the caller is from its hello (join token today). Throws UNAUTHENTICATED. */
  authenticate: (hello: Hello) => Promise<Caller>;
  trustDomain: string;
  /** Where ProxyRecords go (batched by the recorder). */
  onRecord?: (proxyId: string, record: ProxyRecord | undefined) => void;
  helloTimeoutMs?: number;
  debounce?: DebounceOptions;
  /** Reconnect delay suggested in go_away on shutdown. */
  goAwayReconnectMs?: number;
  log?: (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;
  metrics?: {
    pushed?: (seconds: number, responses: number) => void;
    stale?: () => void;
    nack?: () => void;
    connected?: (n: number) => void;
    /** Seconds from the first change of a debounced burst to every proxy pushed. */
    converged?: (seconds: number) => void;
  };
  now?: () => number;
}

type Stream = grpc.ServerDuplexStream<DiscoverRequest, DiscoverResponse>;

interface Entry {
  session: DiscoverySession;
  stream: Stream;
  registration: Registration;
}

export class DiscoveryServer {
  private readonly sessions = new Map<string, Entry>();
  private readonly debouncer: Debouncer;
  private closing = false;

  constructor(private readonly opts: DiscoveryServerOptions) {
    this.debouncer = new Debouncer(
      (_change, firstAt) => {
        this.pushAll();
        this.opts.metrics?.converged?.(((opts.now ?? Date.now)() - firstAt) / 1000);
      },
      opts.debounce ?? {},
      opts.now,
    );
  }

  /** Number of connected proxies. */
  get connected(): number {
    return this.sessions.size;
  }

  /** Call on every model change; pushes are debounced. */
  modelChanged(change: ModelChange): void {
    this.debouncer.notify(change);
  }

  /** The grpc-js handler for DiscoveryService.Discover. */
  readonly handle = (stream: Stream): void => {
    void this.serve(stream).catch((err: unknown) => {
      this.log("error", "discovery stream failed", { error: String(err) });
      stream.emit("error", toGrpcError(err));
    });
  };

  private async serve(stream: Stream): Promise<void> {
    if (this.closing) throw new TrellisError(ErrorCode.UNAVAILABLE, "control plane is shutting down");
    const first = await firstMessage(stream, this.opts.helloTimeoutMs ?? 5000);
    if (first?.message.case !== "hello") {
      throw new TrellisError(
        ErrorCode.INVALID_ARGUMENT,
        "the first message of a discovery stream must be hello",
      );
    }
    const hello = first.message.value;
    const workload = hello.workload;
    if (workload === undefined)
      throw new TrellisError(ErrorCode.INVALID_ARGUMENT, "hello.workload is required");
    const problems = validate(WorkloadSchema, workload);
    if (problems.length > 0) {
      const text = problems.map((p) => `${formatPath(["workload", ...p.path])}: ${p.message}`).join("; ");
      throw new TrellisError(ErrorCode.INVALID_ARGUMENT, `invalid workload: ${text}`);
    }
    const caller = await this.opts.authenticate(hello);
    const sa = workload.serviceAccount || caller.serviceAccount;
    if (caller.namespace !== workload.namespace || caller.serviceAccount !== sa) {
      throw new TrellisError(
        ErrorCode.PERMISSION_DENIED,
        `credential is for namespace ${caller.namespace}, service account ${caller.serviceAccount}; ` +
          `the workload claims ${workload.namespace}/${sa}`,
      );
    }
    const verified = create(WorkloadSchema, {
      ...workload,
      serviceAccount: sa,
      identity: formatWorkloadId({
        trustDomain: this.opts.trustDomain,
        namespace: caller.namespace,
        serviceAccount: sa,
      }),
    });
    const registration = await this.opts.registry.register(
      verified,
      hello.resumeLeaseId !== 0n ? String(hello.resumeLeaseId) : undefined,
    );
    const session = new DiscoverySession(registration.workload, this.opts.now);
    const previous = this.sessions.get(session.proxyId);
    if (previous !== undefined) {
      // The same proxy reconnected on a new stream before the old one was noticed as dead.
      this.detach(previous, false);
      previous.stream.end();
    }
    const entry: Entry = { session, stream, registration };
    this.sessions.set(session.proxyId, entry);
    this.opts.metrics?.connected?.(this.sessions.size);
    this.log("info", "proxy connected", { proxy: session.proxyId, resumed: registration.resumed });
    stream.write(
      create(DiscoverResponseSchema, {
        message: {
          case: "welcome",
          value: {
            leaseId: BigInt(registration.leaseId),
            leaseTtl: durationFromMs(this.opts.registry.ttlSeconds * 1000),
            replica: registration.workload.replica,
            identity: registration.workload.identity,
          },
        },
      }),
    );
    stream.on("data", (req: DiscoverRequest) => this.onRequest(entry, req));
    stream.on("end", () => {
      this.detach(entry, false);
      stream.end();
    });
    stream.on("cancelled", () => this.detach(entry, false));
    stream.on("error", () => this.detach(entry, false));
    stream.resume();
  }

  private onRequest(entry: Entry, req: DiscoverRequest): void {
    if (this.sessions.get(entry.session.proxyId) !== entry) return;
    switch (req.message.case) {
      case "subscription": {
        const outcome = entry.session.handleSubscription(req.message.value);
        if (outcome.stale) this.opts.metrics?.stale?.();
        if (outcome.nack) {
          this.opts.metrics?.nack?.();
          this.log("warn", "proxy rejected config", {
            proxy: entry.session.proxyId,
            type: req.message.value.typeUrl,
            error: req.message.value.errorDetail?.message,
          });
        }
        if (outcome.changed) this.push(entry);
        if (outcome.answered) this.record(entry);
        return;
      }
      case "deregister":
        this.log("info", "proxy deregistered", {
          proxy: entry.session.proxyId,
          reason: req.message.value.reason,
        });
        this.detach(entry, true);
        entry.stream.end();
        return;
      default:
        return;
    }
  }

  private detach(entry: Entry, deregister: boolean): void {
    if (this.sessions.get(entry.session.proxyId) === entry) {
      this.sessions.delete(entry.session.proxyId);
      this.opts.metrics?.connected?.(this.sessions.size);
      this.opts.onRecord?.(entry.session.proxyId, undefined);
    }
    if (deregister) {
      entry.registration.deregister().catch((err: unknown) => {
        this.log("warn", "deregister failed; the registration expires with its lease", {
          proxy: entry.session.proxyId,
          error: String(err),
        });
      });
    } else {
      entry.registration.release();
    }
  }

  private pushAll(): void {
    for (const entry of this.sessions.values()) this.push(entry);
  }

  private push(entry: Entry): void {
    const started = process.hrtime.bigint();
    const { snapshot, problems } = this.opts.build(
      this.opts.model(),
      entry.session.workload,
      entry.session.subscribedNames(TypeUrl.ROUTE),
    );
    if (problems.length > 0) {
      this.log("error", "snapshot is inconsistent; not serving it", {
        proxy: entry.session.proxyId,
        problems,
      });
      return;
    }
    const responses = entry.session.push(snapshot);
    for (const r of responses) entry.stream.write(r);
    if (responses.length > 0) {
      this.opts.metrics?.pushed?.(Number(process.hrtime.bigint() - started) / 1e9, responses.length);
    }
    this.record(entry);
  }

  private record(entry: Entry): void {
    this.opts.onRecord?.(entry.session.proxyId, entry.session.record());
  }

  /** Sends go_away to every proxy and ends the streams; registrations stay until their TTL. */
  shutdown(): void {
    this.closing = true;
    this.debouncer.stop();
    const goAway = create(DiscoverResponseSchema, {
      message: {
        case: "goAway",
        value: create(GoAwaySchema, { reconnectAfter: durationFromMs(this.opts.goAwayReconnectMs ?? 0) }),
      },
    });
    for (const entry of [...this.sessions.values()]) {
      this.detach(entry, false);
      try {
        entry.stream.write(goAway);
        entry.stream.end();
      } catch {
        // The stream may already be gone.
      }
    }
  }

  private log(level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>): void {
    this.opts.log?.(level, msg, fields);
  }
}

/** The first message of a stream, or undefined when it ends (or the timeout passes) first. */
function firstMessage(stream: Stream, timeoutMs: number): Promise<DiscoverRequest | undefined> {
  return new Promise((resolve) => {
    const done = (v: DiscoverRequest | undefined) => {
      clearTimeout(timer);
      // Hold further messages until the caller attaches its handler (a flowing stream would drop them).
      stream.pause();
      stream.off("data", onData);
      stream.off("end", onEnd);
      resolve(v);
    };
    const onData = (req: DiscoverRequest) => done(req);
    const onEnd = () => done(undefined);
    const timer = setTimeout(() => done(undefined), timeoutMs);
    stream.once("data", onData);
    stream.once("end", onEnd);
  });
}
