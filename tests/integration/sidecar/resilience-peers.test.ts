// The outbound exchange against misbehaving peers, which no real sidecar produces on demand: two
// scripted HTTP/2 servers registered as the endpoints of service `flaky` (through simulated
// proxies), and a real caller sidecar. Each case is a way a peer can fail that once made a request
// hang, run twice, or arrive cut short as if complete.
import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { createToken } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../../helpers/control-plane.js";
import { MeshClient } from "../../helpers/load.js";
import { clusterAt, type SidecarProcess, startSidecar } from "../../helpers/sidecar.js";
import { SimProxy } from "../../helpers/sim-proxy.js";
import { waitFor } from "../../helpers/wait.js";

/** What a scripted peer does with one stream. */
type Behaviour = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;

interface FakePeer {
  server: http2.Http2Server;
  port: number;
  /** Streams received: method and body bytes. */
  seen: { method: string; bodyBytes: number }[];
  behave: Behaviour;
}

const answer: Behaviour = (stream) => {
  stream.respond({ ":status": 200, "content-type": "text/plain" });
  stream.end("ok");
};

async function startPeer(host: string): Promise<FakePeer> {
  const server = http2.createServer();
  const peer: FakePeer = { server, port: 0, seen: [], behave: answer };
  server.on("stream", (stream, headers) => {
    const entry = { method: String(headers[":method"]), bodyBytes: 0 };
    peer.seen.push(entry);
    stream.on("error", () => {});
    stream.on("data", (c: Buffer) => {
      entry.bodyBytes += c.length;
    });
    peer.behave(stream, headers);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  peer.port = (server.address() as AddressInfo).port;
  return peer;
}

describe("sidecar resilience: misbehaving peers", () => {
  let cp: ControlPlaneProcess;
  const peers: FakePeer[] = [];
  const sims: SimProxy[] = [];
  let web: SidecarProcess;
  let client: MeshClient;
  const host = "flaky.shop:8080";

  const flakyCluster = () => clusterAt(web, "flaky.shop:");

  before(async () => {
    cp = await startControlPlane({});
    const [flakyToken, webToken] = await Promise.all([
      createToken(cp.env, "shop", "flaky"),
      createToken(cp.env, "shop", "web"),
    ]);
    for (const [i, address] of ["127.0.0.2", "127.0.0.3"].entries()) {
      const peer = await startPeer(address);
      peers.push(peer);
      const sim = SimProxy.start({
        addresses: [cp.address],
        caFile: cp.caFile,
        joinToken: flakyToken,
        workload: {
          proxyId: `flaky-${i}`,
          service: "flaky",
          namespace: "shop",
          serviceAccount: "flaky",
          address,
          inboundPort: peer.port,
          ports: [{ port: 8080, protocol: 1 }],
          supportedKinds: ["Service", "TrafficPolicy", "HTTPRoute"],
        },
      });
      sims.push(sim);
      await sim.next((e) => e.event === "connected", `flaky-${i} connected`);
    }
    web = await startSidecar({ cp, token: webToken, service: "web" });
    client = new MeshClient(web.ports.outbound);
    assert.equal((await client.send({ host })).status, 200);
    await waitFor(async () => (await flakyCluster())?.endpoints.length === 2, {
      what: "both flaky endpoints at web",
      timeoutMs: 15_000,
      intervalMs: 50,
    });
  });

  beforeEach(() => {
    for (const p of peers) {
      p.seen.length = 0;
      p.behave = answer;
    }
  });

  after(async () => {
    client?.close();
    await web?.stop();
    await Promise.all(sims.map((s) => s.stop()));
    for (const p of peers) {
      p.server.close();
    }
    await cp?.stop();
  });

  /** Nothing left held at web: no request slot and no in-flight count on any endpoint. */
  const nothingHeld = () =>
    waitFor(
      async () => {
        const c = await flakyCluster();
        return c !== undefined && c.limits.active === 0 && c.endpoints.every((e) => e.outstanding === 0);
      },
      { what: "no request slot or in-flight count left at web", timeoutMs: 5000, intervalMs: 50 },
    );

  it("a peer that resets with CANCEL before answering: a definite 502 at once, nothing leaked", async () => {
    for (const p of peers) p.behave = (stream) => stream.close(http2.constants.NGHTTP2_CANCEL);
    const t0 = performance.now();
    const r = await client.send({ host, path: "/cancel", timeoutMs: 5000 });
    assert.equal(r.status, 502, r.body);
    assert.equal(r.headers["x-trellis-error"], "upstream_reset");
    assert.ok(performance.now() - t0 < 2000, "answered, not hung until a timeout");
    await nothingHeld();
  });

  it("a peer that refuses the stream: retried once on the other peer", async () => {
    let refused = 0;
    for (const p of peers)
      p.behave = (stream, headers) => {
        if (refused === 0) {
          refused++;
          stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
          return;
        }
        answer(stream, headers);
      };
    const r = await client.send({ host, path: "/refused" });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(
      peers.map((p) => p.seen.length),
      [1, 1],
      "one refused try, one answered try, on different peers",
    );
    await nothingHeld();
  });

  it("a POST whose connection is reset after the peer got it is not retried", async () => {
    for (const p of peers)
      p.behave = (stream) => {
        stream.on("end", () => stream.session?.socket.destroy());
        stream.resume();
      };
    const r = await client.send({ host, method: "POST", path: "/charge", body: "amount=10" });
    assert.equal(r.status, 502, r.body);
    const posts = peers.flatMap((p) => p.seen).filter((s) => s.method === "POST");
    assert.equal(posts.length, 1, "the POST reached one peer, once");
    assert.equal(posts[0]?.bodyBytes, 9);
    await nothingHeld();
  });

  it("a response cut short by the peer reaches the caller cut short, never as complete", async () => {
    for (const p of peers)
      p.behave = (stream) => {
        stream.respond({ ":status": 200, "content-length": "100" });
        stream.write(Buffer.alloc(10, 120), () =>
          setTimeout(() => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 20),
        );
      };
    const outcome = await new Promise<{ complete: boolean; bytes: number }>((resolve) => {
      const req = http.get(
        { host: "127.0.0.1", port: web.ports.outbound, path: "/cut", headers: { host }, agent: false },
        (res) => {
          let bytes = 0;
          res.on("data", (c: Buffer) => {
            bytes += c.length;
          });
          res.on("error", () => {});
          res.on("close", () => resolve({ complete: res.complete, bytes }));
        },
      );
      req.on("error", () => resolve({ complete: false, bytes: -1 }));
    });
    assert.equal(
      outcome.complete,
      false,
      `the caller must not see a complete response (${outcome.bytes} bytes)`,
    );
    await nothingHeld();
  });
});
