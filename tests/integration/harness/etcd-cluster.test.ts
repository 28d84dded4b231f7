/** A 3-member etcd cluster from the harness survives its leader's death, and the dead member rejoins. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Etcd3 } from "etcd3";
import { startEtcdCluster } from "../../helpers/etcd.js";
import { isRunning, startTicks } from "../../helpers/proc-stat.js";

// Short per-attempt deadlines: the first call after the leader dies may stall on the dead member
// until its deadline, and the client then retries on another member.
function client(endpoints: readonly string[]): Etcd3 {
  return new Etcd3({
    hosts: [...endpoints],
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 1500 }),
  });
}

test("etcd cluster: serves through a leader kill; the killed member restarts and catches up", async (t) => {
  const cluster = await startEtcdCluster(3);
  t.after(() => cluster.stop());
  assert.equal(cluster.endpoints.length, 3);
  const kv = client(cluster.endpoints);
  t.after(() => kv.close());

  await kv.put("/before").value("1");
  const leader = await cluster.leaderIndex();
  const pid = cluster.members[leader]!.pid!;
  const ticks = startTicks(pid)!;
  await cluster.kill(leader);
  assert.equal(isRunning(pid, ticks), false);
  assert.equal(cluster.members[leader]!.pid, undefined);

  // Every call must succeed (each within its deadline) while the survivors elect a new leader.
  for (let i = 0; i < 20; i++) {
    await kv.put(`/during/${i}`).value(String(i));
    assert.equal(await kv.get(`/during/${i}`).string(), String(i));
  }
  assert.equal(await kv.get("/before").string(), "1");
  const newLeader = await cluster.leaderIndex();
  assert.notEqual(newLeader, leader);

  await cluster.restart(leader);
  assert.ok(cluster.members[leader]!.pid !== undefined);
  // A linearizable read through the restarted member alone sees what was written while it was down.
  const only = client([cluster.endpoints[leader]!]);
  t.after(() => only.close());
  assert.equal(await only.get("/during/19").string(), "19");
});
