/**
 * Free loopback ports for servers we do not control the bind of (etcd, redis-server).
 *
 * "Bind :0, read the port, close" leaves a window in which someone else may take the port before the
 * real server binds it, so starts that use such ports go through withFreePorts, which retries with
 * fresh ports when the start fails with EADDRINUSE. Servers of our own listen on port 0 directly
 * (servers.ts) and need none of this.
 */
import { createServer, type Server } from "node:net";

/** `count` distinct ports that were free on `host` a moment ago (all bound at once, then released). */
export async function freePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, host, resolve);
      });
    }
    return servers.map((s) => {
      const addr = s.address();
      if (addr === null || typeof addr === "string") throw new Error("listening server has no port");
      return addr.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

/** One port that was free on `host` a moment ago. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const [port] = await freePorts(1, host);
  return port!;
}

/** True if `err` (or any error in its `cause` chain) says the address was already in use. */
export function isAddrInUse(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 10; e = e.cause, depth++) {
    if ((e as { code?: unknown }).code === "EADDRINUSE") return true;
    if (/EADDRINUSE|address already in use/i.test(e.message)) return true;
  }
  return false;
}

/**
 * Calls `start` with `count` fresh free ports; if it fails with EADDRINUSE, tries again with new ports,
 * up to `tries` attempts in all (default 5). Any other error, or the last EADDRINUSE, is thrown.
 * `start` must clean up after its own failed attempt.
 */
export async function withFreePorts<T>(
  count: number,
  start: (ports: number[]) => Promise<T>,
  opts: { tries?: number; host?: string } = {},
): Promise<T> {
  const tries = opts.tries ?? 5;
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(count, opts.host);
    try {
      return await start(ports);
    } catch (err) {
      if (attempt >= tries || !isAddrInUse(err)) throw err;
    }
  }
}
