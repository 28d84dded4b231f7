/**
 * Protocol sniffing on a fresh connection (real sockets on port 0): the HTTP/2 preface however it
 * is split, a TLS ClientHello's first byte, HTTP/1 at the first byte that differs from the preface,
 * the timeout for a client that sends nothing decisive — and the bytes read are given back, so the
 * chosen server sees the connection from its start.
 */
import assert from "node:assert/strict";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { type SniffedProtocol, sniff } from "@trellis/sidecar/proxy/sniff";
import { closeServer, listen } from "../../../helpers/servers.js";
import { withDeadline } from "../../../helpers/wait.js";

const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

interface Outcome {
  /** The decision, or "timeout", or "none" (the socket closed first). */
  result: SniffedProtocol | "timeout" | "none";
  /** ms from the server's accept to the decision. */
  afterMs: number;
  /** Everything the socket yields after the decision (pushed-back bytes first), for 100 ms. */
  replay: Buffer;
}

describe("sniff", () => {
  let server: net.Server;
  let port = 0;
  /** The next accepted connection's outcome. */
  let next: ((o: Outcome) => void) | undefined;
  const TIMEOUT_MS = 300;

  before(async () => {
    server = net.createServer((socket) => {
      const started = performance.now();
      const report = next;
      next = undefined;
      socket.on("error", () => {});
      let settled = false;
      const settle = (result: Outcome["result"]) => {
        if (settled) return;
        settled = true;
        const afterMs = performance.now() - started;
        if (result === "timeout" || result === "none") {
          report?.({ result, afterMs, replay: Buffer.alloc(0) });
          socket.destroy();
          return;
        }
        // The chosen server would read from here: collect what it would see.
        const chunks: Buffer[] = [];
        socket.on("data", (c: Buffer) => chunks.push(c));
        socket.resume();
        setTimeout(() => {
          report?.({ result, afterMs, replay: Buffer.concat(chunks) });
          socket.destroy();
        }, 100);
      };
      socket.once("close", () => setTimeout(() => settle("none"), TIMEOUT_MS + 200));
      sniff(socket, TIMEOUT_MS, settle, () => settle("timeout"));
    });
    port = await listen(server);
  });

  after(() => closeServer(server));

  /** Connects, writes `parts` with `gapMs` between them, then stays open (or closes if `close`). */
  async function exchange(parts: (string | Buffer)[], gapMs = 0, close = false): Promise<Outcome> {
    const outcome = new Promise<Outcome>((resolve) => {
      next = resolve;
    });
    const client = net.connect({ host: "127.0.0.1", port, noDelay: true });
    client.on("error", () => {});
    await new Promise<void>((resolve) => client.once("connect", () => resolve()));
    for (const p of parts) {
      client.write(p);
      if (gapMs > 0) await delay(gapMs);
    }
    if (close) client.end();
    try {
      return await withDeadline(outcome, 3000, "sniff outcome");
    } finally {
      client.destroy();
    }
  }

  it("the whole HTTP/2 preface in one write → h2, with the preface and what follows given back", async () => {
    const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    const o = await exchange([Buffer.concat([Buffer.from(PREFACE), settings])]);
    assert.equal(o.result, "h2");
    assert.deepEqual(o.replay, Buffer.concat([Buffer.from(PREFACE), settings]));
  });

  it("the preface one byte per write → h2, decided only after its last byte", async () => {
    const bytes = [...PREFACE].map((c) => c);
    const o = await exchange(bytes, 5);
    assert.equal(o.result, "h2");
    // 24 writes 5 ms apart: a decision before the last byte would come well under 24 × 5 ms.
    assert.ok(o.afterMs >= (bytes.length - 1) * 5 * 0.8, `decided after ${o.afterMs} ms`);
    assert.equal(o.replay.toString("latin1"), PREFACE);
  });

  it("the preface split in two (inside the request line) → h2", async () => {
    const o = await exchange([PREFACE.slice(0, 7), PREFACE.slice(7)], 20);
    assert.equal(o.result, "h2");
    assert.equal(o.replay.toString("latin1"), PREFACE);
  });

  it("an HTTP/1 request → http1 at its first byte, given back whole", async () => {
    const o = await exchange(["G", "ET / HTTP/1.1\r\nHost: a\r\n\r\n"], 50);
    assert.equal(o.result, "http1");
    assert.ok(o.afterMs < 50, `decided after ${o.afterMs} ms (should not wait for more bytes)`);
    assert.equal(o.replay.toString("latin1"), "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  });

  it("an HTTP/1 request that starts like the preface (PRI * HTTP/1.1) → http1 where it differs", async () => {
    const o = await exchange(["PRI * HTTP/1.1\r\n\r\n"]);
    assert.equal(o.result, "http1");
    assert.equal(o.replay.toString("latin1"), "PRI * HTTP/1.1\r\n\r\n");
  });

  it("a TLS record (first byte 0x16) → tls, given back", async () => {
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]);
    const o = await exchange([hello]);
    assert.equal(o.result, "tls");
    assert.deepEqual(o.replay, hello);
  });

  it("nothing sent → timeout after about the timeout", async () => {
    const o = await exchange([]);
    assert.equal(o.result, "timeout");
    assert.ok(o.afterMs >= TIMEOUT_MS - 20 && o.afterMs < TIMEOUT_MS + 500, `after ${o.afterMs} ms`);
  });

  it("part of the preface, then silence → timeout (not h2, not http1)", async () => {
    const o = await exchange([PREFACE.slice(0, 16)]);
    assert.equal(o.result, "timeout");
    assert.ok(o.afterMs >= TIMEOUT_MS - 20, `after ${o.afterMs} ms`);
  });

  it("a client that closes before anything decisive → neither a decision nor a late timeout", async () => {
    const o = await exchange([PREFACE.slice(0, 5)], 0, true);
    assert.equal(o.result, "none");
  });
});
