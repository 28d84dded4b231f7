/**
 * The processes a benchmark run measures, started once and shared by every variant:
 *
 *   app       the upstream (upstream-app.ts), one node:http process
 *   cp        the real control plane (`trellis control-plane`, embedded store)
 *   api       sidecar of service `api` (app port = the app's port): its inbound port is the one-hop
 *             variant, and the server side of the two-hop variant
 *   web       sidecar of service `web` (no app port, a client): its outbound port is where the
 *             two-hop variant's client sends, with `Host: api.shop:<app port>`; the hop web → api
 *             is the mesh's HTTP/2 hop
 *   apiPolicies  sidecar of service `api-policies` in front of the same app: the same as `api`,
 *             except that the resilience policies of policies.ts target its service (its inbound
 *             port is the one-hop "+ policies" variant; web → it the two-hop one). A service of its
 *             own, so that `api` stays without policies and both are measured in one run.
 *   nginx-b   nginx in front of the app (nginx one hop); nginx-a in front of nginx-b (two hops)
 *   bare      the reference Node proxy (bare-proxy.ts) in front of the app
 *
 * Everything under test (app, sidecars, nginx) runs pinned to the "server" CPU; the control plane
 * and load generators go on the other one (see run.ts). Every process is started through the test
 * harness (setpriv --pdeathsig KILL, recorded for the reaper) and `stop()` ends them all.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createToken } from "../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../helpers/control-plane.js";
import { type ManagedProcess, spawnManaged } from "../helpers/processes.js";
import { SIDECAR_BIN } from "../helpers/sidecar.js";
import { makeTempDir } from "../helpers/temp-dirs.js";
import { waitFor } from "../helpers/wait.js";
import { applyBenchPolicies } from "./policies.js";
import { pinAllThreads } from "./proc.js";

/** The namespace of the benchmark's services. */
export const NAMESPACE = "shop";

/** The service the resilience policies (policies.ts) target; `api` has none. */
export const POLICIES_SERVICE = "api-policies";

/** Where the processes run: CPU lists for taskset, or undefined to leave placement to the kernel. */
export interface Placement {
  /** App, sidecars and nginx. */
  server: string | undefined;
  /** Control plane (and, in run.ts, the load generators). */
  client: string | undefined;
}

/** `taskset -c cpus cmd args…` when pinned, else `cmd args…`, as [cmd, args]. */
function pinned(cpus: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  return cpus === undefined ? [cmd, [...args]] : ["taskset", ["-c", cpus, cmd, ...args]];
}

/** Reads the first JSON log line of `proc` whose `msg` is `listening`. */
async function listeningLine<T>(proc: ManagedProcess, what: string): Promise<T> {
  return waitFor(
    () => {
      for (const l of readFileSync(proc.logFile, "utf8").split("\n")) {
        if (l.includes('"msg":"listening"')) return JSON.parse(l) as T;
      }
      return undefined;
    },
    {
      what,
      timeoutMs: 20_000,
      failIf: () => (proc.exitInfo() !== undefined ? `it exited:\n${proc.logTail()}` : undefined),
    },
  );
}

/** A running upstream app. */
export interface App {
  proc: ManagedProcess;
  port: number;
}

/** Starts upstream-app.js (same Node as this process) on `cpus`. */
export async function startApp(cpus: string | undefined): Promise<App> {
  const script = resolve(import.meta.dirname, "upstream-app.js");
  const [cmd, args] = pinned(cpus, process.execPath, [script]);
  const proc = spawnManaged(cmd, args, { name: "bench-app", stopSignal: "SIGTERM" });
  const { port } = await listeningLine<{ port: number }>(proc, "upstream app listening");
  return { proc, port };
}

/** Starts bare-proxy.js (the reference Node proxy) in front of `appPort`, on `cpus`. */
export async function startBareProxy(appPort: number, cpus: string | undefined): Promise<App> {
  const script = resolve(import.meta.dirname, "bare-proxy.js");
  const [cmd, args] = pinned(cpus, process.execPath, [script, String(appPort)]);
  const proc = spawnManaged(cmd, args, { name: "bench-bare-proxy", stopSignal: "SIGTERM" });
  const { port } = await listeningLine<{ port: number }>(proc, "bare proxy listening");
  return { proc, port };
}

/** A running sidecar. */
export interface BenchSidecar {
  proc: ManagedProcess;
  ports: { inbound: number; outbound: number; admin: number; stats: number };
}

/** What a sidecar is started with. */
export interface BenchSidecarOptions {
  cp: Pick<ControlPlaneProcess, "address" | "caFile">;
  token: string;
  service: string;
  /** The app's port, for a sidecar in front of an app; omitted for a client-only sidecar. */
  appPort?: number;
  cpus: string | undefined;
  /** Flags for node itself, before the script (e.g. `--cpu-prof`). */
  nodeFlags?: readonly string[];
}

/**
 * Starts `trellis-sidecar run` with the flags a deployment would use (log level info, no per-request
 * logging; metrics on), ports chosen by the OS, and waits until /ready answers 200. Unlike
 * tests/helpers/sidecar.ts it can pin the process and pass node flags (the profiler).
 */
export async function startBenchSidecar(o: BenchSidecarOptions): Promise<BenchSidecar> {
  const stateDir = join(makeTempDir(`bench-sidecar-${o.service}`), "state");
  const proxyId = `bench-${o.service}-${process.pid}-${Date.now().toString(36)}`;
  const sidecarArgs = [
    ...(o.nodeFlags ?? []),
    SIDECAR_BIN,
    "run",
    "--control-plane",
    o.cp.address,
    "--ca-file",
    o.cp.caFile,
    "--join-token",
    o.token,
    "--service",
    o.service,
    "--namespace",
    NAMESPACE,
    "--service-account",
    o.service,
    "--proxy-id",
    proxyId,
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
    "100ms",
    "--drain-timeout",
    "3s",
    "--log-level",
    "info",
    ...(o.appPort !== undefined ? ["--app-port", String(o.appPort)] : []),
  ];
  const [cmd, args] = pinned(o.cpus, process.execPath, sidecarArgs);
  const proc = spawnManaged(cmd, args, { name: `bench-sidecar-${o.service}`, stopTimeoutMs: 8000 });
  const { ports } = await listeningLine<{ ports: BenchSidecar["ports"] }>(
    proc,
    `sidecar ${o.service} listening`,
  );
  await waitFor(
    async () => (await fetch(`http://127.0.0.1:${ports.stats}/ready`).catch(() => undefined))?.status === 200,
    {
      what: `sidecar ${o.service} ready`,
      timeoutMs: 15_000,
      intervalMs: 50,
      failIf: () => (proc.exitInfo() !== undefined ? `it exited:\n${proc.logTail()}` : undefined),
    },
  );
  return { proc, ports };
}

/** A running nginx (single process: `master_process off`, so its one pid does all the work). */
export interface Nginx {
  proc: ManagedProcess;
  port: number;
}

/**
 * nginx as a reverse proxy on 127.0.0.1:`port` to 127.0.0.1:`upstreamPort`, configured as a sidecar
 * would be for this workload: one worker, HTTP/1.1 keep-alive to the upstream with a connection
 * pool, no access log (the sidecar writes none either; it keeps counters), no buffering changes
 * beyond defaults. nginx's proxy module speaks only HTTP/1.x upstream, so its hop between two
 * nginx is HTTP/1.1 keep-alive where the mesh's is HTTP/2 — noted in the results.
 *
 * `master_process off` keeps nginx to one process: SIGKILL from the harness then cannot orphan a
 * worker, and /proc of that one pid is all of nginx's CPU and memory.
 */
export async function startNginx(
  name: string,
  port: number,
  upstreamPort: number,
  cpus: string | undefined,
): Promise<Nginx> {
  const dir = makeTempDir(`bench-${name}`);
  const conf = join(dir, "nginx.conf");
  writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_timeout 300s;
  keepalive_requests 1000000;
  upstream app {
    server 127.0.0.1:${upstreamPort};
    keepalive 256;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
    }
  }
}
`,
  );
  const [cmd, args] = pinned(cpus, "nginx", ["-p", dir, "-c", conf]);
  const proc = spawnManaged(cmd, args, { name: `bench-${name}`, stopSignal: "SIGQUIT" });
  await waitFor(
    async () => (await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined))?.status === 200,
    {
      what: `${name} answering on ${port}`,
      timeoutMs: 10_000,
      intervalMs: 50,
      failIf: () =>
        proc.exitInfo() !== undefined
          ? `it exited:\n${proc.logTail()}\n${readFileSync(join(dir, "error.log"), "utf8")}`
          : undefined,
    },
  );
  return { proc, port };
}

/** Everything one benchmark run measures. */
export interface Topology {
  app: App;
  cp: ControlPlaneProcess;
  api: BenchSidecar;
  web: BenchSidecar;
  /** Like `api`, with every bench policy on its service (POLICIES_SERVICE). */
  apiPolicies: BenchSidecar;
  nginxA: Nginx;
  nginxB: Nginx;
  bare: App;
  /** The Host header the two-hop client sends to web's outbound port. */
  meshHost: string;
  /** The same for the two-hop "+ policies" variant (POLICIES_SERVICE). */
  policiesHost: string;
  tokens: { api: string; web: string; apiPolicies: string };
  stop(): Promise<void>;
}

/** Starts the whole topology; on failure stops what it started and rethrows. */
export async function startTopology(placement: Placement, nginxPorts: [number, number]): Promise<Topology> {
  const started: { stop(): Promise<void> }[] = [];
  const stopAll = async () => {
    for (const p of started.reverse()) await p.stop().catch(() => undefined);
  };
  try {
    const app = await startApp(placement.server);
    started.push(app.proc);
    const cp = await startControlPlane({ registrationTtl: "10s" });
    started.push(cp);
    if (placement.client !== undefined) pinAllThreads(cp.proc.pid, placement.client);
    const tokens = {
      api: await createToken(cp.env, NAMESPACE, "api"),
      web: await createToken(cp.env, NAMESPACE, "web"),
      apiPolicies: await createToken(cp.env, NAMESPACE, POLICIES_SERVICE),
    };
    // Before any sidecar starts: the policies are in the first config, never pushed mid-run.
    await applyBenchPolicies(cp, POLICIES_SERVICE, NAMESPACE);
    const api = await startBenchSidecar({
      cp,
      token: tokens.api,
      service: "api",
      appPort: app.port,
      cpus: placement.server,
    });
    started.push(api.proc);
    const web = await startBenchSidecar({ cp, token: tokens.web, service: "web", cpus: placement.server });
    started.push(web.proc);
    const apiPolicies = await startBenchSidecar({
      cp,
      token: tokens.apiPolicies,
      service: POLICIES_SERVICE,
      appPort: app.port,
      cpus: placement.server,
    });
    started.push(apiPolicies.proc);
    const [portA, portB] = nginxPorts;
    const nginxB = await startNginx("nginx-b", portB, app.port, placement.server);
    started.push(nginxB.proc);
    const nginxA = await startNginx("nginx-a", portA, portB, placement.server);
    started.push(nginxA.proc);
    const bare = await startBareProxy(app.port, placement.server);
    started.push(bare.proc);
    return {
      app,
      cp,
      api,
      web,
      apiPolicies,
      nginxA,
      nginxB,
      bare,
      meshHost: `api.${NAMESPACE}:${app.port}`,
      policiesHost: `${POLICIES_SERVICE}.${NAMESPACE}:${app.port}`,
      tokens,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
