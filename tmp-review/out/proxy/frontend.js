/**
 * One listening port that speaks HTTP/1.1 and HTTP/2 (prior knowledge) on the same socket: the
 * first bytes are sniffed, then the connection is handed to a node:http or node:http2 server.
 * Both call the same request handler (HTTP/2 through the compat API).
 *
 * Hardening, set explicitly (Node's defaults are lax or checked only every 30 s):
 *  - header-read timeout (408) and keep-alive idle timeout; timers checked every second;
 *  - header size (bytes) and count limits: over them the client gets 431, never a silent cut;
 *  - malformed HTTP/1 (both Content-Length and Transfer-Encoding, duplicate or signed
 *    Content-Length, obs-fold, NUL/CR in values — all refused by llhttp; no or several Host, a
 *    Connection header naming Content-Length / Transfer-Encoding / Host, transfer codings other
 *    than chunked — refused by `checkRequestHeaders`) gets a definite 400 with
 *    `x-trellis-error: bad_request` and the connection closed, before anything is proxied;
 *  - HTTP/2: stream-reset rate limit (rapid reset, CVE-2023-44487), rejected-stream and
 *    invalid-frame limits, outstanding PING/SETTINGS limits (control-frame floods) end the session.
 * Draining: HTTP/1 responses carry `Connection: close`, HTTP/2 sessions get GOAWAY and end once
 * their streams have; new connections are still accepted until `close()`.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { checkRequestHeaders, headerTokens } from "./headers.js";
import { isGrpc, sendLocalReply } from "./local-reply.js";
import { sniff } from "./sniff.js";
/** How long a refused connection may stay half-closed before it is destroyed, ms. */
const REFUSED_LINGER_MS = 5000;
const STATUS_TEXT = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
};
export class Frontend {
    opts;
    h1;
    h2;
    net;
    sessions = new Set();
    sockets = new Set();
    inflight = 0;
    idleWaiters = [];
    draining = false;
    constructor(opts) {
        this.opts = opts;
        const headerTimeout = opts.headerTimeoutMs ?? 10_000;
        const maxHeaders = opts.maxHeaders ?? 100;
        const track = (req, res) => {
            this.inflight++;
            res.once("close", () => {
                this.inflight--;
                if (this.inflight === 0)
                    for (const w of this.idleWaiters.splice(0))
                        w();
            });
            const problem = checkRequestHeaders(req.rawHeaders, req, maxHeaders);
            if (problem !== undefined) {
                // The connection is closed after the reply: its framing is not trusted any further, and an
                // unread body must not be parsed as the next request.
                const status = sendLocalReply(res, isGrpc(req.headers["content-type"]), "bad_request", problem.message, {
                    status: problem.status,
                    close: true,
                });
                opts.onLocalReply?.("bad_request", status);
                return;
            }
            if (res instanceof http.ServerResponse) {
                if (this.draining)
                    res.shouldKeepAlive = false;
                opts.onRequest(req, res);
            }
            else {
                setImmediate(dispatchH2, opts.onRequest, req, res);
            }
        };
        // CONNECT and Upgrade requests skip the request handler; they get the same checks, answered on
        // the raw socket (there is no response object yet).
        const checked = (handler) => (req, socket, head) => {
            const problem = checkRequestHeaders(req.rawHeaders, req, maxHeaders);
            if (problem === undefined)
                return handler(req, socket, head);
            rawReply(socket, problem.status, problem.message);
            opts.onLocalReply?.("bad_request", problem.status);
        };
        this.h1 = http.createServer({
            maxHeaderSize: opts.maxHeaderBytes ?? 60 * 1024,
            headersTimeout: headerTimeout,
            requestTimeout: 0, // bodies may stream for long; idle is bounded by the socket timeout below
            keepAliveTimeout: opts.idleTimeoutMs ?? 300_000,
            connectionsCheckingInterval: 1000,
            requireHostHeader: false, // checked by checkRequestHeaders, answered with x-trellis-error
            // Only WebSocket upgrades are taken (and only where a handler exists). Any other Upgrade
            // (`h2c` from `curl --http2`, …) is served as a plain request with the Upgrade and
            // HTTP2-Settings headers stripped, as RFC 9110 §7.8 allows, instead of a refused upgrade.
            shouldUpgradeCallback: (req) => opts.onUpgrade !== undefined &&
                headerTokens(toList(req.headers.upgrade))?.has("websocket") === true,
            joinDuplicateHeaders: false,
            noDelay: true,
        }, track);
        this.h1.maxHeadersCount = 0; // count checked above, with a definite 431 instead of a silent cut
        // Node starts an HTTP server's connection tracking on 'listening': the timer that enforces
        // headersTimeout (and requestTimeout) every connectionsCheckingInterval, and the list that
        // closeIdleConnections / closeAllConnections walk. This server never listens itself (sockets
        // come from the sniffing listener), so without this a client that sends half a request line
        // and stalls holds its connection forever (slowloris), and drain closes no idle connection.
        this.h1.emit("listening");
        this.h1.on("clientError", (err, socket) => {
            const status = err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
            // A response already under way on this connection (pipelining) must not be interleaved with
            // ours: then the connection is just closed. Node's own default handler checks the same.
            const busy = socket._httpMessage != null;
            if (err.code === "ECONNRESET" || busy || !socket.writable) {
                socket.destroy();
                return;
            }
            rawReply(socket, status, err.code ?? "malformed request");
            opts.onLocalReply?.("bad_request", status);
        });
        if (opts.onConnect !== undefined)
            this.h1.on("connect", checked(opts.onConnect));
        if (opts.onUpgrade !== undefined)
            this.h1.on("upgrade", checked(opts.onUpgrade));
        // Requests that ask for 100-continue go to the same handler; it decides when to send 100.
        this.h1.on("checkContinue", track);
        this.h2 = http2.createServer({
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
        }, track);
        this.h2.on("checkContinue", track);
        this.h2.on("session", (session) => {
            this.sessions.add(session);
            session.once("close", () => this.sessions.delete(session));
            session.setTimeout(opts.idleTimeoutMs ?? 300_000, () => session.close());
            if (this.draining)
                session.close();
        });
        if (opts.onStreamConnect !== undefined) {
            const onStreamConnect = opts.onStreamConnect;
            // CONNECT streams bypass the compat request handler: they are tunnels, not requests.
            this.h2.prependListener("stream", (stream, headers) => {
                if (headers[":method"] === "CONNECT") {
                    this.inflight++;
                    stream.once("close", () => {
                        this.inflight--;
                        if (this.inflight === 0)
                            for (const w of this.idleWaiters.splice(0))
                                w();
                    });
                    onStreamConnect(stream, headers);
                }
            });
            // The compat layer must not also answer them.
            const emit = this.h2.emit.bind(this.h2);
            this.h2.emit = ((event, ...args) => {
                // (The compat layer emits CONNECT streams as "connect" and answers 405 when nobody listens.)
                if (event === "request" || event === "connect") {
                    const req = args[0];
                    if (req.method === "CONNECT")
                        return true;
                }
                return emit(event, ...args);
            });
        }
        this.net = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => this.accept(socket, headerTimeout));
    }
    /** Serves a socket that did not come through our listener (a CONNECT tunnel's inner stream). */
    adopt(socket) {
        this.accept(socket, this.opts.headerTimeoutMs ?? 10_000);
    }
    accept(socket, sniffTimeoutMs) {
        this.sockets.add(socket);
        socket.once("close", () => this.sockets.delete(socket));
        socket.on("error", () => socket.destroy());
        this.opts.onConnection?.(socket);
        socket.resume();
        sniff(socket, sniffTimeoutMs, (protocol) => {
            if (protocol === "h2") {
                // Not resumed: the HTTP/2 session reads the pushed-back preface from the socket's
                // buffer on the next tick (a flowing socket would drop it).
                this.h2.emit("connection", socket);
            }
            else if (protocol === "http1") {
                this.h1.emit("connection", socket);
                socket.resume();
            }
            else if (this.opts.onTls !== undefined) {
                this.opts.onTls(socket);
            }
            else {
                socket.destroy();
            }
        }, () => socket.destroy());
    }
    /** Binds; resolves with the bound port (0 = OS picks). */
    listen(port, host) {
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
    get inFlight() {
        return this.inflight;
    }
    /** Starts draining: Connection: close on HTTP/1 responses, GOAWAY to HTTP/2 sessions. */
    drain() {
        this.draining = true;
        // close(), not goaway(): it sends the same GOAWAY and lets open streams finish, then ends the
        // session. After a bare goaway() nghttp2 stops reading once no stream is open, so the peer's
        // FIN is never seen and the connection lingers (CLOSE_WAIT) until the idle timeout.
        for (const s of this.sessions)
            s.close();
        this.h1.closeIdleConnections();
    }
    /** Resolves when no request is in flight, or after `timeoutMs`. */
    idle(timeoutMs) {
        if (this.inflight === 0)
            return Promise.resolve();
        return new Promise((resolve) => {
            const t = setTimeout(resolve, timeoutMs);
            this.idleWaiters.push(() => {
                clearTimeout(t);
                resolve();
            });
        });
    }
    /** Stops accepting and closes every connection (call after `idle`). */
    async close() {
        // net.Server.close() calls back only once every connection has ended, so connections are
        // destroyed first, not after (an open peer session would otherwise hold the close forever).
        const closed = new Promise((resolve) => this.net.close(() => resolve()));
        for (const s of this.sessions)
            s.destroy();
        this.h1.closeAllConnections();
        this.h1.close(); // stops the connection-checking timer started in the constructor
        for (const s of this.sockets)
            s.destroy();
        await closed;
    }
}
/**
 * Calls the request handler for an HTTP/2 request one turn of the event loop after it arrived,
 * unless its stream is already gone. node:http2 emits a request while nghttp2 is still parsing
 * the bytes of one read; a rapid-reset client (CVE-2023-44487) puts HEADERS and RST_STREAM for
 * many streams in one write, so by the next turn those streams are closed and nothing of them is
 * sent upstream — without this, the proxy would dispatch each one to the app before it sees the
 * reset. nghttp2's reset rate limit (`streamResetBurst`/`streamResetRate`) still ends the session.
 */
function dispatchH2(onRequest, req, res) {
    const stream = req.stream;
    if (stream.closed || stream.destroyed)
        return;
    onRequest(req, res);
}
function toList(v) {
    return v === undefined ? undefined : Array.isArray(v) ? v : [v];
}
/**
 * A proxy-made reply written straight to the socket (parse errors, header timeout, refused
 * CONNECT/Upgrade: no response object exists), then the connection is closed.
 */
function rawReply(socket, status, message) {
    const body = `bad_request: ${message}\n`;
    socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Bad Request"}\r\nx-trellis-error: bad_request\r\n` +
        `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `connection: close\r\n\r\n${body}`);
    // end() closes our side gracefully, so the client reads the reply before it sees the close (a
    // destroy with unread input would send RST, which can discard the reply in the client's
    // buffer). A client that never closes its side is cut off after a short linger.
    if (socket instanceof net.Socket)
        socket.setTimeout(REFUSED_LINGER_MS, () => socket.destroy());
}
