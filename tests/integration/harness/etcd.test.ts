/** A single-node etcd from the harness does what the control plane needs: put/get, watch, leases. */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { Etcd3 } from "etcd3";
import { startEtcd } from "../../helpers/etcd.js";
import { isRunning, startTicks } from "../../helpers/proc-stat.js";
import { waitFor, withDeadline } from "../../helpers/wait.js";

function client(endpoints: readonly string[]): Etcd3 {
  return new Etcd3({
    hosts: [...endpoints],
    // Deadlines on ordinary calls, none on watch streams (they live as long as the watcher).
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5000 }),
  });
}

test("etcd: put/get, watch and lease expiry; stop() kills it and removes its data dir", async (t) => {
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const kv = client(etcd.endpoints);
  t.after(() => kv.close());

  await kv.put("/trellis/a").value("1");
  assert.equal(await kv.get("/trellis/a").string(), "1");

  const watcher = await kv.watch().key("/trellis/watched").create();
  t.after(() => watcher.cancel());
  const seen = new Promise<string>((resolve) => watcher.on("put", (res) => resolve(res.value.toString())));
  await kv.put("/trellis/watched").value("hello");
  assert.equal(await withDeadline(seen, 5000, "watch event"), "hello");

  const leaseWatcher = await kv.watch().key("/trellis/leased").create();
  t.after(() => leaseWatcher.cancel());
  const deleted = new Promise<void>((resolve) => leaseWatcher.on("delete", () => resolve()));
  const lease = kv.lease(1, { autoKeepAlive: false });
  await lease.put("/trellis/leased").value("x");
  assert.equal(await kv.get("/trellis/leased").string(), "x");
  await withDeadline(deleted, 10_000, "lease expiry delete event");
  assert.equal(await kv.get("/trellis/leased").string(), null);

  const member = etcd.members[0]!;
  const pid = member.pid!;
  const ticks = startTicks(pid)!;
  await etcd.stop();
  assert.equal(isRunning(pid, ticks), false);
  assert.equal(existsSync(member.dataDir), false);
});

test("etcd: extra flags reach the server", async (t) => {
  // --max-txn-ops=1 makes a two-op transaction fail: visible proof the flag was applied.
  const etcd = await startEtcd({ extraArgs: ["--max-txn-ops=1", "--auto-compaction-retention=1"] });
  t.after(() => etcd.stop());
  const kv = client(etcd.endpoints);
  t.after(() => kv.close());
  await kv.if("/x", "Version", "==", 0).then(kv.put("/x").value("1")).commit();
  await assert.rejects(
    kv.if("/y", "Version", "==", 0).then(kv.put("/y").value("1"), kv.put("/z").value("1")).commit(),
    /too many operations/,
  );
  await waitFor(async () => (await kv.get("/x").string()) === "1", { what: "/x readable" });
});
