/**
 * The hop between sidecars: HTTP/2, multiplexed over few connections per peer, behind an interface
 * so the plaintext h2c of today and mTLS later are interchangeable.
 *
 * Sessions are pooled per peer address. A session that errors, gets GOAWAY or closes is dropped
 * from the pool (streams in flight on it finish or fail on their own). A peer's concurrent-stream
 * limit is respected by opening another session (up to `maxSessionsPerPeer`).
 */
import * as http2 from "node:http2";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";

/**
 * Cancels a request stream this process opened: RST_STREAM at once, without ending our side
 * first. `close(code)` half-closes before it resets, so the peer reads END_STREAM and then the
 * reset — a request body cut short would look complete to it (and to its app). After `destroy()`
 * the peer sees an aborted request. (Node sends the reset with NO_ERROR here; what matters is
 * that END_STREAM never went out.)
 */
export function cancelStream(stream: http2.ClientHttp2Stream): void {
  if (!stream.destroyed) stream.destroy();
}

export interface PeerAddress {
  address: string;
  port: number;
}

export interface MeshTransportOptions {
  /** Connect deadline, ms, when a request names none (default 1000). */
  connectTimeoutMs?: number;
  /** Close a session idle this long, ms (default 60 000). */
  idleTimeoutMs?: number;
  maxSessionsPerPeer?: number;
}

/**
 * A cluster's budget of connections (`connectionLimits.maxConnections`), counted over the sessions
 * the cluster's requests made the transport open. Implemented by the cluster's ConnectionLimiter.
 */
export interface ConnectionBudget {
  /** Takes one connection; false when the cluster is at its limit. */
  tryOpenConnection(): boolean;
  /** Gives back one connection taken by `tryOpenConnection` (its session closed). */
  closeConnection(): void;
}

/** Per-request settings from the cluster the request goes to. */
export interface StreamOptions {
  /** Deadline of a new session's connect, ms (the cluster's `timeouts.connect`). */
  connectTimeoutMs?: number;
  /** A new session closes after this long without streams, ms (the cluster's `timeouts.idle`). */
  idleTimeoutMs?: number;
  /** Counts the sessions this request makes the transport open. */
  connections?: ConnectionBudget;
}

/** Opens request streams to peer sidecars. */
export interface MeshTransport {
  /**
   * A new request stream on a pooled session to `peer`; errors surface on the stream. Undefined
   * when a new session is needed, none to `peer` exists, and `opts.connections` has no room: the
   * caller answers `overflow`. Settings in `opts` apply to sessions this call opens (a session is
   * shared by every request to its peer; the first request's cluster sets its timeouts).
   */
  request(
    peer: PeerAddress,
    headers: http2.OutgoingHttpHeaders,
    endStream: boolean,
    opts?: StreamOptions,
  ): http2.ClientHttp2Stream | undefined;
  /** Closes every session (in-flight streams finish). */
  close(): Promise<void>;
}

interface PooledSession {
  session: http2.ClientHttp2Session;
  connected: boolean;
  /** Streams opened by us and not yet closed. */
  open: number;
  /** Streams opened on this session so far. */
  streams: number;
  /** No new streams: closing once its streams finish (stream ids nearly spent). */
  retired: boolean;
}

/** Streams after which a session is retired (client stream ids end at 2^31 − 1, odd only). */
const MAX_STREAMS_PER_SESSION = 1_000_000_000;

export class H2cTransport implements MeshTransport {
  private readonly pools = new Map<string, PooledSession[]>();
  private readonly connectTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly maxSessions: number;

  constructor(opts: MeshTransportOptions = {}) {
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 1000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.maxSessions = opts.maxSessionsPerPeer ?? 4;
  }

  request(
    peer: PeerAddress,
    headers: http2.OutgoingHttpHeaders,
    endStream: boolean,
    opts?: StreamOptions,
  ): http2.ClientHttp2Stream | undefined {
    const pooled = this.session(peer, opts);
    if (pooled === undefined) return undefined;
    // HTTP/2 stream ids run out after 2^30 client streams on one session; retire it well before
    // (it finishes its streams and closes) so a long-lived peer connection never gets stuck.
    if (++pooled.streams >= MAX_STREAMS_PER_SESSION) {
      pooled.retired = true;
      pooled.session.close();
    }
    const stream = pooled.session.request(headers, { endStream });
    pooled.open++;
    stream.once("close", () => {
      pooled.open--;
    });
    return stream;
  }

  private session(peer: PeerAddress, opts: StreamOptions | undefined): PooledSession | undefined {
    const key = peer.address.includes(":")
      ? `[${peer.address}]:${peer.port}`
      : `${peer.address}:${peer.port}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = [];
      this.pools.set(key, pool);
    }
    for (const p of pool) {
      if (p.retired || p.session.closed || p.session.destroyed) continue;
      const limit = p.connected ? (p.session.remoteSettings.maxConcurrentStreams ?? 100) : 100;
      if (p.open < limit) return p;
    }
    const live = (p: PooledSession) => !p.retired && !p.session.closed && !p.session.destroyed;
    if (pool.length >= this.maxSessions) {
      const shared = pool.find(live);
      if (shared !== undefined) return shared;
    }
    // Over the cluster's connection limit: share a live session (its peer queues the stream past
    // its concurrency limit) rather than open one; with none to share, the request overflows.
    const budget = opts?.connections;
    if (budget !== undefined && !budget.tryOpenConnection()) {
      return pool.find(live);
    }
    const connectTimeoutMs = opts?.connectTimeoutMs ?? this.connectTimeoutMs;
    const session = http2.connect(`http://${key}`, {
      settings: { enablePush: false },
      peerMaxConcurrentStreams: 1000,
    });
    const pooled: PooledSession = { session, connected: false, open: 0, streams: 0, retired: false };
    pool.push(pooled);
    const drop = () => {
      const list = this.pools.get(key);
      if (list === undefined) return;
      const i = list.indexOf(pooled);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.pools.delete(key);
    };
    const timer = setTimeout(() => {
      if (!pooled.connected) {
        session.destroy(
          new TrellisError(ErrorCode.TIMEOUT, `connect to ${key} timed out after ${connectTimeoutMs} ms`),
        );
      }
    }, connectTimeoutMs);
    timer.unref();
    session.once("connect", () => {
      pooled.connected = true;
      clearTimeout(timer);
    });
    session.on("error", () => drop());
    session.on("goaway", () => drop());
    session.on("close", () => {
      clearTimeout(timer);
      drop();
      budget?.closeConnection();
    });
    session.setTimeout(opts?.idleTimeoutMs ?? this.idleTimeoutMs, () => session.close());
    session.unref();
    return pooled;
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()].flat();
    this.pools.clear();
    await Promise.all(
      all.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.session.closed) return resolve();
            p.session.close(() => resolve());
            setTimeout(() => {
              p.session.destroy();
              resolve();
            }, 2000).unref();
          }),
      ),
    );
  }
}
