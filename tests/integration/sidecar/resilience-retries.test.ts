// trellis-test: serial
// Retries, the retry budget and timeouts through real sidecars (real control plane, real sockets):
// the caller `web` reaches `orders` (3 replicas), `pay` (2), `slow` (1) and the gRPC service `rpc`
// (1). Each app keeps a ledger of what reached it, which is what the assertions count: a retried
// POST that "executed once" is one ledger entry, not a claim of the proxy.
import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { ECHO_METHODS, startEchoServer, stopEchoServer } from "../../fixtures/sidecar/grpc-echo.js";
import { type EchoApp, startReplicaApps } from "../../fixtures/sidecar-apps/echo-app.js";
import { createToken, runTrellis } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../../helpers/control-plane.js";
import { MeshClient, startPacedLoad } from "../../helpers/load.js";
import { metricSum, scrape } from "../../helpers/metrics.js";
import {
  type SidecarProcess,
  startReplicaSidecars,
  startSidecar,
  waitForCluster,
} from "../../helpers/sidecar.js";
import { waitFor } from "../../helpers/wait.js";

const POLICIES = `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules:
    - matches: [ { path: { prefix: /post-any } } ]
      retry: { attempts: 2, retryOn: [5xx], retryNonIdempotent: true, backoff: { base: 5ms, max: 20ms } }
    - matches: [ { path: { prefix: /retry-after-long } } ]
      timeout: 1s
      retry: { attempts: 1, retryOn: [5xx] }
    - matches: [ { path: { prefix: /retry-after } } ]
      retry: { attempts: 1, retryOn: [5xx] }
    - retry: { attempts: 2, retryOn: [5xx], backoff: { base: 5ms, max: 20ms } }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  outlierDetection: { enabled: false }
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: pay, namespace: shop }
spec:
  targetRef: { kind: Service, name: pay }
  rules:
    - retry: { attempts: 3, retryOn: [5xx], backoff: { base: 1ms, max: 5ms } }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: pay, namespace: shop }
spec:
  targetRef: { kind: Service, name: pay }
  outlierDetection: { enabled: false }
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: slow, namespace: shop }
spec:
  targetRef: { kind: Service, name: slow }
  rules:
    - matches: [ { path: { prefix: /per-try } } ]
      timeout: 500ms
      retry: { attempts: 5, perTryTimeout: 150ms, retryOn: [5xx], backoff: { base: 1ms, max: 2ms } }
    - timeout: 500ms
      retry: { attempts: 3, retryOn: [5xx] }
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: rpc, namespace: shop }
spec:
  targetRef: { kind: Service, name: rpc }
  rules:
    - timeout: 400ms
      retry: { attempts: 2, retryOn: [unavailable], backoff: { base: 5ms, max: 20ms } }
`;

describe("sidecar resilience: retries, retry budget, timeouts", () => {
  let cp: ControlPlaneProcess;
  let orders: EchoApp[] = [];
  let pay: EchoApp[] = [];
  let slow: EchoApp[] = [];
  let rpc: Awaited<ReturnType<typeof startEchoServer>> | undefined;
  const sidecars: SidecarProcess[] = [];
  let web: SidecarProcess;
  let client: MeshClient;
  let ordersHost: string;
  let payHost: string;
  let slowHost: string;

  const endpointsAtWeb = (prefix: string, n: number) =>
    waitForCluster(web, prefix, (c) => c.endpoints.length === n, `${n} endpoints of ${prefix} at web`);

  /** Every ledger entry of `apps`, in arrival order. */
  const ledger = (apps: readonly EchoApp[]) =>
    apps.flatMap((a) => a.requests.map((r) => ({ ...r, app: a.name }))).sort((a, b) => a.atMs - b.atMs);
  const clearLedgers = (apps: readonly EchoApp[]) => {
    for (const a of apps) {
      a.requests.length = 0;
      a.script = undefined;
    }
  };

  before(async () => {
    cp = await startControlPlane({});
    const applied = await runTrellis(["apply", "-f", "-"], cp.env, POLICIES);
    assert.equal(applied.code, 0, applied.stderr);
    orders = await startReplicaApps("orders", 3);
    pay = await startReplicaApps("pay", 2, { firstAddress: 5 });
    slow = await startReplicaApps("slow", 1, { firstAddress: 7, delayMs: 2000 });
    rpc = await startEchoServer();
    const [ordersToken, payToken, slowToken, rpcToken, webToken] = await Promise.all(
      ["orders", "pay", "slow", "rpc", "web"].map((sa) => createToken(cp.env, "shop", sa)),
    );
    const started = await Promise.all([
      startReplicaSidecars(cp, ordersToken as string, "orders", orders),
      startReplicaSidecars(cp, payToken as string, "pay", pay),
      startReplicaSidecars(cp, slowToken as string, "slow", slow),
      startSidecar({ cp, token: rpcToken as string, service: "rpc", appPorts: `${rpc.port}/grpc` }).then(
        (s) => [s],
      ),
      startSidecar({ cp, token: webToken as string, service: "web", extraArgs: ["--random-seed", "7"] }).then(
        (s) => [s],
      ),
    ]);
    for (const list of started) sidecars.push(...list);
    web = started[4]?.[0] as SidecarProcess;
    client = new MeshClient(web.ports.outbound, { maxSockets: 256 });
    ordersHost = `orders.shop:${orders[0]?.port}`;
    payHost = `pay.shop:${pay[0]?.port}`;
    slowHost = `slow.shop:${slow[0]?.port}`;
    // Subscribe web to each service and wait until it sees every replica.
    for (const [host, prefix, n] of [
      [ordersHost, "orders.shop:", 3],
      [payHost, "pay.shop:", 2],
    ] as const) {
      assert.equal((await client.send({ host })).status, 200);
      await endpointsAtWeb(prefix, n);
    }
    clearLedgers([...orders, ...pay]);
  });

  after(async () => {
    client?.close();
    await Promise.all(sidecars.map((s) => s.stop()));
    await Promise.all([...orders, ...pay, ...slow].map((a) => a.close()));
    if (rpc !== undefined) await stopEchoServer(rpc.server, 200);
    await cp?.stop();
  });

  it("an upstream failing the first N tries succeeds when N ≤ attempts, each try on another endpoint", async () => {
    for (const failures of [1, 2]) {
      clearLedgers(orders);
      let left = failures;
      for (const a of orders) a.script = () => (left-- > 0 ? { status: 503 } : undefined);
      const r = await client.send({ host: ordersHost, path: `/n${failures}` });
      assert.equal(r.status, 200, r.body);
      const tries = ledger(orders);
      assert.equal(tries.length, failures + 1, "one try per failure plus the success");
      assert.equal(new Set(tries.map((t) => t.app)).size, failures + 1, "each try on a different replica");
    }
    // N > attempts: the caller gets the upstream's last answer, after 1 + attempts tries.
    clearLedgers(orders);
    for (const a of orders) a.script = () => ({ status: 503 });
    const r = await client.send({ host: ordersHost, path: "/n3" });
    assert.equal(r.status, 503);
    assert.equal(r.headers["x-trellis-error"], undefined, "the upstream's own 503, not a proxy reply");
    assert.equal(ledger(orders).length, 3);
    clearLedgers(orders);
  });

  it("a POST that reached the upstream executes once by default, and is retried with retryNonIdempotent", async () => {
    clearLedgers(orders);
    for (const a of orders) a.script = () => ({ status: 503 });
    const once = await client.send({ host: ordersHost, method: "POST", path: "/post-once", body: "order=1" });
    assert.equal(once.status, 503);
    assert.equal(ledger(orders).length, 1, "the POST executed exactly once");
    assert.equal(ledger(orders)[0]?.bodyBytes, 7);
    clearLedgers(orders);
    let left = 2;
    for (const a of orders) a.script = () => (left-- > 0 ? { status: 503 } : undefined);
    const retried = await client.send({
      host: ordersHost,
      method: "POST",
      path: "/post-any",
      body: "order=2",
    });
    assert.equal(retried.status, 200, retried.body);
    const tries = ledger(orders);
    assert.equal(tries.length, 3, "retried twice with retryNonIdempotent");
    assert.deepEqual(
      tries.map((t) => t.bodyBytes),
      [7, 7, 7],
      "the buffered body is replayed whole on every try",
    );
    clearLedgers(orders);
  });

  it("a caller that resets its stream mid-upload: the app never gets the partial body as complete", async () => {
    clearLedgers(orders);
    const session = http2.connect(`http://127.0.0.1:${web.ports.outbound}`);
    try {
      const stream = session.request({
        ":method": "PUT",
        ":path": "/upload",
        ":authority": ordersHost,
        "content-type": "application/octet-stream",
      });
      stream.on("error", () => {});
      stream.write(Buffer.alloc(4096, 1));
      const entry = await waitFor(
        // The app's own record (not a copy): it changes as the request ends.
        () => orders.flatMap((a) => a.requests).find((r) => r.url === "/upload" && r.bodyBytes >= 4096),
        { what: "the first 4 KiB at the app", timeoutMs: 5000, intervalMs: 10 },
      );
      // RST_STREAM without END_STREAM: the caller gives up mid-body.
      stream.destroy();
      await waitFor(() => entry.aborted || entry.complete, {
        what: "the app's request to end one way or the other",
        timeoutMs: 5000,
        intervalMs: 10,
      });
      assert.equal(entry.complete, false, "the truncated body was not delivered as a complete one");
      assert.equal(entry.aborted, true);
      assert.equal(ledger(orders).length, 1, "not retried: the caller is gone");
    } finally {
      session.close();
    }
  });

  it("an app that crashes mid-response: the caller sees the response cut short, never complete", async () => {
    clearLedgers(orders);
    for (const a of orders) a.script = () => ({ cutAfterBytes: 10 });
    const outcome = await new Promise<{ complete: boolean; bytes: number }>((resolve) => {
      const req = http.get(
        {
          host: "127.0.0.1",
          port: web.ports.outbound,
          path: "/crash",
          headers: { host: ordersHost },
          agent: false,
        },
        (res) => {
          let bytes = 0;
          res.on("data", (c: Buffer) => {
            bytes += c.length;
          });
          res.on("error", () => {});
          res.on("close", () => resolve({ complete: res.complete, bytes }));
        },
      );
      req.setTimeout(5000, () => req.destroy(new Error("no end within 5 s")));
      req.on("error", () => resolve({ complete: false, bytes: -1 }));
    });
    assert.equal(outcome.complete, false, `a truncated body arrived as complete (${outcome.bytes} bytes)`);
    assert.equal(outcome.bytes, 10, "what the app sent arrived, then the cut");
    clearLedgers(orders);
  });

  it("Retry-After: 1 on a 503 makes the second try start ≥ 1.0 s after the first; one past the deadline is not waited for", async () => {
    clearLedgers(orders);
    let first = true;
    for (const a of orders)
      a.script = () => {
        if (!first) return undefined;
        first = false;
        return { status: 503, headers: { "retry-after": "1" } };
      };
    const r = await client.send({ host: ordersHost, path: "/retry-after" });
    assert.equal(r.status, 200);
    const tries = ledger(orders);
    assert.equal(tries.length, 2);
    const gap = (tries[1]?.atMs as number) - (tries[0]?.atMs as number);
    assert.ok(gap >= 1000, `second try ${gap.toFixed(1)} ms after the first`);

    clearLedgers(orders);
    for (const a of orders) a.script = () => ({ status: 503, headers: { "retry-after": "5" } });
    const t0 = performance.now();
    const late = await client.send({ host: ordersHost, path: "/retry-after-long" });
    const elapsed = performance.now() - t0;
    assert.equal(late.status, 503);
    assert.equal(late.headers["retry-after"], "5", "the upstream's answer, as it was");
    assert.equal(ledger(orders).length, 1, "no second try: Retry-After outlasts the 1 s route timeout");
    assert.ok(elapsed < 900, `answered in ${elapsed.toFixed(0)} ms, without waiting`);
    clearLedgers(orders);
  });

  it("with every upstream failing for T s, upstream tries ≤ requests × 1.2 + 10 × (T + 10) and the budget counts the rest", async () => {
    clearLedgers(pay);
    for (const a of pay) a.script = () => ({ status: 503 });
    const before = await scrape(web);
    const T = 5;
    const load = startPacedLoad({
      rate: 100,
      durationMs: T * 1000,
      send: () => client.send({ host: payHost, path: "/charge" }),
    });
    const result = await load.done;
    const requests = result.samples.length;
    assert.equal(requests, 100 * T, "every request answered");
    assert.ok(
      result.samples.every((s) => s.status === 503),
      "every request got the upstream's 503 (retries exhausted or not allowed)",
    );
    const tries = ledger(pay).length;
    const bound = requests * 1.2 + 10 * (T + 10);
    assert.ok(tries <= bound, `${tries} upstream tries for ${requests} requests (bound ${bound})`);
    assert.ok(tries > requests, "some retries were made (the budget's floor)");
    const after = await scrape(web);
    const exhausted =
      metricSum(after, "trellis_retry_budget_exhausted_total") -
      metricSum(before, "trellis_retry_budget_exhausted_total");
    const retries = metricSum(after, "trellis_retries_total") - metricSum(before, "trellis_retries_total");
    assert.equal(retries, tries - requests, "trellis_retries_total counts exactly the extra tries");
    assert.ok(exhausted > 0, "trellis_retry_budget_exhausted_total counts the retries not made");
    assert.ok(retries + exhausted <= requests * 3, "each request wanted at most 3 retries");
    clearLedgers(pay);
  });

  it("a slow upstream gives 504 upstream_timeout within [timeout, timeout + 250 ms), with retries pending or not", async () => {
    for (const path of ["/plain", "/per-try"]) {
      const t0 = performance.now();
      const r = await client.send({ host: slowHost, path });
      const elapsed = performance.now() - t0;
      assert.equal(r.status, 504, `${path}: ${r.body}`);
      assert.equal(r.headers["x-trellis-error"], "upstream_timeout");
      assert.ok(elapsed >= 500 && elapsed < 750, `${path}: answered after ${elapsed.toFixed(0)} ms`);
    }
    // The per-try timeout made several tries inside the route timeout (150 ms each, then retried).
    const perTry = (slow[0] as EchoApp).requests.filter((r) => r.url === "/per-try").length;
    assert.ok(perTry >= 3, `${perTry} tries of /per-try within 500 ms`);
  });

  it("gRPC: the route timeout gives DEADLINE_EXCEEDED, the deadline propagates as grpc-timeout, UNAVAILABLE is retried", async () => {
    const srv = rpc as NonNullable<typeof rpc>;
    // The app talks h2c (prior knowledge) to its outbound listener, naming the mesh authority.
    const direct = new grpc.Client(`127.0.0.1:${web.ports.outbound}`, grpc.credentials.createInsecure(), {
      "grpc.default_authority": `rpc.shop:${srv.port}`,
    });
    try {
      const call = (payload: string, deadlineMs?: number) =>
        new Promise<{ code: number; elapsed: number }>((resolve) => {
          const t0 = performance.now();
          const opts: grpc.CallOptions =
            deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
          direct.makeUnaryRequest(
            ECHO_METHODS[payload === "hang" ? "Hang" : "Unary"].path,
            (b: Buffer) => b,
            (b: Buffer) => b,
            Buffer.from(payload),
            new grpc.Metadata(),
            opts,
            (err) => resolve({ code: err?.code ?? 0, elapsed: performance.now() - t0 }),
          );
        });
      // Route timeout 400 ms, no caller deadline: DEADLINE_EXCEEDED from the mesh in [400, 650).
      const sentAt = Date.now();
      const hung = await call("hang");
      assert.equal(hung.code, grpc.status.DEADLINE_EXCEEDED);
      assert.ok(
        hung.elapsed >= 400 && hung.elapsed < 650,
        `DEADLINE_EXCEEDED after ${hung.elapsed.toFixed(0)} ms`,
      );
      // The server saw a deadline no later than the route's: the smaller of the two went out.
      const seen = srv.seen.hangs.at(-1);
      assert.ok(seen !== undefined && Number.isFinite(seen.deadline), "the app got a grpc-timeout");
      assert.ok(
        (seen?.deadline ?? 0) <= sentAt + 400 + 150,
        `the app's deadline ${(seen?.deadline ?? 0) - sentAt} ms after the call: the route's 400 ms went out`,
      );
      // A caller deadline shorter than the route timeout wins.
      const short = await call("hang", 200);
      assert.equal(short.code, grpc.status.DEADLINE_EXCEEDED);
      assert.ok(
        short.elapsed < 400,
        `the caller's 200 ms deadline governed (${short.elapsed.toFixed(0)} ms)`,
      );
      // UNAVAILABLE (trailers-only) is retried twice: three calls reach the app.
      const before = srv.seen.unaryMetadata.length;
      const failed = await call(`fail:${grpc.status.UNAVAILABLE}`);
      assert.equal(failed.code, grpc.status.UNAVAILABLE);
      assert.equal(srv.seen.unaryMetadata.length - before, 3, "first try + 2 retries");
      // INTERNAL is not in retryOn: one call.
      const before2 = srv.seen.unaryMetadata.length;
      const internal = await call(`fail:${grpc.status.INTERNAL}`);
      assert.equal(internal.code, grpc.status.INTERNAL);
      assert.equal(srv.seen.unaryMetadata.length - before2, 1);
    } finally {
      direct.close();
    }
  });
});
