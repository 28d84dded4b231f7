// The parts of `trellis dev`'s scenarios that a full run cannot pin down cheaply: where they sit on
// a run of any length, what happens to one under way when the run ends (undone at once, reported
// as cut short), how counts are taken from sidecars that may vanish, and how an announcement sits
// above the live table.
import assert from "node:assert/strict";
import * as http from "node:http";
import { after, describe, it } from "node:test";
import { createView } from "@trellis/control-plane/dev/live-view";
import { countsBetween, parseSeries, type Reading } from "@trellis/control-plane/dev/mesh-metrics";
import { type ScenarioEvent, ScenarioRunner } from "@trellis/control-plane/dev/scenario-runner";
import { planScenarios, SCENARIOS } from "@trellis/control-plane/dev/scenarios";
import { ServiceStats } from "@trellis/control-plane/dev/service-stats";

describe("trellis dev scenario timeline", () => {
  it("lays the 30 s timeline over the run's duration; a run until Ctrl-C gets it as is", () => {
    const at = (durationMs: number) =>
      planScenarios(durationMs).map((p) => [p.def.name, p.startMs, p.endMs] as const);
    assert.deepEqual(at(30_000), [
      ["failing-instance", 3_000, 11_000],
      ["slow-dependency", 13_000, 19_000],
      ["rate-limit-burst", 22_000, 25_000],
    ]);
    assert.deepEqual(at(0), at(30_000));
    assert.deepEqual(at(20_000), [
      ["failing-instance", 2_000, 7_333],
      ["slow-dependency", 8_667, 12_667],
      ["rate-limit-burst", 14_667, 16_667],
    ]);
    assert.deepEqual(at(60_000)[2], ["rate-limit-burst", 44_000, 50_000]);
  });
});

describe("trellis dev sidecar counts", () => {
  it("takes differences per sidecar: one unreadable at either reading adds nothing, a reset counter counts from 0", () => {
    const text = (retries: number, ejections: number) =>
      [
        "# TYPE trellis_retries_total counter",
        `trellis_retries_total ${retries}`,
        `trellis_outlier_ejections_total{cluster="orders.shop:8080"} ${ejections}`,
        'trellis_local_reply_total{reason="upstream_timeout"} 0',
        'trellis_ratelimit_decisions_total{policy="shop/web",scope="local",decision="allowed"} 90',
        'trellis_requests_total{direction="inbound"} 5',
      ].join("\n");
    assert.equal(parseSeries(text(1, 2)).size, 4, "only the families the scenarios count");
    const before: Reading = new Map([
      ["a", parseSeries(text(10, 1))],
      ["b", parseSeries(text(5, 0))],
      ["c", undefined],
    ]);
    const after: Reading = new Map([
      ["a", parseSeries(text(13, 2))],
      ["b", undefined],
      ["c", parseSeries(text(100, 100))],
    ]);
    const c = countsBetween(before, after);
    assert.deepEqual(
      { retries: c.retries, ejections: c.ejections, read: c.sidecarsRead, total: c.sidecarsTotal },
      { retries: 3, ejections: 1, read: 1, total: 3 },
    );
    assert.deepEqual(c.ejectionsByCluster, { "orders.shop:8080": 1 });
    const reset = countsBetween(
      new Map([["a", parseSeries(text(10, 0))]]),
      new Map([["a", parseSeries(text(4, 0))]]),
    );
    assert.equal(reset.retries, 4);
  });
});

describe("trellis dev scenario runner", () => {
  // One fake sidecar whose counters the test moves.
  let retries = 0;
  const server = http.createServer((_req, res) => {
    res.end(
      `trellis_retries_total ${retries}\ntrellis_outlier_ejections_total{cluster="orders.shop:1"} ${retries > 0 ? 1 : 0}\n`,
    );
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it("when the run ends during a scenario, undoes it at once and reports it cut short; later ones never start", async () => {
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const behaved: string[] = [];
    const events: ScenarioEvent[] = [];
    let started: () => void = () => {};
    const startedP = new Promise<void>((r) => {
      started = r;
    });
    const [failing, slow] = SCENARIOS as [(typeof SCENARIOS)[0], (typeof SCENARIOS)[0]];
    const loadStart = Date.now();
    const runner = new ScenarioRunner({
      plan: [
        { def: failing, startMs: 0, endMs: 60_000 },
        { def: slow, startMs: 61_000, endMs: 62_000 },
      ],
      levers: {
        rate: 50,
        behave: (instance, status, delayMs) => behaved.push(`${instance} ${status} ${delayMs}`),
        extraLoad: () => async () => {},
      },
      sources: () => [{ name: "orders-sidecar", statsPort: port }],
      loadStart,
      callers: () =>
        ["web", "orders", "inventory"].map((service) => ({
          service,
          requests: 10,
          ok: 10,
          rps: 10,
          successRate: 1,
          p50Ms: 1,
          p99Ms: 2,
        })),
      onEvent: (e) => {
        events.push(e);
        if (e.event === "start") started();
      },
      onError: (m) => assert.fail(m),
    });
    runner.start();
    await startedP;
    assert.deepEqual(behaved, ["orders-2 503 0"], "orders-2 told to fail");
    retries = 3;
    runner.onLoadResult(200, {});
    runner.onLoadResult(503, { "x-trellis-error": "retry_budget_exhausted" });
    const t0 = Date.now();
    await runner.stop();
    assert.ok(Date.now() - t0 < 1_000, "no settle wait after an interrupted scenario");
    assert.deepEqual(behaved, ["orders-2 503 0", "orders-2 0 0"], "and told to recover at once");
    assert.deepEqual(
      events.map((e) => `${e.event} ${e.name}`),
      ["start failing-instance", "end failing-instance"],
    );
    const results = runner.results();
    assert.equal(results.length, 1, "the second scenario never started");
    const r = results[0];
    assert.ok(r !== undefined);
    assert.equal(r.completed, false);
    assert.ok(r.startS < 1 && r.endS >= r.startS && r.countedUntilS >= r.endS, JSON.stringify(r));
    assert.deepEqual(
      { retries: r.sidecars.retries, ejections: r.sidecars.ejections },
      { retries: 3, ejections: 1 },
    );
    assert.deepEqual(r.callers.load, {
      requests: 2,
      statuses: { "200": 1, "503": 1 },
      meshErrors: { retry_budget_exhausted: 1 },
      rateLimitHeaders: 0,
    });
    assert.match(r.outcome, /3 retries and 1 ejection; web's calls to orders: 100% ok \(10 of 10\)/);
  });
});

describe("trellis dev numbers with two callers", () => {
  it("keeps samples in completion order when batches from two replicas interleave", () => {
    const s = new ServiceStats("inventory");
    s.add(1000, 1, true);
    s.add(1200, 1, true); // orders-1's batch
    s.add(1100, 5, false); // orders-2's, older
    s.add(1300, 1, true);
    assert.deepEqual(
      [s.window(1050, 1150).requests, s.window(1050, 1150).ok, s.window(0, 1250).requests],
      [1, 0, 3],
    );
    assert.equal(s.window(1150, 2000).requests, 2);
  });
});

describe("trellis dev terminal announcements", () => {
  it("writes a scenario's announcement where the table was and the table again below it", () => {
    let out = "";
    const view = createView("tty", { write: (t: string) => (out += t) });
    const row = (service: string) => ({
      service,
      requests: 1,
      ok: 1,
      rps: 1,
      successRate: 1,
      p50Ms: 1,
      p99Ms: 1,
    });
    view.report({ elapsedS: 1, windowS: 1, services: ["web", "orders", "inventory"].map(row) });
    const tableLines = out.split("\n").filter((l) => l.length > 0).length;
    out = "";
    view.scenario({
      event: "start",
      name: "failing-instance",
      title: "failing instance",
      elapsedS: 3,
      message: "m",
    });
    assert.ok(
      out.startsWith(`\x1b[${tableLines}A\r\x1b[J\x1b[2K[   3s] scenario: failing instance — m\n`),
      JSON.stringify(out),
    );
    assert.equal(out.split("\n").filter((l) => l.length > 0).length, tableLines + 1, "then the table");
    out = "";
    view.report({ elapsedS: 2, windowS: 1, services: ["web", "orders", "inventory"].map(row) });
    assert.ok(out.startsWith(`\x1b[${tableLines}A\r`), "the next report redraws only the table");
    view.close();
  });
});
