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

export interface PeerAddress {
  address: string;
  port: number;
}

export interface MeshTransportOptions {
  /** Connect deadline, ms (default 1000; the cluster's `timeouts.connect` in later issues). */
  connectTimeoutMs?: number;
  /** Close a session idle this long, ms (default 60 000). */
  idleTimeoutMs?: number;
  maxSessionsPerPeer?: number;
}

/** Opens request streams to peer sidecars. */
export interface MeshTransport {
  /** A new request stream on a pooled session to `peer`. Errors surface on the stream. */
  request(peer: PeerAddress, headers: http2.OutgoingHttpHeaders, endStream: boolean): http2.ClientHttp2Stream;
  /** Closes every session (in-flight streams finish). */
  close(): Promise<void>;
}

interface PooledSession {
  session: http2.ClientHttp2Session;
  connected: boolean;
  /** Streams opened by us and not yet closed. */
  open: number;
}

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
  ): http2.ClientHttp2Stream {
    const pooled = this.session(peer);
    const stream = pooled.session.request(headers, { endStream });
    pooled.open++;
    stream.once("close", () => {
      pooled.open--;
    });
    return stream;
  }

  private session(peer: PeerAddress): PooledSession {
    const key = peer.address.includes(":")
      ? `[${peer.address}]:${peer.port}`
      : `${peer.address}:${peer.port}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = [];
      this.pools.set(key, pool);
    }
    for (const p of pool) {
      if (p.session.closed || p.session.destroyed) continue;
      const limit = p.connected ? (p.session.remoteSettings.maxConcurrentStreams ?? 100) : 100;
      if (p.open < limit) return p;
    }
    if (pool.length >= this.maxSessions) return pool[0] as PooledSession;
    const session = http2.connect(`http://${key}`, {
      settings: { enablePush: false },
      peerMaxConcurrentStreams: 1000,
    });
    const pooled: PooledSession = { session, connected: false, open: 0 };
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
          new TrellisError(
            ErrorCode.TIMEOUT,
            `connect to ${key} timed out after ${this.connectTimeoutMs} ms`,
          ),
        );
      }
    }, this.connectTimeoutMs);
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
    });
    session.setTimeout(this.idleTimeoutMs, () => session.close());
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
