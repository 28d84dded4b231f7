/**
 * Runs `trellis-sidecar run` (the real binary) as a managed child process, with ports chosen by the
 * OS, a state dir of its own and short timeouts for tests; reads the bound ports from its
 * `listening` log line.
 */
import { readFileSync } from "node:fs";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { join, resolve } from "node:path";
import type { ControlPlaneProcess } from "./control-plane.js";
import { type ManagedProcess, spawnManaged } from "./processes.js";
import { makeTempDir } from "./temp-dirs.js";
import { waitFor } from "./wait.js";

export const SIDECAR_BIN = resolve(import.meta.dirname, "../../../sidecar/bin/trellis-sidecar.js");

export interface SidecarProcess {
  proc: ManagedProcess;
  proxyId: string;
  ports: { inbound: number; outbound: number; admin: number; stats: number };
  stateDir: string;
  /** `http://127.0.0.1:<outbound>` — use as the app's HTTP proxy. */
  proxyUrl: string;
  stop(): Promise<void>;
}

export interface SidecarStartOptions {
  cp: Pick<ControlPlaneProcess, "address" | "caFile">;
  token: string;
  service: string;
  namespace?: string;
  serviceAccount?: string;
  proxyId?: string;
  /** `8080` or `8080/grpc`, comma-separated. */
  appPorts?: string;
  stateDir?: string;
  /**
   * Where the app listens (`--app-address`, default 127.0.0.1). Replicas of one service on one host
   * share the app port number (endpoints carry the service's one target port) and differ here:
   * 127.0.0.2, 127.0.0.3, … — each "pod" its own loopback address.
   */
  appAddress?: string;
  /** Fixed listener ports (default 0 each: the OS picks) — e.g. to restart on the same ports. */
  ports?: Partial<SidecarProcess["ports"]>;
  /** `--drain-delay` (default 300ms) and `--drain-timeout` (default 5s). */
  drainDelay?: string;
  drainTimeout?: string;
  extraArgs?: string[];
  /** Wait until /ready answers 200 (default true). */
  waitReady?: boolean;
}

let counter = 0;

export async function startSidecar(opts: SidecarStartOptions): Promise<SidecarProcess> {
  counter++;
  const proxyId = opts.proxyId ?? `${opts.service}-${process.pid}-${counter}`;
  const stateDir = opts.stateDir ?? join(makeTempDir(`sidecar-${opts.service}`), "state");
  const args = [
    SIDECAR_BIN,
    "run",
    "--control-plane",
    opts.cp.address,
    "--ca-file",
    opts.cp.caFile,
    "--join-token",
    opts.token,
    "--service",
    opts.service,
    "--namespace",
    opts.namespace ?? "shop",
    "--service-account",
    opts.serviceAccount ?? opts.service,
    "--proxy-id",
    proxyId,
    "--inbound-port",
    String(opts.ports?.inbound ?? 0),
    "--outbound-port",
    String(opts.ports?.outbound ?? 0),
    "--admin-port",
    String(opts.ports?.admin ?? 0),
    "--stats-port",
    String(opts.ports?.stats ?? 0),
    "--state-dir",
    stateDir,
    "--drain-delay",
    opts.drainDelay ?? "300ms",
    "--drain-timeout",
    opts.drainTimeout ?? "5s",
    "--log-level",
    "debug",
    ...(opts.appPorts !== undefined ? ["--app-port", opts.appPorts] : []),
    ...(opts.appAddress !== undefined ? ["--app-address", opts.appAddress] : []),
    ...(opts.extraArgs ?? []),
  ];
  const proc = spawnManaged(process.execPath, args, {
    name: `sidecar-${opts.service}`,
    stopSignal: "SIGTERM",
    stopTimeoutMs: 8000,
  });
  const line = await waitFor(
    () => {
      for (const l of readFileSync(proc.logFile, "utf8").split("\n")) {
        if (l.includes('"msg":"listening"')) return JSON.parse(l) as { ports: SidecarProcess["ports"] };
      }
      return undefined;
    },
    {
      what: `sidecar ${proxyId} listening`,
      timeoutMs: 20_000,
      failIf: () => (proc.exitInfo() !== undefined ? `it exited:\n${proc.logTail()}` : undefined),
    },
  );
  const sc: SidecarProcess = {
    proc,
    proxyId,
    ports: line.ports,
    stateDir,
    proxyUrl: `http://127.0.0.1:${line.ports.outbound}`,
    stop: () => proc.stop(),
  };
  if (opts.waitReady !== false) {
    await waitFor(
      async () =>
        (await fetch(`http://127.0.0.1:${sc.ports.stats}/ready`).catch(() => undefined))?.status === 200,
      {
        what: `sidecar ${proxyId} ready`,
        timeoutMs: 15_000,
        intervalMs: 50,
        failIf: () => (proc.exitInfo() !== undefined ? `it exited:\n${proc.logTail()}` : undefined),
      },
    );
  }
  return sc;
}

/**
 * One sidecar per replica app of a service (see tests/fixtures/sidecar-apps/echo-app.ts): each with
 * `--app-address` set to its app's loopback address and the shared app port. Started in parallel.
 */
export function startReplicaSidecars(
  cp: SidecarStartOptions["cp"],
  token: string,
  service: string,
  apps: readonly { host: string; port: number; name: string }[],
  extra: Partial<SidecarStartOptions> = {},
): Promise<SidecarProcess[]> {
  return Promise.all(
    apps.map((app) =>
      startSidecar({
        cp,
        token,
        service,
        proxyId: `${app.name}-${process.pid}`,
        appPorts: String(app.port),
        appAddress: app.host,
        ...extra,
      }),
    ),
  );
}

/** GET on a sidecar's admin port, parsed as JSON. */
export async function adminJson<T>(sc: Pick<SidecarProcess, "ports">, path: string): Promise<T> {
  const r = await fetch(`http://127.0.0.1:${sc.ports.admin}${path}`);
  if (r.status !== 200) throw new Error(`admin ${path}: ${r.status}`);
  return (await r.json()) as T;
}

/** What GET /clusters on the admin port lists per cluster. */
export interface AdminCluster {
  name: string;
  /** LoadBalancerPolicy enum number (1 ROUND_ROBIN, 2 LEAST_REQUEST). */
  policy: number;
  panicking: boolean;
  limits: { active: number; pending: number; activeRetries: number; connections: number };
  retryBudget: { requests: number; retries: number; allowed: number };
  endpoints: {
    key: string;
    proxyId: string;
    outstanding: number;
    health: number;
    ejectedForMs: number;
    timesEjected: number;
    consecutiveGatewayErrors: number;
  }[];
}

/**
 * The cluster `name` as sidecar `sc` runs it: that exact name, or with a name ending in ":" (a
 * prefix like `orders.shop:`) the first cluster it starts; undefined when it holds none.
 */
export async function clusterAt(
  sc: Pick<SidecarProcess, "ports">,
  name: string,
): Promise<AdminCluster | undefined> {
  const list = await adminJson<AdminCluster[]>(sc, "/clusters");
  return list.find((c) => c.name === name || (name.endsWith(":") && c.name.startsWith(name)));
}

/** Waits (default 15 s) until `sc` holds cluster `name` (as for `clusterAt`) and `pred` holds for it. */
export function waitForCluster(
  sc: Pick<SidecarProcess, "ports">,
  name: string,
  pred: (c: AdminCluster) => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<AdminCluster> {
  return waitFor(
    async () => {
      const c = await clusterAt(sc, name);
      return c !== undefined && pred(c) ? c : undefined;
    },
    { what, timeoutMs, intervalMs: 50 },
  );
}

/** A TCP gate in front of the control plane; see `startControlPlaneGate`. */
export interface ControlPlaneGate {
  /** `127.0.0.1:<port>`: give it to a sidecar as its control plane. */
  readonly address: string;
  /** From now on, held and new connections go through to the control plane. */
  open(): void;
  close(): Promise<void>;
}

/**
 * A gate between sidecars and the control plane at `target` (`host:port`): connections are
 * accepted and held, bytes and all, until `open()`, then spliced through. A sidecar started
 * behind a closed gate boots completely (listeners bound, `listening` logged) but has not
 * registered yet; opening the gate registers it within milliseconds, without the seconds of
 * process start-up — so a test can add an endpoint at a chosen moment of a load.
 */
export async function startControlPlaneGate(target: string): Promise<ControlPlaneGate> {
  const colon = target.lastIndexOf(":");
  const host = target.slice(0, colon);
  const port = Number(target.slice(colon + 1));
  const held: Socket[] = [];
  const sockets = new Set<Socket>();
  let opened = false;
  const splice = (socket: Socket) => {
    const upstream = connect({ host, port });
    sockets.add(upstream);
    upstream.on("close", () => sockets.delete(upstream));
    upstream.on("error", () => socket.destroy());
    socket.on("error", () => upstream.destroy());
    socket.pipe(upstream);
    upstream.pipe(socket);
    socket.resume();
  };
  const server = createServer({ pauseOnConnect: true }, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    if (opened) splice(socket);
    else held.push(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const bound = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${bound.port}`,
    open() {
      opened = true;
      for (const s of held.splice(0)) if (!s.destroyed) splice(s);
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
