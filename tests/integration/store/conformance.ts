/**
 * The Store conformance suite: one set of behaviours both stores (etcd, embedded) must show, run by
 * etcd-store.test.ts and embedded-store.test.ts against their own factory. Every test works under a
 * fresh random prefix, so tests sharing one backend never see each other's keys.
 *
 * Watch assertions go through `Recorder`, a consumer that checks every batch as it arrives (one
 * revision per batch, revisions strictly increasing, no (key, revision) seen twice) and keeps the
 * state the consumer would hold, to compare with `list()`.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { suite, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import {
  type KeyValue,
  type ListResult,
  type Store,
  textValue,
  valueText,
  type WatchEvent,
} from "@trellis/control-plane/store/store";
import { ErrorCode, hasCode } from "@trellis/proto/errors";
import { waitFor, withDeadline } from "../../helpers/wait.js";

/** Store knobs a conformance test may ask the factory for (the factory passes them through). */
export interface ConformanceStoreOptions {
  /** Watch revisions buffered for a slow consumer before the stream pauses. */
  watchBufferRevisions?: number;
  /** Watch full-reconcile interval, ms. */
  reconcileIntervalMs?: number;
}

/** A store under test plus the one backend operation the interface does not offer. */
export interface StoreUnderTest {
  store: Store;
  /** Compacts the backend's history: revisions before `revision` can no longer be watched. */
  compact(revision: number): Promise<void>;
}

/** Makes a fresh store (connected to a shared backend or not); the suite closes it. */
export type StoreFactory = (options: ConformanceStoreOptions) => Promise<StoreUnderTest>;

type TestContext = { after: (fn: () => Promise<void> | void) => void };

const v = textValue;

/** Registers the conformance tests for `backend` ("etcd" / "embedded") in a suite of that name. */
export function storeConformance(backend: string, factory: StoreFactory): void {
  /**
   * A fresh store and key prefix for one test. `hold(rec, n)` stalls `rec`'s n-th callback until
   * released; teardown releases every hold first, since closing waits for a callback in progress.
   */
  async function open(t: TestContext, options: ConformanceStoreOptions = {}) {
    const sut = await factory(options);
    const holds: Array<() => void> = [];
    t.after(async () => {
      for (const release of holds) release();
      await sut.store.close();
    });
    assert.equal(sut.store.backend, backend);
    const hold = (rec: Recorder, n: number): { release: () => void } => {
      const gate = rec.holdAfter(n);
      holds.push(gate.release);
      return gate;
    };
    return { ...sut, hold, prefix: `/conformance/${randomUUID()}/` };
  }

  suite(`Store conformance: ${backend}`, () => {
    test("get, list, put and delete, with create and mod revisions", async (t) => {
      const { store, prefix } = await open(t);
      const rb = await store.put(`${prefix}b`, v("b1"));
      const ra = await store.put(`${prefix}a`, v("a1"));
      const rc = await store.put(`${prefix}c/deep`, v("c1"));
      await store.put(`${prefix.slice(0, -1)}-sibling`, v("outside the prefix"));
      assert.ok(rb < ra && ra < rc, "every write increments the revision");

      const a = await store.get(`${prefix}a`);
      assert.equal(valueText(a!.value), "a1");
      assert.equal(a!.createRevision, ra);
      assert.equal(a!.modRevision, ra);
      assert.equal(a!.lease, undefined);

      const ra2 = await store.put(`${prefix}a`, v("a2"));
      const a2 = await store.get(`${prefix}a`);
      assert.deepEqual(
        { value: valueText(a2!.value), create: a2!.createRevision, mod: a2!.modRevision },
        { value: "a2", create: ra, mod: ra2 },
        "an overwrite keeps createRevision and moves modRevision",
      );

      const listed = await store.list(prefix);
      assert.deepEqual(
        listed.items.map((kv) => [kv.key.slice(prefix.length), valueText(kv.value)]),
        [
          ["a", "a2"],
          ["b", "b1"],
          ["c/deep", "c1"],
        ],
        "list is in key order and holds only the prefix",
      );
      assert.ok(listed.revision >= ra2);
      assert.ok((await store.revision()) >= listed.revision);

      assert.equal(await store.get(`${prefix}missing`), undefined);
      assert.equal(await store.delete(`${prefix}b`), true);
      assert.equal(await store.get(`${prefix}b`), undefined);
      assert.equal(await store.delete(`${prefix}b`), false, "deleting a missing key reports false");
      assert.deepEqual(
        (await store.list(prefix)).items.map((kv) => kv.key.slice(prefix.length)),
        ["a", "c/deep"],
      );

      // A value is bytes, not text.
      const bytes = new Uint8Array([0, 255, 1, 128]);
      await store.put(`${prefix}bin`, bytes);
      assert.deepEqual([...(await store.get(`${prefix}bin`))!.value], [...bytes]);
    });

    test("compare-and-swap put and delete: 0 means absent, a stale revision is CONFLICT and changes nothing", async (t) => {
      const { store, prefix } = await open(t);
      const key = `${prefix}policy`;
      const r1 = await store.put(key, v("v1"), { expectRevision: 0 });
      const before = await store.revision();
      await assertCode(
        store.put(key, v("again"), { expectRevision: 0 }),
        ErrorCode.CONFLICT,
        "create of an existing key",
      );
      const r2 = await store.put(key, v("v2"), { expectRevision: r1 });
      assert.ok(r2 > r1);
      const beforeStale = await store.revision();
      await assertCode(store.put(key, v("stale"), { expectRevision: r1 }), ErrorCode.CONFLICT, "stale put");
      await assertCode(store.delete(key, { expectRevision: r1 }), ErrorCode.CONFLICT, "stale delete");
      await assertCode(
        store.put(`${prefix}nope`, v("x"), { expectRevision: r2 }),
        ErrorCode.CONFLICT,
        "put of a missing key",
      );
      const kv = await store.get(key);
      assert.equal(valueText(kv!.value), "v2", "a lost compare-and-swap changes nothing");
      assert.equal(kv!.modRevision, r2);
      assert.equal(await store.revision(), beforeStale, "failed compare-and-swaps do not move the revision");
      assert.ok(beforeStale > before);
      assert.equal(await store.get(`${prefix}nope`), undefined);

      assert.equal(await store.delete(key, { expectRevision: r2 }), true);
      assert.equal(await store.get(key), undefined);
      // Put under a lease that does not exist.
      await assertCode(
        store.put(`${prefix}leased`, v("x"), { lease: "7777777" }),
        ErrorCode.NOT_FOUND,
        "unknown lease",
      );
    });

    test("txn: compares choose the branch, all of it applies at one revision; deletePrefix", async (t) => {
      const { store, prefix } = await open(t);
      const rx = await store.put(`${prefix}x`, v("1"));
      await store.put(`${prefix}y`, v("1"));

      const ok = await store.txn(
        [
          { key: `${prefix}x`, modRevision: rx },
          { key: `${prefix}absent`, modRevision: 0 },
        ],
        [
          { type: "put", key: `${prefix}x`, value: v("2") },
          { type: "delete", key: `${prefix}y` },
          { type: "put", key: `${prefix}z`, value: v("1") },
        ],
        [{ type: "put", key: `${prefix}failure`, value: v("1") }],
      );
      assert.equal(ok.succeeded, true);
      const x = await store.get(`${prefix}x`);
      const z = await store.get(`${prefix}z`);
      assert.equal(valueText(x!.value), "2");
      assert.equal(x!.modRevision, ok.revision);
      assert.equal(z!.createRevision, ok.revision, "every op of the branch is at the txn's revision");
      assert.equal(await store.get(`${prefix}y`), undefined);
      assert.equal(await store.get(`${prefix}failure`), undefined);

      const failed = await store.txn(
        [{ key: `${prefix}x`, modRevision: rx }],
        [{ type: "put", key: `${prefix}x`, value: v("stale") }],
        [{ type: "put", key: `${prefix}failure`, value: v("ran") }],
      );
      assert.equal(failed.succeeded, false);
      assert.equal(valueText((await store.get(`${prefix}x`))!.value), "2");
      assert.equal((await store.get(`${prefix}failure`))!.modRevision, failed.revision);

      const nothing = await store.txn(
        [{ key: `${prefix}x`, modRevision: 1 }],
        [{ type: "delete", key: `${prefix}x` }],
      );
      assert.equal(nothing.succeeded, false);
      assert.equal(nothing.revision, failed.revision, "a txn that writes nothing does not move the revision");

      for (const k of ["p/a", "p/b", "p/c/d", "p-sibling", "q"]) await store.put(`${prefix}${k}`, v(k));
      const dp = await store.txn([], [{ type: "deletePrefix", prefix: `${prefix}p/` }]);
      assert.equal(dp.succeeded, true);
      assert.deepEqual(
        (await store.list(prefix)).items.map((kv) => kv.key.slice(prefix.length)),
        ["failure", "p-sibling", "q", "x", "z"],
      );
    });

    test("watch from a revision delivers every later change exactly once, in order, one batch per revision", async (t) => {
      const { store, prefix } = await open(t);
      await store.put(`${prefix}a`, v("0"));
      const start = await store.list(prefix);
      const rec = new Recorder(start);
      const w = store.watch(prefix, { fromRevision: start.revision + 1 }, rec.onEvents);
      t.after(() => w.close());

      const expected: Array<[number, string[]]> = [];
      expected.push([await store.put(`${prefix}a`, v("1")), ["put a=1"]]);
      expected.push([await store.put(`${prefix}b`, v("1")), ["put b=1"]]);
      await store.put(`/elsewhere/${randomUUID()}`, v("not watched"));
      const tx = await store.txn(
        [],
        [
          { type: "put", key: `${prefix}c`, value: v("1") },
          { type: "put", key: `${prefix}d`, value: v("1") },
        ],
      );
      expected.push([tx.revision, ["put c=1", "put d=1"]]);
      await store.delete(`${prefix}a`);
      expected.push([0, ["delete a"]]);
      expected.push([await store.put(`${prefix}b`, v("2")), ["put b=2"]]);
      const dp = await store.txn([], [{ type: "deletePrefix", prefix }]);
      expected.push([dp.revision, ["delete b", "delete c", "delete d"]]);

      await rec.waitForBatches(expected.length);
      assertBatches(rec.describe(), expected);
      rec.assertClean();
      assert.deepEqual([...rec.state.keys()], [], "the consumer ends with the prefix empty, like the store");

      // A second watcher from a revision in the past replays the tail from there.
      // (Its consumer had read the prefix at fromB - 1: just "a=1".)
      const fromB = expected[1]![0];
      const late = new Recorder();
      late.state.set(`${prefix}a`, { value: "1", modRevision: expected[0]![0] });
      const w2 = store.watch(prefix, { fromRevision: fromB }, late.onEvents);
      t.after(() => w2.close());
      await late.waitForBatches(expected.length - 1);
      assertBatches(late.describe(), expected.slice(1));
      late.assertClean();
    });

    test("watch after compaction: re-lists and delivers exactly the difference, nothing twice", async (t) => {
      const { store, prefix, compact, hold } = await open(t, { watchBufferRevisions: 2 });
      await store.put(`${prefix}a`, v("1"));
      await store.put(`${prefix}doomed`, v("1"));
      await store.put(`${prefix}keep`, v("1"));
      const start = await store.list(prefix);
      const rec = new Recorder(start);
      const gate = hold(rec, 1); // the consumer stalls in its first callback
      store.watch(prefix, { fromRevision: start.revision + 1, onWarning: rec.onWarning }, rec.onEvents);

      const ra2 = await store.put(`${prefix}a`, v("2"));
      await rec.waitForBatches(1);
      // While the consumer is stuck: enough writes to overflow its buffer, so the stream pauses...
      for (let i = 0; i < 4; i++) await store.put(`${prefix}filler${i}`, v("1"));
      await waitFor(() => rec.warnings.some((w) => /behind|pausing/.test(w)), {
        what: "the stream paused",
        timeoutMs: 5000,
      });
      // ...then the changes that only a re-list can tell it about, and a compaction past them.
      await store.delete(`${prefix}doomed`);
      const ra3 = await store.put(`${prefix}a`, v("3"));
      const rNew = await store.put(`${prefix}new`, v("1"));
      await compact(await store.revision());
      gate.release();

      const final = await store.list(prefix);
      await rec.waitForState(final.items);
      rec.assertClean();
      assert.ok(
        rec.warnings.some((w) => /compact/.test(w)),
        `the re-list path ran (warnings: ${rec.warnings.join(" | ")})`,
      );
      assert.deepEqual(
        rec.eventsFor(`${prefix}a`),
        [`put 2 @${ra2}`, `put 3 @${ra3}`],
        "a: changed, then changed again",
      );
      assert.deepEqual(rec.eventsFor(`${prefix}new`), [`put 1 @${rNew}`]);
      assert.equal(rec.eventsFor(`${prefix}doomed`).length, 1);
      assert.match(rec.eventsFor(`${prefix}doomed`)[0]!, /^delete/);
      assert.deepEqual(rec.eventsFor(`${prefix}keep`), [], "an unchanged key is not re-sent");
    });

    test("watch from a revision that is already compacted still delivers newer keys", async (t) => {
      const { store, prefix, compact } = await open(t);
      await store.put(`${prefix}old`, v("1"));
      const before = await store.list(prefix);
      const from = before.revision + 1;
      const rNew = await store.put(`${prefix}new`, v("1"));
      const rOld2 = await store.put(`${prefix}old`, v("2"));
      await compact(await store.revision());
      const rec = new Recorder(before);
      const w = store.watch(prefix, { fromRevision: from, onWarning: rec.onWarning }, rec.onEvents);
      t.after(() => w.close());
      await rec.waitForBatches(2);
      assert.deepEqual(rec.describe(), [
        [rNew, ["put new=1"]],
        [rOld2, ["put old=2"]],
      ]);
      rec.assertClean();
      assert.ok(rec.warnings.some((w) => /compact/.test(w)));
    });

    test("a lease expiring deletes its keys, and watchers see the deletes", async (t) => {
      const { store, prefix } = await open(t);
      const lease = await store.grantLease(1);
      assert.match(lease.id, /^\d+$/, "lease ids are decimal strings");
      assert.ok(lease.ttlSeconds >= 1);
      await store.put(`${prefix}leased1`, v("1"), { lease: lease.id });
      await store.txn([], [{ type: "put", key: `${prefix}leased2`, value: v("1"), lease: lease.id }]);
      await store.put(`${prefix}plain`, v("1"));
      assert.equal((await store.get(`${prefix}leased1`))!.lease, lease.id);
      const start = await store.list(prefix);
      const rec = new Recorder(start);
      const w = store.watch(prefix, { fromRevision: start.revision + 1 }, rec.onEvents);
      t.after(() => w.close());

      await rec.waitForBatches(1, 10_000);
      assert.deepEqual(
        rec.describe().map(([, evs]) => evs),
        [[`delete leased1`, `delete leased2`]],
        "both keys go in one revision",
      );
      assert.equal(await store.get(`${prefix}leased1`), undefined);
      assert.equal(await store.get(`${prefix}leased2`), undefined);
      assert.ok(await store.get(`${prefix}plain`));
      await assertCode(store.keepAlive(lease.id), ErrorCode.NOT_FOUND, "keepAlive of an expired lease");
      rec.assertClean();
    });

    test("keepAlive extends a lease past its TTL; without it the lease expires", async (t) => {
      const { store, prefix } = await open(t);
      const lease = await store.grantLease(1);
      const key = `${prefix}registration`;
      await store.put(key, v("1"), { lease: lease.id });
      const until = Date.now() + 2500; // 2.5 TTLs
      while (Date.now() < until) {
        const ttl = await store.keepAlive(lease.id);
        assert.ok(ttl >= 1 && ttl <= lease.ttlSeconds + 1, `remaining TTL ${ttl}`);
        await delay(250); // pacing of the keepalives, not waiting for a condition
      }
      assert.ok(await store.get(key), "kept alive past its TTL");
      await waitFor(async () => (await store.get(key)) === undefined, {
        what: "lease expiry after keepalives stop",
        timeoutMs: 10_000,
      });
    });

    test("revoke deletes at once; keepAlive on a revoked lease is NOT_FOUND; revoking again is not an error", async (t) => {
      const { store, prefix } = await open(t);
      const lease = await store.grantLease(60);
      await store.put(`${prefix}a`, v("1"), { lease: lease.id });
      await store.put(`${prefix}b`, v("1"), { lease: lease.id });
      const start = await store.list(prefix);
      const rec = new Recorder(start);
      const w = store.watch(prefix, { fromRevision: start.revision + 1 }, rec.onEvents);
      t.after(() => w.close());

      await store.revokeLease(lease.id);
      assert.deepEqual((await store.list(prefix)).items, [], "the keys are gone when revoke resolves");
      await assertCode(store.keepAlive(lease.id), ErrorCode.NOT_FOUND, "keepAlive of a revoked lease");
      await store.revokeLease(lease.id);
      await store.revokeLease("987654321");
      await rec.waitForBatches(1);
      assert.deepEqual(
        rec.describe().map(([, evs]) => evs),
        [["delete a", "delete b"]],
      );
      rec.assertClean();
    });

    test("closing a watcher stops its callbacks and waits for the one in progress", async (t) => {
      const { store, prefix, hold } = await open(t);
      const start = await store.revision();
      const closing = new Recorder();
      const gate = hold(closing, 1);
      const w = store.watch(prefix, { fromRevision: start + 1 }, closing.onEvents);
      const witness = new Recorder();
      const w2 = store.watch(prefix, { fromRevision: start + 1 }, witness.onEvents);
      t.after(() => w2.close());

      await store.put(`${prefix}a`, v("1"));
      await closing.waitForBatches(1);
      let closed = false;
      const closePromise = w.close().then(() => {
        closed = true;
      });
      await store.put(`${prefix}b`, v("1"));
      await witness.waitForBatches(2);
      assert.equal(closed, false, "close() waits for the callback in progress");
      gate.release();
      await withDeadline(closePromise, 5000, "watcher close");
      assert.equal(closing.inCallback, false, "the callback finished before close() settled");
      await store.put(`${prefix}c`, v("1"));
      await witness.waitForBatches(3);
      assert.equal(closing.batches.length, 1, "no callback after close");
    });

    test("the periodic reconcile repeats nothing the stream already delivered", async (t) => {
      const { store, prefix } = await open(t, { reconcileIntervalMs: 20 });
      const start = await store.revision();
      const rec = new Recorder();
      const w = store.watch(prefix, { fromRevision: start + 1, onWarning: rec.onWarning }, rec.onEvents);
      t.after(() => w.close());
      for (let i = 0; i < 30; i++) {
        await store.put(`${prefix}k${i % 5}`, v(String(i)));
        if (i % 7 === 0) await store.delete(`${prefix}k${(i + 3) % 5}`);
        if (i % 10 === 0) await delay(25); // let reconciles interleave with the stream
      }
      const final = await store.list(prefix);
      await rec.waitForState(final.items);
      rec.assertClean();
    });
  });
}

/**
 * Compares recorded batches with the expected ones; an expected revision of 0 stands for "whatever
 * revision the store gave it" (a plain delete does not return its revision).
 */
function assertBatches(actual: Array<[number, string[]]>, expected: Array<[number, string[]]>): void {
  assert.deepEqual(
    actual.map(([rev, evs], i) => [expected[i]?.[0] === 0 ? 0 : rev, evs]),
    expected,
  );
}

async function assertCode(p: Promise<unknown>, code: string, what: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(hasCode(err, code as ErrorCode), `${what}: expected ${code}, got ${String(err)}`);
    return true;
  });
}

/**
 * A watch consumer that checks the delivery contract on every batch and keeps the resulting state.
 * Violations are collected (a throwing callback would only become a warning) and asserted by
 * `assertClean()`.
 */
class Recorder {
  readonly batches: WatchEvent[][] = [];
  readonly warnings: string[] = [];
  /** key → value and modRevision, as the consumer would hold it. */
  readonly state = new Map<string, { value: string; modRevision: number }>();
  private readonly violations: string[] = [];
  private readonly seenEvents = new Set<string>();
  private lastRevision = 0;
  private hold: { after: number; released: Promise<void> } | undefined;
  inCallback = false;

  /** `start`: what the consumer read before watching (its list), or nothing. */
  constructor(start?: ListResult) {
    for (const kv of start?.items ?? [])
      this.state.set(kv.key, { value: valueText(kv.value), modRevision: kv.modRevision });
  }

  readonly onEvents = async (events: WatchEvent[]): Promise<void> => {
    if (this.inCallback) this.violations.push("callback re-entered before the previous one settled");
    this.inCallback = true;
    try {
      this.check(events);
      this.batches.push(events);
      const hold = this.hold;
      if (hold !== undefined && this.batches.length === hold.after) await hold.released;
    } finally {
      this.inCallback = false;
    }
  };

  readonly onWarning = (message: string): void => {
    this.warnings.push(message);
  };

  /** Makes callback number `n` wait until `release()`. */
  holdAfter(n: number): { release: () => void } {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.hold = { after: n, released };
    return { release };
  }

  async waitForBatches(n: number, timeoutMs = 10_000): Promise<void> {
    await waitFor(() => this.batches.length >= n, {
      what: `${n} watch batches (have ${this.batches.length}: ${JSON.stringify(this.describe())})`,
      timeoutMs,
    });
  }

  /** Waits until the consumer's state is exactly `items` (keys, values, modRevisions). */
  async waitForState(items: readonly KeyValue[], timeoutMs = 10_000): Promise<void> {
    const want = new Map(
      items.map((kv) => [kv.key, { value: valueText(kv.value), modRevision: kv.modRevision }]),
    );
    try {
      await waitFor(() => sameState(this.state, want), {
        what: "consumer state equal to the store's",
        timeoutMs,
      });
    } catch (err) {
      assert.deepEqual(Object.fromEntries(this.state), Object.fromEntries(want), String(err));
    }
  }

  /** [revision, ["put k=v" | "delete k", …]] per batch, keys relative to their last "/" segment. */
  describe(): Array<[number, string[]]> {
    return this.batches.map((b) => [
      b[0]!.kv.modRevision,
      b.map((e) =>
        e.type === "put" ? `put ${leaf(e.kv.key)}=${valueText(e.kv.value)}` : `delete ${leaf(e.kv.key)}`,
      ),
    ]);
  }

  /** Every event for `key`, as "put <value> @<rev>" / "delete @<rev>". */
  eventsFor(key: string): string[] {
    return this.batches
      .flat()
      .filter((e) => e.kv.key === key)
      .map((e) =>
        e.type === "put"
          ? `put ${valueText(e.kv.value)} @${e.kv.modRevision}`
          : `delete @${e.kv.modRevision}`,
      );
  }

  assertClean(): void {
    assert.deepEqual(this.violations, [], "watch delivery contract");
  }

  private check(events: WatchEvent[]): void {
    if (events.length === 0) {
      this.violations.push("empty batch");
      return;
    }
    const rev = events[0]!.kv.modRevision;
    if (events.some((e) => e.kv.modRevision !== rev)) {
      this.violations.push(`batch mixes revisions: ${events.map((e) => e.kv.modRevision).join(",")}`);
    }
    if (rev <= this.lastRevision) this.violations.push(`revision ${rev} after ${this.lastRevision}`);
    this.lastRevision = Math.max(this.lastRevision, rev);
    for (const e of events) {
      const id = `${e.type} ${e.kv.key} @${e.kv.modRevision}`;
      if (this.seenEvents.has(id)) this.violations.push(`duplicate event ${id}`);
      this.seenEvents.add(id);
      const had = this.state.get(e.kv.key);
      if (e.type === "put") {
        if (had !== undefined && had.modRevision === e.kv.modRevision)
          this.violations.push(`repeated put ${id}`);
        this.state.set(e.kv.key, { value: valueText(e.kv.value), modRevision: e.kv.modRevision });
      } else {
        if (had === undefined) this.violations.push(`delete of a key the consumer does not have: ${id}`);
        this.state.delete(e.kv.key);
      }
    }
  }
}

function sameState(
  have: Map<string, { value: string; modRevision: number }>,
  want: Map<string, { value: string; modRevision: number }>,
): boolean {
  if (have.size !== want.size) return false;
  for (const [k, w] of want) {
    const h = have.get(k);
    if (h === undefined || h.modRevision !== w.modRevision) return false;
    if (h.value !== w.value) return false;
  }
  return true;
}

function leaf(key: string): string {
  return key.slice(key.lastIndexOf("/") + 1);
}
