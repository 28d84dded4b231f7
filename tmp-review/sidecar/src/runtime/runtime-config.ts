/**
 * The sidecar's runtime configuration: the held discovery resources compiled into what the data
 * path reads per request. Immutable once built; a new one replaces the old by one reference swap,
 * so a request keeps the config it started with.
 *
 * The builder keeps per-target state across rebuilds: a cluster whose config and endpoints are
 * unchanged keeps its balancer (and so its endpoint states: outstanding requests, latency,
 * ejections); a changed endpoint list reuses the states of unchanged endpoints.
 */
import type { DescMessage, Message } from "@bufbuild/protobuf";
import { durationMs } from "@trellis/proto/duration";
import { formatPath } from "@trellis/proto/field-path";
import type {
  Cluster,
  ClusterLoadAssignment,
  Listener,
  RouteConfig,
} from "@trellis/proto/gen/trellis/v1/resources_pb";
import { Protocol } from "@trellis/proto/gen/trellis/v1/service_pb";
import { OutboundTrafficPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import {
  INBOUND_LISTENER,
  OUTBOUND_LISTENER,
  RESOURCE_SCHEMAS,
  TypeUrl,
} from "@trellis/proto/resource-types";
import { validate } from "@trellis/proto/validate";
import type { LoadBalancer } from "../balancer/balancer.js";
import { balancerConfigFrom, createBalancer } from "../balancer/balancer.js";
import { compileHashKey, type HashKeySource } from "../balancer/hash-key.js";
import type { ConnectionLimitKind } from "../metrics/labels.js";
import type { AppProtocol } from "../proxy/app-client.js";
import type { InboundRuntime } from "../proxy/inbound.js";
import type { StreamOptions } from "../proxy/mesh-transport.js";
import { type ClusterResilience, ClusterResilienceRegistry } from "../resilience/cluster-resilience.js";
import { LocalRateLimitRegistry } from "../resilience/local-rate-limit.js";
import { compileRouteConfig, RouteIndex, type RouteTable } from "../routing/route-table.js";
import { inboundRuntime } from "./inbound-runtime.js";
import { unsupportedClusterFields, unsupportedListenerFields, unsupportedRuleFields } from "./supported.js";

export interface ClusterRuntime {
  readonly name: string;
  readonly service: string;
  readonly namespace: string;
  readonly port: number;
  readonly protocol: AppProtocol;
  readonly balancer: LoadBalancer;
  /** Where RING_HASH takes its key from (built once per cluster); undefined without hashOn. */
  readonly hashKey: HashKeySource | undefined;
  /** Connect deadline for this cluster's endpoints (timeouts.connect, default 1 s). */
  readonly connectTimeoutMs: number;
  /** Connection limits, retry budget and outlier detection; carried across config updates. */
  readonly resilience: ClusterResilience;
  /** What the mesh transport needs per request to this cluster (timeouts, connection budget). */
  readonly streamOptions: StreamOptions;
}

export interface RuntimeConfig {
  /** Increases with every rebuild (for logs and config_dump). */
  readonly generation: number;
  readonly routes: RouteIndex;
  readonly clusters: ReadonlyMap<string, ClusterRuntime>;
  readonly inbound: InboundRuntime | undefined;
  readonly outboundTrafficPolicy: OutboundTrafficPolicy;
  /** RouteConfig names the control plane said do not exist. */
  readonly notFound: ReadonlySet<string>;
}

export interface BuilderDeps {
  now: () => number;
  random: () => number;
  /** This sidecar's locality (`--locality`), for locality-aware balancing. */
  locality?: { region: string; zone: string; subzone: string } | undefined;
  /** A cluster's connection limit became full (true) or stopped being full (false). */
  onSaturation?: (cluster: string, limit: ConnectionLimitKind, saturated: boolean) => void;
}

interface Held<M> {
  version: string;
  message: M;
}

/** A resource as received. */
export interface IncomingResource {
  name: string;
  version: string;
  message: Message;
}

export class RuntimeBuilder {
  private readonly listeners = new Map<string, Held<Listener>>();
  private readonly routes = new Map<string, Held<RouteTable>>();
  private readonly clusters = new Map<string, Held<Cluster>>();
  private readonly assignments = new Map<string, Held<ClusterLoadAssignment>>();
  private readonly notFound = new Set<string>();
  private readonly built = new Map<string, { cluster: string; endpoints: string; runtime: ClusterRuntime }>();
  private generation = 0;
  private current: RuntimeConfig | undefined;
  /** Local rate limiters by (policy, port), kept across builds so no config push resets a bucket. */
  private readonly rateLimits = new LocalRateLimitRegistry(() => this.deps.now());
  private readonly resilience: ClusterResilienceRegistry;

  constructor(private readonly deps: BuilderDeps) {
    this.resilience = new ClusterResilienceRegistry(
      deps.onSaturation === undefined
        ? { now: deps.now }
        : { now: deps.now, onSaturation: deps.onSaturation },
    );
  }

  /**
   * Applies one discovery update: validates and compiles every resource; returns the rejected ones
   * (NACK) — their previous version, if any, stays in force. Removed names are dropped.
   */
  apply(
    typeUrl: string,
    resources: readonly IncomingResource[],
    removed: readonly string[],
    notFound: readonly string[],
  ): { name: string; message: string }[] {
    const rejected: { name: string; message: string }[] = [];
    const schema = RESOURCE_SCHEMAS.get(typeUrl);
    for (const r of resources) {
      const problems = schema === undefined ? ["unknown resource type"] : this.check(typeUrl, schema, r);
      if (problems.length > 0) rejected.push({ name: r.name, message: problems.join("; ") });
    }
    for (const n of removed) this.mapFor(typeUrl)?.delete(n);
    if (typeUrl === TypeUrl.ROUTE) {
      for (const n of notFound) {
        this.notFound.add(n);
        this.routes.delete(n);
      }
      for (const r of resources) this.notFound.delete(r.name);
    }
    return rejected;
  }

  private mapFor(typeUrl: string): Map<string, unknown> | undefined {
    switch (typeUrl) {
      case TypeUrl.LISTENER:
        return this.listeners;
      case TypeUrl.ROUTE:
        return this.routes;
      case TypeUrl.CLUSTER:
        return this.clusters;
      case TypeUrl.ENDPOINTS:
        return this.assignments;
      default:
        return undefined;
    }
  }

  /** Validates (the same rules as everywhere) and compiles one resource; stores it if clean. */
  private check(typeUrl: string, schema: DescMessage, r: IncomingResource): string[] {
    const problems = validate(schema, r.message).map((v) => `${formatPath(v.path)}: ${v.message}`);
    if (problems.length > 0) return problems;
    switch (typeUrl) {
      case TypeUrl.LISTENER: {
        const unsupported = unsupportedListenerFields(r.message as Listener);
        if (unsupported.length > 0) return unsupported;
        this.listeners.set(r.name, { version: r.version, message: r.message as Listener });
        return [];
      }
      case TypeUrl.ROUTE: {
        const rc = r.message as RouteConfig;
        const unsupported = unsupportedRuleFields(rc.rules);
        if (unsupported.length > 0) return unsupported;
        const compiled = compileRouteConfig(rc);
        if ("errors" in compiled) return [...compiled.errors];
        this.routes.set(r.name, { version: r.version, message: compiled.table });
        return [];
      }
      case TypeUrl.CLUSTER: {
        const unsupported = unsupportedClusterFields(r.message as Cluster);
        if (unsupported.length > 0) return unsupported;
        this.clusters.set(r.name, { version: r.version, message: r.message as Cluster });
        return [];
      }
      case TypeUrl.ENDPOINTS:
        this.assignments.set(r.name, { version: r.version, message: r.message as ClusterLoadAssignment });
        return [];
      default:
        return [];
    }
  }

  /** True once the inbound listener arrived: the sidecar can be ready. */
  get hasInbound(): boolean {
    return this.listeners.has(INBOUND_LISTENER);
  }

  /** Compiles everything held into a new RuntimeConfig (reusing unchanged per-cluster state). */
  build(): RuntimeConfig {
    this.generation++;
    const clusters = new Map<string, ClusterRuntime>();
    for (const [name, held] of this.clusters) {
      const cla = this.assignments.get(name);
      const endpointsVersion = cla?.version ?? "";
      const prev = this.built.get(name);
      if (prev !== undefined && prev.cluster === held.version && prev.endpoints === endpointsVersion) {
        clusters.set(name, prev.runtime);
        continue;
      }
      const c = held.message;
      const lb = c.policy?.loadBalancer;
      const resilience = this.resilience.get(name, c.policy);
      const balancer = createBalancer(
        balancerConfigFrom(lb, {
          callerLocality: this.deps.locality,
          minHealthPercent: resilience.outlierConfig.minHealthPercent,
        }),
        cla?.message.endpoints ?? [],
        this.deps,
        prev?.runtime.balancer,
      );
      const connectTimeoutMs = durationMs(c.policy?.timeouts?.connect, 1000);
      const idleTimeoutMs = durationMs(c.policy?.timeouts?.idle);
      const runtime: ClusterRuntime = {
        name,
        service: c.service,
        namespace: c.namespace,
        port: c.port,
        protocol: appProtocol(c.protocol),
        balancer,
        hashKey: compileHashKey(lb?.hashOn),
        connectTimeoutMs,
        resilience,
        streamOptions: {
          connectTimeoutMs,
          connections: resilience.limiter,
          ...(idleTimeoutMs !== undefined ? { idleTimeoutMs } : {}),
        },
      };
      clusters.set(name, runtime);
      this.built.set(name, { cluster: held.version, endpoints: endpointsVersion, runtime });
    }
    for (const name of [...this.built.keys()]) if (!clusters.has(name)) this.built.delete(name);
    this.resilience.retain(new Set(clusters.keys()));
    const inboundListener = this.listeners.get(INBOUND_LISTENER)?.message;
    const outboundListener = this.listeners.get(OUTBOUND_LISTENER)?.message;
    const outbound = outboundListener?.kind.case === "outbound" ? outboundListener.kind.value : undefined;
    this.current = {
      generation: this.generation,
      routes: new RouteIndex([...this.routes.values()].map((h) => h.message)),
      clusters,
      inbound: inboundRuntime(inboundListener, this.rateLimits),
      outboundTrafficPolicy: outbound?.outboundTrafficPolicy ?? OutboundTrafficPolicy.ALLOW_ANY,
      notFound: new Set(this.notFound),
    };
    return this.current;
  }

  /** The last built config. */
  get config(): RuntimeConfig | undefined {
    return this.current;
  }
}

/** The app protocol of a Protocol enum value (unspecified → http). */
export function appProtocol(p: Protocol): AppProtocol {
  switch (p) {
    case Protocol.HTTP2:
      return "http2";
    case Protocol.GRPC:
      return "grpc";
    case Protocol.TCP:
      return "tcp";
    default:
      return "http";
  }
}
