/**
 * The stats port (15020) with fake hooks on a real server on port 0: health, metrics, and the
 * rewritten kubelet probes forwarded to a real tiny app server.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import type { HttpEndpoint } from "@trellis/sidecar/admin/http-endpoint";
import { createStatsServer, type StatsHooks } from "@trellis/sidecar/admin/stats-server";
import { closeServer, listen } from "../../../helpers/servers.js";

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function call(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, headers, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** What the fake app saw of a probe. */
interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/** Fake hooks whose answers a test can change. */
class FakeStatsHooks implements StatsHooks {
  isReady = true;
  /** undefined makes live() throw. */
  isLive: boolean | undefined = true;
  ports: number[] = [];

  ready(): boolean {
    return this.isReady;
  }

  live(): boolean {
    if (this.isLive === undefined) throw new Error("liveness unknown");
    return this.isLive;
  }

  metrics(): string {
    return "trellis_xds_connected 1\n";
  }

  appPorts(): Iterable<number> {
    return this.ports;
  }
}

describe("stats server", () => {
  let app: Server;
  let appPort = 0;
  let hangingApp: Server;
  let hangingPort = 0;
  let deadPort = 0;
  const seen: Seen[] = [];
  const hooks = new FakeStatsHooks();
  let stats: HttpEndpoint;
  let port = 0;

  before(async () => {
    app = createServer((req, res) => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
      if (req.url?.startsWith("/healthz")) res.writeHead(204).end();
      else if (req.url === "/fail")
        res.writeHead(500, { "content-type": "text/plain" }).end("boom, secret detail");
      else res.writeHead(200).end("a body the probe must not return");
    });
    appPort = await listen(app);
    hangingApp = createServer(() => {
      // never answers
    });
    hangingPort = await listen(hangingApp);
    const dead = createServer();
    deadPort = await listen(dead);
    await closeServer(dead);
    stats = createStatsServer(hooks, { appHealthTimeoutMs: 300 });
    port = await stats.listen(0);
  });
  after(async () => {
    await stats.close();
    await closeServer(app);
    await closeServer(hangingApp, { timeoutMs: 100 });
  });
  beforeEach(() => {
    hooks.isReady = true;
    hooks.isLive = true;
    hooks.ports = [appPort, hangingPort, deadPort];
    seen.length = 0;
  });

  it("binds all interfaces (kubelet and Prometheus come from outside the pod)", () => {
    const address = (stats.server.address() as AddressInfo).address;
    assert.ok(address === "::" || address === "0.0.0.0", address);
  });

  it("GET /live is 200; 503 when the hook says so or throws", async () => {
    assert.equal((await call(port, "GET", "/live")).status, 200);
    hooks.isLive = false;
    assert.equal((await call(port, "GET", "/live")).status, 503);
    hooks.isLive = undefined;
    assert.equal((await call(port, "GET", "/live")).status, 503);
  });

  it("GET /ready follows the hook", async () => {
    assert.equal((await call(port, "GET", "/ready")).status, 200);
    hooks.isReady = false;
    assert.equal((await call(port, "GET", "/ready")).status, 503);
  });

  it("GET /metrics is the hook's text as Prometheus 0.0.4", async () => {
    const r = await call(port, "GET", "/metrics");
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    assert.equal(r.body, "trellis_xds_connected 1\n");
  });

  it("/app-health/<port>/<path> GETs the app and answers its status (204) with no body", async () => {
    const r = await call(port, "GET", `/app-health/${appPort}/healthz/deep?verbose=1`, {
      "x-probe": "liveness",
    });
    assert.equal(r.status, 204);
    assert.equal(r.body, "");
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.method, "GET");
    assert.equal(seen[0]?.url, "/healthz/deep?verbose=1");
    assert.equal(seen[0]?.headers["x-probe"], "liveness", "probe headers reach the app");
    assert.equal(seen[0]?.headers.host, `127.0.0.1:${appPort}`);
  });

  it("passes the app's 500 through without its body", async () => {
    const r = await call(port, "GET", `/app-health/${appPort}/fail`);
    assert.equal(r.status, 500);
    assert.equal(r.body, "");
  });

  it("drops the app's body on 200 too, and probes / when no path is given", async () => {
    const r = await call(port, "GET", `/app-health/${appPort}`);
    assert.equal(r.status, 200);
    assert.equal(r.body, "");
    assert.equal(seen[0]?.url, "/");
  });

  it("answers 404 for a port that is not an app port, without contacting it", async () => {
    hooks.ports = [1];
    const r = await call(port, "GET", `/app-health/${appPort}/healthz`);
    assert.equal(r.status, 404);
    assert.equal(seen.length, 0);
    assert.equal((await call(port, "GET", "/app-health/not-a-port/healthz")).status, 404);
  });

  it("answers 503 when nothing listens on the app port", async () => {
    const r = await call(port, "GET", `/app-health/${deadPort}/healthz`);
    assert.equal(r.status, 503);
    assert.equal(r.headers["x-trellis-error"], "upstream_connect_failure");
  });

  it("answers 503 when the app does not answer in time", async () => {
    const started = Date.now();
    const r = await call(port, "GET", `/app-health/${hangingPort}/healthz`);
    const took = Date.now() - started;
    assert.equal(r.status, 503);
    assert.equal(r.headers["x-trellis-error"], "upstream_timeout");
    assert.ok(took >= 250 && took < 2_000, `took ${took} ms with a 300 ms timeout`);
  });

  it("unknown paths are 404 and other methods 405", async () => {
    assert.equal(
      (await call(port, "GET", "/config_dump")).status,
      404,
      "admin routes are not on the stats port",
    );
    assert.equal((await call(port, "GET", "/app-health")).status, 404);
    const r = await call(port, "POST", `/app-health/${appPort}/healthz`);
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, "GET, HEAD");
    assert.equal(seen.length, 0);
    assert.equal((await call(port, "DELETE", "/ready")).status, 405);
  });
});
