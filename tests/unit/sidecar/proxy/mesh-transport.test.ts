// The mesh transport against a real HTTP/2 server on loopback: per-cluster idle timeout, the
// cluster's connection budget (maxConnections), and connect failures surfacing on the stream.
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { H2cTransport } from "@trellis/sidecar/proxy/mesh-transport";
import { classifyUpstreamError } from "@trellis/sidecar/proxy/upstream-error";

function get(stream: http2.ClientHttp2Stream): Promise<number> {
  return new Promise((resolve, reject) => {
    stream.on("response", (h) => {
      stream.resume();
      stream.on("end", () => resolve(Number(h[":status"])));
    });
    stream.on("error", reject);
  });
}

class Budget {
  open = 0;
  closed = 0;
  constructor(private readonly max: number) {}
  tryOpenConnection(): boolean {
    if (this.open - this.closed >= this.max) return false;
    this.open++;
    return true;
  }
  closeConnection(): void {
    this.closed++;
  }
}

describe("H2cTransport", () => {
  const servers: http2.Http2Server[] = [];
  const ports: number[] = [];
  const sessionsClosed: number[] = [0, 0];

  before(async () => {
    for (let i = 0; i < 2; i++) {
      const server = http2.createServer((_req, res) => res.end("ok"));
      server.on("session", (s) => s.once("close", () => sessionsClosed[i]!++));
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      servers.push(server);
      ports.push((server.address() as AddressInfo).port);
    }
  });

  after(async () => {
    for (const s of servers) await new Promise((r) => s.close(r));
  });

  it("closes a session idle for the cluster's idle timeout", async () => {
    const t = new H2cTransport();
    const s = t.request({ address: "127.0.0.1", port: ports[0] as number }, { ":path": "/" }, true, {
      idleTimeoutMs: 150,
    });
    assert.ok(s !== undefined);
    assert.equal(await get(s), 200);
    const before = sessionsClosed[0] as number;
    const t0 = performance.now();
    while ((sessionsClosed[0] as number) === before && performance.now() - t0 < 3000)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(sessionsClosed[0], before + 1, "the idle session was closed");
    assert.ok(performance.now() - t0 >= 100, "not before the idle timeout");
    await t.close();
  });

  it("opens no session beyond the cluster's connection budget: shares one to the same peer, overflows to a new peer", async () => {
    const t = new H2cTransport();
    const budget = new Budget(1);
    const a = { address: "127.0.0.1", port: ports[0] as number };
    const b = { address: "127.0.0.1", port: ports[1] as number };
    const first = t.request(a, { ":path": "/" }, true, { connections: budget });
    assert.ok(first !== undefined);
    assert.equal(await get(first), 200);
    const again = t.request(a, { ":path": "/" }, true, { connections: budget });
    assert.ok(again !== undefined, "the open session to the same peer is shared");
    assert.equal(await get(again), 200);
    assert.equal(t.request(b, { ":path": "/" }, true, { connections: budget }), undefined, "overflow");
    assert.equal(budget.open, 1);
    await t.close();
    assert.equal(budget.closed, 1, "closing the session gave its connection back");
  });

  it("a refused connect surfaces on the stream as a connect failure", async () => {
    const t = new H2cTransport();
    const probe = http2.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const s = t.request({ address: "127.0.0.1", port }, { ":path": "/" }, true, { connectTimeoutMs: 500 });
    assert.ok(s !== undefined);
    const err = await new Promise<Error>((resolve) => s.on("error", resolve));
    assert.equal(classifyUpstreamError(err, false).connectFailure, true);
    await t.close();
  });
});
