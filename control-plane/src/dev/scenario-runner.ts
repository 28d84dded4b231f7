/**
 * Plays the scenarios (scenarios.ts) on the running demo and keeps what came of each.
 *
 * Per scenario, in timeline order (every time is the plan's, from the start of the load, so a
 * slow reading on a busy machine delays nothing after it):
 *  1. READ_LEAD_MS before its start, read every sidecar's /metrics (the baseline).
 *  2. At its start (or when that reading is done, if later), announce it and begin it.
 *  3. At its end, undo it (the instance behaves again, the burst's load stops).
 *  4. Wait SETTLE_MS more — less if the next scenario's reading is due sooner —, so what was in
 *     flight at the end (a call cut at the route timeout, a retry in backoff) is counted with it;
 *     read /metrics again.
 *  5. The sidecars' counts are the difference of the two readings; the callers' view is each
 *     service's calls completed between the start and that second reading, and the load
 *     generators' answers by status meanwhile. Announce the end with both.
 * stop() — the run is over — cuts any step short: a scenario under way is undone at once and
 * counted up to then (`completed: false`); those not started yet are left out.
 */
import type { IncomingHttpHeaders } from "node:http";
import { setTimeout as delay } from "node:timers/promises";
import { countsBetween, type MeshCounts, type MetricsSource, readMesh } from "./mesh-metrics.js";
import type { PlannedScenario, ScenarioLevers, ScenarioName, StatusTally } from "./scenarios.js";
import type { WindowStats } from "./service-stats.js";

/** Time after a scenario's end that still counts toward it, ms (step 4). */
export const SETTLE_MS = 1_000;
/** How long before a scenario's start its baseline is read, ms (step 1; a reading takes ~10 ms). */
export const READ_LEAD_MS = 250;

/** What one scenario did, for the summary. Times in seconds from the start of the load. */
export interface ScenarioResult {
  name: ScenarioName;
  title: string;
  /** The start announcement: what was done, and what the policy should make of it. */
  description: string;
  /** The end announcement: what the sidecars counted and the callers saw. */
  outcome: string;
  startS: number;
  /** When it was undone. */
  endS: number;
  /** The counts and the callers' view cover startS to this (endS + SETTLE_MS, unless cut short). */
  countedUntilS: number;
  /** False when the run ended before the scenario did. */
  completed: boolean;
  /** From the sidecars' own /metrics. */
  sidecars: MeshCounts;
  callers: {
    /** Every service as its callers saw it meanwhile (the same numbers as the table). */
    services: WindowStats[];
    /** What the steady load to web got. */
    load: StatusTally;
    /** What the burst's extra load got (the burst scenario only). */
    burst?: StatusTally;
  };
}

export type ScenarioEvent =
  | { event: "start"; name: ScenarioName; title: string; elapsedS: number; message: string }
  | {
      event: "end";
      name: ScenarioName;
      title: string;
      elapsedS: number;
      message: string;
      result: ScenarioResult;
    };

export interface RunnerOptions {
  plan: readonly PlannedScenario[];
  levers: ScenarioLevers;
  /** The sidecars to read, asked at each reading. */
  sources: () => readonly MetricsSource[];
  /** Wall-clock ms when the load started: offsets count from here. */
  loadStart: number;
  /** Each service's calls completed in (fromMs, toMs], as the table computes them. */
  callers: (fromMs: number, toMs: number) => WindowStats[];
  onEvent: (e: ScenarioEvent) => void;
  /** A scenario could not be played (a lever failed): the run goes on without it. */
  onError: (message: string) => void;
  /** Default SETTLE_MS. */
  settleMs?: number;
}

interface Played {
  planned: PlannedScenario;
  description: string;
  startAt: number;
  endAt: number;
  countedUntil: number;
  completed: boolean;
  counts: MeshCounts | undefined;
  load: StatusTally;
  burst: StatusTally;
}

export class ScenarioRunner {
  private readonly abort = new AbortController();
  private playing: Promise<void> | undefined;
  /** The scenario whose window is open (steps 2–4): the steady load's answers are tallied for it. */
  private active: Played | undefined;
  private readonly played: Played[] = [];

  constructor(private readonly opts: RunnerOptions) {}

  /** Starts the timeline (offsets from opts.loadStart). */
  start(): void {
    this.playing ??= this.play().catch((err: unknown) => {
      this.opts.onError(`scenarios stopped: ${err instanceof Error ? err.message : String(err)}`);
    });
  }

  /** One answer to the steady load (run-dev.ts feeds every one in). */
  onLoadResult(status: number, headers: IncomingHttpHeaders | undefined): void {
    if (this.active !== undefined) tally(this.active.load, status, headers);
  }

  /** Ends the timeline (see the file comment) and resolves once any scenario under way is undone and counted. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.playing;
  }

  /**
   * What every scenario that started did, the callers' view computed now (call it once every
   * app's last batch is in, for complete numbers).
   */
  results(): ScenarioResult[] {
    return this.played.filter((p) => p.counts !== undefined).map((p) => this.result(p));
  }

  private async play(): Promise<void> {
    const { plan, loadStart } = this.opts;
    const settleMs = this.opts.settleMs ?? SETTLE_MS;
    for (const [i, planned] of plan.entries()) {
      // 1.
      if (!(await this.until(loadStart + planned.startMs - READ_LEAD_MS))) return;
      const before = await readMesh(this.opts.sources());
      // 2.
      if (!(await this.until(loadStart + planned.startMs))) return;
      const def = planned.def;
      // What is left of its planned length, should the reading have run late.
      const lengthMs = Math.max(0, loadStart + planned.endMs - Date.now());
      const p: Played = {
        planned,
        description: def.announce(lengthMs / 1000, this.opts.levers.rate),
        startAt: Date.now(),
        endAt: 0,
        countedUntil: 0,
        completed: false,
        counts: undefined,
        load: emptyTally(),
        burst: emptyTally(),
      };
      this.played.push(p);
      this.active = p;
      this.opts.onEvent({
        event: "start",
        name: def.name,
        title: def.title,
        elapsedS: this.elapsedS(p.startAt),
        message: p.description,
      });
      let undo: (() => Promise<void>) | undefined;
      try {
        undo = def.begin(this.opts.levers, { burst: (status, headers) => tally(p.burst, status, headers) });
        // 3.
        p.completed = await this.until(loadStart + planned.endMs);
      } finally {
        p.endAt = Date.now();
        await undo?.();
      }
      // 4.
      const next = plan[i + 1];
      if (p.completed)
        await this.until(
          Math.min(
            p.endAt + settleMs,
            next === undefined ? Infinity : loadStart + next.startMs - READ_LEAD_MS,
          ),
        );
      const after = await readMesh(this.opts.sources());
      p.countedUntil = Date.now();
      this.active = undefined;
      // 5.
      p.counts = countsBetween(before, after);
      const result = this.result(p);
      this.opts.onEvent({
        event: "end",
        name: def.name,
        title: def.title,
        elapsedS: this.elapsedS(p.countedUntil),
        message: result.outcome,
        result,
      });
      if (!p.completed) return;
    }
  }

  private result(p: Played): ScenarioResult {
    const def = p.planned.def;
    const counts = p.counts as MeshCounts;
    const services = this.opts.callers(p.startAt, p.countedUntil);
    const watched = services.find((s) => s.service === def.watch);
    const burst = p.burst.requests > 0 ? { burst: p.burst } : {};
    return {
      name: def.name,
      title: def.title,
      description: p.description,
      outcome: watched === undefined ? "" : def.report({ counts, watched, load: p.load, ...burst }),
      startS: round1(this.elapsedS(p.startAt)),
      endS: round1(this.elapsedS(p.endAt)),
      countedUntilS: round1(this.elapsedS(p.countedUntil)),
      completed: p.completed,
      sidecars: counts,
      callers: { services, load: p.load, ...burst },
    };
  }

  private elapsedS(at: number): number {
    return (at - this.opts.loadStart) / 1000;
  }

  /** Waits until wall-clock `at`; false when stop() came first. */
  private until(at: number): Promise<boolean> {
    return this.pause(Math.max(0, at - Date.now()));
  }

  private async pause(ms: number): Promise<boolean> {
    if (this.abort.signal.aborted) return false;
    try {
      await delay(ms, undefined, { signal: this.abort.signal });
      return true;
    } catch {
      return false;
    }
  }
}

function emptyTally(): StatusTally {
  return { requests: 0, statuses: {}, meshErrors: {}, rateLimitHeaders: 0 };
}

const RATE_LIMIT_HEADERS = ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after"];

function tally(t: StatusTally, status: number, headers: IncomingHttpHeaders | undefined): void {
  t.requests++;
  const key = String(status);
  t.statuses[key] = (t.statuses[key] ?? 0) + 1;
  const reason = headers?.["x-trellis-error"];
  if (typeof reason === "string") t.meshErrors[reason] = (t.meshErrors[reason] ?? 0) + 1;
  if (status === 429 && headers !== undefined && RATE_LIMIT_HEADERS.every((h) => headers[h] !== undefined)) {
    t.rateLimitHeaders++;
    t.rateLimitExample ??= Object.fromEntries(RATE_LIMIT_HEADERS.map((h) => [h, String(headers[h])]));
  }
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
