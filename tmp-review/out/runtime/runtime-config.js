import { durationMs } from "@trellis/proto/duration";
import { formatPath } from "@trellis/proto/field-path";
import { Protocol } from "@trellis/proto/gen/trellis/v1/service_pb";
import { OutboundTrafficPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { INBOUND_LISTENER, OUTBOUND_LISTENER, RESOURCE_SCHEMAS, TypeUrl, } from "@trellis/proto/resource-types";
import { validate } from "@trellis/proto/validate";
import { balancerConfigFrom, createBalancer } from "../balancer/balancer.js";
import { compileHashKey } from "../balancer/hash-key.js";
import { ClusterResilienceRegistry } from "../resilience/cluster-resilience.js";
import { LocalRateLimitRegistry } from "../resilience/local-rate-limit.js";
import { compileRouteConfig, RouteIndex } from "../routing/route-table.js";
import { inboundRuntime } from "./inbound-runtime.js";
import { unsupportedClusterFields, unsupportedListenerFields, unsupportedRuleFields } from "./supported.js";
export class RuntimeBuilder {
    deps;
    listeners = new Map();
    routes = new Map();
    clusters = new Map();
    assignments = new Map();
    notFound = new Set();
    built = new Map();
    generation = 0;
    current;
    /** Local rate limiters by (policy, port), kept across builds so no config push resets a bucket. */
    rateLimits = new LocalRateLimitRegistry(() => this.deps.now());
    resilience;
    constructor(deps) {
        this.deps = deps;
        this.resilience = new ClusterResilienceRegistry(deps.onSaturation === undefined
            ? { now: deps.now }
            : { now: deps.now, onSaturation: deps.onSaturation });
    }
    /**
     * Applies one discovery update: validates and compiles every resource; returns the rejected ones
     * (NACK) — their previous version, if any, stays in force. Removed names are dropped.
     */
    apply(typeUrl, resources, removed, notFound) {
        const rejected = [];
        const schema = RESOURCE_SCHEMAS.get(typeUrl);
        for (const r of resources) {
            const problems = schema === undefined ? ["unknown resource type"] : this.check(typeUrl, schema, r);
            if (problems.length > 0)
                rejected.push({ name: r.name, message: problems.join("; ") });
        }
        for (const n of removed)
            this.mapFor(typeUrl)?.delete(n);
        if (typeUrl === TypeUrl.ROUTE) {
            for (const n of notFound) {
                this.notFound.add(n);
                this.routes.delete(n);
            }
            for (const r of resources)
                this.notFound.delete(r.name);
        }
        return rejected;
    }
    mapFor(typeUrl) {
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
    check(typeUrl, schema, r) {
        const problems = validate(schema, r.message).map((v) => `${formatPath(v.path)}: ${v.message}`);
        if (problems.length > 0)
            return problems;
        switch (typeUrl) {
            case TypeUrl.LISTENER: {
                const unsupported = unsupportedListenerFields(r.message);
                if (unsupported.length > 0)
                    return unsupported;
                this.listeners.set(r.name, { version: r.version, message: r.message });
                return [];
            }
            case TypeUrl.ROUTE: {
                const rc = r.message;
                const unsupported = unsupportedRuleFields(rc.rules);
                if (unsupported.length > 0)
                    return unsupported;
                const compiled = compileRouteConfig(rc);
                if ("errors" in compiled)
                    return [...compiled.errors];
                this.routes.set(r.name, { version: r.version, message: compiled.table });
                return [];
            }
            case TypeUrl.CLUSTER: {
                const unsupported = unsupportedClusterFields(r.message);
                if (unsupported.length > 0)
                    return unsupported;
                this.clusters.set(r.name, { version: r.version, message: r.message });
                return [];
            }
            case TypeUrl.ENDPOINTS:
                this.assignments.set(r.name, { version: r.version, message: r.message });
                return [];
            default:
                return [];
        }
    }
    /** True once the inbound listener arrived: the sidecar can be ready. */
    get hasInbound() {
        return this.listeners.has(INBOUND_LISTENER);
    }
    /** Compiles everything held into a new RuntimeConfig (reusing unchanged per-cluster state). */
    build() {
        this.generation++;
        const clusters = new Map();
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
            const balancer = createBalancer(balancerConfigFrom(lb, {
                callerLocality: this.deps.locality,
                minHealthPercent: resilience.outlierConfig.minHealthPercent,
            }), cla?.message.endpoints ?? [], this.deps, prev?.runtime.balancer);
            const connectTimeoutMs = durationMs(c.policy?.timeouts?.connect, 1000);
            const idleTimeoutMs = durationMs(c.policy?.timeouts?.idle);
            const runtime = {
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
        for (const name of [...this.built.keys()])
            if (!clusters.has(name))
                this.built.delete(name);
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
    get config() {
        return this.current;
    }
}
/** The app protocol of a Protocol enum value (unspecified → http). */
export function appProtocol(p) {
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
