import * as http2 from "node:http2";
import { connect as netConnect } from "node:net";
import { forwardableRaw, forwardableResponseRaw, } from "./app-client.js";
import { appendForwardedFor, ensureRequestId, first, forwardableFromObject, } from "./headers.js";
import { isGrpc, REASON_STATUS, rateLimitHeaders, sendLocalReply } from "./local-reply.js";
/** The header a calling sidecar uses to name the app port it wants. Removed before the app. */
export const APP_PORT_HEADER = "x-trellis-port";
/** The verified caller identity given to the app; any client-supplied value is removed. */
export const PEER_IDENTITY_HEADER = "x-trellis-peer-identity";
/** Largest handshake answer (status line and headers) read from an app's WebSocket upgrade. */
const MAX_UPGRADE_HEAD = 64 * 1024;
export class InboundProxy {
    deps;
    /** Decision counters per limiter (limiters live across rebuilds; dropped ones are collected). */
    counters = new WeakMap();
    constructor(deps) {
        this.deps = deps;
    }
    /**
     * The local limit for a request from the caller on `socket`: takes a token and counts the
     * decision. Undefined when admitted, else the quota for the 429's headers.
     */
    takeLocal(limiter, socket) {
        let counters = this.counters.get(limiter);
        if (counters === undefined) {
            counters = {
                allowed: this.deps.rateLimitCounter(limiter.name, "allowed"),
                limited: this.deps.rateLimitCounter(limiter.name, "limited"),
            };
            this.counters.set(limiter, counters);
        }
        const refused = limiter.take(this.deps.peerIdentity(socket));
        (refused === undefined ? counters.allowed : counters.limited).inc();
        return refused;
    }
    /** The Frontend request handler. */
    handle = (req, res) => {
        void this.serve(req, res).catch((err) => {
            this.deps.hooks.error("inbound", err);
            sendLocalReply(res, isGrpc(req.headers["content-type"]), "upstream_reset", "internal proxy error");
        });
    };
    async serve(req, res) {
        const started = performance.now();
        const grpc = isGrpc(req.headers["content-type"]);
        const rt = this.deps.runtime();
        const hooks = this.deps.hooks;
        if (rt === undefined) {
            const status = sendLocalReply(res, grpc, "no_healthy_upstream", "the sidecar has no configuration yet");
            hooks.inbound(undefined, status, "no_healthy_upstream", started, 0, grpc ? REASON_STATUS.no_healthy_upstream.grpc : undefined);
            return;
        }
        const headers = forwardableRaw(req.rawHeaders);
        const named = first(headers[APP_PORT_HEADER]);
        delete headers[APP_PORT_HEADER];
        delete headers[PEER_IDENTITY_HEADER];
        const target = named !== undefined ? rt.ports.get(Number(named)) : rt.defaultPort;
        if (target === undefined) {
            const status = sendLocalReply(res, grpc, "no_route", named !== undefined ? `app port ${named} is not served here` : "no app port");
            hooks.inbound(rt, status, "no_route", started, 0, grpc ? REASON_STATUS.no_route.grpc : undefined);
            return;
        }
        if (target.localLimit !== undefined) {
            const refused = this.takeLocal(target.localLimit, req.socket);
            if (refused !== undefined) {
                const status = sendLocalReply(res, grpc, "rate_limited", `local rate limit of ${target.localLimit.name} exceeded`, { headers: rateLimitHeaders(refused) });
                hooks.inbound(rt, status, "rate_limited", started, 0, grpc ? REASON_STATUS.rate_limited.grpc : undefined);
                return;
            }
        }
        appendForwardedFor(headers, req.socket?.remoteAddress);
        ensureRequestId(headers);
        const method = req.method ?? "GET";
        const path = req.url ?? "/";
        const authority = req.authority ?? first(req.headers.host) ?? `127.0.0.1:${target.port}`;
        const result = await this.deps.app.forward(target.port, target.protocol, method, path, authority, headers, req, res);
        if (result.failure !== undefined) {
            const status = sendLocalReply(res, grpc, result.failure.reason, result.failure.message);
            hooks.inbound(rt, status, result.failure.reason, started, 0, grpc ? REASON_STATUS[result.failure.reason].grpc : undefined);
            return;
        }
        hooks.inbound(rt, result.status, "", started, result.responseBytes, result.grpcStatus);
    }
    /**
     * An extended CONNECT stream (RFC 8441) from a calling sidecar carrying a WebSocket: open an
     * HTTP/1.1 Upgrade to the app, answer 200 with the app's 101 headers, then pipe bytes.
     */
    handleConnect = (stream, headers) => {
        const started = performance.now();
        const rt = this.deps.runtime();
        const named = first(headers[APP_PORT_HEADER]);
        const target = rt === undefined ? undefined : named !== undefined ? rt.ports.get(Number(named)) : rt.defaultPort;
        if (headers[":protocol"] !== "websocket" || target === undefined) {
            stream.respond({
                ":status": target === undefined ? 404 : 501,
                "x-trellis-error": target === undefined ? "no_route" : "bad_request",
            }, { endStream: true });
            return;
        }
        if (target.localLimit !== undefined) {
            const refused = this.takeLocal(target.localLimit, stream.session?.socket);
            if (refused !== undefined) {
                stream.respond({ ":status": 429, "x-trellis-error": "rate_limited", ...rateLimitHeaders(refused) }, { endStream: true });
                this.deps.hooks.inbound(rt, 429, "rate_limited", started, 0);
                return;
            }
        }
        const upstream = netConnect({ host: this.deps.app.host, port: target.port });
        // (The stream handler gets Node's joined header object: a repeated field arrives as one
        // comma-joined line here. WebSocket handshakes repeat none that matter.)
        const fwd = forwardableFromObject(headers);
        delete fwd[APP_PORT_HEADER];
        delete fwd[PEER_IDENTITY_HEADER];
        appendForwardedFor(fwd, stream.session?.socket?.remoteAddress);
        ensureRequestId(fwd);
        let head = `GET ${headers[":path"] ?? "/"} HTTP/1.1\r\nhost: ${headers[":authority"] ?? "127.0.0.1"}\r\nconnection: Upgrade\r\nupgrade: websocket\r\n`;
        for (const [k, v] of Object.entries(fwd))
            for (const one of Array.isArray(v) ? v : [v])
                head += `${k}: ${one}\r\n`;
        head += "\r\n";
        upstream.once("connect", () => upstream.write(head));
        let buffered = Buffer.alloc(0);
        const onData = (chunk) => {
            buffered = Buffer.concat([buffered, chunk]);
            const end = buffered.indexOf("\r\n\r\n");
            if (end < 0) {
                // An app that never finishes its handshake answer must not grow our memory.
                if (buffered.length > MAX_UPGRADE_HEAD) {
                    upstream.destroy();
                    stream.respond({ ":status": 502, "x-trellis-error": "upstream_protocol_error" }, { endStream: true });
                }
                return;
            }
            upstream.off("data", onData);
            const [statusLine = "", ...lines] = buffered.subarray(0, end).toString("latin1").split("\r\n");
            const status = Number(statusLine.split(" ")[1]);
            const rest = buffered.subarray(end + 4);
            const raw = [];
            for (const l of lines) {
                const i = l.indexOf(":");
                if (i > 0)
                    raw.push(l.slice(0, i).trim(), l.slice(i + 1).trim());
            }
            // Connection, Upgrade and the other hop-by-hop fields are the app hop's; duplicates kept.
            const out = forwardableResponseRaw(raw);
            if (status !== 101) {
                stream.respond({ ...out, ":status": Number.isFinite(status) ? status : 502 }, { endStream: true });
                upstream.destroy();
                return;
            }
            stream.respond({ ...out, ":status": 200 });
            if (rest.length > 0)
                stream.write(rest);
            upstream.pipe(stream);
            stream.pipe(upstream);
        };
        upstream.on("data", onData);
        const fail = () => {
            if (!stream.headersSent)
                stream.respond({ ":status": 502, "x-trellis-error": "upstream_connect_failure" }, { endStream: true });
            else
                stream.close(http2.constants.NGHTTP2_CONNECT_ERROR);
        };
        upstream.on("error", fail);
        stream.on("error", () => upstream.destroy());
        stream.on("close", () => upstream.destroy());
        upstream.on("close", () => {
            if (!stream.closed)
                stream.end();
        });
    };
}
