// The inbound proxy's local rate limit, on a real Frontend with a real app behind it and a frozen
// clock: keying by the identity the `peerIdentity` seam gives (callers come from different
// loopback addresses, mapped to identities the way mTLS will map certificates), the 429 with its
// headers for HTTP/1 and gRPC callers, WebSocket streams (extended CONNECT) sharing the bucket,
// and the decision counters.
import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { AppClient } from "@trellis/sidecar/proxy/app-client";
import { Frontend } from "@trellis/sidecar/proxy/frontend";
import { NO_HOOKS, type ProxyHooks } from "@trellis/sidecar/proxy/hooks";
import { InboundProxy, type InboundRuntime } from "@trellis/sidecar/proxy/inbound";
import { type LocalLimits, LocalRateLimiter } from "@trellis/sidecar/resilience/local-rate-limit";
import { closeServer } from "../../../helpers/servers.js";

const ALICE = "spiffe://cluster.local/ns/shop/sa/alice";
const BOB = "spiffe://cluster.local/ns/shop/sa/bob";
/** Which "certificate" each source address presents. */
const IDENTITIES = new Map([
  ["127.0.0.2", ALICE],
  ["127.0.0.3", BOB],
]);

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

describe("inbound proxy: local rate limit", () => {
  let app: http.Server;
  let appPort = 0;
  /** Requests the app received (its ledger), and WebSocket upgrades it answered. */
  let ledger = 0;
  let upgrades = 0;
  let frontend: Frontend;
  let port = 0;
  let appClient: AppClient;
  let runtime: InboundRuntime | undefined;
  const counts = new Map<string, number>();
  const replies: string[] = [];
  let policies = 0;

  /** A runtime whose only port is limited by a fresh limiter on a frozen clock. */
  function limit(l: LocalLimits): LocalRateLimiter {
    const limiter = new LocalRateLimiter(`shop/limits-${++policies}`, l, () => 0);
    const p = { port: appPort, protocol: "http" as const, localLimit: limiter };
    runtime = { service: "orders", namespace: "shop", ports: new Map([[appPort, p]]), defaultPort: p };
    return limiter;
  }

  function get(localAddress: string, path = "/"): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port, path, localAddress, agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on("error", reject);
      req.end();
    });
  }

  async function h2(headers: http2.OutgoingHttpHeaders): Promise<http2.IncomingHttpHeaders> {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      await new Promise<void>((resolve, reject) => {
        session.once("remoteSettings", () => resolve());
        session.once("error", reject);
      });
      return await new Promise((resolve, reject) => {
        const stream = session.request(headers, { endStream: headers[":method"] !== "CONNECT" });
        stream.once("response", (h) => {
          resolve(h);
          stream.close();
        });
        stream.once("error", reject);
      });
    } finally {
      session.close();
    }
  }

  const websocket = () =>
    h2({
      ":method": "CONNECT",
      ":protocol": "websocket",
      ":scheme": "http",
      ":path": "/ws",
      ":authority": "orders.shop",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    });

  before(async () => {
    app = http.createServer((req, res) => {
      ledger++;
      req.resume();
      res.writeHead(200, { "x-app": "orders" }).end("ok");
    });
    app.on("upgrade", (_req, socket) => {
      upgrades++;
      socket.end(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n" +
          "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
      );
    });
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    appPort = (app.address() as AddressInfo).port;
    appClient = new AppClient({ host: "127.0.0.1" });
    const hooks: ProxyHooks = {
      ...NO_HOOKS,
      inbound: (_rt, status, reason) => {
        if (reason !== "") replies.push(`${status} ${reason}`);
      },
    };
    const proxy = new InboundProxy({
      runtime: () => runtime,
      app: appClient,
      hooks,
      peerIdentity: (socket) => IDENTITIES.get(socket?.remoteAddress ?? ""),
      rateLimitCounter: (policy, decision) => ({
        inc: () => counts.set(`${policy} ${decision}`, (counts.get(`${policy} ${decision}`) ?? 0) + 1),
      }),
    });
    frontend = new Frontend({
      name: "inbound",
      onRequest: proxy.handle,
      onStreamConnect: proxy.handleConnect,
    });
    port = await frontend.listen(0, "127.0.0.1");
  });

  after(async () => {
    await frontend?.close();
    await appClient?.close();
    if (app !== undefined) await closeServer(app, { timeoutMs: 2000 });
  });

  it("keys perIdentity buckets by the peer identity; callers without one share a bucket", async () => {
    const limiter = limit({ requestsPerSecond: 1, burst: 2, perIdentity: true });
    const before = ledger;
    const statuses = async (from: string, n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await get(from)).status);
      return out;
    };
    assert.deepEqual(await statuses("127.0.0.2", 3), [200, 200, 429], "alice");
    assert.deepEqual(await statuses("127.0.0.3", 3), [200, 200, 429], "bob: alice's bucket is not his");
    assert.deepEqual(await statuses("127.0.0.1", 1), [200], "anonymous");
    assert.deepEqual(await statuses("127.0.0.4", 2), [200, 429], "another anonymous caller: the same bucket");
    assert.equal(ledger - before, 6, "the app saw exactly the admitted requests");
    assert.equal(limiter.identityBuckets, 2);
    assert.equal(counts.get(`${limiter.name} allowed`), 6);
    assert.equal(counts.get(`${limiter.name} limited`), 3);
  });

  it("answers 429 rate_limited with the four headers, without reaching the app", async () => {
    limit({ requestsPerSecond: 1, burst: 2, perIdentity: false });
    assert.equal((await get("127.0.0.1")).status, 200);
    assert.equal((await get("127.0.0.1")).status, 200);
    const before = ledger;
    replies.length = 0;
    const r = await get("127.0.0.1");
    assert.equal(r.status, 429);
    assert.equal(r.headers["x-trellis-error"], "rate_limited");
    assert.equal(r.headers["ratelimit-limit"], "2");
    assert.equal(r.headers["ratelimit-remaining"], "0");
    assert.equal(r.headers["ratelimit-reset"], "2");
    assert.equal(r.headers["retry-after"], "1");
    assert.match(r.body, /^rate_limited: local rate limit of shop\/limits-\d+ exceeded/);
    assert.equal(ledger, before);
    assert.deepEqual(replies, ["429 rate_limited"]);
  });

  it("admitted responses carry no RateLimit headers (the app's answer passes unchanged)", async () => {
    limit({ requestsPerSecond: 1, burst: 5, perIdentity: false });
    const r = await get("127.0.0.1");
    assert.equal(r.status, 200);
    assert.equal(r.headers["x-app"], "orders");
    for (const h of ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after"])
      assert.equal(r.headers[h], undefined, h);
  });

  it("gRPC callers get RESOURCE_EXHAUSTED, trailers-only, with the headers", async () => {
    limit({ requestsPerSecond: 0.5, burst: 0, perIdentity: false });
    assert.equal((await get("127.0.0.1")).status, 200);
    const h = await h2({
      ":method": "POST",
      ":path": "/pkg.Svc/Call",
      "content-type": "application/grpc",
      te: "trailers",
    });
    assert.equal(h[":status"], 200);
    assert.equal(h["grpc-status"], "8");
    assert.equal(h["x-trellis-error"], "rate_limited");
    assert.equal(h["ratelimit-limit"], "1");
    assert.equal(h["ratelimit-remaining"], "0");
    assert.equal(h["ratelimit-reset"], "2");
    assert.equal(h["retry-after"], "2");
  });

  it("WebSocket streams (extended CONNECT) take from the same bucket", async () => {
    const limiter = limit({ requestsPerSecond: 1, burst: 2, perIdentity: false });
    const upgradesBefore = upgrades;
    assert.equal((await websocket())[":status"], 200, "admitted: upgraded at the app");
    assert.equal(upgrades, upgradesBefore + 1);
    assert.equal((await get("127.0.0.1")).status, 200);
    const refused = await websocket();
    assert.equal(refused[":status"], 429);
    assert.equal(refused["x-trellis-error"], "rate_limited");
    assert.equal(refused["ratelimit-limit"], "2");
    assert.equal(refused["retry-after"], "1");
    assert.equal(upgrades, upgradesBefore + 1, "a refused stream never reaches the app");
    assert.equal((await get("127.0.0.1")).status, 429, "and HTTP is refused as well");
    assert.equal(counts.get(`${limiter.name} allowed`), 2);
    assert.equal(counts.get(`${limiter.name} limited`), 2);
  });
});
