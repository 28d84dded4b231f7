// gRPC through the mesh as a gRPC user sees it: a grpc-js client calls a grpc-js server (app port
// registered as `<port>/grpc`) through its sidecar and the server's sidecar — unary and bidi
// streaming calls, metadata and trailers, error statuses, server-side deadlines, streamed messages
// delivered one by one, and a client that reaches the mesh with the sidecar as its HTTP CONNECT
// proxy. Real control plane, real sidecar processes, real sockets.
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { type Chain, startChain } from "../../fixtures/sidecar/chain.js";
import {
  ECHO_METHODS,
  type EchoObservations,
  startEchoServer,
  stopEchoServer,
  successTrailers,
} from "../../fixtures/sidecar/grpc-echo.js";
import { withDeadline } from "../../helpers/wait.js";

const id = (b: Buffer): Buffer => b;

interface UnaryResult {
  value: Buffer | undefined;
  error: grpc.ServiceError | undefined;
  initial: grpc.Metadata | undefined;
  status: grpc.StatusObject;
}

function unary(
  client: grpc.Client,
  path: string,
  payload: Buffer,
  metadata = new grpc.Metadata(),
  options: grpc.CallOptions = {},
): Promise<UnaryResult> {
  return new Promise((resolve) => {
    let value: Buffer | undefined;
    let error: grpc.ServiceError | undefined;
    let initial: grpc.Metadata | undefined;
    let done = 0;
    let status: grpc.StatusObject | undefined;
    const finish = () => {
      if (++done === 2) resolve({ value, error, initial, status: status as grpc.StatusObject });
    };
    const call = client.makeUnaryRequest(path, id, id, payload, metadata, options, (err, v) => {
      error = err ?? undefined;
      value = v;
      finish();
    });
    call.on("metadata", (md: grpc.Metadata) => {
      initial = md;
    });
    call.on("status", (s: grpc.StatusObject) => {
      status = s;
      finish();
    });
  });
}

/** A length-prefixed gRPC message (gRPC over HTTP/2, "Length-Prefixed-Message"). */
function frame(payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** Metadata as {key: values} without `date` (it differs between two calls a second apart). */
function withoutDate(md: grpc.Metadata): Record<string, unknown> {
  const out: Record<string, unknown> = md.toJSON();
  delete out.date;
  return out;
}

/** Status of a one-message bidi call (for comparing trailers with a direct call). */
function bidiStatus(c: grpc.Client): Promise<grpc.StatusObject> {
  const call = c.makeBidiStreamRequest(ECHO_METHODS.Bidi.path, id, id, new grpc.Metadata());
  call.on("data", () => {});
  call.on("error", () => {});
  const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  call.end(Buffer.from("x"));
  return withDeadline(status, 5000, "bidi status");
}

describe("sidecar chain: gRPC", () => {
  let chain: Chain;
  let server: grpc.Server;
  let seen: EchoObservations;
  let grpcPort = 0;
  let authority = "";
  let client: grpc.Client;
  /** The same server without the mesh: the reference for "identical". */
  let directClient: grpc.Client;
  /** Stream lockstep side channel: resolved when the client has received message k. */
  const received = new Map<number, () => void>();
  const streamLog: string[] = [];

  before(async () => {
    const s = await startEchoServer(async (k) => {
      streamLog.push(`sent:${k}`);
      await new Promise<void>((resolve) => {
        received.set(k, resolve);
        // A proxy that holds message k back never lets the client report it; the server gives up
        // after 5 s and the test sees the stream end short.
        setTimeout(resolve, 5000).unref();
      });
    });
    server = s.server;
    seen = s.seen;
    grpcPort = s.port;
    authority = `orders.shop:${grpcPort}`;
    chain = await startChain(`${grpcPort}/grpc`);
    // The app talks h2c to its sidecar's outbound port; the :authority names the mesh service.
    client = new grpc.Client(`127.0.0.1:${chain.client.ports.outbound}`, grpc.credentials.createInsecure(), {
      "grpc.default_authority": authority,
    });
    directClient = new grpc.Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    directClient?.close();
    await chain?.stop();
    if (server !== undefined) await stopEchoServer(server);
  });

  it("unary: the message, request metadata, initial metadata and custom trailers arrive as on a direct call", async () => {
    // "Identical" is measured against the same call made directly to the server (grpc-js itself
    // joins repeated text metadata with ", "; the mesh must not change anything beyond that).
    const call = async (c: grpc.Client) => {
      const md = new grpc.Metadata();
      md.add("x-req", "r1");
      md.add("x-req", "r2");
      md.add("x-req-bin", Buffer.from([1, 2, 3, 0, 255]));
      md.add("x-req-odd", 'a, b;q=0.5 "quoted"');
      const before = seen.unaryMetadata.length;
      const r = await unary(c, ECHO_METHODS.Unary.path, payload, md);
      const atServer = (seen.unaryMetadata[before] as grpc.Metadata).toJSON();
      // Added by the sidecars (INTERFACES.md): not part of the comparison.
      delete atServer["x-forwarded-for"];
      delete atServer["x-request-id"];
      return { r, atServer };
    };
    const payload = Buffer.from("hello grpc \u00e4\u00f6\u00fc");
    const direct = await call(directClient);
    const meshed = await call(client);
    assert.equal(meshed.r.error, undefined, meshed.r.error?.message);
    assert.ok(meshed.r.value?.equals(payload));
    assert.equal(meshed.r.status.code, grpc.status.OK);
    assert.deepEqual(meshed.atServer, direct.atServer);
    assert.deepEqual(meshed.atServer["x-req-bin"], [Buffer.from([1, 2, 3, 0, 255])]);
    assert.ok(meshed.r.initial !== undefined && direct.r.initial !== undefined);
    assert.deepEqual(withoutDate(meshed.r.initial), withoutDate(direct.r.initial));
    assert.deepEqual(meshed.r.initial?.get("x-initial"), ["i1"]);
    assert.deepEqual(withoutDate(meshed.r.status.metadata), withoutDate(direct.r.status.metadata));
    assert.deepEqual(meshed.r.status.metadata.get("x-trailer-bin"), [Buffer.from([0, 1, 2, 250, 255])]);
  });

  it("unary: error statuses arrive as the server sent them (code, UTF-8 message, trailing metadata)", async () => {
    // These replies are trailers-only (HEADERS with END_STREAM): a proxy that turns them into
    // headers + an empty DATA frame makes clients report INTERNAL / "no status received".
    for (const code of [
      grpc.status.INVALID_ARGUMENT,
      grpc.status.NOT_FOUND,
      grpc.status.PERMISSION_DENIED,
      grpc.status.RESOURCE_EXHAUSTED,
      grpc.status.FAILED_PRECONDITION,
      grpc.status.INTERNAL,
      grpc.status.UNAVAILABLE,
    ]) {
      const r = await unary(client, ECHO_METHODS.Unary.path, Buffer.from(`fail:${code}`));
      assert.equal(r.status.code, code, `code ${code}: got ${r.status.code} ${r.status.details}`);
      assert.equal(r.status.details, "failed on purpose: ünïcode ✓");
      assert.deepEqual(r.status.metadata.get("x-error-detail"), ["why it failed"]);
      assert.deepEqual(r.status.metadata.get("x-error-detail-bin"), [Buffer.from([9, 8, 7])]);
      const d = await unary(directClient, ECHO_METHODS.Unary.path, Buffer.from(`fail:${code}`));
      assert.deepEqual(withoutDate(r.status.metadata), withoutDate(d.status.metadata));
    }
  });

  it("bidi streaming: messages flow both ways while the call is open, then trailers arrive", async () => {
    const call = client.makeBidiStreamRequest(ECHO_METHODS.Bidi.path, id, id, new grpc.Metadata());
    const replies: Buffer[] = [];
    const waiting: ((b: Buffer) => void)[] = [];
    call.on("data", (b: Buffer) => {
      const w = waiting.shift();
      if (w) w(b);
      else replies.push(b);
    });
    const next = () =>
      withDeadline(
        new Promise<Buffer>((resolve) => {
          const b = replies.shift();
          if (b) resolve(b);
          else waiting.push(resolve);
        }),
        5000,
        "bidi reply",
      );
    const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    call.on("error", () => {});
    // Ping-pong: each reply must come back before the next message is sent (no batching).
    for (let i = 0; i < 20; i++) {
      call.write(Buffer.from(`m${i}`));
      assert.equal((await next()).toString(), `echo:m${i}`);
    }
    // A large message in the middle of the stream.
    const big = Buffer.alloc(3 * 1024 * 1024, 7);
    call.write(big);
    const bigReply = await next();
    assert.equal(bigReply.length, big.length + 5);
    call.end();
    const s = await withDeadline(status, 5000, "bidi status");
    assert.equal(s.code, grpc.status.OK);
    assert.deepEqual(withoutDate(s.metadata), withoutDate((await bidiStatus(directClient)).metadata));
    assert.deepEqual(s.metadata.get("x-trailer-bin"), successTrailers().get("x-trailer-bin"));
  });

  it("server streaming: messages arrive one at a time (the server sends k+1 only after the client got k)", async () => {
    streamLog.length = 0;
    const n = 6;
    const call = client.makeServerStreamRequest(
      ECHO_METHODS.Stream.path,
      id,
      id,
      Buffer.from(String(n)),
      new grpc.Metadata(),
    );
    call.on("data", (b: Buffer) => {
      const k = Number(b.toString().slice(1));
      streamLog.push(`got:${k}`);
      received.get(k)?.();
    });
    const status = await withDeadline(
      new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve)),
      20_000,
      "stream status",
    );
    call.on("error", () => {});
    assert.equal(status.code, grpc.status.OK);
    const expected: string[] = [];
    for (let k = 0; k < n; k++) expected.push(`sent:${k}`, `got:${k}`);
    assert.deepEqual(streamLog, expected);
  });

  it("deadlines: grpc-timeout reaches the server, which ends the call with DEADLINE_EXCEEDED, and that status arrives", async () => {
    // A raw HTTP/2 client that does not enforce the deadline itself: the DEADLINE_EXCEEDED it gets
    // can only come from the server, through both sidecars.
    const session = http2.connect(`http://127.0.0.1:${chain.client.ports.outbound}`);
    try {
      const before = seen.hangs.length;
      const sentAt = Date.now();
      const result = await withDeadline(
        new Promise<{ status: string | undefined; message: string | undefined; ms: number }>(
          (resolve, reject) => {
            const stream = session.request({
              ":method": "POST",
              ":path": ECHO_METHODS.Hang.path,
              ":authority": authority,
              "content-type": "application/grpc",
              te: "trailers",
              "grpc-timeout": "400m",
            });
            let status: string | undefined;
            let message: string | undefined;
            const take = (h: http2.IncomingHttpHeaders) => {
              if (h["grpc-status"] !== undefined) {
                status = String(h["grpc-status"]);
                message = h["grpc-message"] === undefined ? undefined : String(h["grpc-message"]);
              }
            };
            stream.on("response", take);
            stream.on("trailers", take);
            stream.resume();
            stream.on("close", () => resolve({ status, message, ms: Date.now() - sentAt }));
            stream.on("error", reject);
            stream.end(frame(Buffer.from("wait")));
          },
        ),
        10_000,
        "deadline exceeded",
      );
      assert.equal(result.status, String(grpc.status.DEADLINE_EXCEEDED), `message: ${result.message}`);
      assert.ok(result.ms >= 350 && result.ms < 3000, `ended after ${result.ms} ms`);
      const hang = seen.hangs[before];
      assert.ok(hang !== undefined, "the call reached the server");
      assert.ok(
        Math.abs(hang.deadline - (sentAt + 400)) < 300,
        `server deadline ${hang.deadline - sentAt} ms after the send`,
      );
    } finally {
      session.close();
    }
  });

  it("deadlines: a grpc-js client deadline cancels the call at the server", async () => {
    const before = seen.hangs.length;
    const r = await unary(client, ECHO_METHODS.Hang.path, Buffer.from("wait"), new grpc.Metadata(), {
      deadline: Date.now() + 300,
    });
    assert.equal(r.status.code, grpc.status.DEADLINE_EXCEEDED);
    const hang = seen.hangs[before];
    assert.ok(hang !== undefined && Number.isFinite(hang.deadline), "the server saw a deadline");
    await withDeadline(
      (async () => {
        while (!hang.cancelled) await new Promise((r) => setTimeout(r, 20));
      })(),
      3000,
      "server call cancelled",
    );
  });

  it("CONNECT: a gRPC client using the sidecar as its HTTP proxy reaches the mesh service", async () => {
    // grpc-js reads grpc_proxy when the channel is made: it sends `CONNECT orders.shop:<port>` to
    // the outbound port, and the sidecar proxies the h2c inside the tunnel with mesh routing. A
    // caller sidecar that has not routed to orders.shop yet: the CONNECT waits for the on-demand
    // route subscription (without it the sidecar would treat the host as non-mesh and fail).
    const fresh = await chain.freshClient();
    const saved = process.env.grpc_proxy;
    const savedNo = process.env.no_grpc_proxy;
    process.env.grpc_proxy = `http://127.0.0.1:${fresh.ports.outbound}`;
    process.env.no_grpc_proxy = "";
    let proxied: grpc.Client;
    try {
      proxied = new grpc.Client(authority, grpc.credentials.createInsecure());
    } finally {
      if (saved === undefined) delete process.env.grpc_proxy;
      else process.env.grpc_proxy = saved;
      if (savedNo === undefined) delete process.env.no_grpc_proxy;
      else process.env.no_grpc_proxy = savedNo;
    }
    try {
      const r = await unary(proxied, ECHO_METHODS.Unary.path, Buffer.from("through CONNECT"));
      assert.equal(r.error, undefined, r.error?.message);
      assert.equal(r.value?.toString(), "through CONNECT");
      assert.deepEqual(r.status.metadata.get("x-trailer-bin"), [Buffer.from([0, 1, 2, 250, 255])]);
      const e = await unary(proxied, ECHO_METHODS.Unary.path, Buffer.from(`fail:${grpc.status.NOT_FOUND}`));
      assert.equal(e.status.code, grpc.status.NOT_FOUND);
      const call = proxied.makeBidiStreamRequest(ECHO_METHODS.Bidi.path, id, id, new grpc.Metadata());
      const got: string[] = [];
      call.on("data", (b: Buffer) => got.push(b.toString()));
      call.on("error", () => {});
      const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
      call.write(Buffer.from("a"));
      call.write(Buffer.from("b"));
      call.end();
      assert.equal((await withDeadline(status, 5000, "bidi over CONNECT")).code, grpc.status.OK);
      assert.deepEqual(got, ["echo:a", "echo:b"]);
    } finally {
      proxied.close();
      await fresh.stop();
    }
  });

  it("proxy-made replies reach gRPC callers as a grpc-status (no_route → UNIMPLEMENTED)", async () => {
    // A port orders.shop does not serve: the web sidecar answers itself.
    const other = new grpc.Client(
      `127.0.0.1:${chain.client.ports.outbound}`,
      grpc.credentials.createInsecure(),
      { "grpc.default_authority": `orders.shop:${grpcPort + 1}` },
    );
    try {
      const r = await unary(other, ECHO_METHODS.Unary.path, Buffer.from("x"));
      assert.equal(r.status.code, grpc.status.UNIMPLEMENTED, r.status.details);
    } finally {
      other.close();
    }
  });

  it("request metrics carry the gRPC status on both sidecars (grpc_status label)", async () => {
    const scrape = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const [out, inb] = await Promise.all([
      scrape(chain.client.ports.stats),
      scrape(chain.server.ports.stats),
    ]);
    const has = (text: string, direction: string, code: number) =>
      new RegExp(
        `^trellis_requests_total\\{[^}]*direction="${direction}"[^}]*grpc_status="${code}"[^}]*\\} [1-9]`,
        "m",
      ).test(text);
    assert.ok(has(out, "outbound", grpc.status.OK), "outbound OK series");
    assert.ok(has(out, "outbound", grpc.status.NOT_FOUND), "outbound NOT_FOUND series");
    assert.ok(has(inb, "inbound", grpc.status.OK), "inbound OK series");
    assert.ok(has(inb, "inbound", grpc.status.NOT_FOUND), "inbound NOT_FOUND series");
    assert.ok(
      has(out, "outbound", grpc.status.UNIMPLEMENTED),
      "the local no_route reply counted as UNIMPLEMENTED",
    );
  });
});
