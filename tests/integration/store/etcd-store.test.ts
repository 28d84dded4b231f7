/**
 * The etcd store against a real etcd 3.4: the conformance suite, then what only etcd can do to a
 * client — die and come back mid-call, and commit a write whose answer never arrives.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";
import { after, suite, test } from "node:test";
import { createStore } from "@trellis/control-plane/store/create-store";
import { createEtcdStore, type EtcdStoreOptions } from "@trellis/control-plane/store/etcd-store";
import { textValue, valueText, type WatchEvent } from "@trellis/control-plane/store/store";
import { ErrorCode, hasCode, TrellisError } from "@trellis/proto/errors";
import { Etcd3 } from "etcd3";
import { startEtcd } from "../../helpers/etcd.js";
import { waitFor, withDeadline } from "../../helpers/wait.js";
import { storeConformance } from "./conformance.js";

const etcd = await startEtcd();
after(() => etcd.stop());
const admin = new Etcd3({ hosts: [...etcd.endpoints] });
after(() => admin.close());

/** Short deadlines and backoffs: tests wait for outcomes, never for production timeouts. */
const fast: Omit<EtcdStoreOptions, "endpoints"> = {
  requestTimeoutMs: 2000,
  watchRetryMinMs: 50,
  watchRetryMaxMs: 500,
};

storeConformance("etcd", async (options) => ({
  store: createEtcdStore({ endpoints: etcd.endpoints, ...fast, ...options }),
  compact: async (revision) => {
    await admin.kv.compact({ revision, physical: true });
  },
}));

suite("etcd store: failures of etcd itself", () => {
  test("a put while etcd is killed fails UNAVAILABLE/TIMEOUT within its deadline; one across a restart resolves; watches resume", async (t) => {
    const own = await startEtcd();
    t.after(() => own.stop());
    const timeoutMs = 1500;
    const store = createEtcdStore({ endpoints: own.endpoints, ...fast, requestTimeoutMs: timeoutMs });
    t.after(() => store.close());
    const prefix = `/restart/${randomUUID()}/`;
    const r1 = await store.put(`${prefix}before`, textValue("1"));

    const events: WatchEvent[] = [];
    const warnings: string[] = [];
    const w = store.watch(prefix, { fromRevision: r1 + 1, onWarning: (m) => warnings.push(m) }, (batch) => {
      events.push(...batch);
    });
    t.after(() => w.close());
    const r2 = await store.put(`${prefix}seen-before-kill`, textValue("1"));
    await waitFor(() => events.length === 1, { what: "first watch event" });

    await own.kill(0);
    // Down for the whole deadline: a clear failure, in time, no hang.
    const started = Date.now();
    const err = await store.put(`${prefix}while-down`, textValue("1")).then(
      () => undefined,
      (e: unknown) => e,
    );
    const took = Date.now() - started;
    assert.ok(
      hasCode(err, ErrorCode.UNAVAILABLE) || hasCode(err, ErrorCode.TIMEOUT),
      `expected UNAVAILABLE or TIMEOUT, got ${String(err)}`,
    );
    assert.ok(took <= timeoutMs + 500, `failed after ${took} ms (deadline ${timeoutMs} ms)`);

    // Down when the call starts, back before its deadline: the retries carry it through.
    const slow = createEtcdStore({ endpoints: own.endpoints, ...fast, requestTimeoutMs: 10_000 });
    t.after(() => slow.close());
    const across = slow.put(`${prefix}across-restart`, textValue("1"));
    await own.restart(0);
    const rAcross = await withDeadline(across, 11_000, "put across a restart");
    assert.ok(rAcross > r2);

    // Everything works again, compare-and-swap included.
    const r3 = await store.put(`${prefix}after`, textValue("1"), { expectRevision: 0 });
    assert.equal(valueText((await store.get(`${prefix}after`))!.value), "1");
    assert.ok(r3 > rAcross);

    // The watch resumed from its last revision: every change exactly once, nothing from before.
    await waitFor(() => events.length === 3, { what: "watch events after the restart", timeoutMs: 10_000 });
    assert.deepEqual(
      events.map((e) => [e.kv.key.slice(prefix.length), e.kv.modRevision]),
      [
        ["seen-before-kill", r2],
        ["across-restart", rAcross],
        ["after", r3],
      ],
    );
    assert.ok(
      warnings.some((m) => /stream failed|could not/.test(m)),
      `reconnect reported: ${warnings.join(" | ")}`,
    );
  });

  test("writes whose answer is lost after etcd committed them: CAS succeeds after a re-read, never CONFLICT", async (t) => {
    const proxy = await LossyProxy.start(etcd.endpoints[0]!);
    t.after(() => proxy.close());
    const store = createEtcdStore({ endpoints: [proxy.endpoint], ...fast });
    t.after(() => store.close());
    const prefix = `/lossy/${randomUUID()}/`;

    // Create (expectRevision 0): committed, answer lost; a blind retry would say CONFLICT.
    proxy.dropNextAnswer();
    const r1 = await store.put(`${prefix}policy`, textValue("v1"), { expectRevision: 0 });
    assert.equal(proxy.dropped, 1, "the answer was dropped");
    const kv1 = await store.get(`${prefix}policy`);
    assert.equal(valueText(kv1!.value), "v1");
    assert.equal(kv1!.modRevision, r1, "the revision of the write that committed");

    // Update on a revision, answer lost.
    proxy.dropNextAnswer();
    const r2 = await store.put(`${prefix}policy`, textValue("v2"), { expectRevision: r1 });
    assert.equal(proxy.dropped, 2);
    assert.equal((await store.get(`${prefix}policy`))!.modRevision, r2);

    // A plain put is simply repeated.
    proxy.dropNextAnswer();
    await store.put(`${prefix}plain`, textValue("p"));
    assert.equal(proxy.dropped, 3);
    assert.equal(valueText((await store.get(`${prefix}plain`))!.value), "p");

    // Compare-and-swap delete, answer lost: reported as done.
    proxy.dropNextAnswer();
    assert.equal(await store.delete(`${prefix}policy`, { expectRevision: r2 }), true);
    assert.equal(proxy.dropped, 4);
    assert.equal(await store.get(`${prefix}policy`), undefined);

    // A real conflict is still a conflict after a lost answer.
    const rOther = await store.put(`${prefix}contended`, textValue("theirs"));
    proxy.dropNextAnswer();
    await assert.rejects(
      store.put(`${prefix}contended`, textValue("mine"), { expectRevision: rOther - 1 }),
      (e: unknown) => hasCode(e, ErrorCode.CONFLICT),
    );

    // A txn with compares cannot be re-checked: its outcome is reported unknown, not guessed.
    proxy.dropNextAnswer();
    const txnErr = await store
      .txn(
        [{ key: `${prefix}guarded`, modRevision: 0 }],
        [{ type: "put", key: `${prefix}guarded`, value: textValue("1") }],
      )
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(hasCode(txnErr, ErrorCode.UNAVAILABLE), `expected UNAVAILABLE, got ${String(txnErr)}`);
  });

  test("keepAlive renews a lease granted through another client (any replica can resume it)", async (t) => {
    const a = createEtcdStore({ endpoints: etcd.endpoints, ...fast });
    const b = createEtcdStore({ endpoints: etcd.endpoints, ...fast });
    t.after(() => Promise.all([a.close(), b.close()]).then(() => {}));
    const lease = await a.grantLease(30);
    assert.equal(await b.keepAlive(lease.id), 30);
    await b.revokeLease(lease.id);
    await assert.rejects(a.keepAlive(lease.id), (e: unknown) => hasCode(e, ErrorCode.NOT_FOUND));
    await assert.rejects(a.keepAlive("not-a-lease"), (e: unknown) => hasCode(e, ErrorCode.INVALID_ARGUMENT));
  });

  test("createStore picks etcd for endpoints and says where the state lives", async (t) => {
    const { store, description } = await createStore({ etcd: [...etcd.endpoints], requestTimeoutMs: 1500 });
    t.after(() => store.close());
    assert.equal(store.backend, "etcd");
    assert.match(description, new RegExp(`etcd at ${etcd.endpoints[0]!.replace(/[.]/g, "\\.")}`));
    assert.ok((await store.revision()) > 0);
    await assert.rejects(createStore({ etcd: ["127.0.0.1:2379"] }), (e: unknown) =>
      hasCode(e, ErrorCode.CONFIG),
    );
    // Nothing listening: the first call fails in time, it does not hang.
    const { store: dead } = await createStore({ etcd: ["http://127.0.0.1:9"], requestTimeoutMs: 500 });
    t.after(() => dead.close());
    await assert.rejects(
      dead.get("/x"),
      (e: unknown) => e instanceof TrellisError && e.code === ErrorCode.UNAVAILABLE,
    );
  });
});

/**
 * A TCP proxy in front of etcd that, when told to, lets a request through to etcd and then cuts the
 * connection as the answer starts (the first HTTP/2 HEADERS frame etcd sends on a stream), so etcd
 * has done the work and the client never learns it: the ambiguous failure of a leader change.
 */
class LossyProxy {
  dropped = 0;
  private armed = false;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly endpoint: string,
  ) {}

  static async start(target: string): Promise<LossyProxy> {
    const url = new URL(target);
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    const proxy = new LossyProxy(server, `http://127.0.0.1:${port}`);
    server.on("connection", (client) => proxy.relay(client, url.hostname, Number(url.port)));
    return proxy;
  }

  /** The next answer etcd starts to send is dropped, with the connection. */
  dropNextAnswer(): void {
    this.armed = true;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private relay(client: Socket, host: string, port: number): void {
    const upstream = connect(port, host);
    this.sockets.add(client).add(upstream);
    const scanner = new FrameScanner();
    client.on("data", (chunk) => upstream.write(chunk));
    upstream.on("data", (chunk: Buffer) => {
      if (this.armed && scanner.hasResponseHeaders(chunk)) {
        this.armed = false;
        this.dropped++;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on("close", close).on("error", close);
    upstream.on("close", close).on("error", close);
  }
}

/** Follows HTTP/2 frame boundaries (RFC 9113 §4.1: 9-byte header, 24-bit length) in one direction. */
class FrameScanner {
  private pending = Buffer.alloc(0);
  private skip = 0;

  /** True if `chunk` starts a HEADERS frame (type 0x1) on a stream (id ≠ 0). */
  hasResponseHeaders(chunk: Buffer): boolean {
    let buf = Buffer.concat([this.pending, chunk]);
    let found = false;
    for (;;) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, buf.length);
        this.skip -= n;
        buf = buf.subarray(n);
        if (this.skip > 0) break;
      }
      if (buf.length < 9) break;
      const length = buf.readUIntBE(0, 3);
      const type = buf[3];
      const stream = buf.readUInt32BE(5) & 0x7fffffff;
      if (type === 0x1 && stream !== 0) found = true;
      buf = buf.subarray(9);
      this.skip = length;
    }
    this.pending = Buffer.from(buf);
    return found;
  }
}
