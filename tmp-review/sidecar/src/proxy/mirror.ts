/**
 * Request mirroring: a fire-and-forget copy of a request to another service. The copy's answer is
 * read and thrown away; its errors are swallowed; it never holds the primary request:
 *  - it runs on its own stream (its own peer, so its own HTTP/2 session), so a hung mirror cannot
 *    stall the primary's stream or flow-control window;
 *  - its body is written without waiting: once more than MIRROR_MAX_PENDING bytes are queued
 *    (the mirror is not reading), the copy is cancelled rather than slowing the primary;
 *  - it is cancelled after `timeoutMs` whatever happens, so copies cannot accumulate.
 * The copy's authority gets a `-shadow` suffix on its host, so the mirror's logs tell copies apart.
 */
import type * as http2 from "node:http2";
import type { ClusterRuntime } from "../runtime/runtime-config.js";
import type { HeaderMap } from "./headers.js";
import { APP_PORT_HEADER } from "./inbound.js";
import { cancelStream, type MeshTransport } from "./mesh-transport.js";

/** Bytes a mirror may have queued before it is cancelled. */
export const MIRROR_MAX_PENDING = 1024 * 1024;

/** A copy in progress: the exchange feeds it the request body. */
export class MirrorCopy {
  private closed = false;

  constructor(
    private readonly stream: http2.ClientHttp2Stream,
    timeoutMs: number,
    private readonly onEnd: () => void,
  ) {
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
  write(chunk: Buffer): void {
    if (this.closed) return;
    if (this.stream.writableLength > MIRROR_MAX_PENDING) {
      this.cancel();
      return;
    }
    this.stream.write(chunk);
  }

  /** The primary request's body ended. */
  end(): void {
    if (!this.closed) this.stream.end();
  }

  /** Abandons the copy. */
  cancel(): void {
    if (this.closed) return;
    this.closed = true;
    cancelStream(this.stream);
  }
}

/**
 * Starts a copy of a request to `cluster`; undefined when the cluster has no usable endpoint or no
 * connection to spare (the copy is simply not made).
 */
export function startMirror(
  transport: MeshTransport,
  cluster: ClusterRuntime,
  method: string,
  authority: string,
  path: string,
  headers: HeaderMap,
  endStream: boolean,
  timeoutMs: number,
): MirrorCopy | undefined {
  const endpoint = cluster.balancer.pick({});
  if (endpoint === undefined) return undefined;
  const colon = authority.lastIndexOf(":");
  const shadow =
    colon > 0 && !authority.endsWith("]")
      ? `${authority.slice(0, colon)}-shadow${authority.slice(colon)}`
      : `${authority}-shadow`;
  const stream = transport.request(
    { address: endpoint.data.address, port: endpoint.data.port },
    {
      ...headers,
      [APP_PORT_HEADER]: String(endpoint.data.appPort || cluster.port),
      ":method": method,
      ":path": path,
      ":authority": shadow,
      ":scheme": "http",
    },
    endStream,
    cluster.streamOptions,
  );
  if (stream === undefined) return undefined;
  const started = performance.now();
  endpoint.onStart();
  return new MirrorCopy(stream, timeoutMs, () => endpoint.onFinish(performance.now() - started, true));
}
