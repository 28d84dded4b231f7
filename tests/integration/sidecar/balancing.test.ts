// trellis-test: serial
// Load balancing through a real client-sidecar → server-sidecar chain with three replicas of one
// service (each app on its own loopback address, one shared app port): P2C least-request (the
// default) keeps traffic off a replica slowed by 50 ms; ROUND_ROBIN from a TrafficPolicy is even.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type EchoApp, startReplicaApps } from "../../fixtures/sidecar-apps/echo-app.js";
import { createToken, runTrellis } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../../helpers/control-plane.js";
import { countByApp, MeshClient, sendConcurrently } from "../../helpers/load.js";
import {
  type AdminCluster,
  type SidecarProcess,
  startReplicaSidecars,
  startSidecar,
  waitForCluster,
} from "../../helpers/sidecar.js";

const ROUND_ROBIN = 1;
const LEAST_REQUEST = 2;
const RING_HASH = 3;

describe("sidecar load balancing", () => {
  let cp: ControlPlaneProcess;
  let apps: EchoApp[] = [];
  const sidecars: SidecarProcess[] = [];
  let web: SidecarProcess;
  let client: MeshClient;
  let host: string;

  /** The orders cluster as the web sidecar runs it, once `pred` holds. */
  const ordersCluster = (pred: (c: AdminCluster) => boolean, what: string) =>
    waitForCluster(web, "orders.shop:", pred, what);

  before(async () => {
    cp = await startControlPlane({});
    apps = await startReplicaApps("orders", 3);
    host = `orders.shop:${apps[0]?.port}`;
    const [ordersToken, webToken] = await Promise.all([
      createToken(cp.env, "shop", "orders"),
      createToken(cp.env, "shop", "web"),
    ]);
    const [replicas, w] = await Promise.all([
      startReplicaSidecars(cp, ordersToken, "orders", apps),
      startSidecar({ cp, token: webToken, service: "web" }),
    ]);
    sidecars.push(...replicas, w);
    web = w;
    client = new MeshClient(web.ports.outbound);
    // Subscribe on demand and wait until all three endpoints are in the web sidecar's cluster.
    assert.equal((await client.send({ host })).status, 200);
    await ordersCluster((c) => c.endpoints.length === 3, "three orders endpoints at web");
  });

  after(async () => {
    client?.close();
    await Promise.all(sidecars.map((s) => s.stop()));
    await Promise.all(apps.map((a) => a.close()));
    await cp?.stop();
  });

  it("P2C (the default) sends at most 15% of 600 requests at concurrency 6 to a replica slowed by 50 ms", async () => {
    const c = await ordersCluster(() => true, "orders cluster");
    assert.equal(c.policy, LEAST_REQUEST);
    const slow = apps[0] as EchoApp;
    slow.delayMs = 50;
    try {
      const answers = await sendConcurrently(600, 6, () => client.send({ host }));
      assert.ok(
        answers.every((r) => r.status === 200),
        `statuses: ${JSON.stringify([...countByApp(answers)])}`,
      );
      const counts = countByApp(answers);
      const share = ((counts.get(slow.name) ?? 0) / 600) * 100;
      assert.ok(share <= 15, `the slow replica got ${share.toFixed(1)}%: ${JSON.stringify([...counts])}`);
      // The others share the rest.
      for (const a of apps.slice(1)) assert.ok((counts.get(a.name) ?? 0) > 150, JSON.stringify([...counts]));
    } finally {
      slow.delayMs = 0;
    }
  });

  it("ROUND_ROBIN from a TrafficPolicy spreads 300 requests evenly over three replicas", async () => {
    const applied = await runTrellis(
      ["apply", "-f", "-"],
      cp.env,
      `apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  loadBalancer: { policy: ROUND_ROBIN }
`,
    );
    assert.equal(applied.code, 0, applied.stderr);
    await ordersCluster(
      (c) => c.policy === ROUND_ROBIN && c.endpoints.length === 3,
      "orders cluster ROUND_ROBIN",
    );
    const answers = await sendConcurrently(300, 4, () => client.send({ host }));
    const counts = countByApp(answers);
    assert.deepEqual([...counts.keys()].sort(), apps.map((a) => a.name).sort(), JSON.stringify([...counts]));
    for (const a of apps) {
      const n = counts.get(a.name) ?? 0;
      assert.ok(n >= 97 && n <= 103, `${a.name} got ${n} of 300: ${JSON.stringify([...counts])}`);
    }
  });

  it("RING_HASH on a header keeps each user on one replica and spreads users over all of them", async () => {
    const applied = await runTrellis(
      ["apply", "-f", "-"],
      cp.env,
      `apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  loadBalancer: { policy: RING_HASH, hashOn: { header: x-user } }
`,
    );
    assert.equal(applied.code, 0, applied.stderr);
    await ordersCluster(
      (c) => c.policy === RING_HASH && c.endpoints.length === 3,
      "orders cluster RING_HASH",
    );
    const placement = new Map<string, string>();
    for (let round = 0; round < 3; round++) {
      for (let u = 0; u < 60; u++) {
        const user = `user-${u}`;
        const r = await client.send({ host, headers: { "x-user": user } });
        assert.equal(r.status, 200, r.body);
        const app = countByApp([r]).keys().next().value as string;
        const before = placement.get(user);
        if (before !== undefined) assert.equal(app, before, `${user} moved from ${before} to ${app}`);
        placement.set(user, app);
      }
    }
    const used = new Set(placement.values());
    assert.equal(used.size, 3, `60 users spread over ${used.size} replicas`);
  });
});
