/**
 * The admin port (127.0.0.1:15000) with fake hooks, on a real server on port 0: every route, the
 * 404 / 405 answers, hooks that fail, and the guards against browsers reaching it.
 */
import assert from "node:assert/strict";
import { type IncomingHttpHeaders, request } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { type AdminHooks, createAdminServer } from "@trellis/sidecar/admin/admin-server";
import type { HttpEndpoint } from "@trellis/sidecar/admin/http-endpoint";

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request on a fresh connection (no keep-alive, so nothing outlives the test). */
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

/** Fake hooks whose answers a test can change, recording drain calls. */
class FakeHooks implements AdminHooks {
  isReady = true;
  drains = 0;
  drainResult: "ok" | "throw" | "reject" = "ok";
  errors: Array<[unknown, string]> = [];
  dump: unknown = {
    version: 7n,
    clusters: new Map([["orders.shop", { endpoints: new Set(["10.0.0.1:15006"]) }]]),
  };

  configDump(): unknown {
    if (this.dump === "THROW") throw new Error("snapshot unavailable");
    return this.dump;
  }

  clusters(): unknown {
    return [{ name: "orders.shop", healthy: 2, ejected: 0, activeRequests: 1n }];
  }

  drain(): void | Promise<void> {
    this.drains++;
    if (this.drainResult === "throw") throw new Error("already stopped");
    if (this.drainResult === "reject") return Promise.reject(new Error("deregister failed"));
    return undefined;
  }

  ready(): boolean {
    return this.isReady;
  }

  metrics(): Promise<string> {
    return Promise.resolve("# HELP up x\n# TYPE up gauge\nup 1\n");
  }

  onError(err: unknown, route: string): void {
    this.errors.push([err, route]);
  }
}

describe("admin server", () => {
  let hooks: FakeHooks;
  let admin: HttpEndpoint;
  let port = 0;

  before(async () => {
    hooks = new FakeHooks();
    admin = createAdminServer(hooks);
    port = await admin.listen(0);
  });
  after(() => admin.close());
  beforeEach(() => {
    hooks.isReady = true;
    hooks.drains = 0;
    hooks.drainResult = "ok";
    hooks.errors = [];
    hooks.dump = {
      version: 7n,
      clusters: new Map([["orders.shop", { endpoints: new Set(["10.0.0.1:15006"]) }]]),
    };
  });

  it("binds 127.0.0.1 only", () => {
    assert.equal((admin.server.address() as AddressInfo).address, "127.0.0.1");
    assert.notEqual(port, 0, "port 0 resolves to the bound port");
  });

  it("GET /config_dump is JSON, with bigint, Map and Set made readable", async () => {
    const r = await call(port, "GET", "/config_dump");
    assert.equal(r.status, 200);
    assert.match(r.headers["content-type"] ?? "", /^application\/json/);
    assert.deepEqual(JSON.parse(r.body), {
      version: "7",
      clusters: { "orders.shop": { endpoints: ["10.0.0.1:15006"] } },
    });
  });

  it("GET /clusters is JSON", async () => {
    const r = await call(port, "GET", "/clusters?format=json");
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), [
      { name: "orders.shop", healthy: 2, ejected: 0, activeRequests: "1" },
    ]);
  });

  it("POST /drain starts the drain and answers 202", async () => {
    const r = await call(port, "POST", "/drain");
    assert.equal(r.status, 202);
    assert.equal(hooks.drains, 1);
  });

  it("POST /drain whose hook rejects still answers 202 and reports the error", async () => {
    hooks.drainResult = "reject";
    const r = await call(port, "POST", "/drain");
    assert.equal(r.status, 202);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(hooks.errors.length, 1);
    assert.equal(hooks.errors[0]?.[1], "/drain");
  });

  it("POST /drain whose hook throws answers 500", async () => {
    hooks.drainResult = "throw";
    const r = await call(port, "POST", "/drain");
    assert.equal(r.status, 500);
    assert.match(r.body, /already stopped/);
  });

  it("GET /ready is 200 when ready and 503 when not", async () => {
    assert.equal((await call(port, "GET", "/ready")).status, 200);
    hooks.isReady = false;
    const r = await call(port, "GET", "/ready");
    assert.equal(r.status, 503);
    assert.equal(r.body, "not ready\n");
  });

  it("HEAD /ready answers the status without a body", async () => {
    const r = await call(port, "HEAD", "/ready");
    assert.equal(r.status, 200);
    assert.equal(r.body, "");
  });

  it("GET /metrics is the hook's Prometheus text", async () => {
    const r = await call(port, "GET", "/metrics");
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    assert.equal(r.body, "# HELP up x\n# TYPE up gauge\nup 1\n");
  });

  it("unknown paths are 404, whatever the method", async () => {
    for (const [method, path] of [
      ["GET", "/"],
      ["GET", "/stats"],
      ["POST", "/quitquitquit"],
      ["GET", "/config_dump/extra"],
    ] as const) {
      assert.equal((await call(port, method, path)).status, 404, `${method} ${path}`);
    }
  });

  it("a known path with the wrong method is 405 with Allow", async () => {
    const getDrain = await call(port, "GET", "/drain");
    assert.equal(getDrain.status, 405);
    assert.equal(getDrain.headers.allow, "POST");
    assert.equal(hooks.drains, 0, "a GET must never drain");
    for (const path of ["/config_dump", "/clusters", "/ready", "/metrics"]) {
      const r = await call(port, "POST", path);
      assert.equal(r.status, 405, path);
      assert.equal(r.headers.allow, "GET, HEAD");
    }
  });

  it("a hook that throws gives 500 and the server keeps serving", async () => {
    hooks.dump = "THROW";
    const r = await call(port, "GET", "/config_dump");
    assert.equal(r.status, 500);
    assert.match(r.body, /snapshot unavailable/);
    assert.equal((await call(port, "GET", "/ready")).status, 200);
  });

  it("a dump that cannot be serialised (a cycle) gives 500", async () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    hooks.dump = cyclic;
    assert.equal((await call(port, "GET", "/config_dump")).status, 500);
  });

  it("refuses a non-loopback Host (DNS rebinding) with 403", async () => {
    const r = await call(port, "GET", "/config_dump", { host: `attacker.example:${port}` });
    assert.equal(r.status, 403);
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]) {
      assert.equal((await call(port, "GET", "/ready", { host })).status, 200, host);
    }
  });

  it("refuses POST /drain from a browser page (Origin header) with 403, without draining", async () => {
    const r = await call(port, "POST", "/drain", { origin: "https://attacker.example" });
    assert.equal(r.status, 403);
    assert.equal(hooks.drains, 0);
  });
});

describe("admin server lifecycle", () => {
  it("close() resolves while a keep-alive connection is open, and stops accepting", async () => {
    const admin = createAdminServer(new FakeHooks());
    const port = await admin.listen(0);
    const keepAlive = await new Promise<Reply>((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, path: "/ready", headers: { connection: "keep-alive" } },
        (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: "" }));
        },
      );
      req.on("error", reject);
      req.end();
    });
    assert.equal(keepAlive.status, 200);
    const started = Date.now();
    await admin.close(5_000);
    assert.ok(Date.now() - started < 2_000, "idle keep-alive connections do not hold up close");
    await assert.rejects(call(port, "GET", "/ready"), /ECONNREFUSED/);
  });

  it("listen() rejects when the port is taken", async () => {
    const a = createAdminServer(new FakeHooks());
    const port = await a.listen(0);
    const b = createAdminServer(new FakeHooks());
    await assert.rejects(b.listen(port), /EADDRINUSE/);
    await a.close();
  });
});
