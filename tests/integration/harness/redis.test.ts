/** A redis-server from the harness runs Lua (what rate limiting needs), and can crash and come back. */
import assert from "node:assert/strict";
import { connect } from "node:net";
import { test } from "node:test";
import { Redis } from "ioredis";
import { isRunning, startTicks } from "../../helpers/proc-stat.js";
import { startRedis } from "../../helpers/redis.js";

const incrBy = "return redis.call('INCRBY', KEYS[1], ARGV[1])";

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" });
    socket.on("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.on("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED"));
  });
}

test("redis: EVAL runs Lua; kill() loses the data, restart() serves again on the same port", async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
  const client = new Redis(redis.url, { maxRetriesPerRequest: 1, lazyConnect: true });
  t.after(() => client.disconnect());
  await client.connect();

  assert.equal(await client.eval(incrBy, 1, "counter", 5), 5);
  assert.equal(await client.eval(incrBy, 1, "counter", 2), 7);

  const pid = redis.pid!;
  const ticks = startTicks(pid)!;
  await redis.kill();
  assert.equal(isRunning(pid, ticks), false);
  assert.equal(redis.pid, undefined);
  assert.ok(await refused(redis.port), "nothing listens after kill()");

  await redis.restart();
  const fresh = new Redis(redis.url, { maxRetriesPerRequest: 1, lazyConnect: true });
  t.after(() => fresh.disconnect());
  await fresh.connect();
  assert.equal(await fresh.get("counter"), null, "no persistence: a crash loses the data");
  assert.equal(await fresh.eval(incrBy, 1, "counter", 1), 1);
});
