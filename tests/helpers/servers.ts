/**
 * Our own servers in tests (fake upstreams, fake control planes, sidecars under test): listen on
 * port 0 (no port races) and close gracefully, waiting for in-flight work to drain, so a test's
 * teardown never cuts off a request the test is still asserting on, and never hangs on an idle
 * keep-alive connection either.
 */
import type { Http2Session } from "node:http2";
import type { Server, Socket } from "node:net";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { waitFor } from "./wait.js";

/** Open connections and HTTP/2 sessions of a server, tracked from listen() on. */
interface Tracked {
  sockets: Set<Socket>;
  sessions: Set<Http2Session>;
}

const tracked = new WeakMap<Server, Tracked>();

function track(server: Server): Tracked {
  let t = tracked.get(server);
  if (t !== undefined) return t;
  const state: Tracked = { sockets: new Set(), sessions: new Set() };
  t = state;
  tracked.set(server, state);
  // TLS servers emit 'secureConnection' but also 'connection' with the raw socket, which is what we
  // must destroy at the deadline.
  server.on("connection", (socket: Socket) => {
    state.sockets.add(socket);
    socket.once("close", () => state.sockets.delete(socket));
  });
  // node:http2 servers (plain and secure) emit 'session'.
  server.on("session", (session: Http2Session) => {
    state.sessions.add(session);
    session.once("close", () => state.sessions.delete(session));
  });
  return state;
}

/** Listens on `host` port 0 (default 127.0.0.1) and returns the port. Works for net, tls, http,
 * https and http2 servers; starts tracking connections for closeServer. */
export async function listen(server: Server, host = "127.0.0.1"): Promise<number> {
  track(server);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once("error", onError);
    server.listen(0, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  const addr = server.address();
  if (addr === null || typeof addr === "string") {
    throw new TrellisError(ErrorCode.INTERNAL, "server listening on port 0 reports no port");
  }
  return addr.port;
}

/**
 * Stops accepting, then waits for open connections to finish their in-flight work:
 * 1. `server.close()`; HTTP/2 sessions get a GOAWAY (`session.close()`), which lets open streams end.
 * 2. Until the close completes: idle HTTP/1 keep-alive connections are closed as they turn idle
 *    (`closeIdleConnections`, polled, because a connection becomes idle only when its response ends).
 * 3. At the deadline (`timeoutMs`, default 5000) everything still open is destroyed; the promise then
 *    resolves once the server has closed. Connections made before listen() are only seen by `close()`.
 */
export async function closeServer(server: Server, opts: { timeoutMs?: number } = {}): Promise<void> {
  const state = track(server);
  const closed = new Promise<void>((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
  });
  let done = false;
  void closed.then(() => {
    done = true;
  });
  for (const session of state.sessions) if (!session.closed) session.close();
  const http1 = server as Server & { closeIdleConnections?: () => void; closeAllConnections?: () => void };
  try {
    await waitFor(
      () => {
        http1.closeIdleConnections?.();
        return done;
      },
      { what: "server connections drained", timeoutMs: opts.timeoutMs ?? 5000, intervalMs: 10 },
    );
  } catch {
    http1.closeAllConnections?.();
    for (const session of state.sessions) session.destroy();
    for (const socket of state.sockets) socket.destroy();
  }
  await closed;
}
