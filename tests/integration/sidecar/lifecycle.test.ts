// trellis-test: serial
// Sidecar lifecycle with the real control plane: not ready and refusing traffic before the first
// config, ready after; SIGTERM to one of two server replicas under a paced load fails no request
// (deregister → readiness fails → Connection: close / GOAWAY for the drain delay → in-flight
// requests finish → exit 0).
import assert from "node:assert/strict";
import * as http from "node:http";
import { after, before, describe, it } from "node:test";
import { type EchoApp, startReplicaApps } from "../../fixtures/sidecar-apps/echo-app.js";
import { createToken } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../../helpers/control-plane.js";
import { describeFailures, MeshClient, startPacedLoad } from "../../helpers/load.js";
import {
  type AdminCluster,
  adminJson,
  type SidecarProcess,
  startReplicaSidecars,
  startSidecar,
} from "../../helpers/sidecar.js";
import { waitFor } from "../../helpers/wait.js";

/** GET on 127.0.0.1:port (no keep-alive), status and headers. */
function plainGet(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, headers, agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

describe("sidecar lifecycle", () => {
  let cp: ControlPlaneProcess;
  let apps: EchoApp[] = [];
  const sidecars: SidecarProcess[] = [];
  let webToken: string;
  let ordersToken: string;

  before(async () => {
    cp = await startControlPlane({});
    [webToken, ordersToken] = await Promise.all([
      createToken(cp.env, "shop", "web"),
      createToken(cp.env, "shop", "orders"),
    ]);
  });

  after(async () => {
    cp?.proc.kill("SIGCONT");
    await Promise.all(sidecars.map((s) => s.stop()));
    await Promise.all(apps.map((a) => a.close()));
    await cp?.stop();
  });

  it("is not ready and refuses traffic before its first config, and is ready once it has it", async () => {
    // A frozen control plane accepts the connection but never answers: no config can arrive.
    cp.proc.kill("SIGSTOP");
    let web: SidecarProcess;
    try {
      web = await startSidecar({ cp, token: webToken, service: "web", waitReady: false });
      sidecars.push(web);
      for (const port of [web.ports.stats, web.ports.admin]) {
        const r = await plainGet(port, "/ready");
        assert.equal(r.status, 503, `/ready on ${port === web.ports.stats ? "stats" : "admin"}`);
      }
      // Outbound (from the app): refused at once, never passed through unfiltered.
      const out = await plainGet(web.ports.outbound, "/", { host: "orders.shop:8080" });
      assert.equal(out.status, 503);
      assert.equal(out.headers["x-trellis-error"], "no_healthy_upstream");
      // Also for a destination that would pass through once configured.
      const pass = await plainGet(web.ports.outbound, "/", { host: "127.0.0.1:9" });
      assert.equal(pass.status, 503);
      assert.equal(pass.headers["x-trellis-error"], "no_healthy_upstream");
      // Inbound: held for the subscribe timeout, then refused.
      const t0 = performance.now();
      const inbound = await plainGet(web.ports.inbound, "/");
      assert.equal(inbound.status, 503);
      assert.equal(inbound.headers["x-trellis-error"], "no_healthy_upstream");
      assert.ok(performance.now() - t0 >= 900, "held for the subscribe timeout first");
    } finally {
      cp.proc.kill("SIGCONT");
    }
    await waitFor(async () => (await plainGet(web.ports.stats, "/ready")).status === 200, {
      what: "web ready once the control plane answers",
      timeoutMs: 15_000,
      intervalMs: 50,
    });
    assert.equal((await plainGet(web.ports.admin, "/ready")).status, 200);
  });

  it("SIGTERM to one of two replicas under 200 req/s for 5 s: no request fails, and it exits 0", async () => {
    apps = await startReplicaApps("orders", 2);
    const host = `orders.shop:${apps[0]?.port}`;
    const [replicas, web] = await Promise.all([
      startReplicaSidecars(cp, ordersToken, "orders", apps, { drainDelay: "1s", drainTimeout: "5s" }),
      startSidecar({ cp, token: webToken, service: "web" }),
    ]);
    sidecars.push(...replicas, web);
    const [victim, survivor] = replicas as [SidecarProcess, SidecarProcess];
    const client = new MeshClient(web.ports.outbound);
    try {
      assert.equal((await client.send({ host })).status, 200);
      await waitFor(
        async () =>
          (await adminJson<AdminCluster[]>(web, "/clusters")).find((c) => c.name.startsWith("orders.shop:"))
            ?.endpoints.length === 2,
        { what: "both replicas at web", timeoutMs: 15_000, intervalMs: 50 },
      );
      const load = startPacedLoad({
        rate: 200,
        durationMs: 5000,
        send: () => client.send({ host, timeoutMs: 10_000 }),
      });
      await waitFor(() => load.sent() >= 300, { what: "1.5 s of load", timeoutMs: 10_000 });
      const victimApp = apps[0] as EchoApp;
      assert.ok(victimApp.requests.length > 0, "the victim served traffic before SIGTERM");
      // A request in flight at the SIGTERM that outlasts the drain delay (1 s) still completes.
      const inFlight = plainGet(victim.ports.inbound, "/slow?delay=2500");
      await waitFor(() => victimApp.requests.some((r) => r.url.startsWith("/slow")), {
        what: "slow request at the victim's app",
      });
      const exited = victim.proc.exited;
      victim.proc.kill("SIGTERM");
      // Readiness fails at once, while the listeners still accept (answering Connection: close).
      await waitFor(async () => (await plainGet(victim.ports.stats, "/ready")).status === 503, {
        what: "victim not ready after SIGTERM",
        timeoutMs: 2000,
        intervalMs: 20,
      });
      const during = await plainGet(victim.ports.inbound, "/direct");
      assert.equal(during.status, 200);
      assert.equal(during.headers.connection, "close");
      assert.equal((await inFlight).status, 200, "the in-flight request finished");
      const exit = await exited;
      assert.deepEqual(exit, { code: 0, signal: null }, victim.proc.logTail());
      const result = await load.done;
      assert.equal(result.samples.length, 1000);
      assert.equal(result.failures.length, 0, describeFailures(result.failures));
      // The survivor carried the rest; the victim got nothing after it exited.
      const servedBySurvivor = result.samples.filter((s) => s.app === "orders-1").length;
      assert.ok(servedBySurvivor > 500, `survivor served ${servedBySurvivor}`);
      assert.ok((await plainGet(survivor.ports.stats, "/ready")).status === 200);
    } finally {
      client.close();
    }
  });
});
