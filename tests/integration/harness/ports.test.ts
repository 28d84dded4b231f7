/** Free ports are distinct and bindable; withFreePorts retries EADDRINUSE, and only that. */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { test } from "node:test";
import { freePorts, isAddrInUse, withFreePorts } from "../../helpers/ports.js";
import { closeServer, listen } from "../../helpers/servers.js";

function listenOn(port: number): Promise<Server> {
  const server = createServer();
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

test("freePorts returns distinct ports that can be bound", async () => {
  const ports = await freePorts(4);
  assert.equal(new Set(ports).size, 4);
  const servers = await Promise.all(ports.map(listenOn));
  await Promise.all(servers.map((s) => closeServer(s)));
});

test("withFreePorts retries with fresh ports after EADDRINUSE", async (t) => {
  const blocker = createServer();
  const taken = await listen(blocker);
  t.after(() => closeServer(blocker));
  const seen: number[][] = [];
  const server = await withFreePorts(1, async (ports) => {
    seen.push(ports);
    // First attempt: pretend someone grabbed our port, by binding the blocker's.
    return listenOn(seen.length === 1 ? taken : ports[0]!);
  });
  t.after(() => closeServer(server));
  assert.equal(seen.length, 2);
  assert.ok(server.listening);
});

test("withFreePorts does not retry other errors, and gives up after `tries`", async () => {
  let calls = 0;
  await assert.rejects(
    withFreePorts(1, async () => {
      calls++;
      throw new Error("boom");
    }),
    /boom/,
  );
  assert.equal(calls, 1);
  calls = 0;
  await assert.rejects(
    withFreePorts(
      1,
      async () => {
        calls++;
        throw new Error("listen: bind: address already in use");
      },
      { tries: 3 },
    ),
    (err: unknown) => isAddrInUse(err),
  );
  assert.equal(calls, 3);
});
