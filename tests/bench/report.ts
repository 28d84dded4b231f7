/**
 * Renders a results file as tests/bench/results/latest.md: the table the README quotes, the
 * targets, how it was measured, and the profile ("where the time goes").
 *
 * The profile tables are generated; the reading of them is prose a person wrote against one
 * commit (tests/bench/analysis.md, first line `<!-- commit: SHA -->`). It is included as is, with
 * a warning when this run measured a different commit, so a stale reading cannot pass for current.
 */
import { existsSync, readFileSync } from "node:fs";
import { median } from "./measure.js";
import type { ProfileWindow } from "./profiling.js";
import { type BenchResults, DISTURBED_PCT, POLICY_CPU_GOAL_RATIO, type SummaryRow } from "./results.js";

const f0 = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–");
const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : "–");
const ms = (us: number): string => (Number.isFinite(us) ? (us / 1000).toFixed(2) : "–");
const signedMs = (us: number): string =>
  Number.isFinite(us) ? `${us >= 0 ? "+" : ""}${(us / 1000).toFixed(2)}` : "–";

function rssCell(r: SummaryRow): string {
  const parts = Object.entries(r.rssMiB).map(
    ([role, m]) =>
      `${role.replace(/^(sidecar|nginx)-/, "")} ${f1(m.idleBefore)} (${f1(m.idleBeforeAnon)} private) → ${f1(m.underLoad)}`,
  );
  return parts.length === 0 ? "–" : parts.join("; ");
}

function mainTable(res: BenchResults): string {
  const reps = res.settings.reps;
  const lines = [
    `| variant | req/s (median of ${reps}) | vs direct | proxy CPU µs/req: all hops (per hop) | app CPU µs/req | paced rate (req/s) | p50 / p99 (ms) | added p50 / p99 vs direct (ms) | proxy RSS idle → under load (MiB) | errors |`,
    "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|",
  ];
  for (const r of res.summary) {
    const lat = r.latency;
    lines.push(
      [
        "",
        r.label,
        f0(r.rps.median),
        r.variant === "direct" ? "1" : r.rps.vsDirect.toFixed(2),
        r.hops === 0 ? "–" : `${f1(r.cpuUsPerRequest.proxies)} (${f1(r.cpuUsPerRequest.perHop)})`,
        f1(r.cpuUsPerRequest.app),
        lat === undefined ? "–" : f0(lat.rate),
        lat === undefined ? "–" : `${ms(lat.p50Us)} / ${ms(lat.p99Us)}`,
        lat === undefined ? "–" : `${signedMs(lat.addedP50Us)} / ${signedMs(lat.addedP99Us)}`,
        rssCell(r),
        String(r.errors),
        "",
      ]
        .join(" | ")
        .trim(),
    );
  }
  return lines.join("\n");
}

/**
 * The paced runs as a table: per rate (half a sidecar variant's maximum), direct, the sidecar
 * variant and nginx at that same rate; medians over repetitions. The last two columns say how hard
 * the proxies worked at that rate and how busy the server CPU was (app + proxies), which is what
 * the tail latency follows.
 */
function latencyTable(res: BenchResults): string {
  const lines = [
    "| paced rate (req/s) | variant | p50 (ms) | p99 (ms) | added p50 / p99 (ms) | proxy CPU µs/req at this rate | app + proxies, % of one core |",
    "|--:|---|--:|--:|--:|--:|--:|",
  ];
  const proxiesOf = new Map(res.variants.map((v) => [v.id, v.proxies]));
  for (const rateOf of [...new Set(res.latency.map((r) => r.rateOf))]) {
    const at = res.latency.filter((r) => r.rateOf === rateOf);
    const direct = at.filter((r) => r.variant === "direct");
    const d50 = median(direct.map((r) => r.openLoop.latencyUs.p50));
    const d99 = median(direct.map((r) => r.openLoop.latencyUs.p99));
    for (const id of [...new Set(at.map((r) => r.variant))]) {
      const runs = at.filter((r) => r.variant === id);
      const proxies = proxiesOf.get(id) ?? [];
      const p50 = median(runs.map((r) => r.openLoop.latencyUs.p50));
      const p99 = median(runs.map((r) => r.openLoop.latencyUs.p99));
      const cpu = median(
        runs.map((r) => proxies.reduce((sum, role) => sum + (r.resources.cpuUsPerRequest[role] ?? NaN), 0)),
      );
      const busy = median(
        runs.map((r) => Object.values(r.resources.cpuPctOfCore).reduce((sum, pct) => sum + pct, 0)),
      );
      lines.push(
        `| ${f0(runs[0]?.openLoop.rate ?? NaN)} | ${id} | ${ms(p50)} | ${ms(p99)} | ${id === "direct" ? "–" : `${signedMs(p50 - d50)} / ${signedMs(p99 - d99)}`} | ${proxies.length === 0 ? "–" : f1(cpu)} | ${f0(busy)} % |`,
      );
    }
  }
  return lines.join("\n");
}

/**
 * With vs without the resilience policies: each "+ policies" variant against the same path without
 * them, from the same run (saturation rounds interleaved, paced runs at the same rate).
 */
function policyTable(res: BenchResults): string {
  const costs = res.policyCosts ?? [];
  if (costs.length === 0) return '_This run had no "+ policies" variants._';
  const lines = [
    `| path | proxy CPU µs/req with / without (all hops, medians) | with ÷ without, median of the pairs (goal ≤ ${POLICY_CPU_GOAL_RATIO.toFixed(2)}) | quartiles of the pairs' ratios | the same corrected for machine speed (÷ the app's with ÷ without): median (quartiles) | req/s with ÷ without | paced rate (req/s) | p50 with / without (ms) | p99 with / without (ms) | proxy CPU µs/req at that rate with / without |`,
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
  ];
  for (const c of costs) {
    const l = c.latency;
    lines.push(
      `| ${c.hops} hop${c.hops > 1 ? "s" : ""} (${c.variant} ÷ ${c.withoutPolicies}; ${c.pairs.length} ${c.source}) | ${f1(c.cpuUsPerRequest.with)} / ${f1(c.cpuUsPerRequest.without)} | **${c.cpuUsPerRequest.ratio.toFixed(3)}** | ${c.ratioQuartiles.map((x) => x.toFixed(3)).join(" – ")} | ${c.appNormalised.ratio.toFixed(3)} (${c.appNormalised.quartiles.map((x) => x.toFixed(3)).join(" – ")}) | ${c.rps.ratio.toFixed(2)} | ${l === undefined ? "–" : f0(l.rate)} | ${l === undefined ? "–" : `${ms(l.p50Us.with)} / ${ms(l.p50Us.without)}`} | ${l === undefined ? "–" : `${ms(l.p99Us.with)} / ${ms(l.p99Us.without)}`} | ${l === undefined ? "–" : `${f1(l.cpuUsPerRequest.with)} / ${f1(l.cpuUsPerRequest.without)} (×${l.cpuUsPerRequest.ratio.toFixed(2)})`} |`,
    );
  }
  return lines.join("\n");
}

/** Where the with/without pairs of this file come from, as a sentence. */
function policySource(res: BenchResults): string {
  const c = (res.policyCosts ?? [])[0];
  if (c === undefined) return "";
  return c.source === "saturation rounds"
    ? "The comparison below pairs the two runs of each of those rounds (this run had no separate pairs)."
    : `The comparison below comes from ${c.pairs.length} separate **pairs** per path: short saturation runs (${res.settings.policyPairS} s each) with and without the policies back to back, in ABBA order.`;
}

/** Every pair: its ratio, both sides' proxy and app CPU, and the foreign load during each run. */
function policyPairsTable(res: BenchResults): string {
  const costs = res.policyCosts ?? [];
  if (costs.length === 0) return "";
  const n = Math.max(...costs.map((c) => c.pairs.length));
  const lines = [
    `| pair | ${costs.map((c) => `${c.hops} hop${c.hops > 1 ? "s" : ""}: ×ratio, corrected (proxy µs with / without; app µs with / without; foreign load % with / without)`).join(" | ")} |`,
    `|--:|${costs.map(() => "---").join("|")}|`,
  ];
  for (let i = 0; i < n; i++) {
    const cells = costs.map((c) => {
      const p = c.pairs[i];
      if (p === undefined) return "–";
      const disturbed = Math.max(p.interferencePct.with, p.interferencePct.without) > DISTURBED_PCT;
      return `×${p.cpuUsPerRequest.ratio.toFixed(3)}, corrected ×${p.appNormalisedRatio.toFixed(3)} (${f1(p.cpuUsPerRequest.with)} / ${f1(p.cpuUsPerRequest.without)}; ${f1(p.appCpuUsPerRequest.with)} / ${f1(p.appCpuUsPerRequest.without)}; ${disturbed ? "**" : ""}${f0(p.interferencePct.with)} / ${f0(p.interferencePct.without)}${disturbed ? "**" : ""})`;
    });
    lines.push(`| ${costs[0]?.pairs[i]?.pair ?? i + 1} | ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

function cpuSplitTable(res: BenchResults): string {
  const lines = [
    "| variant | process | user µs/req | kernel µs/req | total µs/req |",
    "|---|---|--:|--:|--:|",
  ];
  for (const r of res.summary) {
    for (const [role, c] of Object.entries(r.cpuSplitUsPerRequest)) {
      lines.push(`| ${r.variant} | ${role} | ${f1(c.user)} | ${f1(c.sys)} | ${f1(c.user + c.sys)} |`);
    }
  }
  return lines.join("\n");
}

function targetsTable(res: BenchResults): string {
  const lines = ["| variant | what | target | measured | met |", "|---|---|--:|--:|:-:|"];
  for (const t of res.targets)
    lines.push(`| ${t.variant} | ${t.what} | ${t.target} | ${t.value} | ${t.met ? "yes" : "**no**"} |`);
  return lines.join("\n");
}

function nginxComparison(res: BenchResults): string {
  const by = new Map(res.summary.map((r) => [r.variant, r]));
  const out: string[] = [];
  for (const hops of [1, 2]) {
    const sc = by.get(hops === 1 ? "sidecar-1hop" : "sidecar-2hop");
    const ng = by.get(hops === 1 ? "nginx-1hop" : "nginx-2hop");
    if (sc === undefined || ng === undefined) continue;
    out.push(
      `- ${hops} hop${hops > 1 ? "s" : ""}: the sidecar path serves ${(sc.rps.median / ng.rps.median).toFixed(2)}× nginx's req/s and spends ${(sc.cpuUsPerRequest.perHop / ng.cpuUsPerRequest.perHop).toFixed(1)}× its CPU per request per hop (${f1(sc.cpuUsPerRequest.perHop)} vs ${f1(ng.cpuUsPerRequest.perHop)} µs).`,
    );
  }
  const floor = by.get("node-proxy-1hop");
  const sc1 = by.get("sidecar-1hop");
  const direct = by.get("direct");
  if (floor !== undefined && sc1 !== undefined) {
    out.push(
      `- The floor of Node's own HTTP stack, measured in the same run (bare node:http server + the sidecar's undici Pool, no mesh logic): ${f1(floor.cpuUsPerRequest.perHop)} µs per request, ${f0(floor.rps.median)} req/s. The sidecar's hop costs ${(sc1.cpuUsPerRequest.perHop / floor.cpuUsPerRequest.perHop).toFixed(1)}× that: ${f1(sc1.cpuUsPerRequest.perHop - floor.cpuUsPerRequest.perHop)} µs per request are the sidecar's own.`,
    );
  }
  if (direct !== undefined && sc1 !== undefined) {
    const ng = by.get("nginx-1hop");
    out.push(
      `- Yardstick for comparing runs (this machine's speed drifts between runs): the app alone costs ${f1(direct.cpuUsPerRequest.app)} µs per request here; one sidecar hop is ${(sc1.cpuUsPerRequest.perHop / direct.cpuUsPerRequest.app).toFixed(1)}× that${ng !== undefined ? `, one nginx hop ${(ng.cpuUsPerRequest.perHop / direct.cpuUsPerRequest.app).toFixed(1)}×` : ""}.`,
    );
  }
  return out.join("\n");
}

function profileSection(p: ProfileWindow): string {
  const s = p.summary;
  const rows = (xs: { fn: string; ms: number; pct: number }[]) =>
    xs.map((x) => `| ${x.pct.toFixed(1)} % | ${x.fn.replace(/\|/g, "\\|")} |`).join("\n");
  return [
    `### ${s.label}`,
    "",
    `${f0(p.rps)} req/s under the profiler (${f0(p.requests)} requests), ${f1(p.cpuUsPerRequest)} µs CPU per request (${f1(p.baselineCpuUsPerRequest)} µs at ${f0(p.baselineRps)} req/s without the profiler, same placement); ${f0(s.busyMs)} ms on CPU sampled, ${f0(s.idleMs)} ms idle. Raw profiles: \`${p.file.replace(/^.*\/tests\//, "tests/")}\` and \`.heapprofile\` beside it (git-ignored; open in Chrome DevTools).`,
    "",
    `GC in the window (--trace-gc): ${p.gc.young.count} young collections, ${f1(p.gc.young.totalMs)} ms paused in all, longest ${f1(p.gc.young.maxMs)} ms; ${p.gc.full.count} full collections, ${f1(p.gc.full.totalMs)} ms in all, longest ${f1(p.gc.full.maxMs)} ms. V8 heap live after a forced full GC: ${f1(p.heap.liveAfterWarmupMiB)} MiB after warm-up → ${f1(p.heap.liveAfterWindowMiB)} MiB after the window (${f1(p.heap.inUseAfterWindowMiB)} MiB in use just before that GC); RSS ${f1(p.heap.rssMiB)} MiB.`,
    "",
    "| share of busy time | part of the stack |",
    "|--:|---|",
    rows(s.categories.slice(0, 10)),
    "",
    "| self time | function |",
    "|--:|---|",
    rows(s.topSelf.slice(0, 15)),
    "",
    "| inclusive time | our function (sidecar/, proto/) |",
    "|--:|---|",
    rows(s.topOursInclusive.slice(0, 10)),
    "",
    ...((s.resilienceInclusive ?? []).length === 0
      ? []
      : [
          "| inclusive time | resilience layer function (sidecar/src/resilience/, proxy/mirror.ts) |",
          "|--:|---|",
          rows((s.resilienceInclusive ?? []).slice(0, 8)),
          "",
        ]),
    `Allocations (sampled, garbage included): about ${f1(p.allocations.bytesPerRequest / 1024)} KiB per request.`,
    "",
    "| share of bytes | allocated in |",
    "|--:|---|",
    rows(p.allocations.topSelf.slice(0, 10)),
    "",
    "| share of bytes | allocated under our function |",
    "|--:|---|",
    rows(p.allocations.topOursInclusive.slice(0, 8)),
  ].join("\n");
}

/** The hand-written reading of the profile, with a staleness warning when its commit differs. */
function analysis(path: string, sha: string): string {
  if (!existsSync(path)) return "_No hand-written analysis (tests/bench/analysis.md) yet._";
  const text = readFileSync(path, "utf8");
  const written = /<!--\s*commit:\s*([0-9a-f]+)\s*-->/.exec(text)?.[1];
  const body = text.replace(/^<!--[^>]*-->\s*/, "");
  if (written !== undefined && sha.startsWith(written)) return body.trim();
  return `> **Stale:** this reading was written for commit ${written ?? "?"}; this run measured ${sha.slice(0, 12)}. Check it against the tables below.\n\n${body.trim()}`;
}

/** The whole latest.md. */
export function renderMarkdown(res: BenchResults, analysisPath: string): string {
  const m = res.machine;
  const s = res.settings;
  const dirty = res.commit.dirty
    ? ` (working tree had uncommitted changes in: ${res.commit.changedPaths.slice(0, 12).join(", ")}${res.commit.changedPaths.length > 12 ? ", …" : ""})`
    : "";
  const interference = Math.max(...res.summary.map((r) => r.maxInterferencePct));
  return `# Trellis data-plane benchmark — latest results

Generated by \`${res.command}\` on ${res.startedAt} in ${Math.round(res.wallSeconds)} s. Commit \`${res.commit.sha.slice(0, 12)}\`${dirty}.
Machine: ${m.nproc} × ${m.cpuModel}, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}; ${res.tools.wrk}, ${res.tools.nginx}.
Raw numbers: \`tests/bench/results/latest.json\` (every run, not just medians).

Workload: HTTP/1.1 keep-alive \`GET /\` without a body, 100-byte response with Content-Length, from the same
node:http app behind every variant. Saturation: wrk, ${s.connections} connections, ${s.threads} thread, ${s.saturationS} s per run,
median of ${s.reps} runs interleaved across variants after a warm-up (${s.warmupS} s for the sidecar and bare-Node variants, at most 3 s for direct and nginx). Latency: our paced open-loop generator
(\`tests/bench/open-loop.c\`) at half of each sidecar variant's median maximum, ${s.latencyS} s per run (first ${s.latencyWarmupS} s
not recorded), latency from each request's scheduled send time; direct, nginx and the "+ policies" variant measured at the same rate in the same run.
Placement: ${s.pinned ? `app and every proxy (sidecars, nginx, bare Node) pinned to CPU ${s.serverCpus}; wrk, the paced generator and the control plane to CPU ${s.clientCpus}` : "not pinned"}.

## Results

${mainTable(res)}

## With and without the resilience policies

The "+ policies" variants are the sidecar paths with every resilience policy that costs something
per request but leaves a healthy request's answer unchanged, on the target service
(\`tests/bench/policies.ts\` has the YAML and why each value): HTTPRoute \`timeout\` 5s, \`retry\` (2
attempts, \`perTryTimeout\` 2s, retryOn connect-failure/refused-stream/reset/5xx, backoff 25–250 ms),
\`fault\` (1 ms delay for 0.0001 % of requests: every request pays the random draw, about none is
delayed; \`percentage: 0\` would skip the draw), \`mirror\` (0.0001 %, to the same service: the draw
without doubling the work), \`fallback\`; TrafficPolicy \`connectionLimits\` (far above 32
connections), explicit \`outlierDetection\` and \`retryBudget\`; RateLimitPolicy \`local\` at
1,000,000/s. Route and traffic policies act at the caller's outbound side, the rate limit at the
target's inbound side: one hop (client → inbound) measures the rate limit alone, two hops all of
them. Connection limits, retry budget and outlier detection also run, with their defaults, on the
paths without policies. In the table above, each "+ policies" variant runs next to its
counterpart in every round (after it in odd rounds, before it in even ones). ${policySource(res)}
Each pair gives one ratio of proxy CPU per request, and the headline is their median: runs seconds
apart see about the same machine, while runs minutes apart on this shared machine have differed by
more than the effect measured. Even within a pair the machine's speed moves when it is shared: the
app, which does the same work in both runs, shows by how much, so the ratio is also given divided
by the app's own with ÷ without ("corrected"; it leans slightly towards 1, as the app's cost also
follows the proxy's pace). The paced columns compare the two at the same rate (the counterpart's),
medians of ${s.reps} runs each.

${policyTable(res)}

${policyPairsTable(res)}

CPU per request at saturation by process (medians; the app is the same program in every row, so
its change shows what the proxies' smaller batches cost it):

${cpuSplitTable(res)}

Latency with the paced open-loop generator, at half of each sidecar variant's saturated req/s
(medians of ${res.settings.reps}):

${latencyTable(res)}

Peers: nginx (Debian's, one worker, \`master_process off\`, upstream keep-alive pool, no access log),
and a bare Node proxy as the floor:
${nginxComparison(res)}

## Targets (per hop)

${targetsTable(res)}

## How to read this

- **req/s** is what the whole path sustains when everything under test shares one CPU core with
  the app (${s.pinned ? "pinned" : "unpinned"}), so it falls with the total CPU the proxies spend; the ratio to direct is the
  honest cost on the same hardware. **CPU µs/req** is the proxies' Δ(utime + stime) from /proc divided
  by completed requests, all threads of each process included; it does not depend on placement.
- The one-hop sidecar is the **inbound** sidecar of the server (client → sidecar → app): the only
  single-sidecar path a plain HTTP/1.1 client can take (the outbound listener always forwards over
  the mesh hop to a peer sidecar). Two hops is the mesh: the client uses the web sidecar's outbound
  port with \`Host: api.shop:<port>\`, which forwards over HTTP/2 to the api sidecar's inbound port,
  which calls the app; both sidecars got their config from a real control plane (embedded store).
- nginx's hop between two nginx is HTTP/1.1 keep-alive (its proxy module cannot speak HTTP/2
  upstream); the mesh's is HTTP/2. nginx runs without an access log, the sidecars with their
  metrics on (they write no per-request log).
- **Added latency** = the variant's p50/p99 minus direct's p50/p99 at the same offered rate, medians
  of ${s.reps} runs each.
- **Interference**: this machine is shared; CPU used by processes not started by this run reached
  ${f1(interference)} % of one core in the worst run (per run in latest.json; before each run the
  benchmark waits a bounded time for such load to drop: ${(res.quietWaitTotalMs / 1000).toFixed(1)} s in all this time). Runs are
  interleaved across variants so a disturbance does not land on one variant only. CPU µs per
  request is the number that such load disturbs least; req/s and tail latency the most.
- RSS: VmRSS from /proc; "idle" is after start-up and the first config, before any request; "under
  load" the peak sampled during the saturation runs. "private" is its RssAnon part (heaps); the rest
  is file-backed, mostly the node binary's own pages (a bare \`node\` process is about ${f1(res.nodeFloorMiB.rss)} MiB
  VmRSS here, ${f1(res.nodeFloorMiB.anon)} MiB of it private). nginx is listed for comparison.

## Where the time goes (sidecar CPU profile)

${analysis(analysisPath, res.commit.sha)}

${res.profiles.map(profileSection).join("\n\n")}
${res.notes.length > 0 ? `\n## Notes from this run\n\n${res.notes.map((n) => `- ${n}`).join("\n")}\n` : ""}`;
}
