// `trellis status` and `trellis proxy-config` against a real `trellis control-plane` (embedded store)
// with simulated proxies (the real discovery client in its own process) connected to it.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createToken, runTrellis } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../../helpers/control-plane.js";
import { SimProxy } from "../../helpers/sim-proxy.js";
import { waitFor } from "../../helpers/wait.js";

function workload(service: string, proxyId: string) {
  return {
    proxyId,
    service,
    namespace: "shop",
    serviceAccount: service,
    address: "127.0.0.1",
    inboundPort: 15006,
    ports: [{ port: 8080, protocol: 1 }],
    supportedKinds: ["Service", "TrafficPolicy", "HTTPRoute"],
  };
}

/** The `trellis status` table (header included) as rows of cells, once `pred` holds for it. */
async function statusRows(
  cp: ControlPlaneProcess,
  pred: (rows: string[][]) => boolean,
  what: string,
): Promise<{ rows: string[][]; stdout: string }> {
  return waitFor(
    async () => {
      const r = await runTrellis(["status"], cp.env);
      if (r.code !== 0) return undefined;
      const rows = r.stdout
        .trimEnd()
        .split("\n")
        .map((l) => l.split(/ {3,}/))
        .filter((cells) => cells.length === 12); // the table, not the NACK lines after it
      return pred(rows) ? { rows, stdout: r.stdout } : undefined;
    },
    { what, timeoutMs: 15_000, intervalMs: 200 },
  );
}

describe("trellis status / proxy-config", () => {
  let cp: ControlPlaneProcess;
  const sims: SimProxy[] = [];
  before(async () => {
    cp = await startControlPlane();
  });
  after(async () => {
    await Promise.all(sims.map((s) => s.stop()));
    await cp?.stop();
  });

  it("with no sidecars, says so", async () => {
    const r = await runTrellis(["status"], cp.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /no connected sidecars/);
  });

  it("lists connected sidecars with their identity, replica and per-type state, and shows NACKs", async () => {
    const ordersToken = await createToken(cp.env, "shop", "orders");
    const webToken = await createToken(cp.env, "shop", "web");
    const orders = SimProxy.start({
      addresses: [cp.address],
      caFile: cp.caFile,
      workload: workload("orders", "orders-1"),
      joinToken: ordersToken,
    });
    sims.push(orders);
    const web = SimProxy.start({
      addresses: [cp.address],
      caFile: cp.caFile,
      workload: workload("web", "web-1"),
      joinToken: webToken,
      routes: ["orders.shop"],
    });
    sims.push(web);
    await orders.next((e) => e.event === "connected", "orders connected");
    await web.next((e) => e.event === "connected", "web connected");
    web.send({ cmd: "nack", name: "orders.shop", message: "route rejected by test" });
    const route = `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules: [ { timeout: 2s } ]
`;
    assert.equal((await runTrellis(["apply", "-f", "-"], cp.env, route)).code, 0);

    const { rows, stdout } = await statusRows(
      cp,
      (rs) => rs.length === 3 && rs.some((r) => r[0] === "web-1" && r[6] === "NACK"),
      "both proxies in status, web-1 NACKing routes",
    );
    assert.deepEqual(rows[0], [
      "PROXY",
      "NAMESPACE",
      "SERVICE",
      "REPLICA",
      "IDENTITY",
      "LISTENERS",
      "ROUTES",
      "CLUSTERS",
      "ENDPOINTS",
      "SECRETS",
      "CONFIG-AGE",
      "CERT-EXPIRY",
    ]);
    const ordersRow = rows.find((r) => r[0] === "orders-1");
    assert.ok(ordersRow, stdout);
    assert.deepEqual(ordersRow.slice(0, 3), ["orders-1", "shop", "orders"]);
    assert.notEqual(ordersRow[3], "-", "the replica is shown");
    assert.equal(ordersRow[4], "spiffe://cluster.local/ns/shop/sa/orders");
    assert.equal(ordersRow[5], "ACK", "listeners acknowledged");
    const webRow = rows.find((r) => r[0] === "web-1");
    assert.equal(webRow?.[6], "NACK");
    assert.match(stdout, /^web-1 NACKed routes \(version [^)]+\): orders\.shop: route rejected by test$/m);

    const ns = await runTrellis(["status", "-n", "elsewhere"], cp.env);
    assert.equal(ns.stdout, "");
  });

  it("proxy-config shows what one proxy holds, by type, with bodies in yaml and json", async () => {
    const table = await runTrellis(["proxy-config", "web-1"], cp.env);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split("\n");
    assert.match(lines[0] ?? "", /^TYPE +NAME +VERSION +STATE +ERROR$/);
    assert.ok(
      lines.some((l) => /^routes +orders\.shop +\S+ +NACK +route rejected by test$/.test(l)),
      table.stdout,
    );
    assert.ok(
      lines.some((l) => /^listeners +inbound +\S+ +ACK +-$/.test(l)),
      table.stdout,
    );

    const routes = await runTrellis(["proxy-config", "web-1", "routes"], cp.env);
    assert.ok(
      routes.stdout
        .trimEnd()
        .split("\n")
        .slice(1)
        .every((l) => l.startsWith("routes ")),
      routes.stdout,
    );

    const json = await runTrellis(["proxy-config", "web-1", "listeners", "-o", "json"], cp.env);
    assert.equal(json.code, 0, json.stderr);
    const doc = JSON.parse(json.stdout) as {
      proxyId: string;
      resources: { name: string; resource?: { "@type": string } }[];
    };
    assert.equal(doc.proxyId, "web-1");
    const inbound = doc.resources.find((r) => r.name === "inbound");
    assert.equal(inbound?.resource?.["@type"], "type.googleapis.com/trellis.v1.Listener");

    const yaml = await runTrellis(["proxy-config", "web-1", "listeners", "-o", "yaml"], cp.env);
    assert.match(yaml.stdout, /^proxyId: web-1\nresources:\n {2}- type: listeners\n/);
    assert.match(yaml.stdout, /resource:\n\s+name: inbound/);
  });

  it("proxy-config of an unknown proxy or type fails with a clear message", async () => {
    const ghost = await runTrellis(["proxy-config", "ghost"], cp.env);
    assert.notEqual(ghost.code, 0);
    assert.equal(
      ghost.stderr,
      "error: proxy ghost is not connected to any control-plane replica (see trellis status)\n",
    );
    const type = await runTrellis(["proxy-config", "web-1", "gizmos"], cp.env);
    assert.notEqual(type.code, 0);
    assert.match(type.stderr, /^error: unknown resource type "gizmos"/);
  });
});
