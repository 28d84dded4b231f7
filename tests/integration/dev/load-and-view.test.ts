// The parts of `trellis dev` whose mistakes would quietly mislead a user: the load must keep its
// pace when the mesh is slow (open loop, latency counted from when a request was due), the
// percentiles must be real samples, and the terminal table must redraw in place.
import assert from "node:assert/strict";
import * as http from "node:http";
import { after, describe, it } from "node:test";
import { createView } from "@trellis/control-plane/dev/live-view";
import { LoadGenerator } from "@trellis/control-plane/dev/load-generator";
import { percentile, ServiceStats } from "@trellis/control-plane/dev/service-stats";

describe("trellis dev load generator", () => {
  const slowMs = 300;
  let inFlightMax = 0;
  let inFlight = 0;
  const server = http.createServer((_req, res) => {
    inFlight++;
    inFlightMax = Math.max(inFlightMax, inFlight);
    setTimeout(() => {
      inFlight--;
      res.end("ok");
    }, slowMs);
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it("keeps its rate when answers are slow, and counts latency from when each request was due", async () => {
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const results: { ms: number; ok: boolean }[] = [];
    const load = new LoadGenerator({
      port,
      host: "web.shop",
      rate: 40,
      timeoutMs: 5000,
      onResult: (_at, ms, ok) => results.push({ ms, ok }),
    });
    load.start();
    await new Promise((r) => setTimeout(r, 1000));
    await load.stop();
    // A closed-loop client with one connection would manage ~3 requests in 1 s against a 300 ms
    // server; paced at 40/s it sends ~40 and has ~12 in flight at once.
    assert.ok(results.length >= 36 && results.length <= 44, `${results.length} requests in 1 s at 40/s`);
    assert.ok(inFlightMax >= 8, `at most ${inFlightMax} in flight: the pace waited for answers`);
    assert.ok(
      results.every((r) => r.ok && r.ms >= slowMs - 1),
      "every request ok, none faster than the server",
    );
  });
});

describe("trellis dev numbers", () => {
  it("takes percentiles by nearest rank (real samples, never interpolated)", () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(percentile(sorted, 0.5), 50);
    assert.equal(percentile(sorted, 0.99), 99);
    assert.equal(percentile([7], 0.99), 7);
    assert.equal(percentile([], 0.5), null);
  });

  it("reports a window: rate over its span, success rate, latencies of the calls in it", () => {
    const s = new ServiceStats("orders");
    for (let i = 0; i < 10; i++) s.add(1000 + i * 100, i + 1, i !== 3); // t = 1.0 … 1.9 s
    s.add(1950, Number.NaN, false); // never sent: a failure without a latency
    const w = s.window(1000, 2000); // (1.0, 2.0]: the call at exactly 1.0 s is outside
    assert.equal(w.requests, 10);
    assert.equal(w.ok, 8);
    assert.equal(w.rps, 10);
    assert.equal(w.successRate, 0.8);
    assert.equal(w.p50Ms, 6); // latencies 2…10: 9 values, nearest rank 5
    assert.equal(w.p99Ms, 10);
    assert.equal(s.window(5000, 6000).successRate, null);
  });
});

describe("trellis dev terminal table", () => {
  it("redraws in place: cursor up over the previous drawing, each line cleared; cursor hidden, then restored", () => {
    let out = "";
    const view = createView("tty", { write: (t: string) => (out += t) });
    const row = (service: string) => ({
      service,
      requests: 10,
      ok: 10,
      rps: 50,
      successRate: 1,
      p50Ms: 1.5,
      p99Ms: 4,
    });
    view.start({
      processes: [],
      workDir: "/w",
      home: "/h",
      logDir: "/l",
      rate: 50,
      durationS: 30,
      windowS: 5,
      scenarios: [],
    });
    assert.ok(out.endsWith("\x1b[?25l"), "cursor hidden while the table is live");
    const report = { elapsedS: 1, windowS: 1, services: ["web", "orders", "inventory"].map(row) };
    out = "";
    view.report(report);
    const lines = out.split("\n").filter((l) => l.length > 0);
    assert.equal(out.includes("\x1b[A"), false);
    assert.ok(
      lines.every((l) => l.startsWith("\x1b[2K")),
      "every line cleared before it is written",
    );
    out = "";
    view.report(report);
    assert.ok(
      out.startsWith(`\x1b[${lines.length}A\r`),
      `back up ${lines.length} lines: ${JSON.stringify(out.slice(0, 12))}`,
    );
    view.close();
    assert.ok(out.endsWith("\x1b[?25h"), "cursor shown again");
  });
});
