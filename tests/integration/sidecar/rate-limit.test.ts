// trellis-test: serial
// Local rate limits through real sidecars and the real control plane (embedded store): a paced
// load at twice the limit, from a process of its own through a caller sidecar, admits limit × T +
// burst at the app; every 429 carries the four headers; config pushes (an unrelated route, the
// listener itself, the limit itself) never refill a drained bucket; WebSocket upgrades share the
// bucket; a policy with `global` is reported rejected `unsupported` while local limits keep working.
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import type { LoadReport } from "../../fixtures/sidecar/paced-load-main.js";
import { openWebSocket } from "../../fixtures/sidecar/websocket.js";
import { type EchoApp, type EchoBody, startEchoApp } from "../../fixtures/sidecar-apps/echo-app.js";
import { createToken, runTrellis } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../../helpers/control-plane.js";
import { MeshClient, sendConcurrently } from "../../helpers/load.js";
import { spawnManaged } from "../../helpers/processes.js";
import { adminJson, type SidecarProcess, startSidecar } from "../../helpers/sidecar.js";
import { waitFor } from "../../helpers/wait.js";

const LOAD_MAIN = resolve(import.meta.dirname, "../../fixtures/sidecar/paced-load-main.js");
const LISTENER_TYPE = "type.googleapis.com/trellis.v1.Listener";

/** orders: the load test's limit (≥ 50/s; burst ≤ 2% of limit × T). */
const LIMIT = 50;
const BURST = 10;
const T_SECONDS = 10;

/** slow: one token per 50 s, so nothing refills while a test pushes config around it. */
function slowLimit(burst: number): string {
  return `apiVersion: trellis.dev/v1
kind: RateLimitPolicy
metadata: { name: slow-limit, namespace: shop }
spec:
  targetRef: { kind: Service, name: slow }
  local: { requestsPerSecond: 0.02, burst: ${burst} }
`;
}

const POLICIES = `apiVersion: trellis.dev/v1
kind: RateLimitPolicy
metadata: { name: orders-limit, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  local: { requestsPerSecond: ${LIMIT}, burst: ${BURST} }
---
${slowLimit(2)}`;

async function apply(cp: ControlPlaneProcess, yaml: string): Promise<void> {
  const r = await runTrellis(["apply", "-f", "-"], cp.env, yaml);
  assert.equal(r.code, 0, `apply failed: ${r.stderr}`);
}

/** `trellis get ratelimitpolicy NAME -o yaml` once it matches `ready`. */
function policyStatus(
  cp: ControlPlaneProcess,
  name: string,
  ready: (yaml: string) => boolean,
): Promise<string> {
  return waitFor(
    async () => {
      const r = await runTrellis(["get", "ratelimitpolicy", name, "-n", "shop", "-o", "yaml"], cp.env);
      return r.code === 0 && ready(r.stdout) ? r.stdout : undefined;
    },
    { what: `RateLimitPolicy ${name} status`, timeoutMs: 15_000, intervalMs: 200 },
  );
}

const applied = (yaml: string) => /applied: 1/.test(yaml) && !/rejected: [1-9]/.test(yaml);

/** trellis_ratelimit_decisions_total{policy, scope="local", decision} on a sidecar's admin port. */
async function decisions(sc: SidecarProcess, policy: string, decision: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${sc.ports.admin}/metrics`)).text();
  for (const line of text.split("\n")) {
    if (!line.startsWith("trellis_ratelimit_decisions_total{")) continue;
    if (
      line.includes(`policy="${policy}"`) &&
      line.includes('scope="local"') &&
      line.includes(`decision="${decision}"`)
    )
      return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return 0;
}

/** The version of the inbound listener a sidecar holds. */
async function inboundVersion(sc: SidecarProcess): Promise<string> {
  const dump = await adminJson<{ resources: Record<string, { name: string; version: string }[]> }>(
    sc,
    "/config_dump",
  );
  return dump.resources[LISTENER_TYPE]?.find((r) => r.name === "inbound")?.version ?? "";
}

describe("sidecar local rate limits", () => {
  let cp: ControlPlaneProcess;
  const apps: EchoApp[] = [];
  const sidecars: SidecarProcess[] = [];
  let orders: EchoApp;
  let slow: EchoApp;
  let cart: EchoApp;
  let ordersSidecar: SidecarProcess;
  let slowSidecar: SidecarProcess;
  let web: SidecarProcess;
  let client: MeshClient;
  let ordersHost: string;
  let slowHost: string;
  let cartHost: string;

  before(async () => {
    cp = await startControlPlane({});
    [orders, slow, cart] = await Promise.all([
      startEchoApp({ name: "orders" }),
      startEchoApp({ name: "slow" }),
      startEchoApp({ name: "cart" }),
    ]);
    apps.push(orders, slow, cart);
    ordersHost = `orders.shop:${orders.port}`;
    slowHost = `slow.shop:${slow.port}`;
    cartHost = `cart.shop:${cart.port}`;
    await apply(cp, POLICIES);
    const [tOrders, tSlow, tCart, tWeb] = await Promise.all(
      ["orders", "slow", "cart", "web"].map((sa) => createToken(cp.env, "shop", sa)),
    );
    const started = await Promise.all([
      startSidecar({ cp, token: tOrders as string, service: "orders", appPorts: String(orders.port) }),
      startSidecar({ cp, token: tSlow as string, service: "slow", appPorts: String(slow.port) }),
      startSidecar({ cp, token: tCart as string, service: "cart", appPorts: String(cart.port) }),
      startSidecar({ cp, token: tWeb as string, service: "web" }),
    ]);
    sidecars.push(...started);
    [ordersSidecar, slowSidecar, , web] = started as [
      SidecarProcess,
      SidecarProcess,
      SidecarProcess,
      SidecarProcess,
    ];
    client = new MeshClient(web.ports.outbound);
    // Routes to all three services are held by web (subscribed on demand); cart's answer too.
    for (const host of [ordersHost, cartHost])
      await waitFor(async () => (await client.send({ host })).status === 200, {
        what: `${host} reachable through web`,
        timeoutMs: 15_000,
        intervalMs: 100,
      });
  });

  after(async () => {
    client?.close();
    await Promise.all(sidecars.map((s) => s.stop()));
    await Promise.all(apps.map((a) => a.close()));
    await cp?.stop();
  });

  it("each policy's status shows it applied by the sidecar that enforces it", async () => {
    for (const name of ["orders-limit", "slow-limit"]) {
      const status = await policyStatus(cp, name, applied);
      assert.match(status, /applied: 1/);
    }
  });

  it(`a paced load at 2× the limit for ${T_SECONDS} s admits limit × T + burst (± 10%); every 429 has the four headers`, async (t) => {
    const ledgerBefore = orders.requests.length;
    const allowedBefore = await decisions(ordersSidecar, "shop/orders-limit", "allowed");
    const limitedBefore = await decisions(ordersSidecar, "shop/orders-limit", "limited");
    const proc = spawnManaged(process.execPath, [LOAD_MAIN], {
      name: "paced-load",
      pipe: true,
      env: {
        ...process.env,
        TRELLIS_LOAD_CONFIG: JSON.stringify({
          outboundPort: web.ports.outbound,
          host: ordersHost,
          rate: 2 * LIMIT,
          durationMs: T_SECONDS * 1000,
        }),
      },
    });
    let out = "";
    proc.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
    });
    const exit = await proc.exited;
    const log = proc.logTail();
    await proc.stop();
    assert.equal(exit.code, 0, `load process failed: ${log}`);
    const report = JSON.parse(out) as LoadReport;

    const admitted = orders.requests.length - ledgerBefore;
    const expected = LIMIT * T_SECONDS + BURST;
    const detail = JSON.stringify(report);
    t.diagnostic(`the app got ${admitted} of ${report.sent} (want ${expected} ± 10%); ${detail}`);
    assert.equal(report.sent, 2 * LIMIT * T_SECONDS, detail);
    assert.equal(report.unexpected, "no failures", detail);
    assert.ok(
      Math.abs(admitted - expected) <= 0.1 * expected,
      `the app got ${admitted} requests, want ${expected} ± 10%: ${detail}`,
    );
    assert.equal(report.byStatus["200"], admitted, "every 200 came from the app, and only those");
    assert.equal((report.byStatus["200"] ?? 0) + (report.byStatus["429"] ?? 0), report.sent);

    // Every 429: limit = burst, nothing remaining, the bucket is full again within burst / rate
    // (0.2 s → 1 s), one token is back within a second.
    let counted = 0;
    for (const [key, n] of Object.entries(report.limited)) {
      counted += n;
      const [limit, remaining, reset, retryAfter, reason] = key.split(" ");
      assert.equal(limit, String(BURST), key);
      assert.equal(remaining, "0", key);
      assert.equal(reset, "1", key);
      assert.equal(retryAfter, "1", key);
      assert.equal(reason, "rate_limited", key);
    }
    assert.equal(counted, report.byStatus["429"]);

    // The decisions metric counts the same.
    assert.equal(
      (await decisions(ordersSidecar, "shop/orders-limit", "limited")) - limitedBefore,
      report.byStatus["429"],
    );
    assert.equal((await decisions(ordersSidecar, "shop/orders-limit", "allowed")) - allowedBefore, admitted);
  });

  it("no config push refills a drained bucket: an unrelated route, the listener itself, a changed limit; WebSocket is refused too", async () => {
    // Drain slow's bucket (2 tokens, one more per 50 s).
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await client.send({ host: slowHost })).status);
    assert.deepEqual(statuses, [200, 200, 429]);
    const refused = await client.send({ host: slowHost });
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers["retry-after"]) > 10, `Retry-After ${refused.headers["retry-after"]}`);

    // 1. An unrelated route: slow's sidecar routes to cart (so it holds cart's RouteConfig), then
    //    cart's HTTPRoute changes and slow's sidecar applies it (a rebuild of its whole runtime).
    const fromSlow = new MeshClient(slowSidecar.ports.outbound);
    try {
      assert.equal((await fromSlow.send({ host: cartHost })).status, 200);
      await apply(
        cp,
        `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: cart, namespace: shop }
spec:
  targetRef: { kind: Service, name: cart }
  rules: [ { headers: { request: { set: { x-route: changed } } } } ]
`,
      );
      await waitFor(
        async () =>
          (JSON.parse((await fromSlow.send({ host: cartHost })).body) as EchoBody).headers["x-route"] ===
          "changed",
        { what: "slow's sidecar applied cart's new route", timeoutMs: 15_000, intervalMs: 50 },
      );
    } finally {
      fromSlow.close();
    }
    assert.equal((await client.send({ host: slowHost })).status, 429, "after an unrelated route change");

    // 2. The inbound listener itself changes (a Telemetry policy for the namespace), not the limit.
    const v1 = await inboundVersion(slowSidecar);
    await apply(
      cp,
      `apiVersion: trellis.dev/v1
kind: Telemetry
metadata: { name: logs, namespace: shop }
spec: { accessLog: { enabled: true } }
`,
    );
    await waitFor(async () => (await inboundVersion(slowSidecar)) !== v1, {
      what: "slow's sidecar holds a new inbound listener",
      timeoutMs: 15_000,
      intervalMs: 50,
    });
    assert.equal((await client.send({ host: slowHost })).status, 429, "after a new inbound listener");

    // 3. WebSocket upgrades take from the same bucket (extended CONNECT on the mesh hop).
    const wsLimitedBefore = await decisions(slowSidecar, "shop/slow-limit", "limited");
    await assert.rejects(
      openWebSocket(web.ports.outbound, slowHost, "/ws"),
      /429[\s\S]*rate_limited[\s\S]*ratelimit-limit: \d+[\s\S]*retry-after: \d+/,
      "the caller's raw refusal keeps the peer's rate-limit headers",
    );
    assert.equal(await decisions(slowSidecar, "shop/slow-limit", "limited"), wsLimitedBefore + 1);

    // 4. The limit itself changes (burst 2 → 4): rescaled, not refilled — still refused, with the
    //    new limit in the header.
    const v2 = await inboundVersion(slowSidecar);
    await apply(cp, slowLimit(4));
    await waitFor(async () => (await inboundVersion(slowSidecar)) !== v2, {
      what: "slow's sidecar holds the new limit",
      timeoutMs: 15_000,
      intervalMs: 50,
    });
    const after = await client.send({ host: slowHost });
    assert.equal(after.status, 429, "after the limit changed");
    assert.equal(after.headers["ratelimit-limit"], "4");
    assert.equal(slow.requests.length, 2, "the app saw only the first two");
  });

  it("a policy with `global` is rejected as unsupported; other policies' local limits keep working", async () => {
    await apply(
      cp,
      `apiVersion: trellis.dev/v1
kind: RateLimitPolicy
metadata: { name: cart-limit, namespace: shop }
spec:
  targetRef: { kind: Service, name: cart }
  local: { requestsPerSecond: 1000 }
  global:
    descriptors: [ { key: everyone, from: { literal: all } } ]
    limit: { requests: 1, per: second }
`,
    );
    const status = await policyStatus(
      cp,
      "cart-limit",
      (y) => /rejected: 1/.test(y) && y.includes("unsupported"),
    );
    assert.match(status, /global/);
    // cart keeps its last good listener (no limit at all).
    const cartAnswers = await sendConcurrently(20, 20, () => client.send({ host: cartHost }));
    assert.deepEqual(new Set(cartAnswers.map((a) => a.status)), new Set([200]));
    // orders' local limit still works: 40 at once through a bucket of 10 admit at most the burst
    // plus what refilled meanwhile.
    const t0 = performance.now();
    const answers = await sendConcurrently(40, 40, () => client.send({ host: ordersHost }));
    const elapsedS = (performance.now() - t0) / 1000;
    const ok = answers.filter((a) => a.status === 200).length;
    assert.ok(answers.every((a) => a.status === 200 || a.status === 429));
    assert.ok(ok < 40, "some were refused");
    assert.ok(ok <= BURST + Math.ceil(LIMIT * elapsedS), `${ok} of 40 admitted in ${elapsedS.toFixed(2)} s`);
    for (const name of ["orders-limit", "slow-limit"])
      assert.ok(applied(await policyStatus(cp, name, applied)));
  });
});
