// A control plane restarted on the same etcd has everything it had: policies, the mesh CA, join
// tokens. Registration refuses unknown and expired join tokens.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { createToken, runTrellis } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../../helpers/control-plane.js";
import { type Etcd, startEtcd } from "../../helpers/etcd.js";
import { SimProxy } from "../../helpers/sim-proxy.js";

const POLICIES = `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules: [ { matches: [ { path: { prefix: /api } } ], timeout: 2s } ]
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: shop-defaults, namespace: shop }
spec: { outboundTrafficPolicy: REGISTRY_ONLY }
`;

function workload(proxyId: string) {
  return {
    proxyId,
    service: "orders",
    namespace: "shop",
    serviceAccount: "orders",
    address: "127.0.0.1",
    inboundPort: 15006,
    ports: [{ port: 8080, protocol: 1 }],
  };
}

/** The spec part of `get -o yaml` (status and server-set metadata may change across restarts). */
function specsOf(yaml: string): string {
  return yaml
    .split("---\n")
    .map((doc) => doc.slice(0, doc.indexOf("status:") >= 0 ? doc.indexOf("status:") : undefined))
    .map((doc) => doc.replace(/^\s+(resourceVersion|generation|creationTime):.*\n/gm, ""))
    .join("---\n");
}

describe("control plane restart on the same etcd", () => {
  let etcd: Etcd;
  let cp: ControlPlaneProcess;
  const sims: SimProxy[] = [];

  before(async () => {
    etcd = await startEtcd();
    cp = await startControlPlane({ etcd: etcd.endpoints });
  });
  after(async () => {
    await Promise.all(sims.map((s) => s.stop()));
    await cp?.stop();
    await etcd?.stop();
  });

  it("keeps policies, the CA and join tokens", async () => {
    assert.equal((await runTrellis(["apply", "-f", "-"], cp.env, POLICIES)).code, 0);
    const before = await runTrellis(["get", "all", "-n", "shop", "-o", "yaml"], cp.env);
    assert.equal(before.code, 0, before.stderr);
    const caBefore = readFileSync(cp.caFile, "utf8");
    const token = await createToken(cp.env, "shop", "orders");
    await cp.stop();
    cp = await startControlPlane({ etcd: etcd.endpoints, home: cp.home, stateDir: cp.stateDir });
    assert.equal(readFileSync(cp.caFile, "utf8"), caBefore, "the mesh CA survived");
    const afterGet = await runTrellis(["get", "all", "-n", "shop", "-o", "yaml"], cp.env);
    assert.equal(afterGet.code, 0, afterGet.stderr);
    assert.equal(specsOf(afterGet.stdout), specsOf(before.stdout));
    assert.match(afterGet.stdout, /REGISTRY_ONLY/);
    // Re-applying the same file changes nothing.
    const again = await runTrellis(["apply", "-f", "-"], cp.env, POLICIES);
    assert.match(again.stdout, /unchanged/);
    assert.doesNotMatch(again.stdout, /configured|created/);
    // The token created before the restart still registers a proxy.
    const sim = SimProxy.start({
      addresses: [cp.address],
      caFile: cp.caFile,
      workload: workload("orders-1"),
      joinToken: token,
    });
    sims.push(sim);
    await sim.next((e) => e.event === "connected", "connected with a pre-restart token");
  });

  it("refuses an unknown join token and an expired one", async () => {
    const unknown = SimProxy.start({
      addresses: [cp.address],
      caFile: cp.caFile,
      workload: workload("orders-unknown"),
      joinToken: "trellis-join.0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    });
    sims.push(unknown);
    const e1 = await unknown.next((e) => e.event === "disconnected", "unknown token refused");
    assert.match(e1.error ?? "", /unknown or expired join token/);

    const created = await runTrellis(
      ["token", "create", "--namespace", "shop", "--service-account", "orders", "--ttl", "1s"],
      cp.env,
    );
    const short = /trellis-join\.\S+/.exec(created.stdout)?.[0];
    assert.ok(short, created.stderr);
    await new Promise((r) => setTimeout(r, 1500));
    const expired = SimProxy.start({
      addresses: [cp.address],
      caFile: cp.caFile,
      workload: workload("orders-expired"),
      joinToken: short,
    });
    sims.push(expired);
    const e2 = await expired.next((e) => e.event === "disconnected", "expired token refused");
    assert.match(e2.error ?? "", /unknown or expired join token/);
    assert.equal(
      expired.events.some((e) => e.event === "connected"),
      false,
    );
  });
});
