// Routing through a real client-sidecar → server-sidecar chain (real control plane, embedded
// store): a weighted 90/10 split between two services, path regex / header / query matches, and
// path normalisation (what is matched is what the app receives).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type EchoApp, type EchoBody, startEchoApp } from "../../fixtures/sidecar-apps/echo-app.js";
import { createToken, runTrellis } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../../helpers/control-plane.js";
import { countByApp, MeshClient, type MeshResponse, sendConcurrently } from "../../helpers/load.js";
import { type SidecarProcess, startSidecar } from "../../helpers/sidecar.js";
import { waitFor } from "../../helpers/wait.js";

const HOST = "orders.shop:8080";

const POLICY = `
apiVersion: trellis.dev/v1
kind: Service
metadata: { name: orders, namespace: shop }
spec: { ports: [ { port: 8080, protocol: http } ] }
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules:
    - matches: [ { path: { regex: "/re/[0-9]+" } } ]
      backends: [ { service: orders-v2 } ]
    - matches: [ { headers: [ { name: X-Canary, value: { exact: "true" } } ] } ]
      backends: [ { service: orders-v2 } ]
    - matches: [ { query: [ { name: version, value: { exact: v2 } } ] } ]
      backends: [ { service: orders-v2 } ]
    - matches: [ { path: { exact: /b } } ]
      backends: [ { service: orders-v2 } ]
    - matches: [ { path: { prefix: /split } } ]
      backends: [ { service: orders-v1, weight: 90 }, { service: orders-v2, weight: 10 } ]
    - backends: [ { service: orders-v1 } ]
`;

describe("sidecar routing", () => {
  let cp: ControlPlaneProcess;
  const apps: EchoApp[] = [];
  const sidecars: SidecarProcess[] = [];
  let client: MeshClient;
  let v1: EchoApp;
  let v2: EchoApp;

  const get = (path: string, headers: Record<string, string> = {}): Promise<MeshResponse> =>
    client.send({ host: HOST, path, headers });

  before(async () => {
    cp = await startControlPlane({});
    v1 = await startEchoApp({ name: "orders-v1" });
    v2 = await startEchoApp({ name: "orders-v2" });
    apps.push(v1, v2);
    const applied = await runTrellis(["apply", "-f", "-"], cp.env, POLICY);
    assert.equal(applied.code, 0, applied.stderr);
    const [t1, t2, tw] = await Promise.all([
      createToken(cp.env, "shop", "orders-v1"),
      createToken(cp.env, "shop", "orders-v2"),
      createToken(cp.env, "shop", "web"),
    ]);
    sidecars.push(
      ...(await Promise.all([
        startSidecar({ cp, token: t1, service: "orders-v1", appPorts: String(v1.port) }),
        startSidecar({ cp, token: t2, service: "orders-v2", appPorts: String(v2.port) }),
        startSidecar({ cp, token: tw, service: "web" }),
      ])),
    );
    const web = sidecars[2] as SidecarProcess;
    client = new MeshClient(web.ports.outbound);
    // Both backends reachable (the route and both clusters' endpoints have arrived).
    await waitFor(
      async () =>
        (await get("/re/1")).headers["x-app"] === "orders-v2" &&
        (await get("/x")).headers["x-app"] === "orders-v1",
      { what: "route to both backends", timeoutMs: 15_000, intervalMs: 100 },
    );
  });

  after(async () => {
    client?.close();
    await Promise.all(sidecars.map((s) => s.stop()));
    await Promise.all(apps.map((a) => a.close()));
    await cp?.stop();
  });

  it("splits 90/10 by weight, within ±3 points over 2,000 requests", async () => {
    const answers = await sendConcurrently(2000, 16, () => get("/split/item"));
    const counts = countByApp(answers);
    assert.equal(
      (counts.get("orders-v1") ?? 0) + (counts.get("orders-v2") ?? 0),
      2000,
      JSON.stringify([...counts]),
    );
    const share = ((counts.get("orders-v2") ?? 0) / 2000) * 100;
    assert.ok(share >= 7 && share <= 13, `orders-v2 got ${share.toFixed(1)}% (want 10 ± 3)`);
  });

  it("routes by path regex, header and query, and only when they match", async () => {
    const cases: [string, Record<string, string>, string][] = [
      ["/re/42", {}, "orders-v2"],
      ["/re/abc", {}, "orders-v1"], // regex anchored: the whole path must match
      ["/re/42/x", {}, "orders-v1"],
      ["/other", { "x-canary": "true" }, "orders-v2"], // header names are case-insensitive
      ["/other", { "x-canary": "false" }, "orders-v1"],
      ["/other?version=v2", {}, "orders-v2"],
      ["/other?a=1&version=v2&b", {}, "orders-v2"],
      ["/other?version=v1", {}, "orders-v1"],
      ["/other?versionx=v2", {}, "orders-v1"],
    ];
    for (const [path, headers, want] of cases) {
      for (let i = 0; i < 10; i++) {
        const r = await get(path, headers);
        assert.equal(r.status, 200, `${path}: ${r.status} ${r.body}`);
        assert.equal(r.headers["x-app"], want, `${path} ${JSON.stringify(headers)}`);
      }
    }
  });

  it("normalises /a/../b and //b to /b: routed as /b and delivered as /b", async () => {
    for (const path of ["/a/../b", "//b", "/./b", "/a/%2e%2e/b", "/b"]) {
      const before = v2.requests.length;
      const r = await get(path);
      assert.equal(r.status, 200, `${path}: ${r.status} ${r.body}`);
      assert.equal(r.headers["x-app"], "orders-v2", `${path} must match the exact /b rule`);
      assert.equal((JSON.parse(r.body) as EchoBody).url, "/b", `${path} as the app saw it`);
      assert.equal(v2.requests.length, before + 1);
      assert.equal(v2.requests.at(-1)?.url, "/b");
    }
    // The query survives normalisation unchanged.
    const r = await get("//b?x=1&y=%2F");
    assert.equal(r.headers["x-app"], "orders-v2");
    assert.equal((JSON.parse(r.body) as EchoBody).url, "/b?x=1&y=%2F");
  });
});
