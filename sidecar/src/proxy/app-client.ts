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
import { pipeline } from "node:stream";
import { Pool } from "undici";
import type { HeaderMap } from "./headers.js";
import { forwardableFromObject } from "./headers.js";
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

export interface AppResult {
  status: number;
  failure?: UpstreamFailure;
  responseBytes: number;
}

const NO_BODY_METHODS = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "TRACE"]);

export class AppClient {
  private readonly pools = new Map<number, Pool>();
  private readonly h2 = new Map<number, http2.ClientHttp2Session>();
  private readonly host: string;

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
    const ac = new AbortController();
    const onClose = () => {
      if (!res.headersSent || !resFinished) ac.abort();
    };
    let resFinished = false;
    req.once("close", () => {
      if (!req.complete) onClose();
    });
    headers.host = authority;
    const hasBody =
      !NO_BODY_METHODS.has(method) ||
      headers["content-length"] !== undefined ||
      headers["transfer-encoding"] !== undefined;
    return this.pool(port)
      .request({
        method: method as "GET",
        path,
        headers,
        body: hasBody ? req : null,
        signal: ac.signal,
      })
      .then(
        (r) =>
          new Promise<AppResult>((resolve) => {
            const out = forwardableFromObject(r.headers as IncomingHttpHeaders);
            writeHead(res, r.statusCode, out);
            let bytes = 0;
            r.body.on("data", (c: Buffer) => {
              bytes += c.length;
            });
            pipeline(r.body, res, (err) => {
              resFinished = true;
              if (err === undefined || err === null) {
                const t = r.trailers;
                if (t !== undefined && Object.keys(t).length > 0) res.addTrailers(t as OutgoingHttpHeaders);
              }
              resolve({ status: r.statusCode, responseBytes: bytes });
            });
          }),
        (err: unknown) => ({ status: 0, failure: classifyUpstreamError(err, false), responseBytes: 0 }),
      );
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
        writeHead(res, r.statusCode ?? 502, forwardableFromObject(r.headers));
        let bytes = 0;
        r.on("data", (c: Buffer) => {
          bytes += c.length;
        });
        pipeline(r, res, () => resolve({ status: r.statusCode ?? 502, responseBytes: bytes }));
      });
      up.on("error", (err) => {
        if (!res.headersSent)
          resolve({ status: 0, failure: classifyUpstreamError(err, connected), responseBytes: 0 });
        else res.destroy();
      });
      req.once("close", () => {
        if (!req.complete) up.destroy();
      });
      req.pipe(up);
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
      stream.on("response", (h) => {
        responded = true;
        const status = Number(h[":status"] ?? 502);
        writeHead(res, status, forwardableFromObject(h));
        let bytes = 0;
        stream.on("data", (c: Buffer) => {
          bytes += c.length;
        });
        stream.on("trailers", (t) => res.addTrailers(forwardableFromObject(t)));
        pipeline(stream, res, () => resolve({ status, responseBytes: bytes }));
      });
      stream.on("error", (err) => {
        if (!responded)
          resolve({
            status: 0,
            failure: classifyUpstreamError(err, session.connecting === false),
            responseBytes: 0,
          });
        else res.destroy();
      });
      req.once("close", () => {
        if (!req.complete && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
      });
      req.pipe(stream);
    });
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
    for (const s of this.h2.values()) s.close();
    this.pools.clear();
    this.h2.clear();
  }
}
