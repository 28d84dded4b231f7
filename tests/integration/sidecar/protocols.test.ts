// HTTP through the mesh as an app sees it: an app calls `orders.shop` through its own sidecar
// (service web) and the orders sidecar delivers to the orders app — real control plane, real
// sidecar processes, real sockets. Each test names the user-visible promise it checks.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { type Chain, headerPairs, startChain, values, viaProxy } from "../../fixtures/sidecar/chain.js";
import { OP_BINARY, OP_TEXT, openWebSocket, serveWebSocketEcho } from "../../fixtures/sidecar/websocket.js";
import { metricSum, scrape } from "../../helpers/metrics.js";
import { closeServer, listen } from "../../helpers/servers.js";
import { waitFor, withDeadline } from "../../helpers/wait.js";

/** What the app recorded about one request. */
interface Seen {
  method: string;
  url: string;
  rawHeaders: string[];
  bodyLength: number;
  bodySha256: string;
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Response headers the app sends on /echo: duplicates and values that a careless proxy would mangle. */
const APP_RESPONSE_HEADERS: [string, string][] = [
  ["Set-Cookie", "a=1; Path=/; HttpOnly"],
  ["Set-Cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"],
  ["X-Dup", "one"],
  ["X-Dup", "two"],
  ["X-Odd", 'a, b;q=0.5 "quoted"  inner  spaces'],
  ["Content-Type", "application/json"],
];

/** Header names a proxy legitimately adds, removes or re-frames on the way (excluded from identity checks). */
const HOP_OR_OURS = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "upgrade",
  "host",
  "date",
  "x-forwarded-for",
  "x-request-id",
  "content-length",
]);

/** name → values in order, without hop-by-hop / proxy-added headers. */
function comparable(raw: readonly string[], extraDrop: readonly string[] = []): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [n, v] of headerPairs(raw)) {
    if (HOP_OR_OURS.has(n) || extraDrop.includes(n) || n.startsWith(":")) continue;
    const list = out[n];
    if (list === undefined) out[n] = [v];
    else list.push(v);
  }
  return out;
}

describe("sidecar chain: HTTP/1.1, h2c, 100-continue, streaming, WebSocket, CONNECT", () => {
  let chain: Chain;
  let app: http.Server;
  let appPort = 0;
  let echo: net.Server;
  let echoPort = 0;
  let authority = "";
  const seen: Seen[] = [];
  const wsSeen: http.IncomingMessage[] = [];
  /** Lockstep side channel: the client reports chunk k, the app waits for it before sending k+1. */
  const reported = new Map<number, () => void>();
  const lockstepLog: string[] = [];

  before(async () => {
    app = http.createServer((req, res) => serveApp(req, res));
    app.on("checkContinue", (req: http.IncomingMessage, res: http.ServerResponse) => {
      // The app decides to accept the body: 100 goes back only now, so the client must not have
      // sent its body yet — proven below by the client waiting for the 'continue' event.
      lockstepLog.push(`continue:${req.headers.expect}`);
      res.writeContinue();
      serveApp(req, res);
    });
    serveWebSocketEcho(app, (req) => wsSeen.push(req));
    appPort = await listen(app);
    echo = net.createServer((s) => {
      s.on("error", () => s.destroy());
      s.pipe(s);
    });
    echoPort = await listen(echo);
    authority = `orders.shop:${appPort}`;
    chain = await startChain(String(appPort));
  });

  after(async () => {
    await chain?.stop();
    await Promise.all([closeServer(app, { timeoutMs: 1000 }), closeServer(echo, { timeoutMs: 1000 })]);
  });

  function serveApp(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? "/";
    if (url.startsWith("/lockstep"))
      return void lockstep(res, Number(new URL(url, "http://x").searchParams.get("n")));
    if (url.startsWith("/early")) {
      // Answers without reading the body (an auth failure, a 413): common, and easy to get wrong.
      res.writeHead(401, { "content-type": "text/plain" });
      res.end("denied before reading the body");
      return;
    }
    if (url.startsWith("/mirror")) {
      // Streams the request body straight back: a response body as big as the request's.
      res.writeHead(200, { "content-type": "application/octet-stream" });
      req.pipe(res);
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const s: Seen = {
        method: req.method ?? "",
        url,
        rawHeaders: req.rawHeaders,
        bodyLength: body.length,
        bodySha256: sha256(body),
      };
      seen.push(s);
      const out = Buffer.from(JSON.stringify(s));
      const flat: string[] = [];
      for (const [n, v] of APP_RESPONSE_HEADERS) flat.push(n, v);
      flat.push("Content-Length", String(out.length));
      res.writeHead(200, flat);
      res.end(out);
    });
  }

  async function lockstep(res: http.ServerResponse, n: number): Promise<void> {
    res.writeHead(200, { "content-type": "text/plain" });
    for (let k = 0; k < n; k++) {
      const ack = new Promise<void>((resolve) => reported.set(k, resolve));
      lockstepLog.push(`sent:${k}`);
      res.write(`chunk-${k}\n`);
      // No timeout here on purpose: a proxy that buffers chunk k would leave the client waiting,
      // and the test's own deadline reports it.
      const timedOut = await Promise.race([
        ack.then(() => false),
        new Promise<boolean>((r) => setTimeout(() => r(true), 5000).unref()),
      ]);
      if (timedOut) {
        res.end(`TIMEOUT waiting for the client to report chunk ${k}\n`);
        return;
      }
    }
    res.end();
  }

  /** The client side of lockstep: reports each complete line as it arrives. */
  function reportLines(): (c: Buffer) => void {
    let text = "";
    return (c: Buffer) => {
      text += c.toString();
      let nl = text.indexOf("\n");
      while (nl >= 0) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        const m = /^chunk-(\d+)$/.exec(line);
        if (m) {
          const k = Number(m[1]);
          lockstepLog.push(`got:${k}`);
          reported.get(k)?.();
        } else lockstepLog.push(`line:${line}`);
        nl = text.indexOf("\n");
      }
    };
  }

  it("HTTP/1.1 GET: request and response header values, duplicates included, arrive identical", async () => {
    // What a user relies on: repeated headers (Set-Cookie!) keep every value, in order; values with
    // commas, quotes and inner spaces are not rewritten; hop-by-hop headers do not leak through.
    const sent = [
      "X-Multi",
      "one",
      "X-Multi",
      "two, three",
      "X-Value",
      'a, b;q=0.5 "quoted"  inner  spaces',
      "Accept",
      "application/json",
      "User-Agent",
      "trellis-test/1",
      "X-Request-Id",
      "req-fixed-1",
      "X-Forwarded-For",
      "203.0.113.7",
      "Connection",
      "keep-alive, X-Hop",
      "X-Hop",
      "must-not-arrive",
      "Keep-Alive",
      "timeout=5",
      "Proxy-Connection",
      "keep-alive",
      "Host",
      authority,
    ];
    const before = seen.length;
    const r = await viaProxy(chain, { authority, path: "/echo/get?q=1&q=2", headers: sent });
    assert.equal(r.status, 200, r.body.toString());
    const s = seen[before] as Seen;
    assert.equal(s.method, "GET");
    assert.equal(s.url, "/echo/get?q=1&q=2");
    // Request: identical except hop-by-hop; x-request-id kept as the client set it; X-Forwarded-For
    // appended to (the client's value first).
    assert.deepEqual(comparable(s.rawHeaders), comparable(sent, ["x-hop"]));
    assert.deepEqual(values(s.rawHeaders, "x-hop"), []);
    assert.deepEqual(values(s.rawHeaders, "x-request-id"), ["req-fixed-1"]);
    const xff = values(s.rawHeaders, "x-forwarded-for");
    assert.equal(xff.length, 1);
    assert.match(xff[0] as string, /^203\.0\.113\.7, 127\.0\.0\.1(, 127\.0\.0\.1)?$/);
    assert.deepEqual(values(s.rawHeaders, "host"), [authority]);
    // Response: every app header arrives, duplicates as separate lines in order.
    const appFlat = APP_RESPONSE_HEADERS.flat();
    assert.deepEqual(comparable(r.rawHeaders), comparable(appFlat));
    assert.deepEqual(values(r.rawHeaders, "set-cookie"), [
      "a=1; Path=/; HttpOnly",
      "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
    ]);
  });

  it("HTTP/1.1: x-request-id is added when the app sent none", async () => {
    const before = seen.length;
    const r = await viaProxy(chain, { authority, path: "/echo/rid" });
    assert.equal(r.status, 200);
    const ids = values((seen[before] as Seen).rawHeaders, "x-request-id");
    assert.equal(ids.length, 1);
    assert.ok((ids[0] as string).length > 0);
  });

  it("HTTP/1.1 POST: a Content-Length body and a chunked body arrive byte-identical; a 1 MiB response body comes back whole", async () => {
    const body = randomBytes(256 * 1024);
    const before = seen.length;
    const r1 = await viaProxy(chain, {
      method: "POST",
      authority,
      path: "/echo/post",
      headers: { "content-type": "application/octet-stream", "content-length": String(body.length) },
      body,
    });
    assert.equal(r1.status, 200);
    const s1 = seen[before] as Seen;
    assert.equal(s1.bodyLength, body.length);
    assert.equal(s1.bodySha256, sha256(body));
    assert.deepEqual(values(s1.rawHeaders, "content-type"), ["application/octet-stream"]);

    // Chunked upload, streamed back by the app: request and response bodies both intact.
    const big = randomBytes(1024 * 1024);
    const mirrored = await new Promise<Buffer>((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: chain.client.ports.outbound,
          method: "PUT",
          path: `http://${authority}/mirror`,
          headers: { "transfer-encoding": "chunked" },
          agent: false,
        },
        (res) => {
          const parts: Buffer[] = [];
          res.on("data", (c: Buffer) => parts.push(c));
          res.on("end", () => resolve(Buffer.concat(parts)));
        },
      );
      req.on("error", reject);
      for (let i = 0; i < big.length; i += 100_000) req.write(big.subarray(i, i + 100_000));
      req.end();
    });
    assert.equal(mirrored.length, big.length);
    assert.ok(mirrored.equals(big), "mirrored body differs");
  });

  it("an app that answers before reading the request body: the client gets that answer (HTTP/1.1 and h2c)", async () => {
    // A proxy that tears the connection down when the upstream stops reading gives the client
    // ECONNRESET (HTTP/1.1) or a stream error (HTTP/2) instead of the app's 401.
    const body = Buffer.alloc(8 * 1024 * 1024, 7);
    for (let i = 0; i < 2; i++) {
      const r = await withDeadline(
        viaProxy(chain, {
          method: "POST",
          authority,
          path: "/early",
          headers: { "content-length": String(body.length) },
          body,
        }),
        15_000,
        "early answer over HTTP/1.1",
      );
      assert.equal(r.status, 401);
      assert.equal(r.body.toString(), "denied before reading the body");
    }
    const session = http2.connect(`http://127.0.0.1:${chain.client.ports.outbound}`);
    try {
      const r = await withDeadline(
        new Promise<{ status: unknown; text: string; rst: number | undefined; err?: string }>((resolve) => {
          const stream = session.request({ ":method": "POST", ":path": "/early", ":authority": authority });
          let status: unknown;
          let text = "";
          let err: string | undefined;
          stream.on("response", (h) => {
            status = h[":status"];
          });
          stream.on("data", (c: Buffer) => {
            text += c.toString();
          });
          stream.on("error", (e) => {
            err = e.message;
          });
          stream.on("close", () =>
            resolve({ status, text, rst: stream.rstCode, ...(err !== undefined ? { err } : {}) }),
          );
          // Written with backpressure (one 8 MB write would exceed the client's own session memory).
          void (async () => {
            const block = body.subarray(0, 64 * 1024);
            for (let sent = 0; sent < body.length && !stream.closed; sent += block.length) {
              if (!stream.write(block)) await new Promise((resume) => stream.once("drain", resume));
            }
            if (!stream.closed) stream.end();
          })();
        }),
        15_000,
        "early answer over h2c",
      );
      assert.equal(r.status, 401);
      assert.equal(r.text, "denied before reading the body");
      assert.equal(r.err, undefined, "the stream ends without error");
      assert.equal(r.rst ?? 0, 0, "at most RST_STREAM(NO_ERROR) after the complete answer");
    } finally {
      session.close();
    }
  });

  it("h2c from the app (prior knowledge to the outbound port): headers, duplicates and bodies arrive identical", async () => {
    const session = http2.connect(`http://127.0.0.1:${chain.client.ports.outbound}`);
    try {
      const body = randomBytes(200_000);
      const before = seen.length;
      const { headers, raw, data } = await new Promise<{
        headers: http2.IncomingHttpHeaders;
        raw: string[];
        data: Buffer;
      }>((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/echo/h2",
          ":authority": authority,
          "x-multi": ["one", "two"],
          "x-value": 'a, b;q=0.5 "quoted"',
          "content-type": "application/octet-stream",
        });
        let h: http2.IncomingHttpHeaders = {};
        let rh: string[] = [];
        stream.on("response", (hh, _flags, rawHeaders: string[]) => {
          h = hh;
          rh = rawHeaders;
        });
        const parts: Buffer[] = [];
        stream.on("data", (c: Buffer) => parts.push(c));
        stream.on("end", () => resolve({ headers: h, raw: rh, data: Buffer.concat(parts) }));
        stream.on("error", reject);
        stream.end(body);
      });
      assert.equal(headers[":status"], 200, data.toString());
      const s = seen[before] as Seen;
      assert.equal(s.method, "POST");
      assert.equal(s.url, "/echo/h2");
      assert.equal(s.bodySha256, sha256(body));
      assert.deepEqual(values(s.rawHeaders, "x-multi"), ["one", "two"]);
      assert.deepEqual(values(s.rawHeaders, "x-value"), ['a, b;q=0.5 "quoted"']);
      assert.deepEqual(values(s.rawHeaders, "host"), [authority]);
      assert.deepEqual(comparable(raw), comparable(APP_RESPONSE_HEADERS.flat()));
    } finally {
      session.close();
    }
  });

  it("Expect: 100-continue: the client gets 100 from the app before it sends its body, and the app gets the body", async () => {
    const body = Buffer.from("sent only after 100 Continue");
    const before = seen.length;
    const events: string[] = [];
    const status = await withDeadline(
      new Promise<number>((resolve, reject) => {
        const req = http.request({
          host: "127.0.0.1",
          port: chain.client.ports.outbound,
          method: "POST",
          path: `http://${authority}/echo/continue`,
          headers: { expect: "100-continue", "content-length": String(body.length) },
          agent: false,
        });
        req.on("continue", () => {
          events.push("100");
          req.end(body);
        });
        req.on("response", (res) => {
          events.push(String(res.statusCode));
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
        req.flushHeaders();
      }),
      10_000,
      "100-continue exchange",
    );
    assert.equal(status, 200);
    assert.deepEqual(events, ["100", "200"]);
    assert.ok(lockstepLog.includes("continue:100-continue"), "the app saw Expect: 100-continue");
    const s = seen[before] as Seen;
    assert.equal(s.bodySha256, sha256(body));
  });

  it("HTTP/1.1 server-streamed chunks arrive one at a time (the app sends chunk k+1 only after the client reported chunk k)", async () => {
    lockstepLog.length = 0;
    const n = 8;
    const r = await withDeadline(
      new Promise<string>((resolve, reject) => {
        const req = http.request(
          {
            host: "127.0.0.1",
            port: chain.client.ports.outbound,
            path: `http://${authority}/lockstep?n=${n}`,
            agent: false,
          },
          (res) => {
            const onData = reportLines();
            let all = "";
            res.on("data", (c: Buffer) => {
              all += c.toString();
              onData(c);
            });
            res.on("end", () => resolve(all));
          },
        );
        req.on("error", reject);
        req.end();
      }),
      30_000,
      "lockstep over HTTP/1.1",
    );
    assert.doesNotMatch(r, /TIMEOUT/, `a chunk was held back by the proxy: ${lockstepLog.join(" ")}`);
    const expected: string[] = [];
    for (let k = 0; k < n; k++) expected.push(`sent:${k}`, `got:${k}`);
    assert.deepEqual(lockstepLog, expected);
  });

  it("h2c server-streamed chunks arrive one at a time", async () => {
    lockstepLog.length = 0;
    const n = 8;
    const session = http2.connect(`http://127.0.0.1:${chain.client.ports.outbound}`);
    try {
      const r = await withDeadline(
        new Promise<string>((resolve, reject) => {
          const stream = session.request({ ":path": `/lockstep?n=${n}`, ":authority": authority });
          const onData = reportLines();
          let all = "";
          stream.on("data", (c: Buffer) => {
            all += c.toString();
            onData(c);
          });
          stream.on("end", () => resolve(all));
          stream.on("error", reject);
          stream.end();
        }),
        30_000,
        "lockstep over h2c",
      );
      assert.doesNotMatch(r, /TIMEOUT/, `a chunk was held back by the proxy: ${lockstepLog.join(" ")}`);
      const expected: string[] = [];
      for (let k = 0; k < n; k++) expected.push(`sent:${k}`, `got:${k}`);
      assert.deepEqual(lockstepLog, expected);
    } finally {
      session.close();
    }
  });

  it("WebSocket: the upgrade crosses the chain (extended CONNECT between sidecars) and messages echo both ways byte-identical", async () => {
    // On a caller sidecar that has not routed to orders.shop yet: the upgrade itself waits for
    // the on-demand route subscription, like any first request.
    const fresh = await chain.freshClient();
    const before = wsSeen.length;
    const ws = await withDeadline(
      openWebSocket(fresh.ports.outbound, authority, "/ws?room=1"),
      10_000,
      "websocket handshake",
    ).catch(async (err: unknown) => {
      await fresh.stop();
      throw err;
    });
    try {
      assert.equal(ws.response.headers.get("x-app"), "ws-echo", "the app's 101 headers arrive");
      const req = wsSeen[before] as http.IncomingMessage;
      assert.equal(req.url, "/ws?room=1");
      assert.equal(req.headers["x-client"], "ws-test", "the client's headers reach the app");
      assert.equal(req.headers.host, authority);
      assert.equal(req.headers.upgrade, "websocket");
      assert.ok(typeof req.headers["x-request-id"] === "string", "x-request-id added");
      assert.match(String(req.headers["x-forwarded-for"]), /^127\.0\.0\.1/);
      const text = Buffer.from("hello über mesh");
      ws.send(OP_TEXT, text);
      const f1 = await withDeadline(ws.next(), 5000, "text echo");
      assert.equal(f1.opcode, OP_TEXT);
      assert.ok(f1.payload.equals(text));
      // 200 KB binary message (64-bit length form), then many small ones in a burst.
      const bin = randomBytes(200_000);
      ws.send(OP_BINARY, bin);
      const f2 = await withDeadline(ws.next(), 5000, "binary echo");
      assert.equal(f2.opcode, OP_BINARY);
      assert.ok(f2.payload.equals(bin));
      for (let i = 0; i < 50; i++) ws.send(OP_TEXT, Buffer.from(`m${i}`));
      for (let i = 0; i < 50; i++) {
        const f = await withDeadline(ws.next(), 5000, `burst echo ${i}`);
        assert.equal(f.payload.toString(), `m${i}`);
      }
    } finally {
      await ws.close();
      await fresh.stop();
    }
    // The server sidecar records each tunnel once, as a 101, when it ends.
    await waitFor(
      async () =>
        metricSum(await scrape(chain.server), "trellis_requests_total", {
          direction: "inbound",
          response_code: "101",
        }) >= 1,
      { what: "the WebSocket tunnel recorded at the server sidecar", timeoutMs: 5000, intervalMs: 50 },
    );
  });

  it("CONNECT to a non-mesh TCP server is a raw pass-through tunnel: bytes echo", async () => {
    const socket = net.connect({ host: "127.0.0.1", port: chain.client.ports.outbound });
    try {
      const payload = randomBytes(300_000);
      const got = await withDeadline(
        new Promise<Buffer>((resolve, reject) => {
          let buf = Buffer.alloc(0);
          let established = false;
          socket.on("data", (c: Buffer) => {
            buf = Buffer.concat([buf, c]);
            if (!established) {
              const end = buf.indexOf("\r\n\r\n");
              if (end < 0) return;
              const head = buf.subarray(0, end).toString("latin1");
              if (!/^HTTP\/1\.1 200/.test(head)) return reject(new Error(`CONNECT refused: ${head}`));
              established = true;
              buf = buf.subarray(end + 4);
              socket.write(payload);
            }
            if (established && buf.length >= payload.length) resolve(buf);
          });
          socket.on("error", reject);
          socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`);
        }),
        10_000,
        "tunnel echo",
      );
      assert.ok(got.equals(payload), "the echoed bytes differ from the bytes sent");
    } finally {
      socket.destroy();
    }
  });
});
