/**
 * One control-plane replica: everything `trellis control-plane` runs, wired together.
 *
 * Start order:
 *  1. Security bootstrap: load (or create) the secret file, ensure the mesh CA and admin token in
 *     the store (the first replica creates them), issue this replica's serving certificate, write
 *     `<state-dir>/ca.pem` and `~/.trellis/config`.
 *  2. Replica lease and `/replicas/<id>`; status and proxy records hang off this lease.
 *  3. Model: list + watch policies and registrations.
 *  4. gRPC over TLS on --listen (discovery, admin), HTTP on --admin (/ready, /live, /metrics).
 *  5. Log one `listening` line with the bound ports.
 * Stop (SIGTERM): not ready → go_away to every proxy (they reconnect elsewhere; registrations stay
 * under their leases) → close servers → flush status → revoke the replica lease → close the store.
 */

import { randomBytes } from "node:crypto";
import type { Server as HttpServer } from "node:http";
import { hostname } from "node:os";
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { formatHostPort, parseHostPort } from "@trellis/proto/address";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { AdminService, ReplicaSchema } from "@trellis/proto/gen/trellis/v1/admin_pb";
import { DiscoveryService } from "@trellis/proto/gen/trellis/v1/discovery_pb";
import type { Workload } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { addService } from "@trellis/proto/grpc-adapter";
import { DEFAULT_TRUST_DOMAIN } from "@trellis/proto/spiffe";
import { createAdminService } from "../admin/admin-service.js";
import type { Logger } from "../log.js";
import { ModelStore } from "../model/model-store.js";
import type { MeshModel } from "../model/types.js";
import { Registry } from "../registry/registry.js";
import {
  defaultStateDir,
  ensureBootstrap,
  issueServingCertificate,
  writeClientConfig,
  writeStateFiles,
} from "../security/bootstrap.js";
import { defaultSecretFilePath, loadOrCreateSecretKey } from "../security/secret-key.js";
import { createJoinToken, verifyJoinToken } from "../security/tokens.js";
import { buildProxySnapshot } from "../snapshot/builder.js";
import { checkConsistency } from "../snapshot/consistency.js";
import { StatusRecorder } from "../status/recorder.js";
import { REPLICA_PREFIX } from "../store/keys.js";
import type { Lease, Store } from "../store/store.js";
import { DiscoveryServer } from "../xds/discovery-server.js";
import { createHealthServer } from "./health-server.js";
import { type ControlPlaneMetrics, createControlPlaneMetrics } from "./metrics.js";

export interface ControlPlaneOptions {
  store: Store;
  log: Logger;
  /** gRPC (discovery, admin) address; default 127.0.0.1:15010. Port 0 = OS picks. */
  listen?: string;
  /** HTTP health and metrics address; default 127.0.0.1:15014. */
  admin?: string;
  /** Where ca.pem (and the default secret file) go; default ~/.trellis/control-plane. */
  stateDir?: string;
  /** The mesh secret file; default <state-dir>/secret.key. */
  secretFile?: string;
  /** HOME for ~/.trellis/config; default process.env.HOME. */
  homeDir?: string;
  trustDomain?: string;
  /** This replica's id; default <hostname>-<random>. */
  replicaId?: string;
  /** Registration lease TTL, seconds (default 15). */
  registrationTtlSeconds?: number;
  /** Replica lease TTL, seconds (default 15). */
  replicaTtlSeconds?: number;
  /** Status batch interval (default 1000 ms). */
  statusFlushMs?: number;
  /** Debounce of pushes after policy changes (default 100 ms) and endpoint changes (default 10 ms). */
  debounceMs?: number;
  endpointDebounceMs?: number;
  /** gRPC keepalive: ping interval and timeout that detect dead streams (default 10 s / 5 s). */
  keepaliveMs?: number;
  keepaliveTimeoutMs?: number;
  /** Extra host names / IPs for the serving certificate. */
  serverHosts?: string[];
}

export class ControlPlane {
  readonly replicaId: string;
  readonly metrics: ControlPlaneMetrics;
  private grpcServer: grpc.Server | undefined;
  private httpServer: HttpServer | undefined;
  private models: ModelStore | undefined;
  private discovery: DiscoveryServer | undefined;
  private recorder: StatusRecorder | undefined;
  private replicaLease: Lease | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private ready = false;
  /** Bound ports, after start. */
  grpcPort = 0;
  adminPort = 0;
  caFile = "";

  constructor(private readonly opts: ControlPlaneOptions) {
    this.replicaId = opts.replicaId ?? `${hostname().split(".")[0]}-${randomBytes(3).toString("hex")}`;
    this.metrics = createControlPlaneMetrics(this.replicaId);
  }

  async start(): Promise<void> {
    const { store, log } = this.opts;
    const home = this.opts.homeDir ?? process.env.HOME ?? ".";
    const stateDir = this.opts.stateDir ?? defaultStateDir(home);
    const trustDomain = this.opts.trustDomain ?? DEFAULT_TRUST_DOMAIN;
    // 1.
    const secretFile = this.opts.secretFile ?? defaultSecretFilePath(stateDir);
    const secretKey = await loadOrCreateSecretKey(secretFile, { onWarning: (m) => log.warn(m) });
    if (secretKey.created)
      log.info({ secretFile }, "generated the mesh secret file; every replica of this mesh needs a copy");
    const boot = await ensureBootstrap(store, { secretKey, trustDomain });
    if (boot.createdCa) log.info("created the bootstrap CA");
    const listen = parseHostPort(this.opts.listen ?? "127.0.0.1:15010", "--listen");
    const adminAddr = parseHostPort(this.opts.admin ?? "127.0.0.1:15014", "--admin");
    const serving = await issueServingCertificate(boot, {
      trustDomain,
      hosts: [
        ...new Set([
          "localhost",
          "127.0.0.1",
          "::1",
          hostname().toLowerCase(),
          ...(this.opts.serverHosts ?? []),
          ...(isWildcard(listen.host) ? [] : [listen.host]),
        ]),
      ],
    });
    // 2.
    const replicaTtl = this.opts.replicaTtlSeconds ?? 15;
    this.replicaLease = await store.grantLease(replicaTtl);
    const leaseId = this.replicaLease.id;
    await store.put(
      `${REPLICA_PREFIX}${this.replicaId}`,
      toBinary(ReplicaSchema, create(ReplicaSchema, { id: this.replicaId })),
      { lease: leaseId },
    );
    this.leaseTimer = setInterval(
      () => {
        store
          .keepAlive(leaseId)
          .catch((err: unknown) => log.warn({ err: String(err) }, "replica lease renewal failed"));
      },
      Math.max(200, (replicaTtl * 1000) / 3),
    );
    this.leaseTimer.unref();
    this.recorder = new StatusRecorder(store, {
      replica: this.replicaId,
      leaseId,
      ...(this.opts.statusFlushMs !== undefined ? { flushIntervalMs: this.opts.statusFlushMs } : {}),
      onWarning: (m) => log.warn(m),
    });
    this.recorder.start();
    // 3.
    const registry = new Registry(store, {
      replica: this.replicaId,
      ...(this.opts.registrationTtlSeconds !== undefined
        ? { leaseTtlSeconds: this.opts.registrationTtlSeconds }
        : {}),
      onWarning: (m) => log.warn(m),
    });
    const recorder = this.recorder;
    const metrics = this.metrics;
    const discovery = new DiscoveryServer({
      registry,
      model: () => this.model(),
      build: (model: MeshModel, workload: Workload, routeNames) => {
        const snapshot = buildProxySnapshot(model, { workload }, routeNames, { trustDomain });
        return { snapshot, problems: checkConsistency(snapshot) };
      },
      authenticate: async (hello) => {
        if (hello.credential.case === "joinToken") return verifyJoinToken(store, hello.credential.value);
        throw new TrellisError(
          ErrorCode.UNAUTHENTICATED,
          hello.credential.case === "kubernetesToken"
            ? "Kubernetes ServiceAccount tokens are not accepted by this control plane yet; use a join token"
            : "a join token is required (trellis token create)",
        );
      },
      trustDomain,
      onRecord: (proxyId, record) => recorder.update(proxyId, record),
      debounce: {
        ...(this.opts.debounceMs !== undefined ? { quietMs: this.opts.debounceMs } : {}),
        ...(this.opts.endpointDebounceMs !== undefined
          ? { endpointQuietMs: this.opts.endpointDebounceMs }
          : {}),
      },
      log: (level, msg, fields) => log[level](fields ?? {}, msg),
      metrics: {
        pushed: (seconds, responses) => {
          metrics.pushDuration.observe(seconds);
          metrics.pushes.inc(responses);
        },
        stale: () => metrics.staleRequests.inc(),
        nack: () => metrics.nacks.inc(),
        connected: (n) => metrics.proxiesConnected.set(n),
        converged: (seconds) => metrics.convergence.observe(seconds),
      },
    });
    this.discovery = discovery;
    this.models = new ModelStore(store, {
      onChange: (_model, change) => discovery.modelChanged(change),
      onWarning: (m) => log.warn(m),
    });
    await this.models.start();
    // 4.
    const server = new grpc.Server({
      "grpc.keepalive_time_ms": this.opts.keepaliveMs ?? 10_000,
      "grpc.keepalive_timeout_ms": this.opts.keepaliveTimeoutMs ?? 5_000,
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.http2.min_ping_interval_without_data_ms": 1_000,
      "grpc.max_receive_message_length": 16 * 1024 * 1024,
    });
    addService(server, DiscoveryService, { discover: discovery.handle });
    addService(
      server,
      AdminService,
      createAdminService({
        store,
        model: () => this.model(),
        adminToken: boot.adminToken,
        createJoinToken: (namespace, serviceAccount, ttlMs) =>
          createJoinToken(store, { namespace, serviceAccount, ttlMs }),
      }),
    );
    const creds = grpc.ServerCredentials.createSsl(null, [
      { cert_chain: Buffer.from(serving.certPem + boot.caCertPem), private_key: Buffer.from(serving.keyPem) },
    ]);
    this.grpcServer = server;
    this.grpcPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(formatHostPort(listen.host, listen.port), creds, (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
    this.httpServer = createHealthServer({
      ready: () => this.ready,
      registry: this.metrics.registry,
      debug: {
        model: () => ({
          revision: this.model().revision,
          policies: [...this.model().policies.keys()],
          services: [...this.model().workloads.keys()],
        }),
        proxies: () => ({ connected: discovery.connected }),
      },
    });
    this.adminPort = await new Promise<number>((resolve, reject) => {
      const http = this.httpServer as HttpServer;
      http.once("error", reject);
      http.listen(adminAddr.port, adminAddr.host, () => {
        const a = http.address();
        resolve(typeof a === "object" && a !== null ? a.port : 0);
      });
    });
    // 1 (continued): files for sidecars and the CLI, now that the port is known.
    this.caFile = (await writeStateFiles(stateDir, boot.caCertPem)).caFile;
    const dialHost = isWildcard(listen.host) ? "127.0.0.1" : listen.host;
    await writeClientConfig(home, {
      controlPlane: formatHostPort(dialHost, this.grpcPort),
      caPem: boot.caCertPem,
      token: boot.adminToken,
    });
    this.ready = true;
    log.info(
      {
        replica: this.replicaId,
        store: store.backend,
        grpc: formatHostPort(listen.host, this.grpcPort),
        admin: formatHostPort(adminAddr.host, this.adminPort),
        ports: { grpc: this.grpcPort, admin: this.adminPort },
        caFile: this.caFile,
      },
      "listening",
    );
  }

  /** The current model (empty before start). */
  model(): MeshModel {
    return this.models?.model ?? { revision: 0, policies: new Map(), workloads: new Map() };
  }

  /** Graceful stop, in the order of the file comment. Safe to call twice. */
  async stop(graceMs = 5000): Promise<void> {
    this.ready = false;
    this.discovery?.shutdown();
    const server = this.grpcServer;
    this.grpcServer = undefined;
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    const http = this.httpServer;
    this.httpServer = undefined;
    if (http !== undefined) {
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
    await this.models?.stop();
    await this.recorder?.stop().catch(() => undefined);
    if (this.leaseTimer !== undefined) clearInterval(this.leaseTimer);
    if (this.replicaLease !== undefined) {
      await this.opts.store.revokeLease(this.replicaLease.id).catch(() => undefined);
      this.replicaLease = undefined;
    }
  }
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "";
}
