/**
 * The shared listener in front of both proxies, on its own (real sockets, a stub request handler):
 * the header-read timeout really fires (Node only enforces it for servers that "listen"), refused
 * requests are reported for the local-reply metric and never reach the handler, CONNECT and
 * Upgrade get the same checks, an Upgrade other than websocket is served as a plain request, HTTP/2
 * streams reset as soon as they are opened never reach the handler, and drain closes idle
 * keep-alive connections.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import * as http from "node:http";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { Frontend } from "@trellis/sidecar/proxy/frontend";
import { headerValues, rawExchange } from "../../../fixtures/sidecar-hardening/raw-http.js";
import { waitFor, withDeadline } from "../../../helpers/wait.js";

const HEADER_TIMEOUT_MS = 300;

describe("Frontend", () => {
  let fe: Frontend;
  let port = 0;
  const handled: string[] = [];
  const upgrades: string[] = [];
  const connects: string[] = [];
  const localReplies: number[] = [];

  before(async () => {
    fe = new Frontend({
      name: "test",
      headerTimeoutMs: HEADER_TIMEOUT_MS,
      maxHeaders: 20,
      onRequest: (req, res) => {
        handled.push(`${req.url} upgrade=${req.headers.upgrade ?? ""}`);
        (res as http.ServerResponse).writeHead(200, { "content-length": "2" });
        res.end("ok");
      },
      onUpgrade: (req, socket) => {
        upgrades.push(req.url ?? "");
        socket.end("HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      },
      onConnect: (req, socket) => {
        connects.push(req.url ?? "");
        socket.end("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      },
      onLocalReply: (reason, status) => {
        assert.equal(reason, "bad_request");
        localReplies.push(status);
      },
    });
    port = await fe.listen(0, "127.0.0.1");
  });

  after(() => fe.close());

  it("a client that stalls inside its headers gets 408 within the header timeout + the 1 s check interval", async () => {
    const before = localReplies.length;
    const r = await rawExchange(port, "GET /stall HTTP/1.1\r\nHost: a\r\nX-Half: ", { timeoutMs: 5000 });
    assert.equal(r.status, 408);
    assert.deepEqual(headerValues(r, "x-trellis-error"), ["bad_request"]);
    assert.ok(r.elapsedMs >= HEADER_TIMEOUT_MS - 50, `after ${r.elapsedMs} ms`);
    assert.ok(r.elapsedMs < HEADER_TIMEOUT_MS + 1000 + 500, `after ${r.elapsedMs} ms`);
    assert.deepEqual(localReplies.slice(before), [408]);
    assert.ok(!handled.some((h) => h.startsWith("/stall")));
  });

  it("a parse error and a failed header check are answered, reported, and never handled", async () => {
    const before = localReplies.length;
    const nul = await rawExchange(port, "GET /nul HTTP/1.1\r\nHost: a\r\nX: a\u0000b\r\n\r\n");
    const many = await rawExchange(port, `GET /many HTTP/1.1\r\nHost: a\r\n${"X-A: 1\r\n".repeat(25)}\r\n`);
    assert.equal(nul.status, 400);
    assert.equal(many.status, 431);
    assert.deepEqual(headerValues(many, "x-trellis-error"), ["bad_request"]);
    assert.deepEqual(headerValues(many, "connection"), ["close"]);
    assert.deepEqual(localReplies.slice(before), [400, 431]);
    assert.ok(!handled.some((h) => h.startsWith("/nul") || h.startsWith("/many")));
  });

  it("Upgrade: h2c is served as a plain request (Upgrade ignored); Upgrade: websocket goes to the upgrade handler", async () => {
    const h2c = await rawExchange(
      port,
      "GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    assert.equal(h2c.status, 200);
    assert.ok(handled.includes("/h2c upgrade=h2c"));
    const ws = await rawExchange(
      port,
      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert.equal(ws.status, 501);
    assert.deepEqual(upgrades, ["/ws"]);
  });

  it("CONNECT and Upgrade requests get the header checks before their handlers", async () => {
    const up = await rawExchange(
      port,
      "GET /ws-bad HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    const conn = await rawExchange(port, "CONNECT x:1 HTTP/1.1\r\nHost: x:1\r\nConnection: host\r\n\r\n");
    assert.equal(up.status, 400);
    assert.equal(conn.status, 400);
    assert.deepEqual(headerValues(conn, "x-trellis-error"), ["bad_request"]);
    assert.ok(!upgrades.includes("/ws-bad"));
    assert.deepEqual(connects, []);
    const ok = await rawExchange(port, "CONNECT x:1 HTTP/1.1\r\nHost: x:1\r\n\r\n");
    assert.equal(ok.status, 502);
    assert.deepEqual(connects, ["x:1"]);
  });

  it("HTTP/2 requests reset in the same read as their HEADERS never reach the handler; others do", async () => {
    // Raw frames in ONE write (node:http2's client may split its output across writes): the
    // preface, SETTINGS, 50 × (HEADERS with END_STREAM, RST_STREAM CANCEL) as a rapid-reset
    // attacker sends them, then one request that is not reset.
    const frames: Buffer[] = [Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), h2Frame(0x4, 0, 0)];
    for (let i = 0; i < 50; i++) {
      const id = 1 + 2 * i;
      frames.push(h2Frame(0x1, 0x5, id, requestBlock(`/reset/${i}`)));
      frames.push(h2Frame(0x3, 0, id, Buffer.from([0, 0, 0, 0x8])));
    }
    frames.push(h2Frame(0x1, 0x5, 101, requestBlock("/h2-ok")));
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.on("error", () => {});
    socket.resume();
    try {
      await withDeadline(once(socket, "connect"), 5000, "connect");
      socket.write(Buffer.concat(frames));
      await waitFor(() => handled.some((h) => h.startsWith("/h2-ok")), {
        what: "the request that was not reset handled",
        timeoutMs: 5000,
      });
      assert.deepEqual(
        handled.filter((h) => h.startsWith("/reset/")),
        [],
      );
    } finally {
      socket.destroy();
    }
  });

  it("drain closes idle keep-alive connections", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // Resolves with the client's socket once the response is complete (not resolved with a
      // promise: that would be awaited through, i.e. wait for the close before drain is called).
      const socket = await new Promise<net.Socket>((resolve, reject) => {
        const req = http.get({ host: "127.0.0.1", port, path: "/keepalive", agent }, (res) => {
          res.resume();
          res.once("end", () => {
            const s = req.socket;
            if (s === null) reject(new Error("no socket"));
            else resolve(s);
          });
        });
        req.on("error", reject);
      });
      assert.ok(!socket.destroyed, "the connection is kept alive");
      let closed = false;
      socket.once("close", () => {
        closed = true;
      });
      fe.drain();
      await waitFor(() => closed, { what: "idle keep-alive connection closed by drain", timeoutMs: 2000 });
    } finally {
      agent.destroy();
    }
  });
});

/** One HTTP/2 frame (RFC 9113 §4.1). */
function h2Frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

/**
 * An HPACK header block for `GET http://a<path>` (RFC 7541): :method GET, :scheme http from the
 * static table (indexed), :authority and :path as literals without indexing (static name index), so
 * no dynamic-table state is shared between blocks.
 */
function requestBlock(path: string): Buffer {
  const literal = (nameIndex: number, value: string) =>
    Buffer.concat([Buffer.from([nameIndex, value.length]), Buffer.from(value, "latin1")]);
  return Buffer.concat([Buffer.from([0x82, 0x86]), literal(1, "a"), literal(4, path)]);
}
