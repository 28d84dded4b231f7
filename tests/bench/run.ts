/**
 * `npm run bench`: the data-plane benchmark, every variant in one invocation (tests/bench/README.md).
 *
 *  1. Start the topology once (topology.ts): app, control plane, api, api-policies and web sidecars,
 *     two nginx; the resilience policies (policies.ts) target api-policies only.
 *  2. Check every variant answers 200 with the 100-byte body, and that every policy is applied by
 *     the sidecars (none rejected); read idle RSS.
 *  3. Warm up each variant (wrk, not recorded): the sidecars' JIT and pools need seconds.
 *  4. Saturation: `reps` rounds; each round runs every variant once (interleaved, so a disturbance
 *     on this shared machine spreads over variants instead of landing on one). A "+ policies"
 *     variant runs next to its counterpart, after it in odd rounds and before it in even ones, so
 *     a trend (the web sidecar still settling, load drifting) does not favour either side.
 *  4b. Policy pairs: `--policy-pairs` short saturation runs of each "+ policies" variant and its
 *     counterpart back to back (ABBA order): the with ÷ without ratio is taken per pair, whose two
 *     runs see about the same machine, and its median is the headline (results.ts PolicyCost).
 *  5. Latency: for each sidecar variant, rate = half its median saturated req/s; `reps` rounds of
 *     {direct, sidecar, sidecar + policies, nginx} at that rate with the paced open-loop generator
 *     (the "+ policies" variant at the rate of the one without, so the two compare).
 *  6. Idle RSS again; stop the measured processes; profile fresh sidecars (profiling.ts).
 *  7. Summarise (medians, ratios to direct, with ÷ without policies, targets); write
 *     results/<stamp>-<sha>.json, results/latest.json and results/latest.md.
 *
 * Loads are bounded in time and target 127.0.0.1 only; every process started is stopped, also on
 * SIGINT/SIGTERM (and the harness SIGKILLs any child if this process dies).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { availableParallelism, cpus, loadavg, release, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { withFreePorts } from "../helpers/ports.js";
import { reapStale } from "../helpers/reap.js";
import { BENCH_SRC, buildOpenLoop, runOpenLoop, runWrk, TMP_DIR } from "./loadgen.js";
import { measured, median, QuietGate, type Watched } from "./measure.js";
import { applyBenchPolicies, waitBenchPoliciesApplied } from "./policies.js";
import { type Memory, memory } from "./proc.js";
import { type ProfileWindow, profileSidecars } from "./profiling.js";
import { renderMarkdown } from "./report.js";
import {
  type BenchResults,
  checkTargets,
  DISTURBED_PCT,
  type LatencyRun,
  policyCosts,
  type SaturationRun,
  summarise,
  type VariantId,
  type VariantInfo,
} from "./results.js";
import { NAMESPACE, POLICIES_SERVICE, startTopology, type Topology } from "./topology.js";

/** Warm-up of the variants without a sidecar (direct, nginx), seconds at most. */
const PEER_WARMUP_S = 3;

const USAGE = `usage: npm run bench [-- options]

Measures direct, one sidecar, two sidecars (the mesh hop), the same two with every resilience
policy on the route (tests/bench/policies.ts), nginx one and two hops, and a bare Node proxy
(reference) in one run; writes tests/bench/results/latest.{json,md}. Defaults take about 9
minutes on 2 cores.

  --reps N               repetitions of every measurement (default 3; the median is reported)
  --duration S           seconds per saturation run (default 5)
  --latency-duration S   seconds per paced run, warm-up included (default 4)
  --latency-warmup S     leading seconds of a paced run not recorded (default 1)
  --warmup S             seconds of unrecorded load per Node-proxy variant before measuring (direct
                         and nginx get at most 3), and before each profiling window (default 12)
  --policy-pairs N       back-to-back pairs of saturation runs with and without the resilience
                         policies, per path (default 10; 0 = compare the saturation rounds instead)
  --policy-pair-duration S  seconds per run of such a pair (default 2)
  --connections N        connections of wrk and the paced generator (default 32)
  --threads N            wrk threads (default 1)
  --server-cpus LIST     CPUs for app, sidecars, nginx (default: the last CPU)
  --client-cpus LIST     CPUs for the load generators and control plane (default: the other CPUs)
  --no-pin               do not pin anything
  --profile-duration S   seconds per profiling window (default 4; 0 = no profiling)
  --out DIR              results directory (default tests/bench/results)
  --render               measure nothing: rewrite latest.md from latest.json (after editing
                         tests/bench/analysis.md); the with/without-policies comparison and the
                         targets are recomputed from the raw runs
  -h, --help`;

interface Settings {
  reps: number;
  saturationS: number;
  policyPairs: number;
  policyPairS: number;
  latencyS: number;
  latencyWarmupS: number;
  warmupS: number;
  connections: number;
  threads: number;
  pinned: boolean;
  serverCpus: string | undefined;
  clientCpus: string | undefined;
  profileS: number;
  outDir: string;
  render: boolean;
}

function positive(name: string, v: string | undefined, dflt: number, allowZero = false): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !allowZero)) {
    throw new Error(
      `--${name}: ${JSON.stringify(v)} is not a ${allowZero ? "non-negative" : "positive"} number`,
    );
  }
  return n;
}

function parseSettings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      reps: { type: "string" },
      duration: { type: "string" },
      "policy-pairs": { type: "string" },
      "policy-pair-duration": { type: "string" },
      "latency-duration": { type: "string" },
      "latency-warmup": { type: "string" },
      warmup: { type: "string" },
      connections: { type: "string" },
      threads: { type: "string" },
      "server-cpus": { type: "string" },
      "client-cpus": { type: "string" },
      "no-pin": { type: "boolean" },
      "profile-duration": { type: "string" },
      out: { type: "string" },
      render: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const n = availableParallelism();
  const pinned = values["no-pin"] !== true && n >= 2;
  const s: Settings = {
    reps: Math.round(positive("reps", values.reps, 3)),
    saturationS: positive("duration", values.duration, 5),
    policyPairs: Math.round(positive("policy-pairs", values["policy-pairs"], 10, true)),
    policyPairS: positive("policy-pair-duration", values["policy-pair-duration"], 2),
    latencyS: positive("latency-duration", values["latency-duration"], 4),
    latencyWarmupS: positive("latency-warmup", values["latency-warmup"], 1, true),
    warmupS: positive("warmup", values.warmup, 12, true),
    connections: Math.round(positive("connections", values.connections, 32)),
    threads: Math.round(positive("threads", values.threads, 1)),
    pinned,
    serverCpus: pinned ? (values["server-cpus"] ?? String(n - 1)) : undefined,
    clientCpus: pinned ? (values["client-cpus"] ?? (n === 2 ? "0" : `0-${n - 2}`)) : undefined,
    profileS: positive("profile-duration", values["profile-duration"], 4, true),
    outDir: resolve(values.out ?? join(BENCH_SRC, "results")),
    render: values.render === true,
  };
  if (s.latencyWarmupS >= s.latencyS)
    throw new Error("--latency-warmup must be shorter than --latency-duration");
  return s;
}

function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

/** Fails fast, naming what to install, when a tool is missing. */
function requireTools(): void {
  const missing = ["wrk", "nginx", "gcc", "taskset", "setpriv"].filter(
    (t) => spawnSync("sh", ["-c", `command -v ${t}`]).status !== 0,
  );
  if (missing.length > 0) {
    throw new Error(
      `missing ${missing.join(", ")}: run \`npm run setup\` (Debian packages wrk, nginx, gcc, util-linux)`,
    );
  }
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return `${r.stdout ?? ""}${r.stderr ?? ""}`.split("\n")[0]?.trim() ?? "";
}

function commitInfo(): BenchResults["commit"] {
  const git = (args: string[]) => execFileSync("git", args, { cwd: BENCH_SRC, encoding: "utf8" }).trimEnd();
  const sha = git(["rev-parse", "HEAD"]).trim();
  const changedPaths = git(["status", "--porcelain"])
    .split("\n")
    .map((l) => l.slice(3))
    .filter((p) => p !== "" && !p.startsWith("tests/bench/"));
  return { sha, dirty: changedPaths.length > 0, changedPaths };
}

/** One GET through `port` with `host`; resolves with status and body length. */
function probe(port: number, host: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolvePromise, reject) => {
    const req = request({ host: "127.0.0.1", port, path: "/", headers: { host }, agent: false }, (res) => {
      let bytes = 0;
      res.on("data", (c: Buffer) => {
        bytes += c.length;
      });
      res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, bytes }));
      res.on("error", reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end();
  });
}

/** VmRSS and RssAnon of a bare node process (this binary, idle for 300 ms), MiB. */
function nodeFloor(): { rss: number; anon: number } {
  const out = execFileSync(
    process.execPath,
    [
      "-e",
      'setTimeout(() => { const s = require("fs").readFileSync("/proc/self/status", "utf8"); const k = (f) => parseInt(s.split("\\n").find((l) => l.startsWith(f + ":")).slice(f.length + 1), 10) / 1024; console.log(JSON.stringify({ rss: k("VmRSS"), anon: k("RssAnon") })); }, 300)',
    ],
    { encoding: "utf8" },
  );
  return JSON.parse(out) as { rss: number; anon: number };
}

interface Variant extends VariantInfo {
  port: number;
  host: string;
}

function variantsOf(t: Topology): Variant[] {
  return [
    {
      id: "direct",
      label: "direct (client → app)",
      hops: 0,
      proxies: [],
      port: t.app.port,
      host: t.meshHost,
    },
    {
      id: "node-proxy-1hop",
      label: "reference: bare Node proxy, 1 hop (node:http + undici, no mesh logic)",
      hops: 1,
      proxies: ["node-proxy"],
      port: t.bare.port,
      host: t.meshHost,
    },
    {
      id: "sidecar-1hop",
      label: "sidecar, 1 hop (client → inbound sidecar → app)",
      hops: 1,
      proxies: ["sidecar-api"],
      port: t.api.ports.inbound,
      host: t.meshHost,
    },
    // Each "+ policies" variant follows the one without it: they run next to each other (roundOrder).
    {
      id: "sidecar-1hop-policies",
      label: "sidecar, 1 hop + policies (client → inbound sidecar → app; local rate limit)",
      hops: 1,
      proxies: ["sidecar-api-policies"],
      withoutPolicies: "sidecar-1hop",
      port: t.apiPolicies.ports.inbound,
      host: t.policiesHost,
    },
    {
      id: "sidecar-2hop",
      label: "sidecars, 2 hops (client → web sidecar ⇒ api sidecar → app)",
      hops: 2,
      proxies: ["sidecar-web", "sidecar-api"],
      interHop: "HTTP/2 (h2c), pooled",
      port: t.web.ports.outbound,
      host: t.meshHost,
    },
    {
      id: "sidecar-2hop-policies",
      label: "sidecars, 2 hops + policies (client → web sidecar ⇒ api-policies sidecar → app)",
      hops: 2,
      proxies: ["sidecar-web", "sidecar-api-policies"],
      interHop: "HTTP/2 (h2c), pooled",
      withoutPolicies: "sidecar-2hop",
      port: t.web.ports.outbound,
      host: t.policiesHost,
    },
    {
      id: "nginx-1hop",
      label: "nginx, 1 hop (client → nginx → app)",
      hops: 1,
      proxies: ["nginx-b"],
      port: t.nginxB.port,
      host: t.meshHost,
    },
    {
      id: "nginx-2hop",
      label: "nginx, 2 hops (client → nginx → nginx → app)",
      hops: 2,
      proxies: ["nginx-a", "nginx-b"],
      interHop: "HTTP/1.1 keep-alive, pooled",
      port: t.nginxA.port,
      host: t.meshHost,
    },
  ];
}

/**
 * `items` in the order of round `rep`: as given in odd rounds; in even rounds an item whose
 * `pairedWith` is the variant of the item just before it swaps places with that one (a
 * "+ policies" variant and its counterpart: ABBA order over the rounds).
 */
function roundOrder<T>(
  items: readonly T[],
  rep: number,
  idOf: (x: T) => VariantId,
  pairedWith: (x: T) => VariantId | undefined,
): T[] {
  const out = [...items];
  if (rep % 2 === 1) return out;
  for (let i = 1; i < out.length; i++) {
    const a = out[i - 1] as T;
    const b = out[i] as T;
    if (pairedWith(b) !== undefined && pairedWith(b) === idOf(a)) {
      out[i - 1] = b;
      out[i] = a;
    }
  }
  return out;
}

function rolePids(t: Topology): Record<string, number> {
  return {
    app: t.app.proc.pid,
    "sidecar-api": t.api.proc.pid,
    "sidecar-web": t.web.proc.pid,
    "sidecar-api-policies": t.apiPolicies.proc.pid,
    "nginx-a": t.nginxA.proc.pid,
    "nginx-b": t.nginxB.proc.pid,
    "node-proxy": t.bare.proc.pid,
  };
}

function rssOf(pids: Record<string, number>): Record<string, Memory> {
  const out: Record<string, Memory> = {};
  for (const [role, pid] of Object.entries(pids)) out[role] = memory(pid);
  return out;
}

async function main(): Promise<void> {
  const s = parseSettings(process.argv.slice(2));
  if (s.render) {
    const res = JSON.parse(readFileSync(join(s.outDir, "latest.json"), "utf8")) as BenchResults;
    // Derived from the raw runs: recomputed, so a file keeps rendering as the comparison evolves.
    const pairs = res.policyPairs ?? [];
    res.policyCosts =
      pairs.length > 0
        ? policyCosts(res.variants, pairs, res.latency, "policy pairs")
        : policyCosts(res.variants, res.saturation, res.latency, "saturation rounds");
    res.targets = checkTargets(res.summary, res.policyCosts);
    writeFileSync(join(s.outDir, "latest.md"), renderMarkdown(res, join(BENCH_SRC, "analysis.md")));
    log(`rewrote ${join(s.outDir, "latest.md")} from latest.json`);
    return;
  }
  requireTools();
  const started = new Date();
  const commit = commitInfo();
  const bin = buildOpenLoop();
  await reapStale(); // processes a killed earlier run left behind
  const placement = { server: s.serverCpus, client: s.clientCpus };
  log(`starting the topology (server CPUs ${s.serverCpus ?? "any"}, client CPUs ${s.clientCpus ?? "any"})`);
  const t = await withFreePorts(2, (ports) => startTopology(placement, ports as [number, number]));
  let stopped = false;
  const stopTopology = async () => {
    if (stopped) return;
    stopped = true;
    await t.stop();
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping every process`);
      void stopTopology().finally(() => process.exit(130));
    });
  }
  const notes: string[] = [];
  const saturation: SaturationRun[] = [];
  const policyPairs: SaturationRun[] = [];
  const latency: LatencyRun[] = [];
  let profiles: ProfileWindow[] = [];
  const variants = variantsOf(t);
  const pids = rolePids(t);
  const watchedOf = (v: Variant): Watched[] =>
    ["app", ...v.proxies].map((role) => ({ role, pid: pids[role] as number }));
  const allOurs = [...Object.values(pids), t.cp.proc.pid];
  const othersOf = (w: readonly Watched[]) => allOurs.filter((pid) => !w.some((x) => x.pid === pid));
  const gate = new QuietGate(allOurs);
  let rssIdleBefore: Record<string, Memory>;
  let rssIdleAfter: Record<string, Memory>;
  try {
    // 2.
    for (const v of variants) {
      const r = await probe(v.port, v.host);
      if (r.status !== 200 || r.bytes !== 100) {
        throw new Error(`${v.id}: expected 200 with 100 bytes, got ${r.status} with ${r.bytes} bytes`);
      }
    }
    // The probe above made web subscribe to api-policies' route: now every policy has its proxy.
    await waitBenchPoliciesApplied(t.cp, POLICIES_SERVICE, NAMESPACE);
    log(`every bench policy on ${POLICIES_SERVICE} is applied, none rejected`);
    rssIdleBefore = rssOf(pids);
    log(
      `idle RSS (MiB): ${Object.entries(rssIdleBefore)
        .map(([k, v]) => `${k} ${v.rssMiB.toFixed(1)} (private ${v.anonMiB.toFixed(1)})`)
        .join(", ")}`,
    );
    // 3.
    const load = { connections: s.connections, threads: s.threads, cpus: s.clientCpus };
    // Node proxies need seconds of load before their CPU per request settles (JIT tiers, pools,
    // heap sizing: the sidecar spends ~300 µs/req in its first 5 s, half that after ~15 s on this
    // machine); nginx settles within a second, and the app is warmed by every variant anyway.
    for (const v of variants) {
      const node = v.id.startsWith("sidecar") || v.id === "node-proxy-1hop";
      const seconds = node ? s.warmupS : Math.min(PEER_WARMUP_S, s.warmupS);
      if (seconds <= 0) continue;
      log(`warm-up ${v.id} (${seconds} s)`);
      await runWrk({ ...load, port: v.port, host: v.host, durationS: seconds });
    }
    // 4.
    for (let rep = 1; rep <= s.reps; rep++) {
      for (const v of roundOrder(
        variants,
        rep,
        (x) => x.id,
        (x) => x.withoutPolicies,
      )) {
        const watched = watchedOf(v);
        const { result: wrk, resources } = await measured(gate, watched, othersOf(watched), async () => {
          const r = await runWrk({ ...load, port: v.port, host: v.host, durationS: s.saturationS });
          return { completed: r.requests, result: r };
        });
        saturation.push({ variant: v.id, rep, wrk, resources });
        const cpu = v.proxies
          .map((p) => `${p} ${(resources.cpuUsPerRequest[p] ?? NaN).toFixed(1)}`)
          .join(", ");
        log(
          `saturation ${rep}/${s.reps} ${v.id}: ${Math.round(wrk.rps)} req/s; CPU µs/req app ${(resources.cpuUsPerRequest.app ?? NaN).toFixed(1)}${cpu ? `, ${cpu}` : ""}; interference ${resources.interferencePctOfCore.toFixed(0)} %`,
        );
      }
    }
    // 4b.
    const withPolicies = variants.filter((v) => v.withoutPolicies !== undefined);
    for (let pair = 1; pair <= s.policyPairs; pair++) {
      for (const v of withPolicies) {
        const b = variants.find((x) => x.id === v.withoutPolicies) as Variant;
        for (const x of pair % 2 === 1 ? [b, v] : [v, b]) {
          const watched = watchedOf(x);
          const { result: wrk, resources } = await measured(gate, watched, othersOf(watched), async () => {
            const r = await runWrk({ ...load, port: x.port, host: x.host, durationS: s.policyPairS });
            return { completed: r.requests, result: r };
          });
          policyPairs.push({ variant: x.id, rep: pair, wrk, resources });
        }
        const [w, wo] = [v, b].map((x) => policyPairs.find((r) => r.variant === x.id && r.rep === pair));
        const cpu = (x: Variant, r: SaturationRun | undefined) =>
          x.proxies.reduce((sum, role) => sum + (r?.resources.cpuUsPerRequest[role] ?? NaN), 0);
        log(
          `policy pair ${pair}/${s.policyPairs} ${v.id} ÷ ${b.id}: proxy CPU µs/req ${cpu(v, w).toFixed(1)} / ${cpu(b, wo).toFixed(1)} = ×${(cpu(v, w) / cpu(b, wo)).toFixed(3)}; interference ${(w?.resources.interferencePctOfCore ?? NaN).toFixed(0)} / ${(wo?.resources.interferencePctOfCore ?? NaN).toFixed(0)} %`,
        );
      }
    }
    // 5.
    const byId = new Map(variants.map((v) => [v.id, v]));
    const plan: [VariantId, VariantId][] = [
      ["sidecar-1hop", "direct"],
      ["sidecar-1hop", "sidecar-1hop"],
      ["sidecar-1hop", "sidecar-1hop-policies"],
      ["sidecar-1hop", "nginx-1hop"],
      ["sidecar-2hop", "direct"],
      ["sidecar-2hop", "sidecar-2hop"],
      ["sidecar-2hop", "sidecar-2hop-policies"],
      ["sidecar-2hop", "nginx-2hop"],
    ];
    const rateOf = (id: VariantId) =>
      median(saturation.filter((r) => r.variant === id).map((r) => r.wrk.rps)) / 2;
    for (let rep = 1; rep <= s.reps; rep++) {
      for (const [meshed, id] of roundOrder(
        plan,
        rep,
        ([, x]) => x,
        ([, x]) => byId.get(x)?.withoutPolicies,
      )) {
        const v = byId.get(id) as Variant;
        const rate = rateOf(meshed);
        const watched = watchedOf(v);
        const { result: ol, resources } = await measured(gate, watched, othersOf(watched), async () => {
          const r = await runOpenLoop({
            bin,
            port: v.port,
            host: v.host,
            rate,
            durationS: s.latencyS,
            warmupS: s.latencyWarmupS,
            connections: s.connections,
            cpus: s.clientCpus,
          });
          return { completed: r.completed, result: r };
        });
        latency.push({ variant: id, rep, rateOf: meshed, openLoop: ol, resources });
        log(
          `latency ${rep}/${s.reps} ${id} @ ${Math.round(rate)} req/s: p50 ${(ol.latencyUs.p50 / 1000).toFixed(2)} ms, p99 ${(ol.latencyUs.p99 / 1000).toFixed(2)} ms, errors ${ol.errors + ol.non2xx}, max backlog ${ol.maxBacklog}`,
        );
      }
    }
    // 6.
    rssIdleAfter = rssOf(pids);
    await t.api.proc.stop();
    await t.web.proc.stop();
    await t.apiPolicies.proc.stop();
    if (s.profileS > 0) {
      log("profiling fresh sidecars");
      mkdirSync(TMP_DIR, { recursive: true });
      profiles = await profileSidecars({
        cp: t.cp,
        app: t.app,
        serverCpus: s.serverCpus,
        clientCpus: s.clientCpus,
        connections: s.connections,
        threads: s.threads,
        warmupS: s.warmupS,
        durationS: s.profileS,
        intervalUs: 500,
        outDir: TMP_DIR,
        applyPolicies: (service) => applyBenchPolicies(t.cp, service, NAMESPACE),
        waitPoliciesApplied: (service) => waitBenchPoliciesApplied(t.cp, service, NAMESPACE),
      });
    }
  } finally {
    await stopTopology();
  }
  // 7.
  for (const r of [...saturation, ...latency]) {
    if (r.resources.interferencePctOfCore > DISTURBED_PCT) {
      notes.push(
        `${r.variant} run ${r.rep}: other processes used ${r.resources.interferencePctOfCore.toFixed(0)} % of a core during it.`,
      );
    }
  }
  const summary = summarise(variants, saturation, latency, rssIdleBefore, rssIdleAfter);
  const costs =
    policyPairs.length > 0
      ? policyCosts(variants, policyPairs, latency, "policy pairs")
      : policyCosts(variants, saturation, latency, "saturation rounds");
  const finished = new Date();
  const results: BenchResults = {
    schema: 1,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    wallSeconds: (finished.getTime() - started.getTime()) / 1000,
    command: ["npm run bench", ...(process.argv.length > 2 ? ["--", ...process.argv.slice(2)] : [])].join(
      " ",
    ),
    commit,
    machine: {
      nproc: availableParallelism(),
      cpuModel: cpus()[0]?.model ?? "unknown",
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      kernel: release(),
      node: process.version,
      loadAverageAtStart: loadavg()[0]?.toFixed(2) ?? "",
    },
    tools: {
      wrk: firstLine("wrk", ["-v"]).replace(/ Copyright.*$/, ""),
      nginx: firstLine("nginx", ["-v"]).replace(/^nginx version: /, ""),
      gcc: firstLine("gcc", ["--version"]),
    },
    settings: {
      reps: s.reps,
      saturationS: s.saturationS,
      policyPairs: s.policyPairs,
      policyPairS: s.policyPairS,
      latencyS: s.latencyS,
      latencyWarmupS: s.latencyWarmupS,
      warmupS: s.warmupS,
      connections: s.connections,
      threads: s.threads,
      pinned: s.pinned,
      serverCpus: s.serverCpus ?? "",
      clientCpus: s.clientCpus ?? "",
      profileS: s.profileS,
    },
    variants: variants.map(({ port: _p, host: _h, ...info }) => info),
    memoryIdleBefore: rssIdleBefore,
    memoryIdleAfter: rssIdleAfter,
    nodeFloorMiB: nodeFloor(),
    quietWaitTotalMs: gate.spent,
    saturation,
    policyPairs,
    latency,
    summary,
    policyCosts: costs,
    targets: checkTargets(summary, costs),
    profiles,
    notes,
  };
  mkdirSync(s.outDir, { recursive: true });
  const stamp = started.toISOString().replace(/[:]/g, "-").replace(/\..*$/, "");
  const json = `${JSON.stringify(results, null, 2)}\n`;
  writeFileSync(join(s.outDir, `${stamp}-${commit.sha.slice(0, 7)}.json`), json);
  writeFileSync(join(s.outDir, "latest.json"), json);
  writeFileSync(join(s.outDir, "latest.md"), renderMarkdown(results, join(BENCH_SRC, "analysis.md")));
  log(`wrote ${join(s.outDir, "latest.md")} and latest.json (${Math.round(results.wallSeconds)} s)`);
  for (const r of summary) {
    log(
      `${r.variant}: ${Math.round(r.rps.median)} req/s (×${r.rps.vsDirect.toFixed(2)}), CPU/hop ${r.cpuUsPerRequest.perHop.toFixed(1)} µs` +
        (r.latency
          ? `, added p50/p99 ${(r.latency.addedP50Us / 1000).toFixed(2)}/${(r.latency.addedP99Us / 1000).toFixed(2)} ms`
          : ""),
    );
  }
  for (const c of costs) {
    log(
      `${c.variant} ÷ ${c.withoutPolicies}: proxy CPU/req ${c.cpuUsPerRequest.with.toFixed(1)} / ${c.cpuUsPerRequest.without.toFixed(1)} µs; median of ${c.pairs.length} ${c.source}' ratios ×${c.cpuUsPerRequest.ratio.toFixed(3)} (quartiles ${c.ratioQuartiles.map((x) => x.toFixed(3)).join("–")}), corrected for machine speed ×${c.appNormalised.ratio.toFixed(3)}; req/s ×${c.rps.ratio.toFixed(3)}`,
    );
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
});
