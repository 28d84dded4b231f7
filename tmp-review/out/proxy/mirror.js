import { APP_PORT_HEADER } from "./inbound.js";
import { cancelStream } from "./mesh-transport.js";
/** Bytes a mirror may have queued before it is cancelled. */
export const MIRROR_MAX_PENDING = 1024 * 1024;
/** A copy in progress: the exchange feeds it the request body. */
export class MirrorCopy {
    stream;
    onEnd;
    closed = false;
    constructor(stream, timeoutMs, onEnd) {
        this.stream = stream;
        this.onEnd = onEnd;
        const timer = setTimeout(() => this.cancel(), timeoutMs);
        timer.unref();
        stream.on("response", () => stream.resume());
        stream.on("error", () => this.cancel());
        stream.once("close", () => {
            clearTimeout(timer);
            this.closed = true;
            this.onEnd();
        });
    }
    /** A body chunk of the primary request. */
    write(chunk) {
        if (this.closed)
            return;
        if (this.stream.writableLength > MIRROR_MAX_PENDING) {
            this.cancel();
            return;
        }
        this.stream.write(chunk);
    }
    /** The primary request's body ended. */
    end() {
        if (!this.closed)
            this.stream.end();
    }
    /** Abandons the copy. */
    cancel() {
        if (this.closed)
            return;
        this.closed = true;
        cancelStream(this.stream);
    }
}
/**
 * Starts a copy of a request to `cluster`; undefined when the cluster has no usable endpoint or no
 * connection to spare (the copy is simply not made).
 */
export function startMirror(transport, cluster, method, authority, path, headers, endStream, timeoutMs) {
    const endpoint = cluster.balancer.pick({});
    if (endpoint === undefined)
        return undefined;
    const colon = authority.lastIndexOf(":");
    const shadow = colon > 0 && !authority.endsWith("]")
        ? `${authority.slice(0, colon)}-shadow${authority.slice(colon)}`
        : `${authority}-shadow`;
    const stream = transport.request({ address: endpoint.data.address, port: endpoint.data.port }, {
        ...headers,
        [APP_PORT_HEADER]: String(endpoint.data.appPort || cluster.port),
        ":method": method,
        ":path": path,
        ":authority": shadow,
        ":scheme": "http",
    }, endStream, cluster.streamOptions);
    if (stream === undefined)
        return undefined;
    const started = performance.now();
    endpoint.onStart();
    return new MirrorCopy(stream, timeoutMs, () => endpoint.onFinish(performance.now() - started, true));
}
