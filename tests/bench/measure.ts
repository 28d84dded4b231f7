/**
 * One measured run: a load generator against one variant while the CPU time and RSS of the
 * processes under test are read from /proc, and what else the machine was doing is estimated.
 *
 * CPU per request = Δ(utime + stime) of a process over the run ÷ responses the generator counted,
 * also split into user and kernel (sys) time. The window (first read before the generator starts,
 * last after it exits) also holds connection setup and teardown; at thousands of requests per run
 * that is noise.
 *
 * Interference: the machine may be shared (other sessions run their own loads on it). Δ(user +
 * nice + system) over all CPUs from /proc/stat, minus the CPU of every process of ours (the
 * topology, the load generator, this runner), is CPU that something else used during the run; it
 * is reported with every run so a disturbed run can be seen. (Interrupt and softirq time is left
 * out of both sides: loopback traffic is mostly softirq and belongs to nobody in particular.)
 * Before each run, `QuietGate` waits a bounded time for such foreign load to drop.
 */
import { readFileSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";
import { CLK_TCK, cpuMicros, cpuTimes, sampleRss } from "./proc.js";

/** A process whose CPU and memory a run reports. */
export interface Watched {
  /** Role in the topology: "app", "sidecar-api", "nginx-b", … */
  role: string;
  pid: number;
}

/** Busy CPU of the whole machine (user + nice + system), µs. */
function machineBusyMicros(): number {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] as string;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return (((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0)) * 1e6) / CLK_TCK;
}

/** utime + stime of this process and of its waited-for children (the load generators), µs. */
function selfAndChildrenMicros(): number {
  const text = readFileSync("/proc/self/stat", "utf8");
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // Fields 14-17: utime, stime, cutime, cstime (rest[0] is field 3).
  const ticks = Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
  return (ticks * 1e6) / CLK_TCK;
}

/** CPU of everything of ours: `pids` (each read safely: a process may have gone) and this runner. */
function oursMicros(pids: readonly number[]): number {
  let sum = selfAndChildrenMicros();
  for (const pid of pids) {
    try {
      sum += cpuMicros(pid);
    } catch {
      // Stopped meanwhile.
    }
  }
  return sum;
}

/** What one run measured besides the generator's own numbers. */
export interface RunResources {
  /** CPU µs per completed request, per watched role. */
  cpuUsPerRequest: Record<string, number>;
  /** The same split into user-space and kernel time, µs per request. */
  cpuSplitUsPerRequest: Record<string, { user: number; sys: number }>;
  /** CPU used by each watched role over the run, as a percentage of one core. */
  cpuPctOfCore: Record<string, number>;
  /** Largest VmRSS seen during the run, MiB, per watched role. */
  rssPeakMiB: Record<string, number>;
  /** CPU used by processes that are not ours during the run, % of one core (see the file comment). */
  interferencePctOfCore: number;
  /** Time the quiet gate waited before this run, ms, and the foreign load it last saw (% of a core). */
  quietWaitMs: number;
  foreignBeforePct: number;
}

/**
 * Waits before a run until processes not ours use less than `thresholdPct` of a core over a short
 * window, at most `maxPerRunMs` per run and `budgetMs` over the whole benchmark (so a machine that
 * stays busy delays the run by a bounded amount, and the run is then simply marked as disturbed).
 */
export class QuietGate {
  private spentMs = 0;

  constructor(
    private readonly ours: readonly number[],
    private readonly thresholdPct = 15,
    private readonly maxPerRunMs = 4000,
    private readonly budgetMs = 15_000,
  ) {}

  /** Resolves with the time waited and the last foreign load seen. */
  async wait(): Promise<{ waitedMs: number; foreignPct: number }> {
    const t0 = performance.now();
    let foreignPct = 0;
    for (;;) {
      const busy0 = machineBusyMicros();
      const ours0 = oursMicros(this.ours);
      const w0 = performance.now();
      await delay(300);
      const wallUs = (performance.now() - w0) * 1000;
      foreignPct = Math.max(
        0,
        (100 * (machineBusyMicros() - busy0 - (oursMicros(this.ours) - ours0))) / wallUs,
      );
      const waited = performance.now() - t0;
      if (
        foreignPct < this.thresholdPct ||
        waited >= this.maxPerRunMs ||
        this.spentMs + waited >= this.budgetMs
      ) {
        this.spentMs += waited;
        return { waitedMs: Math.round(waited), foreignPct };
      }
    }
  }

  /** Total time waited so far, ms. */
  get spent(): number {
    return Math.round(this.spentMs);
  }
}

/**
 * Runs `generate` (which resolves with the number of completed requests and its result) while
 * measuring `watched`; `others` are the rest of our processes (for the interference estimate).
 */
export async function measured<T>(
  gate: QuietGate,
  watched: readonly Watched[],
  others: readonly number[],
  generate: () => Promise<{ completed: number; result: T }>,
): Promise<{ result: T; resources: RunResources }> {
  const quiet = await gate.wait();
  const allPids = [...watched.map((w) => w.pid), ...others];
  const before = watched.map((w) => cpuTimes(w.pid));
  const busyBefore = machineBusyMicros();
  const oursBefore = oursMicros(allPids);
  const t0 = performance.now();
  const rss = sampleRss(
    watched.map((w) => w.pid),
    250,
  );
  let out: { completed: number; result: T };
  let peaks: Map<number, number>;
  try {
    out = await generate();
  } finally {
    peaks = rss.stop();
  }
  const wallUs = (performance.now() - t0) * 1000;
  const after = watched.map((w) => cpuTimes(w.pid));
  const busy = machineBusyMicros() - busyBefore;
  const ours = oursMicros(allPids) - oursBefore;
  const cpuUsPerRequest: Record<string, number> = {};
  const cpuSplitUsPerRequest: Record<string, { user: number; sys: number }> = {};
  const cpuPctOfCore: Record<string, number> = {};
  const rssPeakMiB: Record<string, number> = {};
  const n = out.completed > 0 ? out.completed : Number.NaN;
  watched.forEach((w, i) => {
    const a = after[i] as { userUs: number; sysUs: number };
    const b = before[i] as { userUs: number; sysUs: number };
    const user = a.userUs - b.userUs;
    const sys = a.sysUs - b.sysUs;
    cpuUsPerRequest[w.role] = (user + sys) / n;
    cpuSplitUsPerRequest[w.role] = { user: user / n, sys: sys / n };
    cpuPctOfCore[w.role] = (100 * (user + sys)) / wallUs;
    rssPeakMiB[w.role] = peaks.get(w.pid) ?? Number.NaN;
  });
  return {
    result: out.result,
    resources: {
      cpuUsPerRequest,
      cpuSplitUsPerRequest,
      cpuPctOfCore,
      rssPeakMiB,
      interferencePctOfCore: Math.max(0, (100 * (busy - ours)) / wallUs),
      quietWaitMs: quiet.waitedMs,
      foreignBeforePct: quiet.foreignPct,
    },
  };
}

/** Median of `xs` (mean of the middle two for an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
