// trellis-test: serial
// Connection limits, outlier detection, panic mode, fault injection, mirroring and the fallback
// response through real sidecars (real control plane, real sockets). The caller `web` (seeded with
// --random-seed 7) reaches `lim` and `lim0` (1 replica each, limits), `out` (3, outliers and
// panic), `front` (1, faults and mirroring to `shadow`), `fb` (2, fallback) and `keep` (2, state
// across a config update). Every app keeps a ledger of what reached it: "no traffic while ejected"
// is that ledger not growing, not a claim of the proxy.
import assert from "node:assert/strict";
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
import {
  type AdminCluster,
  adminJson,
  type SidecarProcess,
  startSidecar,
} from "../../helpers/sidecar.js";
import { waitFor } from "../../helpers/wait.js";

const SEED = 7;
/** How long `lim`'s app holds each answer in the limits test, ms. */
const LIM_DELAY_MS = 300;
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
    - timeout: 5s
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: fb, namespace: shop }
spec:
  targetRef: { kind: Service, name: fb }
  rules:
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

const ROUTE_TYPE = "type.googleapis.com/trellis.v1.RouteConfig";

type ConfigDump = { resources: Record<string, { name: string; version: string }[]> };

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
    waitFor(
      async () => {
        const list = await adminJson<AdminCluster[]>(web, "/clusters");
        const c = list.find((x) => x.name === cluster);
        return c !== undefined && c.endpoints.length === n ? c : undefined;
      },
      { what: `${n} endpoints of ${cluster} at web`, timeoutMs: 15_000, intervalMs: 50 },
    );

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
    path = "/",
  ): Promise<MeshResponse[]> => {
    const out: MeshResponse[] = [];
    for (let i = 0; i < max; i++) {
      const r = await client.send({ host: h, path });
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
    const T0 = performance.now();
    const lap = (what: string) => console.error(`LAP ${what} ${(performance.now() - T0).toFixed(0)}`);
    cp = await startControlPlane({});
    lap("cp");
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
    lap("tokens");
    // Started four at a time, each pushed to `sidecars` as soon as it runs (so `after` stops it
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
    await Promise.all(Array.from({ length: 4 }, worker));
    lap("sidecars");
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
    lap("warm");
  });

  after(async () => {
    const T1 = performance.now();
    process.on("exit", () => console.error(`LAP after ${(performance.now() - T1).toFixed(0)}`));
    client?.close();
    await Promise.all(sidecars.map((s) => s.stop().then(() => console.error(`LAP stop ${s.proxyId} ${(performance.now() - T1).toFixed(0)}`))));
    console.error(`LAP sidecars stopped ${(performance.now() - T1).toFixed(0)}`);
    await Promise.all(Object.values(apps).flatMap((list) => list.map((a) => a.close())));
    await cp?.stop();
  });

  /**
   * Sends `n` requests to `h` at once and scrapes web's saturation gauges of `cluster` until the
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
    assert.equal(answers.filter((a) => a.headers["x-app"] === good.name).length, good.requests.length);
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
    console.error(`LAP shadow inFlight ${shadow.inFlight}`);
    await new Promise((r) => setTimeout(r, 3000));
    console.error(`LAP shadow inFlight after 3s ${shadow.inFlight}`);
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

  it("a config update of an unrelated route resets neither an ejection nor a connection limiter's queue", async () => {
    const keepHost = host("keep");
    const limHost = host("lim");
    const [bad, good] = apps.keep as [EchoApp, EchoApp];
    const lim = apps.lim[0] as EchoApp;
    clear([...apps.keep, lim]);
    bad.script = () => ({ status: 502 });
    await sendUntil(keepHost, () => bad.requests.length === 2, 100);
    assert.equal(await metric("trellis_endpoints_ejected", { cluster: keepHost }), 1);
    // Fill lim: two held for HOLD_MS, a third queued behind them.
    const HOLD_MS = 3000;
    lim.script = (i) => (i < 2 ? { delayMs: HOLD_MS } : undefined);
    const held = Array.from({ length: 3 }, () =>
      client.send({ host: limHost, path: "/held", timeoutMs: 10_000 }),
    );
    const heldAt = performance.now();
    const gauges = async () => {
      const text = await scrape(web);
      return {
        requests: metricSum(text, "trellis_connection_limit_saturated", {
          cluster: limHost,
          limit: "requests",
        }),
        pending: metricSum(text, "trellis_connection_limit_saturated", {
          cluster: limHost,
          limit: "pending",
        }),
      };
    };
    await waitFor(async () => ((await gauges()).pending === 1 ? true : undefined), {
      what: "lim's queue full",
      timeoutMs: 2000,
      intervalMs: 10,
    });
    const routeVersions = async () =>
      new Map(
        ((await adminJson<ConfigDump>(web, "/config_dump")).resources[ROUTE_TYPE] ?? []).map((r) => [
          r.name,
          r.version,
        ]),
      );
    const before = await routeVersions();
    assert.ok(before.has("lim0.shop"), `web holds lim0's route: ${[...before.keys()].join(", ")}`);
    const applied = await runTrellis(["apply", "-f", "-"], cp.env, UNRELATED_ROUTE);
    assert.equal(applied.code, 0, applied.stderr);
    await waitFor(async () => (await routeVersions()).get("lim0.shop") !== before.get("lim0.shop"), {
      what: "web holding the new lim0 route",
      timeoutMs: 5000,
      intervalMs: 20,
    });
    // The limiter: still full, still queueing; a new request overflows at once.
    assert.ok(performance.now() - heldAt < HOLD_MS - 200, "the update landed while lim was held");
    assert.deepEqual(await gauges(), { requests: 1, pending: 1 });
    const probe = await client.send({ host: limHost, path: "/probe" });
    assert.equal(probe.status, 503);
    assert.equal(probe.headers["x-trellis-error"], "overflow", "the queue was not reset by the update");
    // The ejection: still in force, still no traffic.
    assert.equal(await metric("trellis_endpoints_ejected", { cluster: keepHost }), 1);
    const answers = await sendConcurrently(40, 4, () => client.send({ host: keepHost, path: "/after" }));
    assert.ok(
      answers.every((a) => a.status === 200 && a.headers["x-app"] === good.name),
      `answers: ${answers.map((a) => `${a.status} ${a.headers["x-app"]}`).join(", ")}`,
    );
    assert.equal(bad.requests.length, 2, "the ejected endpoint got nothing after the update");
    // The held and queued requests complete; the limiter empties.
    const done = await Promise.all(held);
    assert.deepEqual(
      done.map((r) => r.status),
      [200, 200, 200],
    );
    assert.equal(lim.requests.length, 3);
    assert.deepEqual(await gauges(), { requests: 0, pending: 0 });
  });
});
