// trellis-test: serial
// Live configuration through real sidecars and the real control plane (embedded store), under a
// paced open-loop load: a route change, an endpoint added and one deregistered fail no request; a
// NACKed resource leaves the rest applied and shows as rejected; a SIGKILLed control plane changes
// nothing for traffic; a sidecar restarted during the outage serves from its persisted config.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  type EchoApp,
  type EchoBody,
  startReplicaApp,
  startReplicaApps,
} from "../../fixtures/sidecar-apps/echo-app.js";
import { createToken, runTrellis } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane, TRELLIS_BIN } from "../../helpers/control-plane.js";
import { describeFailures, MeshClient, startPacedLoad } from "../../helpers/load.js";
import { spawnManaged } from "../../helpers/processes.js";
import {
  type AdminCluster,
  adminJson,
  type ControlPlaneGate,
  type SidecarProcess,
  startControlPlaneGate,
  startReplicaSidecars,
  startSidecar,
} from "../../helpers/sidecar.js";
import { waitFor } from "../../helpers/wait.js";

/**
 * Deadline of one request of a paced load. Generous: a request answered late on a busy test
 * machine is not a failed request; one never answered is.
 */
const LOAD_DEADLINE_MS = 10_000;

function route(version: "one" | "two"): string {
  const backends =
    version === "one"
      ? "[ { service: orders } ]"
      : "[ { service: orders, weight: 50 }, { service: orders-v2, weight: 50 } ]";
  return `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules:
    - backends: ${backends}
      headers: { request: { set: { x-route: ${version} } } }
`;
}

/**
 * `trellis apply -f -`, started now and fed later: the CLI loads its modules and waits on stdin,
 * so `feed` costs only the apply itself.
 */
function preparedApply(cp: ControlPlaneProcess): { feed(yaml: string): Promise<void> } {
  const proc = spawnManaged(process.execPath, [TRELLIS_BIN, "apply", "-f", "-"], {
    name: "trellis-apply",
    env: cp.env,
    pipe: true,
  });
  proc.stdout?.resume();
  return {
    async feed(yaml: string) {
      proc.stdin?.end(yaml);
      const exit = await proc.exited;
      const log = proc.logTail();
      await proc.stop();
      assert.equal(exit.code, 0, `apply failed: ${log}`);
    },
  };
}

async function apply(cp: ControlPlaneProcess, yaml: string): Promise<void> {
  const r = await runTrellis(["apply", "-f", "-"], cp.env, yaml);
  assert.equal(r.code, 0, `apply failed: ${r.stderr}`);
}

describe("sidecar live configuration", () => {
  let cp: ControlPlaneProcess;
  const apps: EchoApp[] = [];
  const sidecars: SidecarProcess[] = [];
  const gates: ControlPlaneGate[] = [];
  let orders: SidecarProcess[] = [];
  let web: SidecarProcess;
  let client: MeshClient;
  let ordersToken: string;
  let host: string;
  let v2Host: string;

  const clustersAtWeb = () => adminJson<AdminCluster[]>(web, "/clusters");
  const endpointsAtWeb = async (prefix: string) =>
    (await clustersAtWeb()).find((c) => c.name.startsWith(prefix))?.endpoints.map((e) => e.proxyId) ?? [];

  before(async () => {
    cp = await startControlPlane({});
    apps.push(...(await startReplicaApps("orders", 2)));
    const first = apps[0] as EchoApp;
    const v2App = await startReplicaApp("orders-v2", first, 9);
    apps.push(v2App);
    host = `orders.shop:${first.port}`;
    v2Host = `orders-v2.shop:${first.port}`;
    await apply(cp, route("one"));
    let v2Token: string;
    let webToken: string;
    [ordersToken, v2Token, webToken] = await Promise.all([
      createToken(cp.env, "shop", "orders"),
      createToken(cp.env, "shop", "orders-v2"),
      createToken(cp.env, "shop", "web"),
    ]);
    let v2: SidecarProcess[];
    [orders, v2, web] = await Promise.all([
      startReplicaSidecars(cp, ordersToken, "orders", apps.slice(0, 2), { drainDelay: "500ms" }),
      startReplicaSidecars(cp, v2Token, "orders-v2", [v2App]),
      startSidecar({ cp, token: webToken, service: "web" }),
    ]);
    sidecars.push(...orders, ...v2, web);
    client = new MeshClient(web.ports.outbound);
    await waitFor(
      async () =>
        (await client.send({ host })).status === 200 && (await endpointsAtWeb("orders.shop:")).length === 2,
      { what: "orders routed with two endpoints at web", timeoutMs: 15_000, intervalMs: 50 },
    );
  });

  after(async () => {
    client?.close();
    await Promise.all(sidecars.map((s) => s.stop()));
    await Promise.all(apps.map((a) => a.close()));
    await Promise.all(gates.map((g) => g.close()));
    await cp?.stop();
  });

  it("route change, endpoint added, endpoint deregistered under 200 req/s for 5 s: no request fails", async () => {
    // Made ready before the load, so their seconds of process start-up do not land in it: the
    // replica that will join (booted behind a closed gate: not registered yet) and the CLI that
    // will change the route (started; it applies once it is fed the YAML).
    const gate = await startControlPlaneGate(cp.address);
    gates.push(gate);
    const joiningApp = await startReplicaApp("orders-2", apps[0] as EchoApp, 4);
    apps.push(joiningApp);
    const [joining] = await startReplicaSidecars(
      { address: gate.address, caFile: cp.caFile },
      ordersToken,
      "orders",
      [joiningApp],
      { waitReady: false },
    );
    sidecars.push(joining as SidecarProcess);
    const routeChange = preparedApply(cp);

    // 5 s at 200 req/s — longer on a busy machine: until 1 s after the last change (bound 20 s).
    const load = startPacedLoad({
      rate: 200,
      durationMs: 20_000,
      send: () => client.send({ host, timeoutMs: LOAD_DEADLINE_MS }),
    });
    const at = (ms: number, what: string) =>
      waitFor(() => load.elapsedMs() >= ms, { what, timeoutMs: 20_000, intervalMs: 5 });
    // When each step happened (ms into the load), for failure messages.
    const timeline: string[] = [];
    const mark = (what: string) => timeline.push(`${what} ${load.elapsedMs().toFixed(0)}`);
    // 1 s: the route changes — half of the traffic moves to another service (a cluster new to web).
    await at(1000, "1 s of load");
    await routeChange.feed(route("two"));
    mark("route changed");
    const sentAtRouteChange = load.sent();
    // 2 s: an endpoint is added (the third replica registers).
    await at(2000, "2 s of load");
    gate.open();
    await waitFor(async () => (await endpointsAtWeb("orders.shop:")).length === 3, {
      what: "three orders endpoints at web",
      timeoutMs: 5000,
      intervalMs: 20,
    });
    mark("endpoint added");
    // 3 s: an endpoint is deregistered (SIGTERM: deregister, drain, exit 0).
    await at(3000, "3 s of load");
    const sentAtSigterm = load.sent();
    const leaving = orders[0] as SidecarProcess;
    const exited = leaving.proc.exited;
    leaving.proc.kill("SIGTERM");
    mark("SIGTERM");
    assert.deepEqual(await exited, { code: 0, signal: null }, leaving.proc.logTail());
    mark("exited");
    await at(Math.max(5000, load.elapsedMs() + 1000), "load past the last change");
    load.stop();
    const result = await load.done;

    const when = `(timeline, ms into the load: ${timeline.join(", ")})`;
    assert.ok(
      result.samples.length >= 1000 && result.samples.length < 4000,
      `${result.samples.length} sent: the steps outlasted the load's bound ${when}`,
    );
    assert.equal(result.failures.length, 0, `${describeFailures(result.failures)} ${when}`);
    // Every change took effect while the load ran.
    const byApp = new Map<string, number>();
    for (const x of result.samples) byApp.set(x.app, (byApp.get(x.app) ?? 0) + 1);
    const v2Share = result.samples.filter((x) => x.index > sentAtRouteChange + 200 && x.app === "orders-v2");
    assert.ok(
      v2Share.length > 50,
      `orders-v2 got traffic after the route change: ${JSON.stringify([...byApp])}`,
    );
    assert.ok(joiningApp.requests.length > 0, "the added replica got traffic");
    assert.equal(
      result.samples.filter((x) => x.index > sentAtSigterm + 200 && x.app === "orders-0").length,
      0,
      "nothing reached the leaving replica a second after its SIGTERM",
    );
    const last = (await client.send({ host })).body;
    assert.equal((JSON.parse(last) as EchoBody).headers["x-route"], "two");
    assert.equal((await endpointsAtWeb("orders.shop:")).length, 2);
  });

  it("a NACKed resource leaves the rest applied, and `get -o yaml` shows the rejection", async () => {
    // web routes to orders-v2 directly too (its RouteConfig is subscribed and applied).
    assert.equal((await client.send({ host: v2Host })).status, 200);
    // A traffic policy for orders-v2 with a field this sidecar version does not enforce (active
    // health checks): web NACKs orders-v2's Cluster and keeps the last good one.
    await apply(
      cp,
      `apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: orders-v2-checked, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders-v2 }
  loadBalancer: { policy: ROUND_ROBIN }
  healthCheck: { tcp: {}, interval: 1s, timeout: 200ms }
`,
    );
    const status = await waitFor(
      async () => {
        const r = await runTrellis(
          ["get", "trafficpolicy", "orders-v2-checked", "-n", "shop", "-o", "yaml"],
          cp.env,
        );
        return r.code === 0 && /rejected: 1/.test(r.stdout) ? r.stdout : undefined;
      },
      { what: "orders-v2-checked shown as rejected", timeoutMs: 10_000, intervalMs: 200 },
    );
    assert.match(status, /unsupported/);
    assert.match(status, /healthCheck/);
    // The rest applies: orders-v2 is still served through its last good cluster ...
    const v2 = JSON.parse((await client.send({ host: v2Host })).body) as EchoBody;
    assert.equal(v2.app, "orders-v2");
    // ... and a change to another route still applies.
    await apply(cp, route("one"));
    await waitFor(
      async () => (JSON.parse((await client.send({ host })).body) as EchoBody).headers["x-route"] === "one",
      { what: "orders route change applied after the NACK", timeoutMs: 10_000, intervalMs: 50 },
    );
    const metrics = await (await fetch(`http://127.0.0.1:${web.ports.admin}/metrics`)).text();
    assert.match(metrics, /trellis_config_updates_total\{[^}]*result="nack"[^}]*\} [1-9]/);
  });

  it("a SIGKILLed control plane changes nothing for traffic; a sidecar restarted in the outage serves from its persisted config", async () => {
    const replicas = new Set(await endpointsAtWeb("orders.shop:"));
    const load = startPacedLoad({
      rate: 200,
      durationMs: 3000,
      send: () => client.send({ host, timeoutMs: LOAD_DEADLINE_MS }),
    });
    await waitFor(() => load.sent() >= 100, { what: "0.5 s of load" });
    cp.proc.kill("SIGKILL");
    await cp.proc.exited;
    const result = await load.done;
    assert.equal(result.failures.length, 0, describeFailures(result.failures));
    assert.equal(result.samples.length, 600);
    const lateApps = new Set(result.samples.filter((s) => s.index >= 300).map((s) => s.app));
    assert.equal(lateApps.size, replicas.size, `still balanced over every replica: ${[...lateApps]}`);
    assert.deepEqual(new Set(await endpointsAtWeb("orders.shop:")), replicas);

    // Restart web (SIGKILL, then the same state dir and proxy id) while the control plane is down.
    const old = web;
    old.proc.kill("SIGKILL");
    await old.proc.exited;
    client.close();
    const restarted = await startSidecar({
      cp,
      token: "unused-while-the-control-plane-is-down",
      service: "web",
      proxyId: old.proxyId,
      stateDir: old.stateDir,
    });
    sidecars.push(restarted);
    web = restarted;
    client = new MeshClient(restarted.ports.outbound);
    const answers = await Promise.all(Array.from({ length: 40 }, () => client.send({ host })));
    assert.ok(
      answers.every((a) => a.status === 200),
      answers.map((a) => `${a.status} ${a.headers["x-trellis-error"] ?? ""}`).join(","),
    );
    assert.equal((JSON.parse(answers[0]?.body ?? "{}") as EchoBody).headers["x-route"], "one");
    assert.equal(new Set(answers.map((a) => a.headers["x-app"])).size, replicas.size);
    assert.match(restarted.proc.logTail(200), /loaded persisted config/);
  });
});
