/**
 * The shape of a benchmark results file (tests/bench/results/*.json) and the summary computed from
 * the raw runs: medians over repetitions, ratios to the direct variant measured in the same run,
 * added latency over direct at the same offered rate, the cost of the resilience policies (each
 * "+ policies" variant against the same path without them, same run), and the targets checked.
 */
import type { OpenLoopResult, WrkResult } from "./loadgen.js";
import { median, type RunResources } from "./measure.js";
import type { Memory } from "./proc.js";
import type { ProfileWindow } from "./profiling.js";

/** Which path a variant measures. */
export type VariantId =
  | "direct"
  | "node-proxy-1hop"
  | "sidecar-1hop"
  | "sidecar-2hop"
  | "sidecar-1hop-policies"
  | "sidecar-2hop-policies"
  | "nginx-1hop"
  | "nginx-2hop";

/** A variant as recorded in the results. */
export interface VariantInfo {
  id: VariantId;
  label: string;
  /** Proxies between the client and the app. */
  hops: number;
  /** Roles (see RunResources) of the proxy processes on the path. */
  proxies: string[];
  /** What the hop between two proxies speaks, for two-hop variants. */
  interHop?: string;
  /** For a "+ policies" variant: the variant that does the same work without the policies. */
  withoutPolicies?: VariantId;
}

/** One saturation run (wrk). */
export interface SaturationRun {
  variant: VariantId;
  rep: number;
  wrk: WrkResult;
  resources: RunResources;
}

/** One paced run (open-loop) at a fixed rate. */
export interface LatencyRun {
  variant: VariantId;
  rep: number;
  /** The meshed variant whose half-capacity rate this is (direct runs at both). */
  rateOf: VariantId;
  openLoop: OpenLoopResult;
  resources: RunResources;
}

/** One row of the summary table. */
export interface SummaryRow {
  variant: VariantId;
  label: string;
  hops: number;
  rps: { median: number; runs: number[]; vsDirect: number };
  /** CPU µs per request at saturation (medians): all proxies on the path, per hop, each, the app. */
  cpuUsPerRequest: { proxies: number; perHop: number; each: Record<string, number>; app: number };
  /** Medians of user-space and kernel CPU µs per request at saturation, per process on the path (app included). */
  cpuSplitUsPerRequest: Record<string, { user: number; sys: number }>;
  /** At the paced rate (half the meshed maximum): medians, and added over direct at the same rate. */
  latency?: {
    rate: number;
    p50Us: number;
    p99Us: number;
    directP50Us: number;
    directP99Us: number;
    addedP50Us: number;
    addedP99Us: number;
    addedP99PerHopUs: number;
    /** Proxies' CPU µs per request at that rate (less batching than at saturation). */
    cpuUsPerRequest: number;
  };
  /** VmRSS of each proxy process: idle before any load (and its private, anonymous part), peak
   * under load, idle after, MiB. */
  rssMiB: Record<
    string,
    { idleBefore: number; idleBeforeAnon: number; underLoad: number; idleAfter: number }
  >;
  /** Failed requests over all runs of this variant (connect/read/timeout errors, non-2xx). */
  errors: number;
  /** Largest interference (other processes' CPU, % of a core) seen in this variant's runs. */
  maxInterferencePct: number;
}

/** A value with and without the policies, and with ÷ without. */
export interface WithWithout {
  with: number;
  without: number;
  ratio: number;
}

/** Foreign load (other processes, % of a core) above which a run is listed as disturbed. */
export const DISTURBED_PCT = 20;

/** One pair of saturation runs, with and without the policies, back to back. */
export interface PolicyPair {
  /** The pair's number (`rep` of its two runs). */
  pair: number;
  /** Proxies' CPU µs per request (all hops). */
  cpuUsPerRequest: WithWithout;
  /** The app's CPU µs per request in each run: the same work, so a change shows the machine's speed moved. */
  appCpuUsPerRequest: WithWithout;
  /** cpuUsPerRequest.ratio ÷ appCpuUsPerRequest.ratio: the ratio corrected for the machine's speed. */
  appNormalisedRatio: number;
  /** Foreign load during each of the two runs, % of a core. */
  interferencePct: { with: number; without: number };
}

/**
 * What the resilience policies cost (tests/bench/policies.ts): a "+ policies" variant against the
 * same path without them, both measured in the same run.
 *
 * The comparison is paired: the two runs of a pair are back to back (seconds apart) and see about
 * the same machine, while runs minutes apart on a shared machine can differ by far more than the
 * effect measured (30–70 % has been seen with no foreign load visible inside the machine). So the
 * headline is the median of the pairs' ratios, with its quartiles as the spread.
 */
export interface PolicyCost {
  variant: VariantId;
  withoutPolicies: VariantId;
  hops: number;
  /** Where the pairs come from: the dedicated short pairs (run.ts step 4b), or the saturation rounds. */
  source: "policy pairs" | "saturation rounds";
  pairs: PolicyPair[];
  /**
   * Proxies' CPU µs per request at saturation: medians of each side, and as `ratio` the median of
   * the pairs' with ÷ without (the goal is checked against it).
   */
  cpuUsPerRequest: WithWithout;
  /** First and third quartile of the pairs' ratios. */
  ratioQuartiles: [number, number];
  /**
   * The same, corrected for the machine's speed (PolicyPair.appNormalisedRatio): median and
   * quartiles. The app does the same work in both runs of a pair, so its CPU per request moves
   * only with the machine (host contention, a neighbour on the CPU) — and a little with the
   * proxy's pace, which makes the correction lean slightly towards 1 when the policies do cost.
   */
  appNormalised: { ratio: number; quartiles: [number, number] };
  /** Median req/s of each side, and the median of the pairs' ratios. */
  rps: WithWithout;
  /**
   * At the same paced rate (half the variant without policies' maximum), medians over all paced
   * rounds: p50 and p99 µs, and the proxies' CPU µs per request at that rate. Absent without
   * paced runs.
   */
  latency?: { rate: number; p50Us: WithWithout; p99Us: WithWithout; cpuUsPerRequest: WithWithout };
}

/** The `q`-quantile (0–1) of `xs`, linear between neighbours; NaN for none. */
function quantile(xs: readonly number[], q: number): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return (s[lo] as number) + ((s[hi] as number) - (s[lo] as number)) * (pos - lo);
}

/** The issue's goal for the policies: CPU per request with them ≤ this × without. */
export const POLICY_CPU_GOAL_RATIO = 1.1;

function withWithout(w: number, wo: number): WithWithout {
  return { with: w, without: wo, ratio: w / wo };
}

/** The proxies' CPU µs per request of one run, summed over the variant's proxies. */
function proxiesCpu(v: VariantInfo, r: { resources: RunResources }): number {
  return v.proxies.reduce((s, role) => s + (r.resources.cpuUsPerRequest[role] ?? NaN), 0);
}

/**
 * One PolicyCost per variant that names its `withoutPolicies` counterpart, from `runs`: the
 * policy pairs (run.ts step 4b) when there are any, else the saturation rounds (a run of each per
 * round; `source` says which).
 */
export function policyCosts(
  variants: readonly VariantInfo[],
  runs: readonly SaturationRun[],
  latency: readonly LatencyRun[],
  source: PolicyCost["source"],
): PolicyCost[] {
  const byId = new Map(variants.map((v) => [v.id, v]));
  const out: PolicyCost[] = [];
  for (const v of variants) {
    const b = v.withoutPolicies === undefined ? undefined : byId.get(v.withoutPolicies);
    if (b === undefined) continue;
    const runPairs = runs
      .filter((r) => r.variant === v.id)
      .flatMap((w) => {
        const wo = runs.find((x) => x.variant === b.id && x.rep === w.rep);
        return wo === undefined ? [] : [{ w, wo }];
      });
    const pairs: PolicyPair[] = runPairs.map(({ w, wo }) => {
      const proxy = withWithout(proxiesCpu(v, w), proxiesCpu(b, wo));
      const app = withWithout(
        w.resources.cpuUsPerRequest.app ?? NaN,
        wo.resources.cpuUsPerRequest.app ?? NaN,
      );
      return {
        pair: w.rep,
        cpuUsPerRequest: proxy,
        appCpuUsPerRequest: app,
        appNormalisedRatio: proxy.ratio / app.ratio,
        interferencePct: {
          with: w.resources.interferencePctOfCore,
          without: wo.resources.interferencePctOfCore,
        },
      };
    });
    const ratios = pairs.map((p) => p.cpuUsPerRequest.ratio);
    const normalised = pairs.map((p) => p.appNormalisedRatio);
    const cost: PolicyCost = {
      variant: v.id,
      withoutPolicies: b.id,
      hops: v.hops,
      source,
      pairs,
      cpuUsPerRequest: {
        with: median(pairs.map((p) => p.cpuUsPerRequest.with)),
        without: median(pairs.map((p) => p.cpuUsPerRequest.without)),
        ratio: median(ratios),
      },
      ratioQuartiles: [quantile(ratios, 0.25), quantile(ratios, 0.75)],
      appNormalised: {
        ratio: median(normalised),
        quartiles: [quantile(normalised, 0.25), quantile(normalised, 0.75)],
      },
      rps: {
        with: median(runPairs.map((p) => p.w.wrk.rps)),
        without: median(runPairs.map((p) => p.wo.wrk.rps)),
        ratio: median(runPairs.map((p) => p.w.wrk.rps / p.wo.wrk.rps)),
      },
    };
    // Only paced runs at the same rate compare: the counterpart's own rate.
    const latW = latency.filter((r) => r.variant === v.id && r.rateOf === b.id);
    const latB = latency.filter((r) => r.variant === b.id && r.rateOf === b.id);
    if (latW.length > 0 && latB.length > 0) {
      cost.latency = {
        rate: latB[0]?.openLoop.rate ?? NaN,
        p50Us: withWithout(
          median(latW.map((r) => r.openLoop.latencyUs.p50)),
          median(latB.map((r) => r.openLoop.latencyUs.p50)),
        ),
        p99Us: withWithout(
          median(latW.map((r) => r.openLoop.latencyUs.p99)),
          median(latB.map((r) => r.openLoop.latencyUs.p99)),
        ),
        cpuUsPerRequest: withWithout(
          median(latW.map((r) => proxiesCpu(v, r))),
          median(latB.map((r) => proxiesCpu(b, r))),
        ),
      };
    }
    out.push(cost);
  }
  return out;
}

/** A target checked against a sidecar variant. */
export interface TargetCheck {
  variant: VariantId;
  what: string;
  target: string;
  value: string;
  met: boolean;
}

/** The whole results file. */
export interface BenchResults {
  schema: 1;
  startedAt: string;
  finishedAt: string;
  wallSeconds: number;
  command: string;
  commit: { sha: string; dirty: boolean; changedPaths: string[] };
  machine: Record<string, string | number>;
  tools: Record<string, string>;
  settings: Record<string, string | number | boolean>;
  variants: VariantInfo[];
  /** Memory of every process of the topology after start-up (before any request) and at the end. */
  memoryIdleBefore: Record<string, Memory>;
  memoryIdleAfter: Record<string, Memory>;
  /** VmRSS and its private part of a bare `node -e` process (same binary), MiB: Node's own floor. */
  nodeFloorMiB: { rss: number; anon: number };
  /** Time spent waiting for other processes' load to drop before runs, ms (measure.ts QuietGate). */
  quietWaitTotalMs: number;
  saturation: SaturationRun[];
  /**
   * The policy pairs (run.ts step 4b): saturation runs of each "+ policies" variant and its
   * counterpart back to back, `rep` numbering the pair. Absent in files from before them.
   */
  policyPairs?: SaturationRun[];
  latency: LatencyRun[];
  summary: SummaryRow[];
  /** With vs without the resilience policies (absent in files written before the policies variants). */
  policyCosts?: PolicyCost[];
  targets: TargetCheck[];
  profiles: ProfileWindow[];
  notes: string[];
}

function wrkErrors(w: WrkResult): number {
  const e = w.errors;
  return e.connect + e.read + e.write + e.timeout + e.status;
}

/** Builds the summary rows from the raw runs. */
export function summarise(
  variants: readonly VariantInfo[],
  saturation: readonly SaturationRun[],
  latency: readonly LatencyRun[],
  idleBefore: Record<string, Memory>,
  idleAfter: Record<string, Memory>,
): SummaryRow[] {
  const directRps = median(saturation.filter((r) => r.variant === "direct").map((r) => r.wrk.rps));
  return variants.map((v) => {
    const sat = saturation.filter((r) => r.variant === v.id);
    const rpsRuns = sat.map((r) => r.wrk.rps);
    const each: Record<string, number> = {};
    for (const role of v.proxies)
      each[role] = median(sat.map((r) => r.resources.cpuUsPerRequest[role] ?? NaN));
    const proxies = median(
      sat.map((r) => v.proxies.reduce((s, role) => s + (r.resources.cpuUsPerRequest[role] ?? NaN), 0)),
    );
    const split: SummaryRow["cpuSplitUsPerRequest"] = {};
    for (const role of ["app", ...v.proxies]) {
      split[role] = {
        user: median(sat.map((r) => r.resources.cpuSplitUsPerRequest[role]?.user ?? NaN)),
        sys: median(sat.map((r) => r.resources.cpuSplitUsPerRequest[role]?.sys ?? NaN)),
      };
    }
    const rss: SummaryRow["rssMiB"] = {};
    for (const role of v.proxies) {
      rss[role] = {
        idleBefore: idleBefore[role]?.rssMiB ?? NaN,
        idleBeforeAnon: idleBefore[role]?.anonMiB ?? NaN,
        underLoad: Math.max(...sat.map((r) => r.resources.rssPeakMiB[role] ?? NaN)),
        idleAfter: idleAfter[role]?.rssMiB ?? NaN,
      };
    }
    const lat = latency.filter((r) => r.variant === v.id);
    const row: SummaryRow = {
      variant: v.id,
      label: v.label,
      hops: v.hops,
      rps: { median: median(rpsRuns), runs: rpsRuns, vsDirect: median(rpsRuns) / directRps },
      cpuUsPerRequest: {
        proxies: v.hops > 0 ? proxies : 0,
        perHop: v.hops > 0 ? proxies / v.hops : 0,
        each,
        app: median(sat.map((r) => r.resources.cpuUsPerRequest.app ?? NaN)),
      },
      cpuSplitUsPerRequest: split,
      rssMiB: rss,
      errors:
        sat.reduce((s, r) => s + wrkErrors(r.wrk), 0) +
        lat.reduce((s, r) => s + r.openLoop.errors + r.openLoop.non2xx, 0),
      maxInterferencePct: Math.max(
        ...sat.map((r) => r.resources.interferencePctOfCore),
        ...lat.map((r) => r.resources.interferencePctOfCore),
      ),
    };
    if (v.hops > 0 && lat.length > 0) {
      const rateOf = lat[0]?.rateOf as VariantId;
      const direct = latency.filter((r) => r.variant === "direct" && r.rateOf === rateOf);
      const p50 = median(lat.map((r) => r.openLoop.latencyUs.p50));
      const p99 = median(lat.map((r) => r.openLoop.latencyUs.p99));
      const d50 = median(direct.map((r) => r.openLoop.latencyUs.p50));
      const d99 = median(direct.map((r) => r.openLoop.latencyUs.p99));
      row.latency = {
        rate: lat[0]?.openLoop.rate ?? NaN,
        p50Us: p50,
        p99Us: p99,
        directP50Us: d50,
        directP99Us: d99,
        addedP50Us: p50 - d50,
        addedP99Us: p99 - d99,
        addedP99PerHopUs: (p99 - d99) / v.hops,
        cpuUsPerRequest: median(
          lat.map((r) => v.proxies.reduce((s, role) => s + (r.resources.cpuUsPerRequest[role] ?? NaN), 0)),
        ),
      };
    }
    return row;
  });
}

/** The issue's targets, per hop, for the sidecar variants. */
export const TARGETS = { cpuUsPerHop: 35, addedP99UsPerHop: 1000, rssIdleMiB: 50 } as const;

/** Checks the targets against the sidecar rows, and the policies' goal against `costs`. */
export function checkTargets(rows: readonly SummaryRow[], costs: readonly PolicyCost[] = []): TargetCheck[] {
  const out: TargetCheck[] = [];
  for (const c of costs) {
    out.push({
      variant: c.variant,
      what: `proxy CPU per request with the resilience policies ÷ without (${c.withoutPolicies}; median of ${c.pairs.length} back-to-back pairs' ratios)`,
      target: `≤ ${POLICY_CPU_GOAL_RATIO.toFixed(2)}×`,
      value: `${c.cpuUsPerRequest.ratio.toFixed(3)}× (${c.cpuUsPerRequest.with.toFixed(1)} vs ${c.cpuUsPerRequest.without.toFixed(1)} µs; ${c.appNormalised.ratio.toFixed(3)}× corrected for machine speed)`,
      met: c.cpuUsPerRequest.ratio <= POLICY_CPU_GOAL_RATIO,
    });
  }
  for (const r of rows) {
    if (!r.variant.startsWith("sidecar")) continue;
    out.push({
      variant: r.variant,
      what: "CPU per request per hop (saturation)",
      target: `≤ ${TARGETS.cpuUsPerHop} µs`,
      value: `${r.cpuUsPerRequest.perHop.toFixed(1)} µs`,
      met: r.cpuUsPerRequest.perHop <= TARGETS.cpuUsPerHop,
    });
    if (r.latency !== undefined) {
      out.push({
        variant: r.variant,
        what: `added p99 per hop at ${Math.round(r.latency.rate)} req/s (half capacity)`,
        target: `≤ ${TARGETS.addedP99UsPerHop / 1000} ms`,
        value: `${(r.latency.addedP99PerHopUs / 1000).toFixed(2)} ms`,
        met: r.latency.addedP99PerHopUs <= TARGETS.addedP99UsPerHop,
      });
    }
    for (const [role, m] of Object.entries(r.rssMiB)) {
      out.push({
        variant: r.variant,
        what: `RSS idle, ${role}`,
        target: `≤ ${TARGETS.rssIdleMiB} MiB`,
        value: `${m.idleBefore.toFixed(1)} MiB (${m.idleBeforeAnon.toFixed(1)} private)`,
        met: m.idleBefore <= TARGETS.rssIdleMiB,
      });
    }
  }
  return out;
}
