/**
 * One listening port that speaks HTTP/1.1 and HTTP/2 (prior knowledge) on the same socket: the
 * first bytes are sniffed, then the connection is handed to a node:http or node:http2 server.
 * Both call the same request handler (HTTP/2 through the compat API).
 *
 * Hardening, set explicitly (Node's defaults are lax or checked only every 30 s):
 *  - header-read timeout and keep-alive idle timeout; timers checked every second;
 *  - header size (bytes) and count limits: over them the client gets 431, never a silent cut;
 *  - malformed HTTP/1 (both Content-Length and Transfer-Encoding, duplicate or signed
 *    Content-Length, obs-fold, NUL/CR in values — all refused by llhttp) gets a definite 400
 *    with `x-trellis-error: bad_request` and the connection closed;
 *  - HTTP/2: stream-reset rate limit (rapid reset, CVE-2023-44487), rejected-stream and
 *    invalid-frame limits, outstanding PING/SETTINGS limits (control-frame floods) end the session.
 * Draining: HTTP/1 responses carry `Connection: close`, HTTP/2 sessions get GOAWAY; new
 * connections are still accepted until `close()`.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { Duplex } from "node:stream";
import { sniff } from "./sniff.js";

export interface FrontendOptions {
  /** For logs and errors: "inbound" / "outbound". */
  name: string;
  /** Time allowed to receive a request's headers, ms (default 10 000). */
  headerTimeoutMs?: number;
  /** Idle keep-alive connections are closed after this, ms (default 300 000). */
  idleTimeoutMs?: number;
  /** Request header bytes limit (default 60 KiB). */
  maxHeaderBytes?: number;
  /** Request header count limit (default 100). */
  maxHeaders?: number;
  /** The request handler, for HTTP/1 and HTTP/2 alike. */
  onRequest: (
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ) => void;
  /** HTTP/1 CONNECT. */
  onConnect?: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** HTTP/1 Upgrade (WebSocket). */
  onUpgrade?: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** HTTP/2 extended CONNECT streams (RFC 8441) and plain CONNECT streams. */
  onStreamConnect?: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;
  /** A TLS ClientHello arrived (served once identity lands); default: the connection is closed. */
  onTls?: (socket: net.Socket) => void;
  /** Connection opened / closed, for TCP metrics. */
  onConnection?: (socket: net.Socket) => void;
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
};

export class Frontend {
  readonly h1: http.Server;
  readonly h2: http2.Http2Server;
  private readonly net: net.Server;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly sockets = new Set<net.Socket>();
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];
  draining = false;

  constructor(private readonly opts: FrontendOptions) {
    const headerTimeout = opts.headerTimeoutMs ?? 10_000;
    const maxHeaders = opts.maxHeaders ?? 100;
    const track = (
      req: http.IncomingMessage | http2.Http2ServerRequest,
      res: http.ServerResponse | http2.Http2ServerResponse,
    ) => {
      this.inflight++;
      res.once("close", () => {
        this.inflight--;
        if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
      const count = (req.rawHeaders?.length ?? 0) / 2;
      if (count > maxHeaders) {
        replyBadRequest(res, 431, `more than ${maxHeaders} request headers`);
        return;
      }
      if (this.draining && res instanceof http.ServerResponse) res.shouldKeepAlive = false;
      opts.onRequest(req, res);
    };
    this.h1 = http.createServer(
      {
        maxHeaderSize: opts.maxHeaderBytes ?? 60 * 1024,
        headersTimeout: headerTimeout,
        requestTimeout: 0, // bodies may stream for long; idle is bounded by the socket timeout below
        keepAliveTimeout: opts.idleTimeoutMs ?? 300_000,
        connectionsCheckingInterval: 1000,
        requireHostHeader: true,
        joinDuplicateHeaders: false,
        noDelay: true,
      },
      track,
    );
    this.h1.maxHeadersCount = 0; // count checked above, with a definite 431 instead of a silent cut
    this.h1.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
      const status =
        err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
      if (socket.writable && !(socket as net.Socket).destroyed) {
        const body = `bad_request: ${err.code ?? "malformed request"}\n`;
        socket.end(
          `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nx-trellis-error: bad_request\r\ncontent-type: text/plain\r\n` +
            `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
        );
      } else {
        socket.destroy();
      }
    });
    if (opts.onConnect !== undefined) this.h1.on("connect", opts.onConnect);
    if (opts.onUpgrade !== undefined) this.h1.on("upgrade", opts.onUpgrade);
    // Requests that ask for 100-continue go to the same handler; it decides when to send 100.
    this.h1.on("checkContinue", track);
    this.h2 = http2.createServer(
      {
        settings: {
          enableConnectProtocol: true,
          maxConcurrentStreams: 1000,
          maxHeaderListSize: opts.maxHeaderBytes ?? 60 * 1024,
        },
        maxSessionRejectedStreams: 100,
        maxSessionInvalidFrames: 100,
        maxOutstandingPings: 10,
        maxOutstandingSettings: 10,
        streamResetBurst: 100,
        streamResetRate: 33,
        maxHeaderListPairs: maxHeaders + 16,
      } as http2.ServerOptions,
      track,
    );
    this.h2.on("checkContinue", track);
    this.h2.on("session", (session) => {
      this.sessions.add(session);
      session.once("close", () => this.sessions.delete(session));
      session.setTimeout(opts.idleTimeoutMs ?? 300_000, () => session.close());
      if (this.draining) session.goaway();
    });
    if (opts.onStreamConnect !== undefined) {
      const onStreamConnect = opts.onStreamConnect;
      // CONNECT streams bypass the compat request handler: they are tunnels, not requests.
      this.h2.prependListener("stream", (stream, headers) => {
        if (headers[":method"] === "CONNECT") {
          this.inflight++;
          stream.once("close", () => {
            this.inflight--;
            if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
          });
          onStreamConnect(stream, headers);
        }
      });
      // The compat layer must not also answer them.
      const emit = this.h2.emit.bind(this.h2);
      this.h2.emit = ((event: string, ...args: unknown[]) => {
        if (event === "request") {
          const req = args[0] as http2.Http2ServerRequest;
          if (req.method === "CONNECT") return true;
        }
        return emit(event, ...args);
      }) as typeof this.h2.emit;
    }
    this.net = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) =>
      this.accept(socket, headerTimeout),
    );
  }

  /** Serves a socket that did not come through our listener (a CONNECT tunnel's inner stream). */
  adopt(socket: net.Socket): void {
    this.accept(socket, this.opts.headerTimeoutMs ?? 10_000);
  }

  private accept(socket: net.Socket, sniffTimeoutMs: number): void {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    this.opts.onConnection?.(socket);
    socket.resume();
    sniff(
      socket,
      sniffTimeoutMs,
      (protocol) => {
        if (protocol === "h2") {
          // Not resumed: the HTTP/2 session reads the pushed-back preface from the socket's
          // buffer on the next tick (a flowing socket would drop it).
          this.h2.emit("connection", socket);
        } else if (protocol === "http1") {
          this.h1.emit("connection", socket);
          socket.resume();
        } else if (this.opts.onTls !== undefined) {
          this.opts.onTls(socket);
        } else {
          socket.destroy();
        }
      },
      () => socket.destroy(),
    );
  }

  /** Binds; resolves with the bound port (0 = OS picks). */
  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.net.once("error", reject);
      this.net.listen({ port, host, backlog: 4096 }, () => {
        this.net.off("error", reject);
        const a = this.net.address();
        resolve(typeof a === "object" && a !== null ? a.port : port);
      });
    });
  }

  /** Requests (and tunnels) in progress. */
  get inFlight(): number {
    return this.inflight;
  }

  /** Starts draining: Connection: close on HTTP/1 responses, GOAWAY to HTTP/2 sessions. */
  drain(): void {
    this.draining = true;
    for (const s of this.sessions) s.goaway();
    this.h1.closeIdleConnections();
  }

  /** Resolves when no request is in flight, or after `timeoutMs`. */
  idle(timeoutMs: number): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** Stops accepting and closes every connection (call after `idle`). */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.net.close(() => resolve()));
    for (const s of this.sessions) s.destroy();
    this.h1.closeAllConnections();
    for (const s of this.sockets) s.destroy();
  }
}

function replyBadRequest(
  res: http.ServerResponse | http2.Http2ServerResponse,
  status: number,
  message: string,
): void {
  const body = `bad_request: ${message}\n`;
  (res as http.ServerResponse).writeHead(status, {
    "x-trellis-error": "bad_request",
    "content-type": "text/plain",
    "content-length": String(Buffer.byteLength(body)),
  });
  res.end(body);
}
