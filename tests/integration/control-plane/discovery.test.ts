// The control plane as sidecars see it: real etcd, the real `trellis control-plane` binary, and
// simulated proxies (the real discovery client in their own processes).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { TypeUrl } from "@trellis/proto/resource-types";
import { Etcd3 } from "etcd3";
import { createToken, runTrellis } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../../helpers/control-plane.js";
import { type Etcd, startEtcd } from "../../helpers/etcd.js";
import { SimProxy } from "../../helpers/sim-proxy.js";
import { waitFor } from "../../helpers/wait.js";

const ALL_KINDS = [
  "Service",
  "TrafficPolicy",
  "HTTPRoute",
  "RateLimitPolicy",
  "PeerAuthentication",
  "AuthorizationPolicy",
  "RequestAuthentication",
  "Telemetry",
];

function workload(service: string, proxyId: string, extra: Record<string, unknown> = {}) {
  return {
    proxyId,
    service,
    namespace: "shop",
    serviceAccount: service,
    address: "127.0.0.1",
    inboundPort: 15006,
    ports: [{ port: 8080, protocol: 1 }],
    supportedKinds: ALL_KINDS,
    ...extra,
  };
}

async function metric(cp: ControlPlaneProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${cp.adminPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(" ").pop());
  return sum;
}

function endpointsOf(sim: SimProxy, cluster: string): string[] {
  const cla = sim.held(TypeUrl.ENDPOINTS).get(cluster)?.json as
    | { endpoints?: { proxyId: string }[] }
    | undefined;
  return (cla?.endpoints ?? []).map((e) => e.proxyId).sort();
}

describe("control plane discovery", () => {
  let etcd: Etcd;
  let cp: ControlPlaneProcess;
  let ordersToken = "";
  let webToken = "";
  const sims: SimProxy[] = [];
  const sim = (opts: Parameters<typeof SimProxy.start>[0]) => {
    const s = SimProxy.start(opts);
    sims.push(s);
    return s;
  };

  before(async () => {
    etcd = await startEtcd();
    cp = await startControlPlane({ etcd: etcd.endpoints });
    ordersToken = await createToken(cp.env, "shop", "orders");
    webToken = await createToken(cp.env, "shop", "web");
  });
  after(async () => {
    await Promise.all(sims.map((s) => s.stop()));
    await cp?.stop();
    await etcd?.stop();
  });

  it("delivers a registered endpoint to subscribers, in a consistent order", async () => {
    const orders = sim({
      addresses: [cp.address],
      caFile: cp.caFile,
      workload: workload("orders", "orders-1"),
      joinToken: ordersToken,
    });
    await orders.next((e) => e.event === "connected", "orders connected");
    const web = sim({
      addresses: [cp.address],
      caFile: cp.caFile,
      workload: workload("web", "web-1"),
      joinToken: webToken,
      routes: ["orders.shop"],
    });
    await web.next((e) => e.event === "connected", "web connected");
    await waitFor(() => endpointsOf(web, "orders.shop:8080").includes("orders-1"), {
      what: "orders-1 endpoint at web",
    });
    // Order: whenever a route arrived, every cluster it names was already held.
    const heldClusters = new Set<string>();
    for (const e of web.events) {
      if (e.event !== "update") continue;
      if (e.typeUrl === TypeUrl.CLUSTER) for (const r of e.resources ?? []) heldClusters.add(r.name);
      if (e.typeUrl === TypeUrl.ROUTE) {
        for (const r of e.resources ?? []) {
          const rules = (r.json as { rules?: { clusters?: { cluster: string }[] }[] }).rules ?? [];
          for (const rule of rules)
            for (const c of rule.clusters ?? [])
              assert.ok(heldClusters.has(c.cluster), `route ${r.name} before cluster ${c.cluster}`);
        }
      }
    }
    assert.equal(
      (web.held(TypeUrl.LISTENER).get("inbound")?.json as { name?: string } | undefined)?.name,
      "inbound",
    );
  });

  it("answers a subscription to a missing service with 'does not exist'", async () => {
    const web = sims.find((s) => s.events.some((e) => e.identity?.endsWith("/sa/web"))) as SimProxy;
    const from = web.events.length;
    web.send({ cmd: "subscribe", typeUrl: TypeUrl.ROUTE, names: ["ghost.shop"] });
    const e = await web.next(
      (x) => x.event === "update" && (x.notFound ?? []).includes("ghost.shop"),
      "not_found for ghost.shop",
      from,
    );
    assert.equal(e.typeUrl, TypeUrl.ROUTE);
  });

  it("ignores a stale nonce; an unchanged rebuild sends nothing; the next response is the next real change", async () => {
    const web = sims.find((s) => s.events.some((e) => e.identity?.endsWith("/sa/web"))) as SimProxy;
    await new Promise((r) => setTimeout(r, 300)); // let earlier pushes and ACKs finish
    const pushesBefore = await metric(cp, "trellis_cp_pushes_total");
    const staleBefore = await metric(cp, "trellis_cp_stale_requests_total");
    const from = web.events.length;
    web.send({ cmd: "raw", typeUrl: TypeUrl.ROUTE, nonce: "not-a-nonce-we-sent" });
    await waitFor(async () => (await metric(cp, "trellis_cp_stale_requests_total")) > staleBefore, {
      what: "stale request counted",
    });
    // A change that concerns no connected proxy: the model changes, every snapshot rebuilds unchanged.
    const unrelated = `apiVersion: trellis.dev/v1
kind: Telemetry
metadata: { name: other-tracing, namespace: elsewhere }
spec: { tracing: { samplingPercentage: 5 } }
`;
    assert.equal((await runTrellis(["apply", "-f", "-"], cp.env, unrelated)).code, 0);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(
      await metric(cp, "trellis_cp_pushes_total"),
      pushesBefore,
      "an unchanged rebuild pushed something",
    );
    const route = `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules: [ { timeout: 2s } ]
`;
    assert.equal((await runTrellis(["apply", "-f", "-"], cp.env, route)).code, 0);
    const next = await web.next((e) => e.event === "update", "next update after the stale request", from);
    assert.equal(next.typeUrl, TypeUrl.ROUTE);
    assert.deepEqual(
      next.resources?.map((r) => r.name),
      ["orders.shop"],
    );
  });

  it("records a NACK by resource: the policy shows rejected with the reason, the rest applied", async () => {
    const web2 = sim({
      addresses: [cp.address],
      caFile: cp.caFile,
      workload: workload("web", "web-2", { supportedKinds: ALL_KINDS.filter((k) => k !== "TrafficPolicy") }),
      joinToken: webToken,
      routes: ["orders.shop"],
    });
    await web2.next((e) => e.event === "connected", "web-2 connected");
    web2.send({ cmd: "nack", name: "orders.shop", message: "route rejected by test" });
    const policies = `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules: [ { timeout: 3s } ]
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  connectionLimits: { maxConnections: 100 }
`;
    assert.equal((await runTrellis(["apply", "-f", "-"], cp.env, policies)).code, 0);
    // HTTPRoute: web-1 applied it, web-2 rejected it with the test's reason.
    const route = await waitFor(
      async () => {
        const r = await runTrellis(["get", "httproute", "orders", "-n", "shop", "-o", "yaml"], cp.env);
        return r.stdout.includes("route rejected by test") && /applied: 1/.test(r.stdout)
          ? r.stdout
          : undefined;
      },
      { what: "HTTPRoute status with the NACK reason", timeoutMs: 10_000, intervalMs: 200 },
    );
    assert.match(route, /rejected: 1/);
    // TrafficPolicy: web-2 does not enforce the kind → rejected "unsupported"; web-1 applied it.
    const tp = await waitFor(
      async () => {
        const r = await runTrellis(["get", "trafficpolicy", "orders", "-n", "shop", "-o", "yaml"], cp.env);
        return r.stdout.includes("unsupported") && /applied: 1/.test(r.stdout) ? r.stdout : undefined;
      },
      { what: "TrafficPolicy status with unsupported", timeoutMs: 10_000, intervalMs: 200 },
    );
    assert.match(tp, /rejected: 1/);
    await web2.stop();
  });

  it("refuses a join token for another namespace", async () => {
    const otherToken = await createToken(cp.env, "other", "orders");
    const bad = sim({
      addresses: [cp.address],
      caFile: cp.caFile,
      workload: workload("orders", "impostor"),
      joinToken: otherToken,
    });
    const e = await bad.next((x) => x.event === "disconnected", "refusal");
    assert.match(e.error ?? "", /namespace other/);
    assert.equal(
      bad.events.some((x) => x.event === "connected"),
      false,
    );
    await bad.stop();
  });

  it("removes a SIGKILLed proxy's endpoint within TTL + 1 s, and a deregistered one within 1 s", async () => {
    const web = sims.find((s) => s.events.some((e) => e.identity?.endsWith("/sa/web"))) as SimProxy;
    const victim = sim({
      addresses: [cp.address],
      caFile: cp.caFile,
      workload: workload("orders", "orders-kill"),
      joinToken: ordersToken,
    });
    await waitFor(() => endpointsOf(web, "orders.shop:8080").includes("orders-kill"), {
      what: "orders-kill endpoint at web",
    });
    const killedAt = Date.now();
    victim.kill();
    await waitFor(() => !endpointsOf(web, "orders.shop:8080").includes("orders-kill"), {
      what: "orders-kill gone",
      timeoutMs: 6000,
      intervalMs: 20,
    });
    const killGone = Date.now() - killedAt;
    assert.ok(killGone <= 3000, `SIGKILLed endpoint gone after ${killGone} ms (TTL 2 s + 1 s)`);

    const polite = sim({
      addresses: [cp.address],
      caFile: cp.caFile,
      workload: workload("orders", "orders-bye"),
      joinToken: ordersToken,
    });
    await waitFor(() => endpointsOf(web, "orders.shop:8080").includes("orders-bye"), {
      what: "orders-bye endpoint at web",
    });
    const byeAt = Date.now();
    polite.send({ cmd: "deregister" });
    await waitFor(() => !endpointsOf(web, "orders.shop:8080").includes("orders-bye"), {
      what: "orders-bye gone",
      timeoutMs: 3000,
      intervalMs: 20,
    });
    const byeGone = Date.now() - byeAt;
    assert.ok(byeGone <= 1000, `deregistered endpoint gone after ${byeGone} ms`);
  });

  it("detects a frozen proxy's dead stream with keepalives and lets its registration expire", async () => {
    const web = sims.find((s) => s.events.some((e) => e.identity?.endsWith("/sa/web"))) as SimProxy;
    const frozen = sim({
      addresses: [cp.address],
      caFile: cp.caFile,
      workload: workload("orders", "orders-frozen"),
      joinToken: ordersToken,
    });
    await waitFor(() => endpointsOf(web, "orders.shop:8080").includes("orders-frozen"), {
      what: "orders-frozen endpoint at web",
    });
    // SIGSTOP: the TCP connection stays open but nothing answers (a hung host, a partition). The
    // replica would renew the lease forever if it did not notice; keepalive pings (1 s) notice.
    frozen.proc.kill("SIGSTOP");
    try {
      await waitFor(() => !endpointsOf(web, "orders.shop:8080").includes("orders-frozen"), {
        what: "frozen proxy's endpoint removed (keepalive 1 s + timeout 1 s + TTL 2 s)",
        timeoutMs: 8000,
        intervalMs: 50,
      });
    } finally {
      frozen.proc.kill("SIGCONT");
    }
  });

  it("serves /live, /ready and the trellis_cp_* metrics on the admin port", async () => {
    const base = `http://127.0.0.1:${cp.adminPort}`;
    assert.equal((await fetch(`${base}/live`)).status, 200);
    assert.equal((await fetch(`${base}/ready`)).status, 200);
    const text = await (await fetch(`${base}/metrics`)).text();
    for (const name of [
      "trellis_cp_proxies_connected",
      "trellis_cp_push_duration_seconds_count",
      "trellis_cp_convergence_seconds_count",
      "trellis_cp_nacks_total",
    ]) {
      assert.match(text, new RegExp(`^${name}\\{[^}]*\\} [1-9]`, "m"), `${name} is exported and non-zero`);
    }
  });

  it("keeps the registration (no delete event) when a proxy reconnects to another replica within the TTL", async () => {
    const second = await startControlPlane({
      etcd: etcd.endpoints,
      home: cp.home,
      stateDir: `${cp.stateDir}-2`,
      secretFile: `${cp.stateDir}/secret.key`,
    });
    try {
      const mover = sim({
        addresses: [cp.address, second.address],
        caFile: cp.caFile, // trusts the first replica's ca.pem; the second must chain to the same CA
        workload: workload("orders", "orders-move"),
        joinToken: ordersToken,
      });
      const first = await mover.next((e) => e.event === "connected", "mover connected");
      const client = new Etcd3({ hosts: [...etcd.endpoints] });
      const deletes: string[] = [];
      const watcher = await client.watch().prefix("/trellis/v1/registrations/").create();
      watcher.on("delete", (kv) => deletes.push(kv.key.toString()));
      try {
        // Stop the replica the proxy is on: it sends go_away and the proxy moves to the other one.
        const stopping = first.replica === undefined ? undefined : cp;
        assert.ok(stopping);
        const from = mover.events.length;
        await cp.stop();
        const again = await mover.next((e) => e.event === "connected", "mover reconnected", from);
        assert.notEqual(again.replica, first.replica);
        assert.equal(again.leaseId, first.leaseId, "the lease was resumed");
        await new Promise((r) => setTimeout(r, 2500)); // longer than the 2 s TTL
        assert.deepEqual(
          deletes.filter((k) => k.includes("orders-move")),
          [],
        );
      } finally {
        await watcher.cancel();
        client.close();
      }
      cp = second; // the remaining tests and teardown use the live replica
    } catch (err) {
      await second.stop();
      throw err;
    }
  });
});
