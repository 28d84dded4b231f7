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
export function cancelStream(stream) {
    if (!stream.destroyed)
        stream.destroy();
}
export class H2cTransport {
    pools = new Map();
    connectTimeoutMs;
    idleTimeoutMs;
    maxSessions;
    constructor(opts = {}) {
        this.connectTimeoutMs = opts.connectTimeoutMs ?? 1000;
        this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
        this.maxSessions = opts.maxSessionsPerPeer ?? 4;
    }
    request(peer, headers, endStream, opts) {
        const pooled = this.session(peer, opts);
        if (pooled === undefined)
            return undefined;
        const stream = pooled.session.request(headers, { endStream });
        pooled.open++;
        stream.once("close", () => {
            pooled.open--;
        });
        return stream;
    }
    session(peer, opts) {
        const key = peer.address.includes(":")
            ? `[${peer.address}]:${peer.port}`
            : `${peer.address}:${peer.port}`;
        let pool = this.pools.get(key);
        if (pool === undefined) {
            pool = [];
            this.pools.set(key, pool);
        }
        for (const p of pool) {
            if (p.session.closed || p.session.destroyed)
                continue;
            const limit = p.connected ? (p.session.remoteSettings.maxConcurrentStreams ?? 100) : 100;
            if (p.open < limit)
                return p;
        }
        if (pool.length >= this.maxSessions)
            return pool[0];
        // Over the cluster's connection limit: share a live session (its peer queues the stream past
        // its concurrency limit) rather than open one; with none to share, the request overflows.
        const budget = opts?.connections;
        if (budget !== undefined && !budget.tryOpenConnection()) {
            return pool.find((p) => !p.session.closed && !p.session.destroyed);
        }
        const connectTimeoutMs = opts?.connectTimeoutMs ?? this.connectTimeoutMs;
        const session = http2.connect(`http://${key}`, {
            settings: { enablePush: false },
            peerMaxConcurrentStreams: 1000,
        });
        const pooled = { session, connected: false, open: 0 };
        pool.push(pooled);
        const drop = () => {
            const list = this.pools.get(key);
            if (list === undefined)
                return;
            const i = list.indexOf(pooled);
            if (i >= 0)
                list.splice(i, 1);
            if (list.length === 0)
                this.pools.delete(key);
        };
        const timer = setTimeout(() => {
            if (!pooled.connected) {
                session.destroy(new TrellisError(ErrorCode.TIMEOUT, `connect to ${key} timed out after ${connectTimeoutMs} ms`));
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
    async close() {
        const all = [...this.pools.values()].flat();
        this.pools.clear();
        await Promise.all(all.map((p) => new Promise((resolve) => {
            if (p.session.closed)
                return resolve();
            p.session.close(() => resolve());
            setTimeout(() => {
                p.session.destroy();
                resolve();
            }, 2000).unref();
        })));
    }
}
