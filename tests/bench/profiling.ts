/**
 * Profiles the sidecar's hot path under saturating load, after the measurements, on separate
 * sidecar processes (the measured ones never run under a profiler).
 *
 * The profiler is V8's CPU profiler, the one `node --cpu-prof` uses, driven through the inspector
 * (`node --inspect=127.0.0.1:0`, DevTools protocol `Profiler.start` / `Profiler.stop`) so that the
 * profile covers only a steady-state window: --cpu-prof profiles the whole life of the process,
 * and start-up and JIT warm-up (seconds here) would swamp the request path.
 *
 * V8 samples on wall time: a sample taken while the thread is descheduled inside a syscall is
 * charged to that syscall. So the profiled sidecar gets the server CPU to itself and everything
 * else (app, other sidecar, wrk) is moved to the client CPU while it is profiled. Even so, time the
 * thread spends descheduled inside a write (the kernel waking the reader on the other CPU) shows
 * as `writev` / `writeLatin1String`, so those rows overstate CPU; the JavaScript rows do not.
 * The profiled processes also run with `--trace-gc` (GC pauses per window, gc-trace.ts), their
 * live heap is read after a forced full GC before and after the window (leak check), and a shorter
 * window after it samples allocations (bytes per request and who allocates them).
 * Four windows:
 *
 *  1. inbound, HTTP/1.1 from the client (the one-hop variant): client → sidecar → app;
 *  2. outbound, the client side of the two-hop variant: app → web sidecar → (HTTP/2) → api sidecar;
 *  3. inbound over the mesh hop: the api sidecar of the two-hop variant, HTTP/2 in, HTTP/1.1 out;
 *  4. outbound again, the same web sidecar, to a service that carries every bench policy
 *     (policies.ts): window 2 plus the resilience layer's configured work, side by side with it.
 */
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { WebSocket } from "node:http";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { createToken } from "../helpers/cli.js";
import type { ControlPlaneProcess } from "../helpers/control-plane.js";
import { type GcSummary, parseGcTrace } from "./gc-trace.js";
import { runWrk } from "./loadgen.js";
import { cpuMicros, memory, pinAllThreads } from "./proc.js";
import {
  type AllocationSummary,
  type CpuProfile,
  type HeapProfile,
  type ProfileSummary,
  summariseAllocations,
  summariseProfile,
} from "./profile.js";
import { type App, type BenchSidecar, NAMESPACE, startBenchSidecar } from "./topology.js";

/** A DevTools-protocol session with one process's inspector. */
class Inspector {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    (r: { result?: unknown; error?: { message: string } }) => void
  >();

  private constructor(private readonly ws: WebSocket) {
    ws.addEventListener("message", (ev) => {
      const msg = JSON.parse(String(ev.data)) as {
        id?: number;
        result?: unknown;
        error?: { message: string };
      };
      if (msg.id === undefined) return;
      this.pending.get(msg.id)?.(msg);
      this.pending.delete(msg.id);
    });
  }

  /** Connects to `url`; a refused or failed handshake is retried (3 tries, 200 ms apart). */
  static async open(url: string): Promise<Inspector> {
    let last: unknown;
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        return await new Promise<Inspector>((resolve, reject) => {
          const ws = new WebSocket(url);
          ws.addEventListener("open", () => resolve(new Inspector(ws)), { once: true });
          ws.addEventListener(
            "error",
            (ev) => reject((ev as { error?: unknown }).error ?? new Error("handshake")),
            {
              once: true,
            },
          );
        });
      } catch (err) {
        last = err;
        await delay(200);
      }
    }
    throw new TrellisError(ErrorCode.UNAVAILABLE, `could not open the inspector at ${url}: ${String(last)}`, {
      cause: last,
    });
  }

  call<T>(method: string, params: object = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, (r) =>
        r.error !== undefined
          ? reject(new TrellisError(ErrorCode.UNAVAILABLE, `${method}: ${r.error.message}`))
          : resolve(r.result as T),
      );
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  close(): void {
    this.ws.close();
  }
}

/**
 * The inspector URL a `--inspect` process printed to its log: the LAST one, because the sidecar's
 * launcher re-executes itself in place (process.execve, to set V8 flags) and each image prints its
 * own. Called after the sidecar is ready, when the final image has long printed its line.
 */
function inspectorUrl(sc: BenchSidecar): string {
  const all = [...readFileSync(sc.proc.logFile, "utf8").matchAll(/Debugger listening on (ws:\/\/\S+)/g)];
  const url = all.at(-1)?.[1];
  if (url === undefined)
    throw new TrellisError(ErrorCode.UNAVAILABLE, `no inspector URL in ${sc.proc.logFile}`);
  return url;
}

/** One profiled window. */
export interface ProfileWindow {
  summary: ProfileSummary;
  /** Requests wrk completed in the window and the profiled sidecar's CPU µs per request. */
  requests: number;
  rps: number;
  cpuUsPerRequest: number;
  /** The same load just before, without the profiler: CPU µs per request and req/s. */
  baselineCpuUsPerRequest: number;
  baselineRps: number;
  /** Collections during the window (from --trace-gc) and their main-thread pauses. */
  gc: GcSummary;
  /**
   * V8 heap, MiB: live (after a forced full GC) once warmed up and again after the window, and in
   * use just before that second GC; and the process RSS at the end. Live heap that grows with
   * requests is a leak; "in use" far above "live" is garbage V8 had not collected yet.
   */
  heap: {
    liveAfterWarmupMiB: number;
    inUseAfterWindowMiB: number;
    liveAfterWindowMiB: number;
    rssMiB: number;
  };
  /** Allocation sampling over a separate, shorter window right after (same load). */
  allocations: AllocationSummary;
  /** Where the raw CPU profile was saved, and beside it the allocation profile (`.heapprofile`);
   * git-ignored; both open in Chrome DevTools. */
  file: string;
}

/** Settings of the profiling phase. */
export interface ProfilingOptions {
  cp: ControlPlaneProcess;
  app: App;
  serverCpus: string | undefined;
  clientCpus: string | undefined;
  connections: number;
  threads: number;
  warmupS: number;
  durationS: number;
  /** Sampling interval, µs. */
  intervalUs: number;
  outDir: string;
  /** Applies the bench policies (policies.ts) to `service`; window 4 is skipped without it. */
  applyPolicies?: (service: string) => Promise<void>;
  /** Resolves once every bench policy of `service` is applied by its proxies. */
  waitPoliciesApplied?: (service: string) => Promise<void>;
}

/** Profiles `sc` (whose inspector is `insp`) for one window of wrk load on `port` / `host`. */
async function window(
  o: ProfilingOptions,
  warmupS: number,
  insp: Inspector,
  sc: BenchSidecar,
  port: number,
  host: string,
  label: string,
  fileName: string,
): Promise<ProfileWindow> {
  const load = { port, host, connections: o.connections, threads: o.threads, cpus: o.clientCpus };
  // The last `durationS` of the warm-up is measured: the same load and placement without the
  // profiler, to tell the profiler's own cost from the cost of this placement.
  if (warmupS > o.durationS) await runWrk({ ...load, durationS: warmupS - o.durationS });
  const b0 = cpuMicros(sc.proc.pid);
  const base = await runWrk({ ...load, durationS: o.durationS });
  const baselineCpuUsPerRequest = (cpuMicros(sc.proc.pid) - b0) / base.requests;
  const liveAfterWarmup = await liveHeapMiB(insp);
  await insp.call("Profiler.setSamplingInterval", { interval: o.intervalUs });
  const logStart = statSync(sc.proc.logFile).size;
  await insp.call("Profiler.start");
  const cpu0 = cpuMicros(sc.proc.pid);
  const r = await runWrk({ ...load, durationS: o.durationS });
  const cpu1 = cpuMicros(sc.proc.pid);
  const { profile } = await insp.call<{ profile: CpuProfile }>("Profiler.stop");
  const gcText = readFileSync(sc.proc.logFile).subarray(logStart).toString("utf8");
  const inUse = (await insp.call<{ usedSize: number }>("Runtime.getHeapUsage")).usedSize / 2 ** 20;
  const liveAfterWindow = await liveHeapMiB(insp);
  // Allocations, in a window of their own so their sampling does not weigh on the CPU profile.
  await insp.call("HeapProfiler.startSampling", {
    samplingInterval: 8192,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  const ra = await runWrk({ ...load, durationS: Math.max(2, o.durationS / 2) });
  const { profile: heapProfile } = await insp.call<{ profile: HeapProfile }>("HeapProfiler.stopSampling");
  const file = join(o.outDir, fileName);
  writeFileSync(file, JSON.stringify(profile));
  writeFileSync(file.replace(/\.cpuprofile$/, ".heapprofile"), JSON.stringify(heapProfile));
  return {
    summary: summariseProfile(profile, label),
    requests: r.requests,
    rps: r.rps,
    cpuUsPerRequest: (cpu1 - cpu0) / r.requests,
    baselineCpuUsPerRequest,
    baselineRps: base.rps,
    gc: parseGcTrace(gcText),
    heap: {
      liveAfterWarmupMiB: round1(liveAfterWarmup),
      inUseAfterWindowMiB: round1(inUse),
      liveAfterWindowMiB: round1(liveAfterWindow),
      rssMiB: round1(memory(sc.proc.pid).rssMiB),
    },
    allocations: summariseAllocations(heapProfile, ra.requests),
    file,
  };
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

/** Forces a full GC in the inspected process and returns the V8 heap still in use, MiB. */
async function liveHeapMiB(insp: Inspector): Promise<number> {
  await insp.call("HeapProfiler.collectGarbage");
  const u = await insp.call<{ usedSize: number }>("Runtime.getHeapUsage");
  return u.usedSize / 2 ** 20;
}

/** Runs the three profiling windows (see the file comment); stops every process it started. */
export async function profileSidecars(o: ProfilingOptions): Promise<ProfileWindow[]> {
  const out: ProfileWindow[] = [];
  const flags = ["--inspect=127.0.0.1:0", "--trace-gc"];
  // The app moves to the client CPU for the whole phase (measurements are over).
  if (o.clientCpus !== undefined) pinAllThreads(o.app.proc.pid, o.clientCpus);
  const started: BenchSidecar[] = [];
  const inspectors: Inspector[] = [];
  try {
    const apiToken = await createToken(o.cp.env, NAMESPACE, "prof-api");
    const webToken = await createToken(o.cp.env, NAMESPACE, "prof-web");
    const api = await startBenchSidecar({
      cp: o.cp,
      token: apiToken,
      service: "prof-api",
      appPort: o.app.port,
      cpus: o.serverCpus,
      nodeFlags: flags,
    });
    started.push(api);
    const apiInsp = await Inspector.open(inspectorUrl(api));
    inspectors.push(apiInsp);
    await apiInsp.call("Profiler.enable");
    // 1. Inbound, HTTP/1.1 from the client.
    out.push(
      await window(
        o,
        o.warmupS,
        apiInsp,
        api,
        api.ports.inbound,
        `prof-api.${NAMESPACE}`,
        "sidecar inbound (one hop): HTTP/1.1 client → sidecar → app (undici)",
        "profile-inbound-http1.cpuprofile",
      ),
    );
    const web = await startBenchSidecar({
      cp: o.cp,
      token: webToken,
      service: "prof-web",
      cpus: o.clientCpus,
      nodeFlags: flags,
    });
    started.push(web);
    const webInsp = await Inspector.open(inspectorUrl(web));
    inspectors.push(webInsp);
    await webInsp.call("Profiler.enable");
    const meshHost = `prof-api.${NAMESPACE}:${o.app.port}`;
    // 2. Outbound: web alone on the server CPU.
    if (o.serverCpus !== undefined && o.clientCpus !== undefined) {
      pinAllThreads(api.proc.pid, o.clientCpus);
      pinAllThreads(web.proc.pid, o.serverCpus);
    }
    out.push(
      await window(
        o,
        o.warmupS,
        webInsp,
        web,
        web.ports.outbound,
        meshHost,
        "sidecar outbound (client side of two hops): HTTP/1.1 app → sidecar → HTTP/2 mesh hop",
        "profile-outbound-h2.cpuprofile",
      ),
    );
    // 3. Inbound over the mesh hop: api alone on the server CPU.
    if (o.serverCpus !== undefined && o.clientCpus !== undefined) {
      pinAllThreads(web.proc.pid, o.clientCpus);
      pinAllThreads(api.proc.pid, o.serverCpus);
    }
    out.push(
      await window(
        o,
        // Window 2's load already ran through this sidecar's HTTP/2 inbound path: it is warm.
        Math.min(3, o.warmupS),
        apiInsp,
        api,
        web.ports.outbound,
        meshHost,
        "sidecar inbound (server side of two hops): HTTP/2 mesh hop → sidecar → app (undici)",
        "profile-inbound-h2.cpuprofile",
      ),
    );
    // 4. Outbound with every policy on the route: web alone on the server CPU again, to a third
    // sidecar (the policies' target) on the client CPU.
    if (o.applyPolicies !== undefined && o.waitPoliciesApplied !== undefined) {
      const service = "prof-api-policies";
      await o.applyPolicies(service);
      const pol = await startBenchSidecar({
        cp: o.cp,
        token: await createToken(o.cp.env, NAMESPACE, service),
        service,
        appPort: o.app.port,
        cpus: o.clientCpus,
      });
      started.push(pol);
      if (o.serverCpus !== undefined && o.clientCpus !== undefined) {
        pinAllThreads(api.proc.pid, o.clientCpus);
        pinAllThreads(web.proc.pid, o.serverCpus);
      }
      const polHost = `${service}.${NAMESPACE}:${o.app.port}`;
      // The first request makes web subscribe to the route; then its policies are in force.
      await runWrk({
        port: web.ports.outbound,
        host: polHost,
        connections: 1,
        threads: 1,
        durationS: 1,
        cpus: o.clientCpus,
      });
      await o.waitPoliciesApplied(service);
      out.push(
        await window(
          o,
          o.warmupS,
          webInsp,
          web,
          web.ports.outbound,
          polHost,
          "sidecar outbound with every bench policy on the route (window 2 + timeout, retry, fault and mirror draws, fallback, limits, outlier detection, retry budget)",
          "profile-outbound-h2-policies.cpuprofile",
        ),
      );
    }
  } finally {
    for (const i of inspectors) i.close();
    for (const sc of started.reverse()) await sc.proc.stop().catch(() => undefined);
  }
  return out;
}
