/**
 * `trellis control-plane`: runs one control-plane replica until SIGTERM / SIGINT, then stops
 * gracefully (exit 0). etcd when --etcd / TRELLIS_ETCD_ENDPOINTS is given, the embedded store
 * otherwise (with a warning that it is single-node).
 */

import { parseDurationNanos } from "@trellis/proto/duration";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import type { Command } from "commander";
import { createLogger } from "../../log.js";
import { ControlPlane } from "../../server/control-plane.js";
import { createStore } from "../../store/create-store.js";

interface Options {
  etcd?: string;
  store?: string;
  listen: string;
  admin: string;
  stateDir?: string;
  secretFile?: string;
  trustDomain?: string;
  replicaId?: string;
  registrationTtl: string;
  statusFlush: string;
  debounce: string;
  keepalive: string;
  logLevel?: string;
}

function seconds(text: string, flag: string): number {
  const n = parseDurationNanos(text);
  if (n === undefined || n <= 0n)
    throw new TrellisError(ErrorCode.CONFIG, `${flag} must be a positive duration like 15s`);
  return Number(n) / 1e9;
}

export function registerControlPlane(program: Command): void {
  program
    .command("control-plane")
    .description("run one control-plane replica (etcd with --etcd, else the embedded single-node store)")
    .option(
      "--etcd <urls>",
      "etcd endpoints, comma-separated (env TRELLIS_ETCD_ENDPOINTS)",
      process.env.TRELLIS_ETCD_ENDPOINTS,
    )
    .option("--store <kind>", "embedded[:DIR] — the single-node store, optionally persisted to DIR")
    .option("--listen <host:port>", "gRPC address: discovery, certificates, admin API", "127.0.0.1:15010")
    .option("--admin <host:port>", "HTTP address: /ready, /live, /metrics, /debug/*", "127.0.0.1:15014")
    .option("--state-dir <dir>", "ca.pem and the default secret file (default ~/.trellis/control-plane)")
    .option(
      "--secret-file <file>",
      "key that encrypts the CA key in the store; replicas share it (env TRELLIS_SECRET_FILE)",
      process.env.TRELLIS_SECRET_FILE,
    )
    .option("--trust-domain <domain>", "SPIFFE trust domain", "cluster.local")
    .option("--replica-id <id>", "this replica's id (default host name + random suffix)")
    .option("--registration-ttl <duration>", "lease TTL of sidecar registrations", "15s")
    .option("--status-flush <duration>", "how often status records are written", "1s")
    .option("--debounce <duration>", "quiet window before pushing a policy change", "100ms")
    .option("--keepalive <duration>", "ping interval (and timeout) that detects dead sidecar streams", "10s")
    .option("--log-level <level>", "trace|debug|info|warn|error", process.env.TRELLIS_LOG_LEVEL ?? "info")
    .action(async (opts: Options) => {
      const log = createLogger("trellis-control-plane", opts.logLevel);
      const etcd = opts.etcd
        ?.split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
      let embeddedDir: string | undefined;
      if (opts.store !== undefined) {
        const m = /^embedded(?::(.+))?$/.exec(opts.store);
        if (m === null)
          throw new TrellisError(
            ErrorCode.CONFIG,
            `--store must be embedded or embedded:DIR, got ${opts.store}`,
          );
        embeddedDir = m[1];
      }
      const { store, description } = await createStore({
        ...(etcd !== undefined && etcd.length > 0 ? { etcd } : {}),
        ...(embeddedDir !== undefined ? { embeddedDir } : {}),
      });
      if (store.backend === "embedded")
        log.warn(`${description}: single-node, for development only; use --etcd for a real mesh`);
      else log.info(description);
      const cp = new ControlPlane({
        store,
        log,
        listen: opts.listen,
        admin: opts.admin,
        ...(opts.stateDir !== undefined ? { stateDir: opts.stateDir } : {}),
        ...(opts.secretFile !== undefined ? { secretFile: opts.secretFile } : {}),
        ...(opts.trustDomain !== undefined ? { trustDomain: opts.trustDomain } : {}),
        ...(opts.replicaId !== undefined ? { replicaId: opts.replicaId } : {}),
        registrationTtlSeconds: Math.max(1, Math.round(seconds(opts.registrationTtl, "--registration-ttl"))),
        statusFlushMs: seconds(opts.statusFlush, "--status-flush") * 1000,
        debounceMs: seconds(opts.debounce, "--debounce") * 1000,
        keepaliveMs: seconds(opts.keepalive, "--keepalive") * 1000,
        keepaliveTimeoutMs: seconds(opts.keepalive, "--keepalive") * 1000,
      });
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, "stopping");
        void cp
          .stop()
          .then(() => store.close())
          .then(
            () => {
              log.info("stopped");
              process.exit(0);
            },
            (err: unknown) => {
              log.error({ err: String(err) }, "unclean stop");
              process.exit(1);
            },
          );
      };
      process.on("SIGTERM", () => stop("SIGTERM"));
      process.on("SIGINT", () => stop("SIGINT"));
      try {
        await cp.start();
      } catch (err) {
        await cp.stop().catch(() => undefined);
        await store.close().catch(() => undefined);
        throw err;
      }
    });
}
