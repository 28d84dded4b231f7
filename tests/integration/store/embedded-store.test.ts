/**
 * The embedded store: the conformance suite (memory only, and persisted), then what only it has —
 * its directory: restarts, crashes mid-run, a torn log tail, and one process per directory.
 */
import assert from "node:assert/strict";
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { suite, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type Clock, type ClockTimer, systemClock } from "@trellis/control-plane/store/clock";
import { createStore } from "@trellis/control-plane/store/create-store";
import { createEmbeddedStore, type EmbeddedStoreOptions } from "@trellis/control-plane/store/embedded-store";
import {
  type RawWatchHandlers,
  startResumableWatch,
  type WatchSource,
} from "@trellis/control-plane/store/resumable-watch";
import { type KeyValue, textValue, valueText, type WatchEvent } from "@trellis/control-plane/store/store";
import { ErrorCode, hasCode } from "@trellis/proto/errors";
import { spawnManaged } from "../../helpers/processes.js";
import { makeTempDir, removeTempDir } from "../../helpers/temp-dirs.js";
import { waitFor, withDeadline } from "../../helpers/wait.js";
import { storeConformance } from "./conformance.js";

const repoRoot = resolve(fileURLToPath(import.meta.url), "../../../../..");
const fast: EmbeddedStoreOptions = { watchRetryMinMs: 20, watchRetryMaxMs: 200 };

storeConformance("embedded", async (options) => {
  const store = await createEmbeddedStore({ ...fast, ...options });
  return { store, compact: async (revision) => store.compact(revision) };
});

suite("embedded store: its directory", () => {
  test("restart: data and revision continue; lease keys come back with a full TTL and expire unless kept alive", async (t) => {
    const dir = makeTempDir("embedded");
    t.after(() => removeTempDir(dir));
    const first = await createEmbeddedStore({ ...fast, dir, snapshotEveryRecords: 4 });
    const r1 = await first.put("/p/a", textValue("1"));
    await first.put("/p/a", textValue("2"));
    await first.put("/p/b", textValue("1"));
    await first.delete("/p/b");
    const dropped = await first.grantLease(1);
    const kept = await first.grantLease(1);
    await first.put("/reg/dropped", textValue("x"), { lease: dropped.id });
    await first.put("/reg/kept", textValue("x"), { lease: kept.id });
    const revoked = await first.grantLease(60);
    await first.put("/reg/revoked", textValue("x"), { lease: revoked.id });
    await first.revokeLease(revoked.id);
    const before = await first.revision();
    await first.close();
    assert.ok(existsSync(join(dir, "snapshot.json")), "a snapshot was taken (every 4 records)");

    const second = await createEmbeddedStore({ ...fast, dir });
    t.after(() => second.close());
    assert.equal(await second.revision(), before, "the revision continues where it was");
    const a = await second.get("/p/a");
    assert.deepEqual([valueText(a!.value), a!.createRevision], ["2", r1]);
    assert.equal(await second.get("/p/b"), undefined);
    assert.equal(await second.get("/reg/revoked"), undefined);
    // The leases came back (full TTL from the restart): their keys are there until they expire.
    assert.equal((await second.get("/reg/dropped"))!.lease, dropped.id);
    assert.equal(await second.keepAlive(kept.id), 1);
    await assert.rejects(second.keepAlive(revoked.id), (e: unknown) => hasCode(e, ErrorCode.NOT_FOUND));
    const next = await second.put("/p/c", textValue("1"));
    assert.equal(next, before + 1, "new writes take the next revisions");

    // Keep one lease alive past its TTL; the other expires.
    const until = Date.now() + 2500;
    while (Date.now() < until) {
      await second.keepAlive(kept.id);
      await new Promise((r) => setTimeout(r, 200)); // keepalive pacing
    }
    assert.equal(await second.get("/reg/dropped"), undefined, "an unrenewed lease expired after the restart");
    assert.ok(await second.get("/reg/kept"), "a renewed lease survives the restart");
    const fresh = await second.grantLease(5);
    assert.ok(
      ![dropped.id, kept.id, revoked.id].includes(fresh.id),
      "lease ids are not reused after a restart",
    );
  });

  test("a killed process loses no acknowledged write; a torn log tail is dropped", async (t) => {
    const dir = makeTempDir("embedded-crash");
    t.after(() => removeTempDir(dir));
    const script = `
      import { createEmbeddedStore } from "@trellis/control-plane/store/embedded-store";
      import { textValue } from "@trellis/control-plane/store/store";
      const store = await createEmbeddedStore({ dir: ${JSON.stringify(dir)}, snapshotEveryRecords: 7 });
      const lease = await store.grantLease(30);
      for (let i = 1; i <= 30; i++) {
        await store.put("/crash/k" + i, textValue(String(i)), i % 10 === 0 ? { lease: lease.id } : {});
        console.log("acked " + i);
      }
      // Keep writing unacknowledged work until killed.
      for (let i = 0; ; i++) {
        store.put("/crash/late" + (i % 50), textValue("x")).catch(() => {});
        await new Promise((r) => setImmediate(r));
      }
    `;
    const child = spawnManaged(process.execPath, ["--input-type=module", "-e", script], {
      name: "embedded-crash",
      cwd: repoRoot,
    });
    t.after(() => child.stop());
    await waitFor(() => child.logTail(5).includes("acked 30"), {
      what: "30 acknowledged writes",
      timeoutMs: 15_000,
      failIf: () => (child.exitInfo() === undefined ? undefined : `child exited:\n${child.logTail()}`),
    });
    child.kill("SIGKILL");
    await withDeadline(child.exited, 5000, "child exit");
    appendFileSync(join(dir, "wal.log"), '{"seq":999999,"r":{"t":"rev","rev":'); // a write cut short

    const store = await createEmbeddedStore({ ...fast, dir });
    t.after(() => store.close());
    for (let i = 1; i <= 30; i++) {
      const kv = await store.get(`/crash/k${i}`);
      assert.equal(kv && valueText(kv.value), String(i), `acknowledged write ${i}`);
    }
    assert.ok(
      !readFileSync(join(dir, "wal.log"), "utf8").includes('"seq":999999'),
      "the torn line was cut off",
    );
    assert.ok(
      existsSync(join(dir, "snapshot.json")),
      "recovery went through a snapshot plus the log after it",
    );
    const rev = await store.revision();
    assert.equal(await store.put("/crash/after", textValue("1")), rev + 1);
    assert.equal((await store.get("/crash/k10"))!.lease !== undefined, true, "lease attachment survived");
  });

  test("one process per directory; createStore describes the embedded store as single-node", async (t) => {
    const dir = makeTempDir("embedded-lock");
    t.after(() => removeTempDir(dir));
    const { store, description } = await createStore({ embeddedDir: dir });
    t.after(() => store.close());
    assert.equal(store.backend, "embedded");
    assert.match(description, /embedded, single-node/);
    assert.match(description, new RegExp(dir.replace(/[.]/g, "\\.")));
    await assert.rejects(createEmbeddedStore({ dir }), (e: unknown) => hasCode(e, ErrorCode.CONFIG));
    const memory = await createStore({});
    t.after(() => memory.store.close());
    assert.match(memory.description, /embedded, single-node.*in memory only/);
  });
});

suite("embedded store: leases on an injected clock", () => {
  test("a lease expires TTL after its last keepAlive, not before; the watcher sees the delete", async (t) => {
    const clock = new ManualClock();
    const store = await createEmbeddedStore({ clock, reconcileIntervalMs: 0 });
    t.after(() => store.close());
    const lease = await store.grantLease(10);
    await store.put("/reg/a", textValue("1"), { lease: lease.id });
    const events: WatchEvent[] = [];
    const w = store.watch("/reg/", { fromRevision: (await store.revision()) + 1 }, (batch) => {
      events.push(...batch);
    });
    t.after(() => w.close());

    clock.advance(9_000);
    assert.ok(await store.get("/reg/a"), "alive before its TTL");
    assert.equal(await store.keepAlive(lease.id), 10);
    clock.advance(9_000);
    assert.ok(await store.get("/reg/a"), "the keepAlive restarted the TTL");
    clock.advance(1_001);
    await waitFor(() => events.length === 1, { what: "the expiry's delete event" });
    assert.equal(await store.get("/reg/a"), undefined);
    assert.deepEqual(
      events.map((e) => [e.type, e.kv.key]),
      [["delete", "/reg/a"]],
    );
  });
});

suite("resumable watch (shared by both stores): the periodic reconcile", () => {
  test("repairs changes a stream silently lost: puts, a delete, and a lost tail", async (t) => {
    const source = new LossySource();
    const seen = new Map<string, string>();
    const deliveries: string[] = [];
    const w = startResumableWatch(
      source,
      "/k/",
      1,
      (batch) => {
        for (const e of batch) {
          deliveries.push(`${e.type} ${e.kv.key}@${e.kv.modRevision}`);
          if (e.type === "put") seen.set(e.kv.key, valueText(e.kv.value));
          else seen.delete(e.kv.key);
        }
      },
      () => {},
      { clock: systemClock, reconcileIntervalMs: 30, bufferRevisions: 100, retryMinMs: 10, retryMaxMs: 100 },
    );
    t.after(() => w.close());
    await waitFor(() => source.isOpen, { what: "the stream opened" });
    source.write("/k/a", "1", true);
    source.write("/k/b", "1", false); // lost
    source.write("/k/c", "1", true);
    source.remove("/k/a", false); // lost
    source.write("/k/d", "1", false); // lost, and nothing after it
    await waitFor(() => seen.size === 3 && !seen.has("/k/a"), {
      what: `reconciled state (deliveries: ${deliveries.join(", ")})`,
      timeoutMs: 5000,
    });
    assert.deepEqual(Object.fromEntries(seen), { "/k/b": "1", "/k/c": "1", "/k/d": "1" });
    assert.equal(
      new Set(deliveries).size,
      deliveries.length,
      `nothing delivered twice: ${deliveries.join(", ")}`,
    );
  });
});

/** A Clock that moves only when told to; due timers run in time order. */
class ManualClock implements Clock {
  private time = 0;
  private readonly timers = new Set<{ at: number; fn: () => void }>();

  now(): number {
    return this.time;
  }

  setTimer(fn: () => void, ms: number): ClockTimer {
    const timer = { at: this.time + ms, fn };
    this.timers.add(timer);
    return { cancel: () => this.timers.delete(timer) };
  }

  advance(ms: number): void {
    this.time += ms;
    for (const timer of [...this.timers].sort((a, b) => a.at - b.at)) {
      if (timer.at > this.time || !this.timers.has(timer)) continue;
      this.timers.delete(timer);
      timer.fn();
    }
  }
}

/** An in-memory WatchSource whose stream can be told to lose an event (a bug, a partitioned member). */
class LossySource implements WatchSource {
  private readonly kvs = new Map<string, KeyValue>();
  private rev = 0;
  private handlers: RawWatchHandlers | undefined;

  get isOpen(): boolean {
    return this.handlers !== undefined;
  }

  write(key: string, value: string, deliver: boolean): void {
    const prev = this.kvs.get(key);
    const kv = {
      key,
      value: textValue(value),
      createRevision: prev?.createRevision ?? ++this.rev,
      modRevision: 0,
    };
    if (prev !== undefined) ++this.rev;
    kv.modRevision = this.rev;
    this.kvs.set(key, kv);
    if (deliver) this.handlers?.events([{ type: "put", kv }]);
  }

  remove(key: string, deliver: boolean): void {
    this.kvs.delete(key);
    const rev = ++this.rev;
    if (deliver) {
      this.handlers?.events([
        { type: "delete", kv: { key, value: new Uint8Array(), createRevision: 0, modRevision: rev } },
      ]);
    }
  }

  async keysAt(): Promise<Map<string, number>> {
    return new Map();
  }

  async list(prefix: string) {
    const items = [...this.kvs.values()]
      .filter((kv) => kv.key.startsWith(prefix))
      .sort((a, b) => (a.key < b.key ? -1 : 1));
    return { items, revision: this.rev };
  }

  open(_prefix: string, _fromRevision: number, handlers: RawWatchHandlers): { close: () => void } {
    this.handlers = handlers;
    queueMicrotask(() => handlers.ready());
    return {
      close: () => {
        this.handlers = undefined;
      },
    };
  }
}
