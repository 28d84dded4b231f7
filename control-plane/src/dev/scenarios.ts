/**
 * The three scenarios `trellis dev` plays (unless `--no-scenarios`), one after the other, and what
 * each one says when it starts and ends. The timeline (scenario-runner.ts runs it) is laid out for
 * a 30 s run and scaled to the run's duration (a run until Ctrl-C uses the 30 s one, once):
 *
 *   0 ─ 3 s   steady
 *   3 ─ 11 s  failing instance: orders-2's app answers 503 to everything. The orders route retries
 *             gateway errors on another replica, and outlier detection ejects orders-2 after 5 in a
 *             row (3 s, then 6 s): web should see no errors, only the few retries it takes.
 *  13 ─ 19 s  slow dependency: inventory answers 2 s late. The inventory route's 500 ms timeout
 *             ends each call with DEADLINE_EXCEEDED (`upstream_timeout`), and orders answers
 *             without the stock: slower (500 ms) but not hanging for 2 s.
 *  22 ─ 25 s  burst over a local limit: twice the load's rate extra at web, over its local limit
 *             of 1.5 times the rate: the excess gets 429 `rate_limited` with RateLimit-* and
 *             Retry-After.
 *  25 ─ 30 s  steady
 *
 * The announcements say what is done and what the policy *should* make of it; the end of each
 * says what the sidecars counted and what the callers saw, whatever that was.
 */
import type { IncomingHttpHeaders } from "node:http";
import {
  BASE_EJECTION_S,
  EJECTION_THRESHOLD,
  INVENTORY_TIMEOUT_MS,
  ORDERS_RETRY_ATTEMPTS,
  webRateLimit,
} from "./demo-policy.js";
import type { DemoService } from "./demo-wire.js";
import type { MeshCounts } from "./mesh-metrics.js";
import type { WindowStats } from "./service-stats.js";

export type ScenarioName = "failing-instance" | "slow-dependency" | "rate-limit-burst";

/** The replica that fails in the failing-instance scenario. */
export const FAILING_INSTANCE = "orders-2";
/** What it answers meanwhile. */
export const FAIL_STATUS = 503;
/** Latency inventory adds in the slow-dependency scenario, ms. */
export const SLOW_DELAY_MS = 2_000;
/** The burst's extra load, as a multiple of the run's rate. */
export const BURST_FACTOR = 2;

/** The run length the timeline is laid out for, ms. */
export const TIMELINE_MS = 30_000;

/** What a scenario may do to the running demo. */
export interface ScenarioLevers {
  /** The steady load's rate, requests per second. */
  readonly rate: number;
  /** Makes one demo instance fail or slow (BehaveMessage); `(name, 0, 0)` restores it. */
  behave(instance: string, failStatus: number, delayMs: number): void;
  /** Starts extra paced load at web; the function returned stops it (answers in flight awaited). */
  extraLoad(rate: number, onResult: ResultSink): () => Promise<void>;
}

/** One answer to a load generator: its status (0: none) and headers. */
export type ResultSink = (status: number, headers: IncomingHttpHeaders | undefined) => void;

/** Answers a load generator got while a scenario ran. */
export interface StatusTally {
  requests: number;
  /** Count per HTTP status; "0" = no answer (timeout, reset). */
  statuses: Record<string, number>;
  /** Count per `x-trellis-error` reason: answers the mesh made itself. */
  meshErrors: Record<string, number>;
  /** 429 answers that carried RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset and Retry-After. */
  rateLimitHeaders: number;
  /** Those headers of the first such 429, as an example. */
  rateLimitExample?: Record<string, string>;
}

/** What a scenario's end announcement is made from. */
export interface ScenarioOutcome {
  counts: MeshCounts;
  /** The watched service as its callers saw it during the scenario. */
  watched: WindowStats;
  load: StatusTally;
  burst?: StatusTally;
}

export interface ScenarioDefinition {
  name: ScenarioName;
  /** For people: "failing instance". */
  title: string;
  /** Whose row shows the effect (as that service's callers saw it). */
  watch: DemoService;
  /** Where it sits on the 30 s timeline, ms. */
  startMs: number;
  endMs: number;
  /** The start announcement: what is done, and what the policy should make of it. */
  announce(lengthS: number, rate: number): string;
  /** Starts it; the function returned undoes it. */
  begin(levers: ScenarioLevers, sinks: { burst: ResultSink }): () => Promise<void>;
  /** The end announcement, from what was counted. */
  report(o: ScenarioOutcome): string;
}

const failingInstance: ScenarioDefinition = {
  name: "failing-instance",
  title: "failing instance",
  watch: "orders",
  startMs: 3_000,
  endMs: 11_000,
  announce: (lengthS) =>
    `${FAILING_INSTANCE} answers ${FAIL_STATUS} for ${lengthS.toFixed(1)}s; retries (up to ${ORDERS_RETRY_ATTEMPTS}, ` +
    `on another replica) and outlier ejection (after ${EJECTION_THRESHOLD} gateway errors in a row, for ` +
    `${BASE_EJECTION_S}s, then longer) should absorb it`,
  begin: (levers) => {
    levers.behave(FAILING_INSTANCE, FAIL_STATUS, 0);
    return async () => levers.behave(FAILING_INSTANCE, 0, 0);
  },
  report: (o) =>
    `${FAILING_INSTANCE} answers normally again; the sidecars counted ${plural(o.counts.retries, "retry", "retries")} ` +
    `and ${plural(o.counts.ejections, "ejection")}; web's calls to orders: ${okText(o.watched)}`,
};

const slowDependency: ScenarioDefinition = {
  name: "slow-dependency",
  title: "slow dependency",
  watch: "inventory",
  startMs: 13_000,
  endMs: 19_000,
  announce: (lengthS) =>
    `inventory answers ${SLOW_DELAY_MS / 1000}s late for ${lengthS.toFixed(1)}s; the ${INVENTORY_TIMEOUT_MS}ms ` +
    "route timeout should end each call fast with upstream_timeout (504, gRPC DEADLINE_EXCEEDED), and " +
    "orders answer without the stock instead of hanging",
  begin: (levers) => {
    levers.behave("inventory", 0, SLOW_DELAY_MS);
    return async () => levers.behave("inventory", 0, 0);
  },
  report: (o) =>
    `inventory is fast again; the sidecars counted ${o.counts.upstreamTimeouts} upstream_timeout; ` +
    `orders' calls to inventory: ${okText(o.watched)}, p99 ${msText(o.watched.p99Ms)} ` +
    `instead of inventory's ${SLOW_DELAY_MS / 1000}s` +
    // Timeouts are gateway errors: each orders sidecar ejects inventory's only endpoint, which the
    // balancer then keeps using (panic mode: fewer than minHealthPercent usable). Said, not hidden.
    (o.counts.ejections > 0
      ? `; outlier detection ejected ${plural(o.counts.ejections, "endpoint")} meanwhile (inventory's only ` +
        "one stays in use: panic mode)"
      : ""),
};

const rateLimitBurst: ScenarioDefinition = {
  name: "rate-limit-burst",
  title: "burst over a local limit",
  watch: "web",
  startMs: 22_000,
  endMs: 25_000,
  announce: (lengthS, rate) => {
    const limit = webRateLimit(rate);
    return (
      `${BURST_FACTOR * rate} extra req/s at web for ${lengthS.toFixed(1)}s, over its local limit of ` +
      `${limit.requestsPerSecond}/s (burst ${limit.burst}); the excess should get 429 rate_limited with ` +
      "RateLimit-* and Retry-After headers"
    );
  },
  begin: (levers, sinks) => levers.extraLoad(BURST_FACTOR * levers.rate, sinks.burst),
  report: (o) => {
    const got = [o.load, o.burst].filter((t): t is StatusTally => t !== undefined);
    const n429 = got.reduce((n, t) => n + (t.statuses["429"] ?? 0), 0);
    const withHeaders = got.reduce((n, t) => n + t.rateLimitHeaders, 0);
    const n200 = got.reduce((n, t) => n + (t.statuses["200"] ?? 0), 0);
    return (
      `the burst stopped; the sidecars counted ${o.counts.rateLimited} rate_limited; the callers got ${n429} × 429 ` +
      `(${withHeaders} with RateLimit-* and Retry-After) and ${n200} × 200`
    );
  },
};

/** Every scenario, in timeline order. */
export const SCENARIOS: readonly ScenarioDefinition[] = [failingInstance, slowDependency, rateLimitBurst];

/** A scenario placed on a run: offsets from the start of the load, ms. */
export interface PlannedScenario {
  def: ScenarioDefinition;
  startMs: number;
  endMs: number;
}

/** The timeline for a run of `durationMs` (0: until interrupted, the 30 s timeline). */
export function planScenarios(durationMs: number): PlannedScenario[] {
  const scale = durationMs > 0 ? durationMs / TIMELINE_MS : 1;
  return SCENARIOS.map((def) => ({
    def,
    startMs: Math.round(def.startMs * scale),
    endMs: Math.round(def.endMs * scale),
  }));
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function okText(w: WindowStats): string {
  if (w.successRate === null) return "no calls";
  return `${(w.successRate * 100).toFixed(w.successRate === 1 ? 0 : 1)}% ok (${w.ok} of ${w.requests})`;
}

function msText(ms: number | null): string {
  if (ms === null) return "-";
  return ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(2)}s`;
}
