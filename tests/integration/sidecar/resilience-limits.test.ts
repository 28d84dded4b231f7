// trellis-test: serial
// Connection limits, outlier detection, panic mode, fault injection, mirroring and the fallback
// response through real sidecars (real control plane, real sockets). The caller `web` (seeded with
// --random-seed 7) reaches `lim` and `lim0` (1 replica each, limits), `out` (3, outliers and
// panic), `front` (1, faults and mirroring to `shadow`), `fb` (2, fallback; with `front`, mirror
// copies of POSTs answered early) and `keep` (2, state across config updates). Every app keeps a
// ledger of what reached it: "no traffic while ejected" is that ledger not growing, not a claim of
// the proxy.
//
// The outlier clusters balance ROUND_ROBIN: under the default LEAST_REQUEST (peak-EWMA with a
// failure penalty) a fast-failing endpoint is mostly avoided by the balancer itself, so how many
// requests it takes to reach N consecutive failures there is a matter of luck, not of the detector.
import assert from "node:assert/strict";
import * as http from "node:http";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { chance, stream } from "@trellis/sidecar/resilience/random";
import { type EchoApp, startReplicaApps } from "../../fixtures/sidecar-apps/echo-app.js";
import { createToken, runTrellis } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../../helpers/control-plane.js";
import {
  describeFailures,
  MeshClient,
  type MeshResponse,
  sendConcurrently,
  startPacedLoad,
} from "../../helpers/load.js";
import { metricSum, scrape } from "../../helpers/metrics.js";
import { adminJson, type SidecarProcess, startSidecar, waitForCluster } from "../../helpers/sidecar.js";
import { waitFor } from "../../helpers/wait.js";

const SEED = 7;
/** How long `lim`'s app holds each answer in the limits test, ms. */
const LIM_DELAY_MS = 500;
/** `out`'s outlier detection (see POLICIES). */
const OUT_BASE_EJECTION_MS = 2000;
const OUT_INTERVAL_MS = 1000;
const OUT_THRESHOLD = 3;

const POLICIES = `apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: lim, namespace: shop }
spec:
  targetRef: { kind: Service, name: lim }
  connectionLimits: { maxRequests: 2, maxPendingRequests: 1 }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: lim0, namespace: shop }
spec:
  targetRef: { kind: Service, name: lim0 }
  connectionLimits: { maxRequests: 2, maxPendingRequests: 0 }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: out, namespace: shop }
spec:
  targetRef: { kind: Service, name: out }
  loadBalancer: { policy: ROUND_ROBIN }
  outlierDetection: { consecutiveGatewayErrors: ${OUT_THRESHOLD}, interval: ${OUT_INTERVAL_MS}ms, baseEjectionTime: ${OUT_BASE_EJECTION_MS}ms }
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: front, namespace: shop }
spec:
  targetRef: { kind: Service, name: front }
  rules:
    - matches: [ { path: { prefix: /abort } } ]
      fault: { abort: { status: 503 }, percentage: 50 }
    - matches: [ { path: { prefix: /delay } } ]
      fault: { delay: 100ms }
    - matches: [ { path: { prefix: /fault.Derived/ } } ]
      fault: { abort: { status: 503 } }
    - matches: [ { path: { prefix: /fault.Explicit/ } } ]
      fault: { abort: { status: 503, grpcStatus: 9 } }
    - matches: [ { path: { prefix: /mirror } } ]
      timeout: 2s
      mirror: { service: shadow }
    - matches: [ { path: { prefix: /upload } } ]
      timeout: 3s
      retry: { attempts: 0, perTryTimeout: 200ms }
      mirror: { service: shadow }
    - timeout: 5s
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: fb, namespace: shop }
spec:
  targetRef: { kind: Service, name: fb }
  rules:
    - matches: [ { path: { prefix: /upload } } ]
      mirror: { service: shadow }
    - fallback: { status: 200, headers: { x-cache: stale }, body: cached }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: fb, namespace: shop }
spec:
  targetRef: { kind: Service, name: fb }
  loadBalancer: { policy: ROUND_ROBIN }
  outlierDetection:
    consecutiveGatewayErrors: 2
    baseEjectionTime: 30s
    maxEjectionPercent: 100
    minHealthPercent: 0
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: keep, namespace: shop }
spec:
  targetRef: { kind: Service, name: keep }
  loadBalancer: { policy: ROUND_ROBIN }
  outlierDetection: { consecutiveGatewayErrors: 2, baseEjectionTime: 30s, minHealthPercent: 0 }
`;

/** An HTTPRoute for `lim0` that none of the state under test depends on (test 7's update). */
const UNRELATED_ROUTE = `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: lim0-unrelated, namespace: shop }
spec:
  targetRef: { kind: Service, name: lim0 }
  rules:
    - timeout: 7s
`;

/**
 * lim's and keep's TrafficPolicies again, with the same limits and outlier thresholds and one
 * harmless change each (test 7's second update: the clusters themselves change).
 */
const SAME_LIMITS_NEW_POLICIES = `apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: lim, namespace: shop }
spec:
  targetRef: { kind: Service, name: lim }
  connectionLimits: { maxRequests: 2, maxPendingRequests: 1, maxConnections: 64 }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: keep, namespace: shop }
spec:
  targetRef: { kind: Service, name: keep }
  loadBalancer: { policy: ROUND_ROBIN }
  outlierDetection: { consecutiveGatewayErrors: 2, baseEjectionTime: 30s, minHealthPercent: 0, interval: 5s }
`;

const ROUTE_TYPE = "type.googleapis.com/trellis.v1.RouteConfig";
const CLUSTER_TYPE = "type.googleapis.com/trellis.v1.Cluster";

type ConfigDump = { resources: Record<string, { name: string; version: string }[]> };

/**
 * A request to `authority` through `sc`'s outbound port on a connection of its own, left
 * unanswered by the test; `hangUp()` closes that connection (the caller going away).
 */
function hangUpLater(sc: SidecarProcess, authority: string, path: string): { hangUp(): void } {
  const req = http.request({
    host: "127.0.0.1",
    port: sc.ports.outbound,
    path,
    headers: { host: authority },
    agent: false,
  });
  req.on("error", () => {});
  req.end();
  return { hangUp: () => req.destroy() };
}

describe("sidecar resilience: connection limits, outliers, panic, faults, mirroring, fallback", () => {
  let cp: ControlPlaneProcess;
  const apps: Record<"lim" | "lim0" | "out" | "front" | "shadow" | "fb" | "keep", EchoApp[]> = {
    lim: [],
    lim0: [],
    out: [],
    front: [],
    shadow: [],
    fb: [],
    keep: [],
  };
  const sidecars: SidecarProcess[] = [];
  let web: SidecarProcess;
  let client: MeshClient;
  /** `<service>.shop:<port>` per service: the authority callers use, also the cluster name. */
  const host = (service: keyof typeof apps) => `${service}.shop:${apps[service][0]?.port}`;

  const endpointsAtWeb = (cluster: string, n: number) =>
    waitForCluster(web, cluster, (c) => c.endpoints.length === n, `${n} endpoints of ${cluster} at web`);

  const clear = (list: readonly EchoApp[]) => {
    for (const a of list) {
      a.requests.length = 0;
      a.script = undefined;
    }
  };

  /** A gauge or counter of web for one cluster (and more labels). */
  const metric = async (name: string, labels: Record<string, string>) =>
    metricSum(await scrape(web), name, labels);

  /** Sends one request at a time until `done(response)` says stop; at most `max` requests. */
  const sendUntil = async (
    h: string,
    done: (r: MeshResponse) => boolean,
    max: number,
  ): Promise<MeshResponse[]> => {
    const out: MeshResponse[] = [];
    for (let i = 0; i < max; i++) {
      const r = await client.send({ host: h });
      out.push(r);
      if (done(r)) return out;
    }
    const seen = new Map<string, number>();
    for (const r of out) {
      const k = `${r.status} ${r.headers["x-app"] ?? r.headers["x-trellis-error"]}`;
      seen.set(k, (seen.get(k) ?? 0) + 1);
    }
    throw new Error(`condition not reached after ${max} requests to ${h}: ${JSON.stringify([...seen])}`);
  };

  before(async () => {
    cp = await startControlPlane({});
    const applied = await runTrellis(["apply", "-f", "-"], cp.env, POLICIES);
    assert.equal(applied.code, 0, applied.stderr);
    apps.lim = await startReplicaApps("lim", 1, { firstAddress: 2, delayMs: LIM_DELAY_MS });
    apps.lim0 = await startReplicaApps("lim0", 1, { firstAddress: 3, delayMs: LIM_DELAY_MS });
    apps.out = await startReplicaApps("out", 3, { firstAddress: 4 });
    apps.front = await startReplicaApps("front", 1, { firstAddress: 7 });
    apps.shadow = await startReplicaApps("shadow", 1, { firstAddress: 8 });
    apps.fb = await startReplicaApps("fb", 2, { firstAddress: 9 });
    apps.keep = await startReplicaApps("keep", 2, { firstAddress: 11 });
    const services = Object.keys(apps) as (keyof typeof apps)[];
    // One service account for every workload: identities play no part here, and one token is one
    // CLI run instead of eight.
    const token = await createToken(cp.env, "shop", "mesh");
    // Started three at a time, each pushed to `sidecars` as soon as it runs (so `after` stops it
    // whatever fails later): a dozen Node processes booting at once on a small, busy machine can
    // miss the harness's per-sidecar start deadline.
    const jobs: (() => Promise<SidecarProcess>)[] = [
      () =>
        startSidecar({
          cp,
          token,
          service: "web",
          serviceAccount: "mesh",
          extraArgs: ["--random-seed", String(SEED)],
        }),
      ...services.flatMap((s) =>
        apps[s].map(
          (app) => () =>
            startSidecar({
              cp,
              token,
              service: s,
              serviceAccount: "mesh",
              proxyId: `${app.name}-${process.pid}`,
              appPorts: String(app.port),
              appAddress: app.host,
            }),
        ),
      ),
    ];
    let next = 0;
    const worker = async () => {
      while (next < jobs.length) {
        const job = jobs[next++] as () => Promise<SidecarProcess>;
        sidecars.push(await job());
      }
    };
    await Promise.all(Array.from({ length: 3 }, worker));
    web = sidecars.find((sc) => sc.proxyId.startsWith("web-")) as SidecarProcess;
    client = new MeshClient(web.ports.outbound, { maxSockets: 256 });
    // Subscribe web to each service (the policies are in place already) and wait for every replica.
    for (const s of services) {
      if (s === "shadow") continue; // reached only as front's mirror
      // Retried: a sidecar that registered a moment ago may not be in the registry snapshot yet.
      await waitFor(async () => (await client.send({ host: host(s) })).status === 200, {
        what: `web reaching ${s}`,
        timeoutMs: 15_000,
        intervalMs: 100,
      });
      await endpointsAtWeb(host(s), apps[s].length);
    }
    await endpointsAtWeb(host("shadow"), 1); // front's route names it: web holds its cluster too
    for (const s of services) clear(apps[s]);
  });

  after(async () => {
    client?.close();
    // Apps close alongside their sidecars: a sidecar's drain waits for the app requests it has in
    // flight, and the mirror's and lim's apps hold some that nobody answers (see the mirror test).
    await Promise.all([
      ...sidecars.map((s) => s.stop()),
      ...Object.values(apps).flatMap((list) => list.map((a) => a.close())),
    ]);
    await cp?.stop();
  });

  /**
   * Sends `n` requests to `h` at once and scrapes web's saturation gauges of cluster `h` until the
   * burst is answered; returns the answers with their latencies, and every scrape's gauges.
   */
  const burst = async (h: string, n: number) => {
    const sent = Array.from({ length: n }, async () => {
      const t0 = performance.now();
      const r = await client.send({ host: h });
      return { ...r, ms: performance.now() - t0 };
    });
    const all = Promise.all(sent);
    let settled = false;
    void all.then(() => {
      settled = true;
    });
    const scrapes: { requests: number; pending: number }[] = [];
    while (!settled) {
      const text = await scrape(web);
      scrapes.push({
        requests: metricSum(text, "trellis_connection_limit_saturated", { cluster: h, limit: "requests" }),
        pending: metricSum(text, "trellis_connection_limit_saturated", { cluster: h, limit: "pending" }),
      });
    }
    return { answers: await all, scrapes };
  };

  it("connection limits: 2 active + 1 queued succeed, the rest overflow fast; saturation gauges go 1 then 0", async () => {
    const h = host("lim");
    const overflowBefore = await metric("trellis_local_reply_total", { reason: "overflow" });
    const { answers, scrapes } = await burst(h, 10);
    const ok = answers.filter((a) => a.status === 200);
    const refused = answers.filter((a) => a.status !== 200);
    assert.equal(ok.length, 3, `statuses: ${answers.map((a) => a.status).join(",")}`);
    assert.equal(refused.length, 7);
    for (const r of refused) {
      assert.equal(r.status, 503);
      assert.equal(r.headers["x-trellis-error"], "overflow");
      assert.ok(r.ms < LIM_DELAY_MS / 2, `an overflow answered after ${r.ms.toFixed(0)} ms: not fast`);
    }
    // The queued one waited for a slot: its answer took two app delays.
    const slowest = Math.max(...ok.map((a) => a.ms));
    assert.ok(slowest >= 2 * LIM_DELAY_MS - 20, `the queued request took ${slowest.toFixed(0)} ms`);
    assert.equal((apps.lim[0] as EchoApp).requests.length, 3, "only admitted requests reached the app");
    assert.ok(
      scrapes.some((s) => s.requests === 1 && s.pending === 1),
      `requests and pending saturated at some scrape: ${JSON.stringify(scrapes)}`,
    );
    const text = await scrape(web);
    assert.equal(metricSum(text, "trellis_connection_limit_saturated", { cluster: h, limit: "requests" }), 0);
    assert.equal(metricSum(text, "trellis_connection_limit_saturated", { cluster: h, limit: "pending" }), 0);
    assert.equal(metricSum(text, "trellis_local_reply_total", { reason: "overflow" }) - overflowBefore, 7);

    // maxPendingRequests: 0 — no queue: 2 succeed, 8 overflow, and "pending" is a policy, never saturated.
    const h0 = host("lim0");
    const zero = await burst(h0, 10);
    assert.equal(zero.answers.filter((a) => a.status === 200).length, 2);
    const refused0 = zero.answers.filter((a) => a.status !== 200);
    assert.equal(refused0.length, 8);
    for (const r of refused0) {
      assert.equal(r.headers["x-trellis-error"], "overflow");
      assert.ok(r.ms < LIM_DELAY_MS / 2, `an overflow answered after ${r.ms.toFixed(0)} ms`);
    }
    assert.ok(
      zero.scrapes.some((s) => s.requests === 1),
      `requests saturated at some scrape: ${JSON.stringify(zero.scrapes)}`,
    );
    assert.ok(
      zero.scrapes.every((s) => s.pending === 0),
      "a queue of 0 is never reported as saturated",
    );
    assert.equal(await metric("trellis_connection_limit_saturated", { cluster: h0, limit: "requests" }), 0);
    clear([...apps.lim, ...apps.lim0]);
  });

  it("outliers: an endpoint returning 502s is ejected by web after the threshold, gets no traffic, and is back after baseEjectionTime", async () => {
    const h = host("out");
    const [bad, ...good] = apps.out as [EchoApp, ...EchoApp[]];
    clear(apps.out);
    bad.script = () => ({ status: 502 });
    const ejectionsBefore = await metric("trellis_outlier_ejections_total", { cluster: h });
    // One request at a time: the bad endpoint's answers are consecutive, and the threshold-th one
    // ejects it before its answer reaches us.
    let badAnswers = 0;
    await sendUntil(
      h,
      (r) => {
        if (r.headers["x-app"] === bad.name) {
          assert.equal(r.status, 502);
          badAnswers++;
        }
        return badAnswers === OUT_THRESHOLD;
      },
      300,
    );
    const ejectedAt = performance.now();
    assert.equal(bad.requests.length, OUT_THRESHOLD);
    const text = await scrape(web);
    assert.equal(metricSum(text, "trellis_outlier_ejections_total", { cluster: h }) - ejectionsBefore, 1);
    assert.equal(metricSum(text, "trellis_endpoints_ejected", { cluster: h }), 1);
    // Healthy again from now on: what brings it back is the ejection ending, not its answers.
    bad.script = undefined;
    const load = startPacedLoad({
      rate: 100,
      durationMs: OUT_BASE_EJECTION_MS + OUT_INTERVAL_MS + 3000,
      send: () => client.send({ host: h, path: "/paced" }),
    });
    const back = await waitFor(() => bad.requests[OUT_THRESHOLD], {
      what: `${bad.name} getting traffic again`,
      timeoutMs: OUT_BASE_EJECTION_MS + OUT_INTERVAL_MS + 3000,
      intervalMs: 10,
    });
    load.stop();
    const result = await load.done;
    const backAfter = back.atMs - ejectedAt;
    // No traffic while ejected: the first request after the ejection came once it had expired.
    assert.ok(
      backAfter >= OUT_BASE_EJECTION_MS - 100,
      `${bad.name} got a request ${backAfter.toFixed(0)} ms after its ejection (ejected for ${OUT_BASE_EJECTION_MS} ms)`,
    );
    assert.ok(
      backAfter <= OUT_BASE_EJECTION_MS + OUT_INTERVAL_MS + 1000,
      `${bad.name} back only ${backAfter.toFixed(0)} ms after its ejection`,
    );
    const during = good.reduce((n, a) => n + a.requests.filter((r) => r.atMs < back.atMs).length, 0);
    assert.ok(
      during >= 100,
      `${during} requests went to the others meanwhile (the load covered the ejection)`,
    );
    assert.equal(result.failures.length, 0, describeFailures(result.failures));
    await waitFor(async () => (await metric("trellis_endpoints_ejected", { cluster: h })) === 0, {
      what: "trellis_endpoints_ejected back to 0",
      timeoutMs: 2000,
    });
    clear(apps.out);
  });

  it("panic: with two of three endpoints ejected (minHealthPercent 50), traffic spreads over all three", async () => {
    const h = host("out");
    const [bad1, bad2, good] = apps.out as [EchoApp, EchoApp, EchoApp];
    clear(apps.out);
    bad1.script = () => ({ status: 502 });
    bad2.script = () => ({ status: 502 });
    const ejectionsBefore = await metric("trellis_outlier_ejections_total", { cluster: h });
    await sendUntil(
      h,
      () => bad1.requests.length >= OUT_THRESHOLD && bad2.requests.length >= OUT_THRESHOLD,
      300,
    );
    const bothAt = performance.now();
    const text = await scrape(web);
    assert.equal(metricSum(text, "trellis_outlier_ejections_total", { cluster: h }) - ejectionsBefore, 2);
    assert.equal(metricSum(text, "trellis_endpoints_ejected", { cluster: h }), 2);
    const panicBefore = metricSum(text, "trellis_lb_panic_total", { cluster: h });
    clear(apps.out);
    bad1.script = () => ({ status: 502 });
    bad2.script = () => ({ status: 502 });
    // Well inside the ejection (2 s): 60 requests, 3 at a time.
    const answers = await sendConcurrently(60, 3, () => client.send({ host: h, path: "/panic" }));
    assert.ok(performance.now() - bothAt < OUT_BASE_EJECTION_MS, "the burst ran while both were ejected");
    for (const a of apps.out)
      assert.ok(a.requests.length >= 10, `${a.name} got ${a.requests.length} of 60 in panic mode`);
    // The callers see what that costs: the broken ones' 502s, alongside the healthy one's 200s.
    assert.equal(answers.filter((a) => a.status === 502).length, bad1.requests.length + bad2.requests.length);
    assert.equal(answers.filter((a) => a.status === 200).length, good.requests.length);
    const panicked = (await metric("trellis_lb_panic_total", { cluster: h })) - panicBefore;
    assert.equal(panicked, 60, "every attempt was balanced in panic mode");
    clear(apps.out);
  });

  it("fault: a 50% abort hits exactly the requests the seeded stream picks; a delay delays; gRPC callers get the grpc-status", async () => {
    const h = host("front");
    const front = apps.front[0] as EchoApp;
    clear(apps.front);
    const N = 2000;
    const draws = stream(SEED, "fault");
    let expected = 0;
    for (let i = 0; i < N; i++) if (chance(draws, 50)) expected++;
    const faultsBefore = await metric("trellis_local_reply_total", { reason: "fault_injected" });
    const answers = await sendConcurrently(N, 16, (i) => client.send({ host: h, path: `/abort/${i}` }));
    const aborted = answers.filter((a) => a.headers["x-trellis-error"] === "fault_injected");
    assert.equal(aborted.length, expected, `expected ${expected} of ${N} from stream(${SEED}, "fault")`);
    for (const a of aborted) assert.equal(a.status, 503);
    const passed = answers.filter((a) => a.headers["x-trellis-error"] === undefined);
    assert.equal(passed.length, N - expected);
    for (const a of passed) assert.equal(a.status, 200);
    assert.equal(front.requests.length, N - expected, "the app got exactly the requests not aborted");
    assert.equal(
      (await metric("trellis_local_reply_total", { reason: "fault_injected" })) - faultsBefore,
      expected,
    );

    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const r = await client.send({ host: h, path: "/delay" });
      const ms = performance.now() - t0;
      assert.equal(r.status, 200);
      assert.equal(r.headers["x-app"], front.name);
      assert.ok(ms >= 100, `a 100 ms delay fault answered after ${ms.toFixed(1)} ms`);
    }

    const rpc = new grpc.Client(`127.0.0.1:${web.ports.outbound}`, grpc.credentials.createInsecure(), {
      "grpc.default_authority": h,
    });
    try {
      const call = (path: string) =>
        new Promise<number>((resolve) => {
          rpc.makeUnaryRequest(
            path,
            (b: Buffer) => b,
            (b: Buffer) => b,
            Buffer.from("x"),
            new grpc.Metadata(),
            {},
            (err) => resolve(err?.code ?? 0),
          );
        });
      assert.equal(await call("/fault.Derived/Call"), grpc.status.UNAVAILABLE, "503 → UNAVAILABLE");
      assert.equal(await call("/fault.Explicit/Call"), 9, "the configured grpcStatus");
    } finally {
      rpc.close();
    }
    clear(apps.front);
  });

  it("mirror: copies go to a hanging mirror while every primary answers within 1 s", async () => {
    const h = host("front");
    const front = apps.front[0] as EchoApp;
    const shadow = apps.shadow[0] as EchoApp;
    clear([front, shadow]);
    // Copies are cancelled by web after the route's 2 s timeout. (The shadow's app keeps them open
    // even then: its sidecar does not abort an app request whose caller reset a bodiless HTTP/2
    // stream — hence the order of `after`.)
    shadow.script = () => ({ hang: true });
    const N = 60;
    const timed = await sendConcurrently(N, 6, async (i) => {
      const t0 = performance.now();
      const r = await client.send({ host: h, path: `/mirror/${i}`, timeoutMs: 3000 });
      return { ...r, body: String(performance.now() - t0) };
    });
    for (const r of timed) {
      assert.equal(r.status, 200);
      assert.equal(r.headers["x-app"], front.name);
      assert.ok(Number(r.body) < 1000, `a primary took ${Number(r.body).toFixed(0)} ms`);
    }
    assert.equal(front.requests.length, N);
    await waitFor(() => shadow.requests.length >= N, {
      what: `${N} copies at the mirror (has ${shadow.requests.length})`,
      timeoutMs: 3000,
    });
    assert.equal(shadow.requests.length, N, "one copy per request at 100%");
    const hosts = new Set(shadow.requests.map((r) => r.headers.host));
    assert.deepEqual([...hosts], [`front.shop-shadow:${front.port}`]);
    assert.deepEqual(
      shadow.requests.map((r) => r.url).sort(),
      front.requests.map((r) => r.url).sort(),
      "the copies are of the primaries",
    );
    clear([front, shadow]);
  });

  it("fallback: once every endpoint is ejected, callers get the route's fallback", async () => {
    const h = host("fb");
    clear(apps.fb);
    for (const a of apps.fb) a.script = () => ({ status: 502 });
    const fallbacksBefore = await metric("trellis_local_reply_total", { reason: "fallback" });
    const seen = await sendUntil(h, (r) => r.headers["x-trellis-error"] === "fallback", 50);
    // Each endpoint was ejected at its 2nd consecutive 502: 2 requests each reached the apps.
    for (const a of apps.fb) assert.equal(a.requests.length, 2, `${a.name} got ${a.requests.length}`);
    assert.equal(seen.length, 5, "4 upstream 502s, then the fallback");
    assert.equal(await metric("trellis_endpoints_ejected", { cluster: h }), 2);
    for (let i = 0; i < 20; i++) {
      const r = await client.send({ host: h, path: `/fb/${i}` });
      assert.equal(r.status, 200);
      assert.equal(r.body, "cached");
      assert.equal(r.headers["x-cache"], "stale");
      assert.equal(r.headers["x-trellis-error"], "fallback");
    }
    for (const a of apps.fb) assert.equal(a.requests.length, 2, "no traffic to ejected endpoints");
    assert.equal((await metric("trellis_local_reply_total", { reason: "fallback" })) - fallbacksBefore, 21);
  });

  it("mirror: a POST's copy gets the whole body when its primary is answered before or while reading it", async () => {
    const shadow = apps.shadow[0] as EchoApp;
    const front = apps.front[0] as EchoApp;
    clear([shadow, front]);
    // The mirror test's copies are still open at the shadow's app; count from here.
    const openBefore = shadow.inFlight;
    const copyOf = (path: string) => shadow.requests.find((r) => r.url === path);
    const copyDone = (path: string, bytes: number) =>
      waitFor(() => copyOf(path)?.bodyBytes === bytes && shadow.inFlight === openBefore, {
        what: `the copy of ${path} whole (${bytes} bytes) and answered`,
        timeoutMs: 2000,
      }).catch((err: Error) => {
        const open = shadow.inFlight - openBefore;
        throw new Error(`${err.message}: it has ${copyOf(path)?.bodyBytes} bytes, ${open} copies open`);
      });
    // 1. Refused before any attempt: fb's endpoints are all still ejected (30 s, fallback test).
    assert.equal(await metric("trellis_endpoints_ejected", { cluster: host("fb") }), 2);
    const refused = await client.send({
      host: host("fb"),
      method: "POST",
      path: "/upload/refused",
      body: "r".repeat(1000),
    });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers["x-trellis-error"], "no_healthy_upstream");
    await copyDone("/upload/refused", 1000);
    // 2. Answered mid-body: front's per-try timeout (200 ms) fires while the upload is half sent;
    //    the rest arrives in two writes after the 504.
    const sock = net.connect(web.ports.outbound, "127.0.0.1");
    try {
      let received = "";
      sock.on("data", (c: Buffer) => {
        received += c.toString("latin1");
      });
      sock.write(`POST /upload/slow HTTP/1.1\r\nhost: ${host("front")}\r\ncontent-length: 2000\r\n\r\n`);
      sock.write("a".repeat(1000));
      await waitFor(() => received.includes("\r\n\r\n"), { what: "the 504", timeoutMs: 3000 });
      assert.match(received, /^HTTP\/1\.1 504 /);
      assert.match(received, /x-trellis-error: upstream_timeout/i);
      sock.write("b".repeat(500));
      await waitFor(() => copyOf("/upload/slow")?.bodyBytes === 1500, {
        what: "the copy getting the body sent after the 504",
        timeoutMs: 2000,
      });
      sock.write("c".repeat(500));
      await copyDone("/upload/slow", 2000);
    } finally {
      sock.destroy();
    }
    clear([shadow, front]);
  });

  it("config updates — an unrelated route, then the clusters' own policies — reset neither an ejection nor a limiter's queue", async () => {
    const keepHost = host("keep");
    const limHost = host("lim");
    const [bad, good] = apps.keep as [EchoApp, EchoApp];
    const lim = apps.lim[0] as EchoApp;
    clear([...apps.keep, lim]);
    bad.script = () => ({ status: 502 });
    await sendUntil(keepHost, () => bad.requests.length === 2, 100);
    assert.equal(await metric("trellis_endpoints_ejected", { cluster: keepHost }), 1);
    const goodBefore = good.requests.length;
    // Fill lim: two requests its app never answers (their callers hang up at the end), then a
    // third, queued behind them.
    lim.script = (i) => (i < 2 ? { hang: true } : { delayMs: 0 });
    const active = [hangUpLater(web, limHost, "/active-0"), hangUpLater(web, limHost, "/active-1")];
    await waitFor(() => lim.requests.length === 2, { what: "two requests active at lim", timeoutMs: 5000 });
    const queued = client.send({ host: limHost, path: "/queued", timeoutMs: 15_000 });
    const gauges = async () => {
      const text = await scrape(web);
      const saturated = (limit: string) =>
        metricSum(text, "trellis_connection_limit_saturated", { cluster: limHost, limit });
      return { requests: saturated("requests"), pending: saturated("pending") };
    };
    await waitFor(async () => (await gauges()).pending === 1, {
      what: "lim's queue full",
      timeoutMs: 2000,
      intervalMs: 10,
    });
    const versions = async (type: string) =>
      new Map(
        ((await adminJson<ConfigDump>(web, "/config_dump")).resources[type] ?? []).map((r) => [
          r.name,
          r.version,
        ]),
      );
    /** Applies `yaml` and waits until web holds a new version of each of `names` (of `type`). */
    const update = async (yaml: string, type: string, names: readonly string[]) => {
      const before = await versions(type);
      for (const n of names) assert.ok(before.has(n), `web holds ${n}: ${[...before.keys()].join(", ")}`);
      const applied = await runTrellis(["apply", "-f", "-"], cp.env, yaml);
      assert.equal(applied.code, 0, applied.stderr);
      await waitFor(
        async () => {
          const now = await versions(type);
          return names.every((n) => now.get(n) !== before.get(n));
        },
        { what: `web holding new versions of ${names.join(", ")}`, timeoutMs: 10_000, intervalMs: 20 },
      );
    };
    let keepRequests = 0;
    const stateKept = async (after: string) => {
      // The limiter: still full, still queueing; a new request overflows at once.
      assert.deepEqual(await gauges(), { requests: 1, pending: 1 }, `lim's gauges after ${after}`);
      const probe = await client.send({ host: limHost, path: "/probe" });
      assert.equal(probe.status, 503);
      assert.equal(probe.headers["x-trellis-error"], "overflow", `the queue was reset by ${after}`);
      // The ejection: still in force, still no traffic.
      assert.equal(await metric("trellis_endpoints_ejected", { cluster: keepHost }), 1);
      const answers = await sendConcurrently(40, 4, () => client.send({ host: keepHost, path: "/after" }));
      keepRequests += answers.length;
      assert.ok(
        answers.every((a) => a.status === 200 && a.headers["x-app"] === good.name),
        `after ${after}: ${answers.map((a) => `${a.status} ${a.headers["x-app"]}`).join(", ")}`,
      );
      assert.equal(bad.requests.length, 2, `the ejected endpoint got traffic after ${after}`);
    };
    // 1. A route web holds, of another service: only that RouteConfig changes.
    await update(UNRELATED_ROUTE, ROUTE_TYPE, ["lim0.shop"]);
    await stateKept("an unrelated route update");
    // 2. The clusters' own TrafficPolicies, with the same limits and outlier thresholds: both
    //    clusters are rebuilt (new Cluster versions), their resilience state must carry over.
    await update(SAME_LIMITS_NEW_POLICIES, CLUSTER_TYPE, [limHost, keepHost]);
    await stateKept("a policy update of the same clusters");
    assert.equal(
      good.requests.length - goodBefore,
      keepRequests,
      "keep's requests all went to the healthy one",
    );
    // The active callers hang up: their slots go to the queued request — the queue of before both
    // updates — which completes; then the limiter is empty.
    for (const a of active) a.hangUp();
    const q = await queued;
    assert.equal(q.status, 200, q.body);
    assert.deepEqual(
      lim.requests.map((r) => r.url),
      ["/active-0", "/active-1", "/queued"],
    );
    await waitFor(
      async () => {
        const g = await gauges();
        return g.requests === 0 && g.pending === 0;
      },
      { what: "lim's saturation gauges back to 0", timeoutMs: 2000 },
    );
  });
});
