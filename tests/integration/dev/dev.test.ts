// `trellis dev --duration 20s --json` (issue 5, "Done when"): it runs a control plane and web →
// orders → inventory each behind its own sidecar, traffic crosses every hop (read from the sidecars'
// own /metrics while the demo runs, not from what trellis dev says), it exits 0, and afterwards none
// of its processes lives and none of its ports is bound.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import {
  alive,
  type DevRun,
  firstLine,
  type ListedProcess,
  listedPorts,
  listeningPorts,
  requestsTotal,
  type ServiceSummary,
  scrape,
  startDev,
} from "./dev-helpers.js";

/** The hops the demo's traffic must cross, as each sidecar counts them. */
const HOPS: { sidecar: string; what: string; labels: Record<string, string> }[] = [
  {
    sidecar: "web",
    what: "inbound at web",
    labels: { direction: "inbound", destination_service: "web", response_code: "200" },
  },
  {
    sidecar: "web",
    what: "outbound web → orders",
    labels: {
      direction: "outbound",
      source_service: "web",
      destination_service: "orders",
      response_code: "200",
    },
  },
  {
    sidecar: "orders",
    what: "inbound at orders",
    labels: { direction: "inbound", destination_service: "orders", response_code: "200" },
  },
  {
    sidecar: "orders",
    what: "outbound orders → inventory (gRPC)",
    labels: {
      direction: "outbound",
      source_service: "orders",
      destination_service: "inventory",
      response_code: "200",
    },
  },
  {
    sidecar: "inventory",
    what: "inbound at inventory (gRPC)",
    labels: { direction: "inbound", destination_service: "inventory", response_code: "200" },
  },
];

describe("trellis dev --duration 20s --json", { timeout: 90_000 }, () => {
  let run: DevRun | undefined;
  after(async () => {
    await run?.proc.stop();
  });

  it("runs the chain through every sidecar, exits 0 and leaves no process or port behind", async () => {
    run = startDev(["--duration", "20s"]);
    const first = await firstLine(run, 40_000);

    // The first line lists every process with its pid and ports.
    const byName = new Map<string, ListedProcess>(first.processes.map((p) => [p.name, p]));
    assert.deepEqual([...byName.keys()].sort(), [
      "control-plane",
      "inventory",
      "inventory-sidecar",
      "orders",
      "orders-sidecar",
      "web",
      "web-sidecar",
    ]);
    for (const p of first.processes) {
      assert.ok(Number.isInteger(p.pid) && p.pid > 0, `${p.name} has a pid`);
      assert.ok(alive(p.pid), `${p.name} (pid ${p.pid}) is running`);
      for (const [role, port] of Object.entries(p.ports))
        assert.ok(port > 0 && port < 65536, `${p.name} ${role} port ${port}`);
    }
    for (const s of ["web", "orders", "inventory"]) {
      const sc = byName.get(`${s}-sidecar`) as ListedProcess;
      assert.deepEqual(Object.keys(sc.ports).sort(), ["admin", "inbound", "outbound", "stats"]);
      assert.deepEqual(Object.keys((byName.get(s) as ListedProcess).ports), ["app"]);
    }
    const ports = listedPorts(first.processes);
    assert.equal(new Set(ports).size, ports.length, "every process has ports of its own");

    // While the demo runs: every hop shows successful requests in its sidecar's own metrics.
    const statsPort = (service: string) =>
      (byName.get(`${service}-sidecar`) as ListedProcess).ports.stats as number;
    const seen = new Map<string, number>();
    while (seen.size < HOPS.length && run.proc.exitInfo() === undefined) {
      for (const hop of HOPS) {
        const n = requestsTotal(await scrape(statsPort(hop.sidecar)), hop.labels);
        if (n > 0) seen.set(hop.what, n);
      }
      if (seen.size < HOPS.length) await delay(500);
    }
    assert.deepEqual(
      HOPS.map((h) => h.what).filter((w) => !seen.has(w)),
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
      stopped: { name: string; code: number | null; forced: boolean }[];
    };
    assert.equal(last.type, "summary");
    assert.equal(last.reason, "duration");
    assert.equal(last.clean, true);
    assert.ok(Math.abs(last.durationS - 20) < 2, `load ran ${last.durationS}s`);
    assert.deepEqual(
      last.services.map((s) => s.service),
      ["web", "orders", "inventory"],
    );
    for (const s of last.services) {
      // Paced load: 50 req/s for 20 s is 1,000 requests at web, and each reaches the next hop once.
      assert.ok(s.requests >= 950 && s.requests <= 1050, `${s.service}: ${s.requests} requests`);
      assert.ok((s.successRate ?? 0) >= 0.95, `${s.service}: success rate ${s.successRate}`);
      assert.ok(s.p50Ms !== null && s.p99Ms !== null && s.p50Ms <= s.p99Ms, `${s.service} latencies`);
    }
    assert.ok(
      run.lines.slice(1, -1).every((l) => l.type === "stats") && run.lines.length >= 4,
      `periodic stats lines between the first and the last (${run.lines.length} lines)`,
    );
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
