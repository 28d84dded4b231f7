// `trellis dev --duration 20s --json` (issue 5, "Done when", and the scenarios issue): it runs a
// control plane and web → orders (2 replicas) → inventory each behind its own sidecar, traffic
// crosses every hop, the three scenarios play — a failing orders replica absorbed by retries and
// ejection, a slow inventory cut short by the route timeout, a burst answered 429 — and its summary
// counts retries, ejections, timeouts and 429s. Every one of those is also read here from the
// sidecars' own /metrics while the demo runs, not taken from what trellis dev says. It exits 0, and
// afterwards none of its processes lives and none of its ports is bound.
//
// 20 s rather than the default 30 s keeps CI time down: the scenarios are scaled to the duration
// (failing 2–7.3 s, slow 8.7–12.7 s, burst 14.7–16.7 s), each still long enough for its effect.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { SLOW_DELAY_MS } from "@trellis/control-plane/dev/scenarios";
import {
  alive,
  type DevRun,
  firstLine,
  type ListedProcess,
  listedPorts,
  listeningPorts,
  metricSum,
  requestsTotal,
  type ServiceSummary,
  scrape,
  startDev,
} from "./dev-helpers.js";

/** The hops the demo's traffic must cross, as the sidecars on each side count them. */
const HOPS: { sidecars: string[]; what: string; labels: Record<string, string> }[] = [
  {
    sidecars: ["web-sidecar"],
    what: "inbound at web",
    labels: { direction: "inbound", destination_service: "web", response_code: "200" },
  },
  {
    sidecars: ["web-sidecar"],
    what: "outbound web → orders",
    labels: {
      direction: "outbound",
      source_service: "web",
      destination_service: "orders",
      response_code: "200",
    },
  },
  {
    sidecars: ["orders-1-sidecar"],
    what: "inbound at orders-1",
    labels: { direction: "inbound", destination_service: "orders", response_code: "200" },
  },
  {
    sidecars: ["orders-2-sidecar"],
    what: "inbound at orders-2",
    labels: { direction: "inbound", destination_service: "orders", response_code: "200" },
  },
  {
    sidecars: ["orders-1-sidecar", "orders-2-sidecar"],
    what: "outbound orders → inventory (gRPC)",
    labels: {
      direction: "outbound",
      source_service: "orders",
      destination_service: "inventory",
      response_code: "200",
      grpc_status: "0",
    },
  },
  {
    sidecars: ["inventory-sidecar"],
    what: "inbound at inventory (gRPC)",
    labels: { direction: "inbound", destination_service: "inventory", response_code: "200" },
  },
];

interface Tally {
  requests: number;
  statuses: Record<string, number>;
  meshErrors: Record<string, number>;
  rateLimitHeaders: number;
  rateLimitExample?: Record<string, string>;
}

interface ScenarioSummary {
  name: string;
  startS: number;
  endS: number;
  countedUntilS: number;
  completed: boolean;
  description: string;
  outcome: string;
  sidecars: {
    retries: number;
    ejections: number;
    ejectionsByCluster: Record<string, number>;
    upstreamTimeouts: number;
    rateLimited: number;
    sidecarsRead: number;
    sidecarsTotal: number;
  };
  callers: { services: ServiceSummary[]; load: Tally; burst?: Tally };
}

function row(services: ServiceSummary[], name: string): ServiceSummary {
  const r = services.find((s) => s.service === name);
  assert.ok(r !== undefined, `a row for ${name}`);
  return r;
}

describe("trellis dev --duration 20s --json", { timeout: 90_000 }, () => {
  let run: DevRun | undefined;
  after(async () => {
    await run?.proc.stop();
  });

  it("runs the chain through every sidecar, plays the scenarios, counts them, exits 0 and leaves nothing behind", async () => {
    run = startDev(["--duration", "20s"]);
    const first = await firstLine(run, 40_000);

    // The first line lists every process with its pid and ports.
    const byName = new Map<string, ListedProcess>(first.processes.map((p) => [p.name, p]));
    assert.deepEqual([...byName.keys()].sort(), [
      "control-plane",
      "inventory",
      "inventory-sidecar",
      "orders-1",
      "orders-1-sidecar",
      "orders-2",
      "orders-2-sidecar",
      "web",
      "web-sidecar",
    ]);
    for (const p of first.processes) {
      assert.ok(Number.isInteger(p.pid) && p.pid > 0, `${p.name} has a pid`);
      assert.ok(alive(p.pid), `${p.name} (pid ${p.pid}) is running`);
      for (const [role, port] of Object.entries(p.ports))
        assert.ok(port > 0 && port < 65536, `${p.name} ${role} port ${port}`);
    }
    const sidecars = first.processes.filter((p) => p.kind === "sidecar");
    for (const sc of sidecars)
      assert.deepEqual(Object.keys(sc.ports).sort(), ["admin", "inbound", "outbound", "stats"]);
    for (const app of first.processes.filter((p) => p.kind === "app"))
      assert.deepEqual(Object.keys(app.ports), ["app"]);
    // The replicas of orders share the app port number (one target port per service), each on its
    // own loopback address; every other port is a process's own.
    const o1 = byName.get("orders-1") as ListedProcess;
    const o2 = byName.get("orders-2") as ListedProcess;
    assert.equal(o1.ports.app, o2.ports.app);
    assert.notEqual(o1.address, o2.address);
    const ports = listedPorts(first.processes);
    const bindings = first.processes.flatMap((p) =>
      Object.values(p.ports).map((port) => `${p.address ?? "127.0.0.1"}:${port}`),
    );
    assert.equal(new Set(bindings).size, bindings.length, "every process has ports of its own");
    assert.deepEqual(
      (first as unknown as { scenarios: { name: string }[] }).scenarios.map((s) => s.name),
      ["failing-instance", "slow-dependency", "rate-limit-burst"],
      "the first line lists the scenarios planned",
    );

    // While the demo runs: every sidecar's own /metrics, read every 500 ms until trellis dev exits.
    // Counters only grow, so the last reading of each sidecar holds its totals.
    const latest = new Map<string, string>();
    let ordersEjectedSeen = 0;
    while (run.proc.exitInfo() === undefined) {
      await Promise.all(
        sidecars.map(async (sc) => {
          const text = await scrape(sc.ports.stats as number);
          if (text !== "") latest.set(sc.name, text);
        }),
      );
      ordersEjectedSeen = Math.max(
        ordersEjectedSeen,
        metricSum(latest.get("web-sidecar") ?? "", "trellis_endpoints_ejected", { cluster: /^orders\./ }),
      );
      await Promise.race([delay(500), run.proc.exited]);
    }
    const observed = (family: string, want: Record<string, string | RegExp> = {}, only?: string[]) =>
      [...latest]
        .filter(([name]) => only === undefined || only.includes(name))
        .reduce((n, [, text]) => n + metricSum(text, family, want), 0);
    const seen = new Map(
      HOPS.map((h) => [
        h.what,
        h.sidecars.reduce((n, sc) => n + requestsTotal(latest.get(sc) ?? "", h.labels), 0),
      ]),
    );
    assert.deepEqual(
      HOPS.map((h) => h.what).filter((w) => !((seen.get(w) ?? 0) > 0)),
      [],
      `hops without traffic in the sidecars' /metrics (seen: ${JSON.stringify(Object.fromEntries(seen))})`,
    );

    // The end: exit 0, the last line is the summary.
    const exit = await run.proc.exited;
    await run.ended;
    assert.deepEqual(
      { code: exit.code, signal: exit.signal },
      { code: 0, signal: null },
      `trellis dev failed:\n${run.proc.logTail(60)}`,
    );
    const last = run.lines.at(-1) as {
      type: string;
      clean: boolean;
      reason: string;
      durationS: number;
      services: ServiceSummary[];
      scenarios: ScenarioSummary[];
      stopped: { name: string; code: number | null; forced: boolean }[];
    };
    assert.equal(last.type, "summary");
    assert.equal(last.reason, "duration");
    assert.equal(last.clean, true);
    assert.ok(Math.abs(last.durationS - 20) < 2, `load ran ${last.durationS}s`);

    // Each scenario was announced when it started and when it ended, in timeline order.
    const middle = run.lines.slice(1, -1);
    assert.ok(
      middle.every((l) => l.type === "stats" || l.type === "scenario") &&
        middle.filter((l) => l.type === "stats").length >= 3,
      `periodic stats and scenario lines between the first and the last (${run.lines.length} lines)`,
    );
    assert.deepEqual(
      middle.filter((l) => l.type === "scenario").map((l) => `${l.event} ${l.name}`),
      [
        "start failing-instance",
        "end failing-instance",
        "start slow-dependency",
        "end slow-dependency",
        "start rate-limit-burst",
        "end rate-limit-burst",
      ],
    );

    // The summary's scenarios: all three ran to their end, one after the other, within the run.
    const scenarios = last.scenarios;
    const detail = JSON.stringify(scenarios, null, 1);
    assert.deepEqual(
      scenarios.map((s) => s.name),
      ["failing-instance", "slow-dependency", "rate-limit-burst"],
    );
    let previousEnd = 0;
    for (const s of scenarios) {
      assert.ok(s.completed, `${s.name} completed`);
      assert.ok(
        previousEnd <= s.startS && s.startS < s.endS && s.endS <= s.countedUntilS && s.countedUntilS < 20,
        `${s.name} at ${s.startS}–${s.endS}s (counted to ${s.countedUntilS}s)`,
      );
      previousEnd = s.countedUntilS;
      assert.equal(s.sidecars.sidecarsRead, 4, `${s.name}: every sidecar's /metrics read`);
    }
    const [failing, slow, burst] = scenarios as [ScenarioSummary, ScenarioSummary, ScenarioSummary];

    // 1. Failing instance: orders-2 answered 503; retries and ejection absorbed it.
    assert.ok(failing.sidecars.retries >= 1, `retries counted: ${detail}`);
    assert.ok(failing.sidecars.ejections >= 1, `ejections counted: ${detail}`);
    const ordersEjections = Object.entries(failing.sidecars.ejectionsByCluster)
      .filter(([cluster]) => cluster.startsWith("orders."))
      .reduce((n, [, v]) => n + v, 0);
    assert.ok(ordersEjections >= 1, `an orders endpoint ejected: ${detail}`);
    for (const service of ["web", "orders"]) {
      const r = row(failing.callers.services, service);
      assert.ok((r.successRate ?? 0) >= 0.97, `${service}'s callers saw few errors: ${JSON.stringify(r)}`);
    }

    // 2. Slow dependency: calls to inventory ended at the route timeout, not after its 2 s.
    assert.ok(slow.sidecars.upstreamTimeouts >= 1, `upstream_timeout counted: ${detail}`);
    const inventory = row(slow.callers.services, "inventory");
    assert.ok(inventory.ok < inventory.requests, `calls to inventory failed: ${JSON.stringify(inventory)}`);
    assert.ok(
      inventory.p99Ms !== null && inventory.p99Ms < SLOW_DELAY_MS,
      `calls to inventory ended before its ${SLOW_DELAY_MS} ms: ${JSON.stringify(inventory)}`,
    );
    assert.ok(
      (row(slow.callers.services, "orders").successRate ?? 0) >= 0.97,
      "orders answered (without the stock) instead of failing",
    );

    // 3. Burst: the excess got 429 with the RateLimit headers; the callers and the sidecar agree.
    const tallies = [burst.callers.load, burst.callers.burst].filter((t): t is Tally => t !== undefined);
    const got429 = tallies.reduce((n, t) => n + (t.statuses["429"] ?? 0), 0);
    assert.ok(burst.callers.burst !== undefined && burst.callers.burst.requests > 0, "the burst was sent");
    assert.ok(burst.sidecars.rateLimited >= 1 && got429 >= 1, `429s: ${detail}`);
    assert.ok(Math.abs(burst.sidecars.rateLimited - got429) <= 2, `sidecar and callers agree: ${detail}`);
    assert.equal(
      tallies.reduce((n, t) => n + t.rateLimitHeaders, 0),
      got429,
      "every 429 carried RateLimit-Limit, -Remaining, -Reset and Retry-After",
    );
    assert.equal(burst.callers.burst?.rateLimitExample?.["ratelimit-limit"], "50", "the bucket: 1 s of load");

    // The same, read independently from the sidecars' own /metrics during the run.
    const sum = (pick: (s: ScenarioSummary) => number) => scenarios.reduce((n, s) => n + pick(s), 0);
    const retries = observed("trellis_retries_total", {}, ["web-sidecar"]);
    assert.ok(retries >= 1, "web's sidecar retried");
    assert.ok(observed("trellis_retries_total") >= sum((s) => s.sidecars.retries), "retries");
    const ejected = observed("trellis_outlier_ejections_total", { cluster: /^orders\./ }, ["web-sidecar"]);
    assert.ok(ejected >= ordersEjections, `web's sidecar ejected orders endpoints ${ejected} times`);
    assert.ok(observed("trellis_outlier_ejections_total") >= sum((s) => s.sidecars.ejections), "ejections");
    assert.ok(ordersEjectedSeen >= 1, "trellis_endpoints_ejected showed an orders endpoint out");
    const timeouts = observed("trellis_requests_total", {
      direction: "outbound",
      destination_service: "inventory",
      reason: "upstream_timeout",
      grpc_status: "4",
    });
    assert.ok(timeouts >= 1, "orders' sidecars answered DEADLINE_EXCEEDED upstream_timeout");
    assert.ok(
      observed("trellis_local_reply_total", { reason: "upstream_timeout" }) >= slow.sidecars.upstreamTimeouts,
      "upstream timeouts",
    );
    const limited = observed(
      "trellis_ratelimit_decisions_total",
      { policy: "shop/web", scope: "local", decision: "limited" },
      ["web-sidecar"],
    );
    assert.ok(limited >= burst.sidecars.rateLimited, `web's sidecar limited ${limited}`);
    const inbound429 = observed(
      "trellis_requests_total",
      { direction: "inbound", destination_service: "web", response_code: "429", reason: "rate_limited" },
      ["web-sidecar"],
    );
    assert.ok(inbound429 >= got429, `web's sidecar answered 429 ${inbound429} times`);

    // The whole run, per service. web's row is the steady load only: paced, 50 req/s for 20 s.
    assert.deepEqual(
      last.services.map((s) => s.service),
      ["web", "orders", "inventory"],
    );
    const [web, orders, inv] = last.services as [ServiceSummary, ServiceSummary, ServiceSummary];
    assert.ok(web.requests >= 950 && web.requests <= 1050, `web: ${web.requests} requests`);
    // orders gets every call web made (the burst's admitted ones too), inventory one per orders call.
    assert.ok(orders.requests >= web.ok, `orders: ${orders.requests} calls, web ok ${web.ok}`);
    assert.ok(
      Math.abs(inv.requests - orders.requests) <= orders.requests * 0.02,
      `inventory ${inv.requests} calls, orders ${orders.requests}`,
    );
    // Outside the scenarios' windows the mesh is healthy: the failures are the scenarios' own.
    for (const s of last.services) {
      const inWindows = scenarios.reduce((n, sc) => {
        const r = row(sc.callers.services, s.service);
        return n + r.requests - r.ok;
      }, 0);
      const outside = s.requests - s.ok - inWindows;
      assert.ok(
        outside <= Math.max(5, s.requests * 0.02),
        `${s.service}: ${outside} failures outside the scenarios (${s.requests - s.ok} in all)`,
      );
      assert.ok(s.p50Ms !== null && s.p99Ms !== null && s.p50Ms <= s.p99Ms, `${s.service} latencies`);
    }
    assert.deepEqual(
      last.stopped.filter((p) => p.code !== 0 || p.forced),
      [],
      "every process exited 0 on SIGTERM",
    );

    // Afterwards: no listed process lives, no listed port is bound, no work dir is left.
    assert.deepEqual(
      first.processes.filter((p) => alive(p.pid)).map((p) => `${p.name} (pid ${p.pid})`),
      [],
      "processes still alive",
    );
    const bound = listeningPorts();
    assert.deepEqual(
      ports.filter((p) => bound.has(p)),
      [],
      "ports still bound",
    );
    assert.deepEqual(
      readdirSync(run.tmp).filter((f) => f.startsWith("trellis-dev-")),
      [],
      "the temporary work dir is removed after a clean run",
    );
  });
});
