/**
 * One sidecar: the listeners, the discovery client, the runtime config and the admin and stats
 * ports, with the lifecycle around them.
 *
 * Start: persisted config (serves during a control-plane outage) → metrics, admin, stats → inbound
 * and outbound listeners → discovery client (register, subscribe: listeners, clusters and
 * endpoints of everything meant for us; routes on demand) → `listening` log line with every port.
 * Ready once the inbound listener config is held and the listeners are bound. Never ready, and
 * refusing traffic, before the first config: the outbound answers 503 `no_healthy_upstream`; the
 * inbound holds a request up to the subscribe timeout for its config (a new replica is published
 * to callers as soon as it registers, usually a few ms before its own config lands), then refuses
 * it — REFUSED_STREAM on the mesh hop, which the caller may safely retry elsewhere (RFC 9113 §8.7),
 * 503 `no_healthy_upstream` on HTTP/1.
 *
 * Stop (SIGTERM): deregister → readiness fails → keep accepting for `drainDelayMs` while answering
 * with `Connection: close` / GOAWAY → wait for requests in flight up to `drainTimeoutMs` → close.
 */
import * as http2 from "node:http2";
import { hostname } from "node:os";
import { enumFromToken } from "@trellis/proto/enum-tokens";
import { TrellisError } from "@trellis/proto/errors";
import { ProtocolSchema } from "@trellis/proto/gen/trellis/v1/service_pb";
import { TypeUrl, WILDCARD } from "@trellis/proto/resource-types";
import { createAdminServer } from "./admin/admin-server.js";
import { createStatsServer } from "./admin/stats-server.js";
import { SidecarMetrics } from "./metrics/sidecar-metrics.js";
import { AppClient } from "./proxy/app-client.js";
import { Frontend } from "./proxy/frontend.js";
import { InboundProxy } from "./proxy/inbound.js";
import { isGrpc, sendLocalReply } from "./proxy/local-reply.js";
import { H2cTransport } from "./proxy/mesh-transport.js";
import { OutboundProxy } from "./proxy/outbound.js";
import { loadPersistedConfig, savePersistedConfig } from "./runtime/persisted-config.js";
import { RuntimeBuilder } from "./runtime/runtime-config.js";
import { SUPPORTED_KINDS } from "./runtime/supported.js";
import { XdsClient } from "./xds/client.js";
export const SIDECAR_VERSION = "0.1.0";
export class Sidecar {
    config;
    log;
    options;
    runtime;
    builder;
    metrics = new SidecarMetrics();
    transport;
    app;
    inboundProxy;
    outboundProxy;
    inbound;
    outbound;
    admin;
    stats;
    xds;
    routeWaiters = new Map();
    subscribedRoutes = new Set();
    saveTimer;
    bound = false;
    /** Inbound requests waiting for the first inbound config. */
    inboundWaiters = [];
    proxyHooks;
    draining = false;
    ports = { inbound: 0, outbound: 0, admin: 0, stats: 0 };
    constructor(config, log, options = {}) {
        this.config = config;
        this.log = log;
        this.options = options;
        this.app = new AppClient(options.appAddress !== undefined ? { host: options.appAddress } : {});
        this.transport = new H2cTransport({ idleTimeoutMs: config.upstreamIdleTimeoutMs });
        this.metrics.beforeScrape = () => this.refreshEjectedGauge();
        this.builder = new RuntimeBuilder({
            now: () => performance.now(),
            random: Math.random,
            onSaturation: (cluster, limit, saturated) => this.metrics.connectionLimitSaturated.labels(cluster, limit).set(saturated ? 1 : 0),
            ...(config.locality !== undefined
                ? {
                    locality: {
                        region: config.locality.region,
                        zone: config.locality.zone ?? "",
                        subzone: config.locality.subzone ?? "",
                    },
                }
                : {}),
        });
        const hooks = this.hooks();
        this.proxyHooks = hooks;
        this.inboundProxy = new InboundProxy({
            runtime: () => this.runtime?.inbound,
            app: this.app,
            hooks,
            // No verified caller identities before mTLS: perIdentity limits share one bucket until then.
            peerIdentity: () => undefined,
            rateLimitCounter: (policy, decision) => this.metrics.ratelimitDecisions.labels(policy, "local", decision),
        });
        this.outboundProxy = new OutboundProxy({
            runtime: () => this.runtime,
            resolve: (name) => this.resolveRoute(name),
            namespace: config.namespace,
            transport: this.transport,
            hooks,
            random: Math.random,
            seed: config.randomSeed,
            adopt: (socket) => this.outbound.adopt(socket),
        });
        const common = {
            headerTimeoutMs: config.headerTimeoutMs,
            maxHeaderBytes: config.maxHeaderBytes,
            maxHeaders: config.maxHeaders,
            idleTimeoutMs: config.downstreamIdleTimeoutMs,
            // The frontend's own refusals (malformed requests, header timeouts) count as local replies.
            onLocalReply: (reason) => this.metrics.localReply(reason),
        };
        this.inbound = new Frontend({
            name: "inbound",
            ...common,
            onRequest: this.inboundRequest,
            onStreamConnect: this.inboundProxy.handleConnect,
        });
        this.outbound = new Frontend({
            name: "outbound",
            ...common,
            onRequest: this.outboundProxy.handle,
            onConnect: this.outboundProxy.handleConnect,
            onUpgrade: this.outboundProxy.handleUpgrade,
        });
    }
    /** Ready: the inbound config is held, the listeners are bound, and we are not draining. */
    ready() {
        return this.bound && !this.draining && this.runtime?.inbound !== undefined;
    }
    /**
     * The inbound request handler: straight to the inbound proxy once the inbound config is held;
     * before that, held (up to the subscribe timeout) until it arrives, then refused — see the file
     * comment.
     */
    inboundRequest = (req, res) => {
        if (this.runtime?.inbound !== undefined) {
            this.inboundProxy.handle(req, res);
            return;
        }
        const started = performance.now();
        const timer = setTimeout(() => settle(false), this.config.subscribeTimeoutMs);
        const settle = (ready) => {
            clearTimeout(timer);
            const i = this.inboundWaiters.indexOf(settle);
            if (i >= 0)
                this.inboundWaiters.splice(i, 1);
            if (ready)
                this.inboundProxy.handle(req, res);
            else
                this.refuseInbound(req, res, started);
        };
        this.inboundWaiters.push(settle);
    };
    refuseInbound(req, res, started) {
        const stream = req.stream;
        if (stream !== undefined) {
            if (!stream.destroyed)
                stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
            return;
        }
        res.shouldKeepAlive = false;
        const status = sendLocalReply(res, isGrpc(req.headers["content-type"]), "no_healthy_upstream", "the sidecar has no configuration yet");
        this.proxyHooks.inbound(undefined, status, "no_healthy_upstream", started, 0);
    }
    hooks() {
        const m = this.metrics;
        const src = { service: this.config.service, namespace: this.config.namespace };
        return {
            inbound: (rt, status, reason, startedMs, bytes, grpcStatus) => {
                m.requestSeries("inbound", "unknown", "unknown", rt?.service ?? src.service, rt?.namespace ?? src.namespace).record(status, grpcStatus, reason, (performance.now() - startedMs) / 1000, 0, bytes);
                if (reason !== "")
                    m.localReply(reason);
            },
            outbound: (dst, status, reason, startedMs, bytes, grpcStatus) => {
                m.requestSeries("outbound", src.service, src.namespace, dst?.destinationService ?? "unknown", dst?.destinationNamespace ?? "unknown").record(status, grpcStatus, reason, (performance.now() - startedMs) / 1000, 0, bytes);
                if (reason !== "")
                    m.localReply(reason);
            },
            retry: () => m.retries.inc(),
            retryBudgetExhausted: () => m.retryBudgetExhausted.inc(),
            outlierEjection: (cluster) => m.outlierEjections.labels(cluster).inc(),
            panic: (cluster) => m.lbPanic.labels(cluster).inc(),
            error: (where, err) => this.log.error({ where, err: String(err), stack: err.stack }, "data path error"),
        };
    }
    /** trellis_endpoints_ejected per cluster, from the live outlier state (at scrape time). */
    refreshEjectedGauge() {
        const rt = this.runtime;
        if (rt === undefined)
            return;
        for (const c of rt.clusters.values())
            this.metrics.endpointsEjected
                .labels(c.name)
                .set(c.resilience.outlier.ejectedCount(c.balancer.endpoints));
    }
    async start() {
        const c = this.config;
        // Persisted config: serve with it until the control plane answers.
        const persisted = await loadPersistedConfig(c.stateDir, (m) => this.log.warn(m));
        if (persisted !== undefined) {
            for (const [typeUrl, list] of persisted.resources) {
                const rejected = this.builder.apply(typeUrl, list, [], []);
                if (rejected.length > 0)
                    this.log.warn({ typeUrl, rejected }, "persisted resources rejected");
            }
            for (const r of persisted.routes)
                this.subscribedRoutes.add(r);
            this.runtime = this.builder.build();
            this.log.info({ resources: [...persisted.resources.values()].reduce((n, l) => n + l.length, 0) }, "loaded persisted config");
        }
        this.admin = createAdminServer({
            ready: () => this.ready(),
            metrics: () => this.metrics.scrape(),
            drain: () => this.drain(),
            configDump: () => this.configDump(),
            clusters: () => this.clustersDump(),
        });
        this.stats = createStatsServer({
            ready: () => this.ready(),
            metrics: () => this.metrics.scrape(),
            appPorts: () => c.appPorts.map((p) => p.port),
        }, this.options.appAddress !== undefined ? { appHost: this.options.appAddress } : {});
        this.ports.admin = await this.admin.listen(c.adminPort);
        this.ports.stats = await this.stats.listen(c.statsPort);
        this.ports.inbound = await this.inbound.listen(c.inboundPort, "0.0.0.0");
        this.ports.outbound = await this.outbound.listen(c.outboundPort, "127.0.0.1");
        this.bound = true;
        this.xds = new XdsClient({
            addresses: c.controlPlane,
            caPem: c.caPem,
            joinToken: c.token,
            workload: {
                proxyId: c.proxyId,
                service: c.service,
                namespace: c.namespace,
                serviceAccount: c.serviceAccount,
                address: c.advertiseAddress,
                inboundPort: this.ports.inbound,
                statsPort: this.ports.stats,
                ports: c.appPorts.map((p) => ({
                    port: p.port,
                    protocol: enumFromToken(ProtocolSchema, p.protocol) ?? 0,
                })),
                labels: c.labels,
                ...(c.locality !== undefined ? { locality: c.locality } : {}),
                supportedKinds: [...SUPPORTED_KINDS],
                version: SIDECAR_VERSION,
            },
            onResources: (u) => {
                const rejected = this.builder.apply(u.typeUrl, u.resources, u.removed, u.notFound);
                const before = this.runtime;
                this.runtime = this.builder.build();
                // Gauges of clusters that left the config are dropped, not exported at their last value.
                if (before !== undefined)
                    for (const name of before.clusters.keys())
                        if (!this.runtime.clusters.has(name))
                            this.metrics.forgetCluster(name);
                if (this.runtime.inbound !== undefined)
                    this.wakeInbound(true);
                this.metrics.configUpdates.labels(typeName(u.typeUrl), rejected.length > 0 ? "nack" : "ack").inc();
                if (rejected.length > 0)
                    this.log.warn({ type: u.typeUrl, rejected }, "rejected config");
                else
                    this.metrics.configApplied();
                if (u.typeUrl === TypeUrl.ROUTE) {
                    for (const name of [...u.resources.map((r) => r.name), ...u.notFound, ...u.removed])
                        this.wake(name);
                }
                this.scheduleSave();
                return { rejected };
            },
        });
        if (persisted !== undefined)
            for (const [typeUrl, list] of persisted.resources)
                this.xds.preload(typeUrl, list);
        this.xds.on("connected", (w) => {
            this.metrics.xdsConnected.set(1);
            this.log.info({ replica: w.replica, identity: w.identity, lease: String(w.leaseId) }, "connected to the control plane");
        });
        this.xds.on("disconnected", (err) => {
            this.metrics.xdsConnected.set(0);
            this.log.warn({ err: err.message }, "control plane stream ended; keeping the last good config");
        });
        for (const t of [TypeUrl.LISTENER, TypeUrl.CLUSTER, TypeUrl.ENDPOINTS])
            this.xds.subscribe(t, [WILDCARD]);
        if (this.subscribedRoutes.size > 0)
            this.xds.subscribe(TypeUrl.ROUTE, [...this.subscribedRoutes]);
        this.xds.start();
        this.log.info({
            ports: this.ports,
            proxyId: c.proxyId,
            service: `${c.service}.${c.namespace}`,
            controlPlane: c.controlPlane,
        }, "listening");
    }
    /** Subscribes to a route on demand and waits (bounded) until it arrives or is refused. */
    resolveRoute(name) {
        if (!this.subscribedRoutes.has(name)) {
            this.subscribedRoutes.add(name);
            this.xds?.subscribe(TypeUrl.ROUTE, [name]);
        }
        return new Promise((resolve) => {
            const list = this.routeWaiters.get(name) ?? [];
            const timer = setTimeout(done, this.config.subscribeTimeoutMs);
            function done() {
                clearTimeout(timer);
                resolve();
            }
            list.push(done);
            this.routeWaiters.set(name, list);
        });
    }
    wakeInbound(ready) {
        for (const w of this.inboundWaiters.splice(0))
            w(ready);
    }
    wake(name) {
        const list = this.routeWaiters.get(name);
        if (list === undefined)
            return;
        this.routeWaiters.delete(name);
        for (const w of list)
            w();
    }
    scheduleSave() {
        if (this.saveTimer !== undefined)
            return;
        this.saveTimer = setTimeout(() => {
            this.saveTimer = undefined;
            const held = new Map([TypeUrl.LISTENER, TypeUrl.ROUTE, TypeUrl.CLUSTER, TypeUrl.ENDPOINTS].map((t) => [
                t,
                this.xds?.held(t) ?? new Map(),
            ]));
            savePersistedConfig(this.config.stateDir, this.subscribedRoutes, held).catch((err) => this.log.warn({ err: String(err) }, "could not persist config"));
        }, 200);
        this.saveTimer.unref();
    }
    configDump() {
        const held = {};
        for (const t of [TypeUrl.LISTENER, TypeUrl.ROUTE, TypeUrl.CLUSTER, TypeUrl.ENDPOINTS]) {
            held[t] = [...(this.xds?.held(t) ?? new Map()).values()].map((r) => ({
                name: r.name,
                version: r.version,
            }));
        }
        return {
            proxyId: this.config.proxyId,
            generation: this.runtime?.generation ?? 0,
            connected: this.xds?.connected ?? false,
            resources: held,
        };
    }
    clustersDump() {
        const now = performance.now();
        return [...(this.runtime?.clusters.values() ?? [])].map((c) => {
            const limiter = c.resilience.limiter;
            return {
                name: c.name,
                policy: c.balancer.policy,
                panicking: c.balancer.panicking,
                limits: {
                    active: limiter.active,
                    pending: limiter.pending,
                    activeRetries: limiter.activeRetries,
                    connections: limiter.connections,
                },
                retryBudget: c.resilience.budget.snapshot(),
                endpoints: c.balancer.endpoints.map((e) => ({
                    key: e.key,
                    proxyId: e.data.proxyId,
                    outstanding: e.outstanding,
                    health: e.data.health,
                    /** Milliseconds of ejection left; 0 when not ejected. */
                    ejectedForMs: Math.max(0, Math.round(e.ejectedUntil - now)),
                    timesEjected: e.signals.outlier.timesEjected,
                    consecutiveGatewayErrors: e.signals.outlier.consecutiveGatewayErrors,
                })),
            };
        });
    }
    /** Graceful stop, in the order of the file comment. Idempotent. */
    async drain() {
        if (this.draining)
            return;
        this.draining = true;
        const c = this.config;
        this.log.info({ drainDelayMs: c.drainDelayMs, drainTimeoutMs: c.drainTimeoutMs }, "draining");
        await this.xds
            ?.deregister("shutdown")
            .catch((err) => this.log.warn({ err: String(err) }, "deregister failed"));
        this.inbound.drain();
        this.outbound.drain();
        await new Promise((r) => setTimeout(r, c.drainDelayMs));
        const left = Math.max(0, c.drainTimeoutMs - c.drainDelayMs);
        await Promise.all([this.inbound.idle(left), this.outbound.idle(left)]);
        await this.stop();
    }
    /** Closes everything at once. */
    async stop() {
        this.wakeInbound(false);
        this.xds?.stop();
        await Promise.all([this.inbound.close(), this.outbound.close()]);
        await Promise.all([this.transport.close(), this.app.close(), this.outboundProxy.close()]);
        await Promise.all([this.admin?.close(), this.stats?.close()]);
        if (this.saveTimer !== undefined)
            clearTimeout(this.saveTimer);
    }
}
function typeName(typeUrl) {
    return typeUrl.slice(typeUrl.lastIndexOf(".") + 1);
}
/** Default proxy id: host name + pid. */
export function defaultProxyId() {
    return `${hostname()}-${process.pid}`;
}
export { TrellisError };
