/**
 * `trellis dev` from start to exit: the mesh (dev-mesh.ts), the load (load-generator.ts), the
 * numbers (service-stats.ts) and the view (live-view.ts), with the signals around them.
 *
 *  1. Work dir: --state-dir (kept), else a fresh temporary dir (removed at exit, kept on failure so
 *     the logs can be read).
 *  2. Start the mesh. Ctrl-C during the start stops what was started.
 *  3. First output (the process list), then paced load to web for the duration; a report every
 *     interval; the scenarios on their timeline (scenarios.ts), unless --no-scenarios.
 *  4. The end — duration over, SIGINT / SIGTERM / SIGHUP, or any process exiting by itself — stops
 *     the scenarios (one under way is undone and counted), then the load (answers in flight are
 *     awaited), then every process (dev-mesh.ts stop order).
 *  5. Last output: the summary over the whole load period, with how each process ended.
 * Exit status: 0 when the run was clean (every process started, none died early, each exited 0
 * on SIGTERM), 1 otherwise. A second Ctrl-C kills everything at once and exits 130.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { TrellisError } from "@trellis/proto/errors";
import { findSetpriv } from "./child-process.js";
import { demoPolicyYaml } from "./demo-policy.js";
import {
  CALL_TIMEOUT_MS,
  DEMO_NAMESPACE,
  DEMO_SERVICES,
  type DemoService,
  REPORT_EVERY_MS,
} from "./demo-wire.js";
import { DevMesh, stoppedCleanly } from "./dev-mesh.js";
import { createView, type Out, type Summary, type ViewMode } from "./live-view.js";
import { LoadGenerator } from "./load-generator.js";
import { ScenarioRunner } from "./scenario-runner.js";
import { planScenarios, type ScenarioLevers } from "./scenarios.js";
import { ServiceStats } from "./service-stats.js";

export interface DevOptions {
  /** Length of the load, ms; 0 = until interrupted. */
  durationMs: number;
  /** Requests per second to web. */
  rate: number;
  mode: ViewMode;
  /** Report interval, ms. */
  intervalMs: number;
  /** Keep everything here instead of a temporary dir. */
  stateDir?: string;
  /** HOME of the control plane (where it writes .trellis/config). */
  home?: string;
  /** etcd endpoints; empty = the embedded store. */
  etcd: readonly string[];
  /** Play the scenarios (false: --no-scenarios). */
  scenarios: boolean;
}

export interface DevIo {
  stdout: Out;
  /** Progress and errors, one line each. */
  err: (line: string) => void;
  /** Resolves if stdout goes away (EPIPE): the run then ends like an interrupted one. */
  closed?: Promise<void>;
}

/** How much the TTY table looks back: a 1 s window at 50 req/s makes p99 the maximum of 50. */
const TTY_WINDOW_MS = 5_000;
/** App batches arrive up to REPORT_EVERY_MS late: report windows end this far in the past. */
const REPORT_LAG_MS = REPORT_EVERY_MS + 100;
/** A repeated signal this soon after the first is the same interrupt delivered twice. */
const REPEAT_WINDOW_MS = 1_000;

/** Runs the demo; resolves with the exit status. */
export async function runDev(opts: DevOptions, io: DevIo): Promise<number> {
  // 1.
  const keep = opts.stateDir !== undefined;
  const workDir =
    opts.stateDir !== undefined ? resolve(opts.stateDir) : await mkdtemp(join(tmpdir(), "trellis-dev-"));
  await mkdir(workDir, { recursive: true });
  if (findSetpriv() === undefined)
    io.err(
      "warning: setpriv (util-linux) not found: if trellis dev is killed with SIGKILL, its child processes survive",
    );

  const stats = new Map<DemoService, ServiceStats>(DEMO_SERVICES.map((s) => [s, new ServiceStats(s)]));
  const mesh = new DevMesh({
    workDir,
    ...(opts.home !== undefined ? { home: resolve(opts.home) } : {}),
    etcd: opts.etcd,
    policy: demoPolicyYaml(opts.rate),
    progress: (m) => io.err(`trellis dev: ${m}`),
    onCalls: (target, at, ms, ok) => {
      const s = stats.get(target);
      if (s === undefined) return;
      for (let i = 0; i < at.length; i++) s.add(at[i] as number, ms[i] as number, ok[i] === 1);
    },
  });
  const view = createView(opts.mode, io.stdout);

  // Signals: the first ends the run gracefully, a second kills everything now. One Ctrl-C can
  // arrive twice — from the terminal (to the whole foreground group) and forwarded by `npm run` —
  // so a repeat within REPEAT_WINDOW_MS of the first counts as the same one.
  let signalled: NodeJS.Signals | undefined;
  let signalledAt = 0;
  let onSignal: () => void = () => {};
  const interrupted = new Promise<void>((r) => {
    onSignal = r;
  });
  const handler = (sig: NodeJS.Signals) => {
    if (signalled !== undefined) {
      if (Date.now() - signalledAt < REPEAT_WINDOW_MS) return;
      io.err(`trellis dev: ${sig} again: killing every process`);
      view.close();
      process.exit(130); // the exit hook of child-process.ts SIGKILLs the children
    }
    signalled = sig;
    signalledAt = Date.now();
    io.err(`trellis dev: ${sig}: stopping (again to kill everything at once)`);
    onSignal();
  };
  // Nobody reads our output any more (`trellis dev --json | head -1`): end the run as if interrupted.
  void io.closed?.then(() => {
    if (signalled === undefined) {
      signalled = "SIGPIPE";
      signalledAt = Date.now();
      onSignal();
    }
  });
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of signals) process.on(s, handler);

  let reason: Summary["reason"] = "duration";
  let failed = false;
  let loadStart = 0;
  let loadEnd = 0;
  let load: LoadGenerator | undefined;
  let runner: ScenarioRunner | undefined;
  let reporter: NodeJS.Timeout | undefined;
  const plan = opts.scenarios ? planScenarios(opts.durationMs) : [];
  const windows = (from: number, to: number) =>
    DEMO_SERVICES.map((s) => (stats.get(s) as ServiceStats).window(from, to));
  try {
    // 2.
    const starting = mesh.start();
    starting.catch(() => {}); // after an interrupt its failure (processes stopped under it) is moot
    const started = await Promise.race([starting.then(() => true), interrupted.then(() => false)]);
    if (!started) {
      reason = "interrupted";
    } else {
      // 3.
      const windowMs = opts.mode === "tty" ? Math.max(TTY_WINDOW_MS, opts.intervalMs) : opts.intervalMs;
      view.start({
        processes: mesh.processes(),
        workDir,
        home: mesh.home,
        logDir: mesh.logDir,
        rate: opts.rate,
        durationS: opts.durationMs / 1000,
        windowS: windowMs / 1000,
        scenarios: plan.map((p) => ({
          name: p.def.name,
          title: p.def.title,
          startS: p.startMs / 1000,
          endS: p.endMs / 1000,
        })),
      });
      const web = stats.get("web") as ServiceStats;
      load = new LoadGenerator({
        port: mesh.entryPort,
        host: `web.${DEMO_NAMESPACE}`,
        rate: opts.rate,
        timeoutMs: CALL_TIMEOUT_MS,
        onResult: (at, ms, ok, status, headers) => {
          web.add(at, ms, ok);
          runner?.onLoadResult(status, headers);
        },
      });
      loadStart = Date.now();
      load.start();
      if (plan.length > 0) {
        runner = new ScenarioRunner({
          plan,
          levers: levers(mesh, opts.rate),
          sources: () => mesh.metricsSources(),
          loadStart,
          callers: windows,
          onEvent: (e) => view.scenario(e),
          onError: (m) => io.err(`trellis dev: ${m}`),
        });
        runner.start();
      }
      reporter = setInterval(() => {
        const to = Date.now() - REPORT_LAG_MS;
        const from = Math.max(loadStart, to - windowMs);
        if (to <= from) return; // the first interval is shorter than the lag: nothing to say yet
        view.report({
          elapsedS: (Date.now() - loadStart) / 1000,
          windowS: (to - from) / 1000,
          services: windows(from, to),
        });
      }, opts.intervalMs);
      const ended: Promise<Summary["reason"]>[] = [
        interrupted.then(() => "interrupted" as const),
        mesh.firstExit().then((c) => {
          io.err(`trellis dev: ${c.error("exited while the demo was running").message}`);
          return "process-exited" as const;
        }),
      ];
      if (opts.durationMs > 0)
        ended.push(new Promise((r) => setTimeout(() => r("duration"), opts.durationMs).unref()));
      reason = await Promise.race(ended);
    }
  } catch (err) {
    failed = true;
    io.err(`trellis dev: ${TrellisError.from(err).message}`);
  } finally {
    // 4.
    await runner?.stop();
    if (reporter !== undefined) clearInterval(reporter);
    if (load !== undefined) {
      await load.stop();
      loadEnd = Date.now();
    }
  }
  if (reason === "process-exited") failed = true;
  io.err("trellis dev: stopping every process");
  const stopped = await mesh.stop();
  for (const s of signals) process.off(s, handler);
  const clean = !failed && stopped.every(stoppedCleanly);

  // 5.
  if (loadStart > 0) {
    // Every app flushed its last batch before it exited, so the counts are complete; the rates
    // are over the load period, not until now.
    const spanS = Math.max(0.001, (loadEnd - loadStart) / 1000);
    view.summary({
      durationS: spanS,
      reason,
      services: DEMO_SERVICES.map((s) => {
        const w = (stats.get(s) as ServiceStats).window(loadStart - 1, Date.now());
        return { ...w, rps: w.requests / spanS };
      }),
      scenarios: runner?.results() ?? [],
      stopped,
      clean,
    });
  }
  view.close();
  if (!clean) {
    for (const p of stopped.filter((p) => !stoppedCleanly(p)))
      io.err(
        `trellis dev: ${p.name} (pid ${p.pid}) ${p.forced ? "did not stop within the grace period and was killed" : `ended with code ${p.code ?? "-"} signal ${p.signal ?? "-"}`}`,
      );
    io.err(`trellis dev: the run was not clean; state and logs are kept in ${workDir}`);
    return 1;
  }
  if (!keep) await rm(workDir, { recursive: true, force: true });
  return 0;
}

/** What the scenarios may do to this run: the mesh's apps, and extra load at web. */
function levers(mesh: DevMesh, rate: number): ScenarioLevers {
  return {
    rate,
    behave: (instance, failStatus, delayMs) => mesh.behave(instance, failStatus, delayMs),
    extraLoad: (extraRate, onResult) => {
      const extra = new LoadGenerator({
        port: mesh.entryPort,
        host: `web.${DEMO_NAMESPACE}`,
        rate: extraRate,
        timeoutMs: CALL_TIMEOUT_MS,
        onResult: (_at, _ms, _ok, status, headers) => onResult(status, headers),
      });
      extra.start();
      return () => extra.stop();
    },
  };
}
