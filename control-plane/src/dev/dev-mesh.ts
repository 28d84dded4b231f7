/**
 * The processes of `trellis dev`: one control plane, and per demo instance (web, orders-1,
 * orders-2, inventory) its app and its sidecar, every one its own process with ports chosen by the
 * OS.
 *
 * Start order (each step waits for the `listening` log line that reports the bound ports; nothing
 * polls for a fixed port, nothing sleeps):
 *  1. The control plane: `trellis control-plane --listen 127.0.0.1:0 --admin 127.0.0.1:0` with the
 *     embedded store (etcd when asked), its state dir and HOME under the work dir. It writes
 *     `<home>/.trellis/config`, through which this process reaches its admin API.
 *  2. One join token per service (admin API, in-process, like `trellis token create`), written to
 *     a 0600 file each sidecar of the service reads with --token-file (a token on a command line is
 *     visible in ps). Then the demo policy (demo-policy.ts), applied like `trellis apply` and
 *     written to `<work dir>/policy.yaml`, so the sidecars' first config already carries it.
 *  3. The apps: the first replica of each service binds 127.0.0.1:0 and reports its port; the
 *     other replicas of a service bind that same port on their own loopback address (DemoInstance).
 *  4. The sidecars, all at once: `trellis-sidecar run` with `--app-port <app port>[/grpc]` (and
 *     `--app-address` for a replica off 127.0.0.1) and every listener on port 0; then each one's
 *     /ready on its stats port.
 *  5. Each calling app gets its sidecar's outbound port (stdin).
 *  6. One request end to end (load → web → orders → inventory, the stock in web's answer) until it
 *     succeeds: the mesh is wired (routes subscribed, endpoints known) before anything is measured.
 * Stop: one process at a time from the edge inward (see stop()), the control plane last; SIGTERM,
 * then SIGKILL after a grace period. Resolves once every process is gone.
 */
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { durationFromNanos } from "@trellis/proto/duration";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { openAdminConnection, resolveConnection } from "../cli/client.js";
import { DevChild, type ExitInfo } from "./child-process.js";
import { demoPolicies } from "./demo-policy.js";
import {
  APP_PROTOCOL,
  type BehaveMessage,
  CALL_TIMEOUT_MS,
  DEMO_INSTANCES,
  DEMO_NAMESPACE,
  DEMO_SERVICES,
  type DemoInstance,
  type DemoService,
  parseServiceMessage,
} from "./demo-wire.js";
import { probe, probeBody } from "./load-generator.js";
import type { MetricsSource } from "./mesh-metrics.js";

/** One process as the first `--json` line lists it. */
export interface ProcessInfo {
  name: string;
  kind: "control-plane" | "app" | "sidecar";
  /** The demo service an app or sidecar belongs to. */
  service?: DemoService;
  /** Its replica (1-based), for a service with several. */
  replica?: number;
  /** The loopback address an app binds (replicas of one service share the port number). */
  address?: string;
  pid: number;
  /** Bound ports by role: control plane grpc/admin; app app; sidecar inbound/outbound/admin/stats. */
  ports: Record<string, number>;
}

/** How one process ended at stop. */
export interface StoppedProcess {
  name: string;
  pid: number;
  code: number | null;
  signal: string | null;
  /** Had to be SIGKILLed after the grace period. */
  forced: boolean;
  /** It had reported its ports before it was stopped (a process stopped during its own start may
   * die of the SIGTERM before it could install its handler: that is not a failed stop). */
  started: boolean;
}

/** Whether a process ended the way a stop asks: exit 0 on SIGTERM, or SIGTERM before it had started. */
export function stoppedCleanly(p: StoppedProcess): boolean {
  return !p.forced && (p.code === 0 || (!p.started && p.signal === "SIGTERM"));
}

export interface DevMeshOptions {
  /** Everything goes under it: control-plane/, home/ (unless `home`), sidecars/<svc>/, logs/. */
  workDir: string;
  /** HOME of the control plane (where it writes .trellis/config); default <workDir>/home. */
  home?: string;
  /** etcd endpoints; empty = the embedded store. */
  etcd: readonly string[];
  /** A demo service reported calls to `target`: parallel arrays of completion time, latency ms, success. */
  onCalls: (target: DemoService, at: readonly number[], ms: readonly number[], ok: readonly number[]) => void;
  /** Progress for the user ("starting the control plane"). */
  progress: (message: string) => void;
  /** The demo policy (YAML), applied at step 2; none when undefined. */
  policy?: string;
}

/** Time each start step may take. */
const START_TIMEOUT_MS = 30_000;
/** Time from SIGTERM to SIGKILL. Sidecars drain for at most SIDECAR_DRAIN_TIMEOUT first. */
const STOP_GRACE_MS = 8_000;
const SIDECAR_DRAIN_DELAY = "200ms";
const SIDECAR_DRAIN_TIMEOUT = "3s";

// dist/dev/dev-mesh.js → control-plane/bin/trellis.js; the sidecar's launcher beside it in the repo.
const TRELLIS_BIN = resolve(import.meta.dirname, "../../bin/trellis.js");
const DEMO_SERVICE_SCRIPT = resolve(import.meta.dirname, "demo-service.js");

/** The `trellis-sidecar` launcher: from the installed @trellis/sidecar package, else the repo layout. */
export function sidecarBin(): string {
  try {
    const main = fileURLToPath(import.meta.resolve("@trellis/sidecar/cli/main"));
    return resolve(main, "../../../bin/trellis-sidecar.js");
  } catch {
    return resolve(import.meta.dirname, "../../../sidecar/bin/trellis-sidecar.js");
  }
}

interface InstanceProcs {
  instance: DemoInstance;
  app: DevChild;
  appPort: number;
  sidecar?: DevChild;
  sidecarPorts?: { inbound: number; outbound: number; admin: number; stats: number };
}

export class DevMesh {
  private cp: DevChild | undefined;
  private cpPorts = { grpc: 0, admin: 0 };
  /** By instance name. */
  private readonly instances = new Map<string, InstanceProcs>();
  private readonly children: DevChild[] = [];
  /** Children that reported their ports (see StoppedProcess.started). */
  private readonly started = new Set<DevChild>();
  private stopping = false;
  readonly home: string;
  private readonly logs: string;

  constructor(private readonly opts: DevMeshOptions) {
    this.home = opts.home ?? join(opts.workDir, "home");
    this.logs = join(opts.workDir, "logs");
  }

  /** Every process started so far, in start order, with its ports. */
  processes(): ProcessInfo[] {
    const out: ProcessInfo[] = [];
    if (this.cp !== undefined)
      out.push({
        name: "control-plane",
        kind: "control-plane",
        pid: this.cp.pid,
        ports: { ...this.cpPorts },
      });
    for (const instance of DEMO_INSTANCES) {
      const s = this.instances.get(instance.name);
      if (s === undefined) continue;
      const { name, service } = instance;
      const replica =
        DEMO_INSTANCES.filter((i) => i.service === service).length > 1 ? { replica: instance.replica } : {};
      out.push({
        name,
        kind: "app",
        service,
        ...replica,
        address: instance.address,
        pid: s.app.pid,
        ports: { app: s.appPort },
      });
      if (s.sidecar !== undefined && s.sidecarPorts !== undefined)
        out.push({
          name: `${name}-sidecar`,
          kind: "sidecar",
          service,
          ...replica,
          pid: s.sidecar.pid,
          ports: { ...s.sidecarPorts },
        });
    }
    return out;
  }

  /** Where the load goes: web's sidecar inbound port. */
  get entryPort(): number {
    return this.instances.get("web")?.sidecarPorts?.inbound ?? 0;
  }

  /** Every started sidecar's stats port, to read its /metrics. */
  metricsSources(): MetricsSource[] {
    const out: MetricsSource[] = [];
    for (const s of this.instances.values())
      if (s.sidecarPorts !== undefined)
        out.push({ name: `${s.instance.name}-sidecar`, statsPort: s.sidecarPorts.stats });
    return out;
  }

  /** Tells one demo instance's app how to behave (BehaveMessage); ignored for an unknown or exited one. */
  behave(instance: string, failStatus: number, delayMs: number): void {
    const msg: BehaveMessage = { event: "behave", failStatus, delayMs };
    this.instances.get(instance)?.app.writeLine(JSON.stringify(msg));
  }

  /** The log directory (one file per process). */
  get logDir(): string {
    return this.logs;
  }

  /**
   * Resolves with the first process that exits before `stop()`: in a running demo, any exit is a
   * crash. Never resolves if none does.
   */
  firstExit(): Promise<DevChild> {
    return new Promise((resolve) => {
      for (const c of this.children)
        void c.exited.then(() => {
          if (!this.stopping) resolve(c);
        });
    });
  }

  /** Steps 1-6 of the file comment. On failure the caller still calls stop(). */
  async start(): Promise<void> {
    await mkdir(this.logs, { recursive: true });
    await mkdir(this.home, { recursive: true });
    // 1.
    this.opts.progress(
      `starting the control plane (${this.opts.etcd.length > 0 ? `etcd ${this.opts.etcd.join(",")}` : "embedded store"})`,
    );
    const cpStateDir = join(this.opts.workDir, "control-plane");
    const cp = this.spawn({
      name: "control-plane",
      args: [
        TRELLIS_BIN,
        "control-plane",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--state-dir",
        cpStateDir,
        ...(this.opts.etcd.length > 0 ? ["--etcd", this.opts.etcd.join(",")] : []),
      ],
    });
    this.cp = cp;
    const cpLine = parseListening(await cp.waitForLine(isListening, "listening log line", START_TIMEOUT_MS));
    this.started.add(cp);
    this.cpPorts = { grpc: cpLine.ports.grpc ?? 0, admin: cpLine.ports.admin ?? 0 };
    const caFile = typeof cpLine.caFile === "string" ? cpLine.caFile : join(cpStateDir, "ca.pem");
    // 2.
    const tokenFiles = await this.setUpControlPlane();
    // 3.
    this.opts.progress(
      `starting the demo services: ${DEMO_SERVICES.map((s) => {
        const n = DEMO_INSTANCES.filter((i) => i.service === s).length;
        return n > 1 ? `${s} (${n} replicas)` : s;
      }).join(" → ")}`,
    );
    const firsts = DEMO_INSTANCES.filter((i) => i.replica === 1);
    await Promise.all(firsts.map((i) => this.startApp(i, 0)));
    await Promise.all(
      DEMO_INSTANCES.filter((i) => i.replica > 1).map((i) =>
        this.startApp(
          i,
          this.instances.get(firsts.find((f) => f.service === i.service)?.name ?? "")?.appPort ?? 0,
        ),
      ),
    );
    // 4.
    this.opts.progress("starting a sidecar beside each");
    await Promise.all(
      DEMO_INSTANCES.map((i) => this.startSidecar(i, caFile, tokenFiles.get(i.service) as string)),
    );
    // 5.
    for (const s of this.instances.values()) {
      if (s.sidecarPorts !== undefined)
        s.app.writeLine(JSON.stringify({ event: "upstream", outboundPort: s.sidecarPorts.outbound }));
    }
    // 6.
    this.opts.progress("waiting for the first request to cross the whole chain");
    await this.waitForChain();
  }

  private spawn(opts: { name: string; args: string[]; stdin?: boolean; onStdoutLine?: (l: string) => void }) {
    // stop() may come while start() is still on its way (Ctrl-C during the start): start nothing new.
    if (this.stopping)
      throw new TrellisError(ErrorCode.UNAVAILABLE, `not starting ${opts.name}: trellis dev is stopping`);
    const child = new DevChild({
      ...opts,
      env: childEnv(this.home),
      logFile: join(this.logs, `${opts.name}.log`),
    });
    this.children.push(child);
    return child;
  }

  /** Step 2: join tokens (files, by service) and the demo policy. */
  private async setUpControlPlane(): Promise<Map<DemoService, string>> {
    const settings = await resolveConnection({}, {}, this.home);
    const conn = openAdminConnection(settings);
    const dir = join(this.opts.workDir, "tokens");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      const policy = this.opts.policy;
      if (policy !== undefined) {
        const file = join(this.opts.workDir, "policy.yaml");
        await writeFile(file, policy);
        const policies = demoPolicies(policy);
        await conn.call((c, o) => c.apply({ policies, dryRun: false }, o));
        this.opts.progress(`applied the demo policy (${policies.length} resources): ${file}`);
      }
      const files = new Map<DemoService, string>();
      for (const service of DEMO_SERVICES) {
        const res = await conn.call((c, o) =>
          c.createToken(
            {
              namespace: DEMO_NAMESPACE,
              serviceAccount: service,
              ttl: durationFromNanos(24n * 3600n * 1_000_000_000n),
            },
            o,
          ),
        );
        const file = join(dir, service);
        await writeFile(file, `${res.token}\n`, { mode: 0o600 });
        await chmod(file, 0o600);
        files.set(service, file);
      }
      return files;
    } finally {
      conn.close();
    }
  }

  /**
   * Step 3 for one instance, binding `port` (0: any) on its address. A replica binding its first
   * replica's port on another loopback address does not retry: that port was free on 127.0.0.1 a
   * moment ago, and nothing normally binds 127.0.0.2+, so a clash is not worth another round.
   */
  private async startApp(instance: DemoInstance, bindPort: number): Promise<void> {
    let resolvePort: (port: number) => void = () => {};
    const port = new Promise<number>((r) => {
      resolvePort = r;
    });
    const app = this.spawn({
      name: instance.name,
      args: [DEMO_SERVICE_SCRIPT, instance.service, instance.address, String(bindPort)],
      stdin: true,
      onStdoutLine: (line) => {
        const m = parseServiceMessage(line);
        if (m?.event === "listening") resolvePort(m.port);
        else if (m?.event === "calls") this.opts.onCalls(m.target, m.at, m.ms, m.ok);
      },
    });
    await app.waitForLine((l) => l.startsWith('{"event":"listening"'), "listening message", START_TIMEOUT_MS);
    this.started.add(app);
    this.instances.set(instance.name, { instance, app, appPort: await port });
  }

  private async startSidecar(instance: DemoInstance, caFile: string, tokenFile: string): Promise<void> {
    const s = this.instances.get(instance.name) as InstanceProcs;
    const { service, name } = instance;
    const protocol = APP_PROTOCOL[service];
    const stateDir = join(this.opts.workDir, "sidecars", name);
    await mkdir(stateDir, { recursive: true });
    const sidecar = this.spawn({
      name: `${name}-sidecar`,
      args: [
        sidecarBin(),
        "run",
        "--control-plane",
        `127.0.0.1:${this.cpPorts.grpc}`,
        "--ca-file",
        caFile,
        "--token-file",
        tokenFile,
        "--service",
        service,
        "--namespace",
        DEMO_NAMESPACE,
        "--service-account",
        service,
        "--proxy-id",
        `${name}-${process.pid}`,
        "--app-port",
        protocol === "http" ? String(s.appPort) : `${s.appPort}/${protocol}`,
        ...(instance.address !== "127.0.0.1" ? ["--app-address", instance.address] : []),
        "--inbound-port",
        "0",
        "--outbound-port",
        "0",
        "--admin-port",
        "0",
        "--stats-port",
        "0",
        "--state-dir",
        stateDir,
        "--drain-delay",
        SIDECAR_DRAIN_DELAY,
        "--drain-timeout",
        SIDECAR_DRAIN_TIMEOUT,
      ],
    });
    s.sidecar = sidecar;
    const line = parseListening(
      await sidecar.waitForLine(isListening, "listening log line", START_TIMEOUT_MS),
    ).ports;
    this.started.add(sidecar);
    const ports = {
      inbound: line.inbound ?? 0,
      outbound: line.outbound ?? 0,
      admin: line.admin ?? 0,
      stats: line.stats ?? 0,
    };
    s.sidecarPorts = ports;
    const deadline = Date.now() + START_TIMEOUT_MS;
    while ((await probe(ports.stats, "127.0.0.1", "/ready", 1000)) !== 200) {
      if (sidecar.exitInfo() !== undefined) throw sidecar.error("exited before it was ready");
      if (Date.now() > deadline) throw sidecar.error(`/ready not 200 within ${START_TIMEOUT_MS} ms`);
      await sleep(50);
    }
  }

  private async waitForChain(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    let status = 0;
    for (;;) {
      const r = await probeBody(this.entryPort, `web.${DEMO_NAMESPACE}`, "/", CALL_TIMEOUT_MS);
      status = r.status;
      // orders answers 200 without the stock when inventory fails: only a stock figure proves the
      // last hop.
      if (status === 200 && hasStock(r.body)) return;
      const dead = this.children.find((c) => c.exitInfo() !== undefined);
      if (dead !== undefined) throw dead.error("exited during startup");
      if (Date.now() > deadline) break;
      await sleep(100);
    }
    throw new TrellisError(
      ErrorCode.UNAVAILABLE,
      `no request crossed web → orders → inventory within ${START_TIMEOUT_MS} ms (last status ${status}); ` +
        `the logs are in ${this.logs}`,
    );
  }

  /**
   * Stops everything and resolves once every process has exited, with how each ended. Safe to call
   * at any point of start().
   *
   * Order: from the edge inward — web's app, web's sidecar, each orders replica's app and sidecar,
   * inventory's app, inventory's sidecar, then the control plane — each gone before the next gets SIGTERM. A
   * callee then never loses its callers' connections while it drains (nothing is in flight: the load
   * stopped first), every sidecar can deregister, and the control plane outlives them all.
   */
  async stop(): Promise<StoppedProcess[]> {
    this.stopping = true;
    const rank = (c: DevChild): number => {
      const i = DEMO_INSTANCES.findIndex((s) => c.name === s.name || c.name === `${s.name}-sidecar`);
      if (i < 0) return 1000;
      return 2 * i + (c.name.endsWith("-sidecar") ? 1 : 0);
    };
    const results = new Map<DevChild, ExitInfo>();
    for (const c of [...this.children].sort((a, b) => rank(a) - rank(b)))
      results.set(c, await c.stop(STOP_GRACE_MS));
    return this.children.map((c) => {
      const info = results.get(c) as ExitInfo;
      return {
        name: c.name,
        pid: c.pid,
        code: info.code,
        signal: info.signal,
        forced: info.forced,
        started: this.started.has(c),
      };
    });
  }
}

interface ListeningLine {
  ports: Record<string, number | undefined>;
  caFile?: unknown;
}

/** Whether web's answer carries a stock figure (inventory answered). */
function hasStock(body: string): boolean {
  try {
    const parsed = JSON.parse(body) as { order?: { inStock?: unknown } };
    return typeof parsed.order?.inStock === "number";
  } catch {
    return false;
  }
}

function isListening(line: string): boolean {
  return line.includes('"msg":"listening"');
}

function parseListening(line: string): ListeningLine {
  const parsed = JSON.parse(line) as { ports?: Record<string, number>; caFile?: unknown };
  return { ports: parsed.ports ?? {}, caFile: parsed.caFile };
}

/**
 * The children's environment: ours, with HOME pointing into the work dir and every TRELLIS_*
 * setting removed, so a user's TRELLIS_REDIS or TRELLIS_CONTROL_PLANE cannot bend the demo.
 */
function childEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("TRELLIS_")) env[k] = v;
  env.HOME = home;
  return env;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
