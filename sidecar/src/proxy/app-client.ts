/**
 * The local hop: from the inbound listener to the app on 127.0.0.1:<appPort>.
 *
 * - HTTP/1.1 app ports: undici Pools (the fastest client Node has), one per port.
 * - grpc / http2 app ports: one h2c session per port (node:http2), reconnected on failure.
 * - Requests undici refuses (`Expect: 100-continue`) go through node:http, which supports the
 *   interim 100 response.
 * Bodies stream both ways with backpressure; a caller that goes away aborts the app request.
 */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import * as http from "node:http";
import * as http2 from "node:http2";
import { PassThrough, type Readable, type Writable } from "node:stream";
import { type Dispatcher, Pool } from "undici";
import type { HeaderMap } from "./headers.js";
import { forwardableHeaders, forwardableResponseDistinct, forwardableResponseHeaders } from "./headers.js";
import { splice } from "./splice.js";
import { classifyUpstreamError, type UpstreamFailure } from "./upstream-error.js";

export type AppProtocol = "http" | "http2" | "grpc" | "tcp";

export interface AppClientOptions {
  connectTimeoutMs?: number;
  /** Time to the app's response headers (default: none — the caller's route timeout governs). */
  headersTimeoutMs?: number;
  /** Idle time between body chunks (default 300 s). */
  bodyTimeoutMs?: number;
  /** Keep-alive of idle app connections (default 60 s). */
  keepAliveMs?: number;
  host?: string;
}

/** The caller's request: HTTP/1 or HTTP/2 (compat API). */
export type DownstreamRequest = http.IncomingMessage | http2.Http2ServerRequest;

/** The response being written to the caller: HTTP/1 or HTTP/2 (compat API). */
export type DownstreamResponse = http.ServerResponse | http2.Http2ServerResponse;

/** writeHead with one signature for both response kinds. */
export function writeHead(res: DownstreamResponse, status: number, headers: OutgoingHttpHeaders): void {
  (res as http.ServerResponse).writeHead(status, headers);
}

/**
 * Whether the caller's request carries a body: for HTTP/2, the HEADERS frame did not end the
 * stream; for HTTP/1, Content-Length > 0 or Transfer-Encoding. Decided from the framing, never the
 * method: a GET may carry a body, and a body dropped here would be lost silently.
 */
export function requestHasBody(req: DownstreamRequest): boolean {
  const h2 = (req as http2.Http2ServerRequest).stream;
  if (h2 !== undefined) return !h2.endAfterHeaders;
  const cl = req.headers["content-length"];
  return (cl !== undefined && cl !== "0") || req.headers["transfer-encoding"] !== undefined;
}

/**
 * Streams the caller's request body into `dst` with backpressure. Not `pipeline()`, and `dst` must
 * never own the caller's request: when the upstream stops taking the body early — an app that
 * answers 401 or 413 before reading it, or a failure — pipeline would destroy the caller's
 * request, which for HTTP/1 resets the socket before the client has read the answer (ECONNRESET
 * instead of the 401), and for HTTP/2 turns the finished exchange into RST_STREAM(INTERNAL_ERROR).
 * Instead the rest of the body is read and dropped: Node then keeps an HTTP/1 connection usable
 * (as for any request whose handler did not read the body), and an HTTP/2 caller gets
 * RST_STREAM(NO_ERROR) after the complete response (RFC 9113 §8.1). A caller that goes away is
 * handled by whoever watches the response's `close`.
 */
export function pipeBody(req: DownstreamRequest, dst: Writable): void {
  // Ended by hand, not by pipe(): a caller that aborts mid-body (an HTTP/2 RST_STREAM without
  // END_STREAM, an HTTP/1 connection closed early) must not have its partial body passed on as
  // complete — Node's HTTP/2 compat request emits 'aborted' and then 'end' in that case.
  req.pipe(dst, { end: false });
  // Not `req.complete`: the HTTP/2 compat request reports an aborted request as complete.
  let aborted = false;
  let ended = false;
  const onAborted = () => {
    if (aborted || ended) return;
    aborted = true;
    req.unpipe(dst);
    dst.destroy(new Error("the caller aborted the request before the end of its body"));
  };
  req.once("aborted", onAborted);
  req.once("end", () => {
    ended = true;
    if (!aborted) dst.end();
  });
  dst.once("close", () => {
    if (ended || aborted) return;
    req.unpipe(dst);
    req.resume();
  });
}

/** True when the caller is already gone (its connection or HTTP/2 stream closed). */
export function callerGone(req: DownstreamRequest, res: DownstreamResponse): boolean {
  const h2 = (res as http2.Http2ServerResponse).stream;
  if (h2 !== undefined) return h2.destroyed || h2.closed;
  return req.socket === null || req.socket.destroyed || (res as http.ServerResponse).writableEnded;
}

/**
 * Calls `cancel` once when the caller gives up before its response was fully sent: an HTTP/2
 * RST_STREAM ('aborted' on the request), or an HTTP/1 connection closed before the response ended.
 * The upstream request is then cancelled rather than left running for nobody.
 */
export function onCallerGone(req: DownstreamRequest, res: DownstreamResponse, cancel: () => void): void {
  let done = false;
  const once = () => {
    if (done) return;
    done = true;
    cancel();
  };
  req.once("aborted", once);
  res.once("close", () => {
    if (!res.writableFinished) once();
  });
}

/**
 * The caller's request body as a stream of its own, for clients that destroy the body stream they
 * were given when the answer comes before the body is sent (undici does, on an early 401/413):
 * that must not destroy the caller's request (see pipeBody).
 */
export function detachedBody(req: DownstreamRequest): Readable {
  const body = new PassThrough();
  pipeBody(req, body);
  return body;
}

/**
 * A response that is only headers, ended at once. For HTTP/2 callers the headers go out in one
 * HEADERS frame with END_STREAM: a gRPC "trailers-only" reply (an error status with no message)
 * must stay that way, because gRPC clients read grpc-status only from the final HEADERS frame —
 * sent as HEADERS + an empty DATA frame, the status is lost and the client reports INTERNAL
 * ("call ended without gRPC status"). The compat API sends END_STREAM with the headers only when
 * they are written by `end()`, so they are set, not written, here.
 */
export function respondHeadersOnly(res: DownstreamResponse, status: number, headers: HeaderMap): void {
  if ((res as http2.Http2ServerResponse).stream !== undefined) {
    const r = res as http2.Http2ServerResponse;
    r.statusCode = status;
    for (const name in headers) r.setHeader(name, headers[name] as string | string[]);
    r.end();
    return;
  }
  (res as http.ServerResponse).writeHead(status, headers);
  res.end();
}

/** True when an HTTP/2 HEADERS frame ended its stream (no body, no trailers follow). */
export function endsStream(flags: number): boolean {
  return (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
}

/**
 * Header lines as received (flat `[name, value, …]`, any case: Node's `rawHeaders`) → lower-case
 * name → every value in arrival order. Node's `headers` objects join repeated fields with ", "
 * (cookies with "; "), which would change what the next hop sees; the raw lines keep each value.
 * Null-prototype, so a field named `__proto__` is just a field.
 */
export function distinctHeaders(raw: readonly string[]): Record<string, string[]> {
  const out = Object.create(null) as Record<string, string[]>;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const list = out[name];
    if (list === undefined) out[name] = [raw[i + 1] as string];
    else list.push(raw[i + 1] as string);
  }
  return out;
}

/** Forwardable headers (hop-by-hop removed, duplicates kept as separate values) from raw lines. */
export function forwardableRaw(raw: readonly string[], keepUpgrade = false): HeaderMap {
  return forwardableHeaders(distinctHeaders(raw), keepUpgrade);
}

/** Forwardable response headers or trailers (also without TE) from raw lines. */
export function forwardableResponseRaw(raw: readonly string[]): HeaderMap {
  return forwardableResponseDistinct(distinctHeaders(raw));
}

/**
 * Cookies split over several fields (HTTP/2 allows it, RFC 9113 §8.2.3) are joined with "; "
 * before they go to an HTTP/1.1 app, which expects one Cookie line (RFC 6265 §5.4).
 */
function joinCookies(headers: HeaderMap): void {
  const c = headers.cookie;
  if (Array.isArray(c)) headers.cookie = c.join("; ");
}

/**
 * One HTTP/1.1 app exchange through undici's dispatch API: the response head and body go straight
 * into the caller's response from undici's callbacks — no response Readable, promise chain or
 * AbortController per request (the allocations that dominated the app hop's profile). Backpressure:
 * undici is paused while the caller's response is full and resumed on its 'drain'.
 */
class AppResponseHandler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private abortReason: Error | undefined;
  private status = 0;
  private bytes = 0;
  private started = false;
  private settled = false;

  constructor(
    private readonly res: DownstreamResponse,
    private readonly resolve: (r: AppResult) => void,
  ) {}

  /** The caller went away: the app request is cancelled (now, or as soon as it starts). */
  readonly callerGone = (): void => {
    if (this.settled) return;
    const reason = new Error("the caller went away");
    if (this.controller !== undefined) this.controller.abort(reason);
    else this.abortReason = reason;
  };

  private readonly onDrain = (): void => {
    this.controller?.resume();
  };

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.abortReason !== undefined) controller.abort(this.abortReason);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ): void {
    this.status = statusCode;
    try {
      writeHead(this.res, statusCode, forwardableResponseHeaders(headers));
    } catch (err) {
      // A head the caller's protocol cannot carry: fails the exchange (502), never throws out.
      controller.abort(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.started = true;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.bytes += chunk.length;
    if (!(this.res as http.ServerResponse).write(chunk)) {
      controller.pause();
      this.res.once("drain", this.onDrain);
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    if (trailers !== null && typeof trailers === "object") {
      for (const _ in trailers) {
        this.res.addTrailers(trailers as OutgoingHttpHeaders);
        break;
      }
    }
    this.res.end();
    this.settle({ status: this.status, responseBytes: this.bytes });
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (!this.started) {
      this.settle({ status: 0, failure: classifyUpstreamError(err, false), responseBytes: 0 });
      return;
    }
    // The head went out: the caller sees the response cut short — with an error, so an HTTP/2
    // caller gets RST_STREAM(INTERNAL_ERROR) rather than what reads as a clean end.
    this.res.destroy(err);
    this.settle({ status: this.status, responseBytes: this.bytes });
  }

  private settle(r: AppResult): void {
    if (this.settled) return;
    this.settled = true;
    this.resolve(r);
  }
}

export interface AppResult {
  status: number;
  failure?: UpstreamFailure;
  responseBytes: number;
  /** The app's grpc-status (trailers or trailers-only headers), for gRPC ports. */
  grpcStatus?: number;
}

export class AppClient {
  private readonly pools = new Map<number, Pool>();
  private readonly h2 = new Map<number, http2.ClientHttp2Session>();
  /** Where the app listens (default 127.0.0.1). */
  readonly host: string;

  constructor(private readonly opts: AppClientOptions = {}) {
    this.host = opts.host ?? "127.0.0.1";
  }

  private pool(port: number): Pool {
    let p = this.pools.get(port);
    if (p === undefined) {
      p = new Pool(`http://${this.host}:${port}`, {
        connections: 256,
        pipelining: 1,
        connectTimeout: this.opts.connectTimeoutMs ?? 1000,
        headersTimeout: this.opts.headersTimeoutMs ?? 0,
        bodyTimeout: this.opts.bodyTimeoutMs ?? 300_000,
        keepAliveTimeout: this.opts.keepAliveMs ?? 60_000,
      });
      this.pools.set(port, p);
    }
    return p;
  }

  private session(port: number): http2.ClientHttp2Session {
    let s = this.h2.get(port);
    if (s === undefined || s.closed || s.destroyed) {
      s = http2.connect(`http://${this.host}:${port}`);
      const session = s;
      const drop = () => {
        if (this.h2.get(port) === session) this.h2.delete(port);
      };
      s.on("error", drop);
      s.on("goaway", drop);
      s.on("close", drop);
      s.setTimeout(this.opts.keepAliveMs ?? 60_000, () => session.close());
      s.unref();
      this.h2.set(port, s);
    }
    return s;
  }

  /**
   * Sends one request to the app and streams the answer into `res`. Resolves when the exchange is
   * over (never rejects); a failure before response headers is returned for the caller's local reply.
   */
  forward(
    port: number,
    protocol: AppProtocol,
    method: string,
    path: string,
    authority: string,
    headers: HeaderMap,
    req: DownstreamRequest,
    res: DownstreamResponse,
  ): Promise<AppResult> {
    if (protocol === "grpc" || protocol === "http2")
      return this.forwardH2(port, method, path, authority, headers, req, res);
    if (headers.expect !== undefined)
      return this.forwardNodeHttp(port, method, path, authority, headers, req, res);
    return this.forwardUndici(port, method, path, authority, headers, req, res);
  }

  private forwardUndici(
    port: number,
    method: string,
    path: string,
    authority: string,
    headers: HeaderMap,
    req: DownstreamRequest,
    res: DownstreamResponse,
  ): Promise<AppResult> {
    headers.host = authority;
    joinCookies(headers);
    const hasBody = requestHasBody(req);
    return new Promise<AppResult>((resolve) => {
      const handler = new AppResponseHandler(res, resolve);
      onCallerGone(req, res, handler.callerGone);
      this.pool(port).dispatch(
        {
          method: method as "GET",
          path,
          headers,
          body: hasBody ? detachedBody(req) : null,
        },
        handler,
      );
    });
  }

  private forwardNodeHttp(
    port: number,
    method: string,
    path: string,
    authority: string,
    headers: HeaderMap,
    req: DownstreamRequest,
    res: DownstreamResponse,
  ): Promise<AppResult> {
    joinCookies(headers);
    return new Promise((resolve) => {
      let connected = false;
      const up = http.request({
        host: this.host,
        port,
        method,
        path,
        headers: { ...headers, host: authority },
        agent: false,
      });
      up.on("socket", (s) => s.once("connect", () => (connected = true)));
      up.on("continue", () => (res as http.ServerResponse).writeContinue());
      up.on("response", (r) => {
        writeHead(res, r.statusCode ?? 502, forwardableResponseRaw(r.rawHeaders));
        let bytes = 0;
        r.on("data", (c: Buffer) => {
          bytes += c.length;
        });
        splice(r, res, () => resolve({ status: r.statusCode ?? 502, responseBytes: bytes }));
      });
      up.on("error", (err) => {
        if (!res.headersSent)
          resolve({ status: 0, failure: classifyUpstreamError(err, connected), responseBytes: 0 });
        else res.destroy(err);
      });
      onCallerGone(req, res, () => up.destroy());
      pipeBody(req, up);
    });
  }

  private forwardH2(
    port: number,
    method: string,
    path: string,
    authority: string,
    headers: HeaderMap,
    req: DownstreamRequest,
    res: DownstreamResponse,
  ): Promise<AppResult> {
    return new Promise((resolve) => {
      const session = this.session(port);
      const stream = session.request({
        ...headers,
        ":method": method,
        ":path": path,
        ":authority": authority,
        ":scheme": "http",
      });
      let responded = false;
      stream.on("response", (h, flags, raw) => {
        responded = true;
        const status = Number(h[":status"] ?? 502);
        const grpcOf = (v: unknown) => (v === undefined ? {} : { grpcStatus: Number(v) });
        if (endsStream(flags)) {
          respondHeadersOnly(res, status, forwardableResponseRaw(raw));
          stream.resume();
          resolve({ status, responseBytes: 0, ...grpcOf(h["grpc-status"]) });
          return;
        }
        writeHead(res, status, forwardableResponseRaw(raw));
        let bytes = 0;
        let grpcStatus: unknown;
        stream.on("data", (c: Buffer) => {
          bytes += c.length;
        });
        stream.on("trailers", (t, _flags, raw) => {
          grpcStatus = t["grpc-status"];
          res.addTrailers(forwardableResponseRaw(raw));
        });
        splice(stream, res, () => resolve({ status, responseBytes: bytes, ...grpcOf(grpcStatus) }));
      });
      stream.on("error", (err) => {
        if (!responded)
          resolve({
            status: 0,
            failure: classifyUpstreamError(err, stream.id !== undefined),
            responseBytes: 0,
          });
        else res.destroy(err);
      });
      // An app that closes the stream before answering (RST_STREAM with CANCEL or NO_ERROR, or
      // its connection gone): Node reports no 'error' for that, so the exchange would never end.
      stream.once("close", () => {
        if (responded) return;
        const code = stream.rstCode ?? 0;
        resolve({
          status: 0,
          failure: {
            reason: "upstream_reset",
            connectFailure: false,
            refusedStream: code === http2.constants.NGHTTP2_REFUSED_STREAM,
            message: `the app closed the stream (code ${code}) before answering`,
          },
          responseBytes: 0,
        });
      });
      onCallerGone(req, res, () => {
        if (!stream.destroyed) stream.destroy();
      });
      pipeBody(req, stream);
    });
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
    for (const s of this.h2.values()) s.close();
    this.pools.clear();
    this.h2.clear();
  }
}
