/**
 * The inbound listener (15006): traffic from other sidecars (HTTP/2 over the mesh hop) and, in
 * PERMISSIVE mode, plaintext callers, delivered to the app on 127.0.0.1:<appPort>.
 *
 * Per request: capture the runtime once → strip hop-by-hop headers and any client-supplied
 * identity header → choose the app port (`x-trellis-port` from the calling sidecar, else the only
 * app port, else the first HTTP one) → (mTLS, JWT and authorization: later issues) → the port's
 * local rate limit (429 `rate_limited`) → (global limit: a later issue) → forward to the app.
 * WebSocket streams (extended CONNECT) pass the same local limit, sharing the port's buckets.
 */
import type * as http from "node:http";
import * as http2 from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import type { LocalRateLimiter, RateLimitQuota } from "../resilience/local-rate-limit.js";
import {
  type AppClient,
  type AppProtocol,
  callerGone,
  type DownstreamRequest,
  type DownstreamResponse,
  forwardableRaw,
  forwardableResponseRaw,
} from "./app-client.js";
import {
  appendForwardedFor,
  ensureRequestId,
  first,
  forwardableFromObject,
  type HeaderMap,
} from "./headers.js";
import type { ProxyHooks } from "./hooks.js";
import { isGrpc, REASON_STATUS, rateLimitHeaders, sendLocalReply } from "./local-reply.js";

/** The header a calling sidecar uses to name the app port it wants. Removed before the app. */
export const APP_PORT_HEADER = "x-trellis-port";
/** The verified caller identity given to the app; any client-supplied value is removed. */
export const PEER_IDENTITY_HEADER = "x-trellis-peer-identity";

/** Largest handshake answer (status line and headers) read from an app's WebSocket upgrade. */
const MAX_UPGRADE_HEAD = 64 * 1024;

export interface InboundPort {
  port: number;
  protocol: AppProtocol;
  /**
   * The port's local rate limiter (its most specific RateLimitPolicy's `local`), undefined when
   * none applies. Owned by the runtime builder's registry: it outlives config rebuilds.
   */
  localLimit: LocalRateLimiter | undefined;
}

/** What the inbound side needs from the current config. */
export interface InboundRuntime {
  service: string;
  namespace: string;
  ports: ReadonlyMap<number, InboundPort>;
  /** The port used when the caller names none: the only port, or the first HTTP one. */
  defaultPort: InboundPort | undefined;
}

export interface InboundDeps {
  /** The current inbound config; undefined until the first config arrived (then: 503, never open). */
  runtime: () => InboundRuntime | undefined;
  app: AppClient;
  hooks: ProxyHooks;
  /**
   * The verified identity (SPIFFE id) of the caller on `socket` — what `perIdentity` limits key on;
   * undefined for a caller without one. The seam for mTLS: until it lands, no caller has one.
   */
  peerIdentity: (socket: Socket | undefined) => string | undefined;
  /**
   * The counter of `decision`s of local limits for `policy` (`<namespace>/<name>`), i.e.
   * trellis_ratelimit_decisions_total{policy, scope="local", decision}. Asked once per limiter and
   * kept, so the request path only adds one.
   */
  rateLimitCounter: (policy: string, decision: "allowed" | "limited") => { inc(): void };
}

/** The two decision counters of one limiter. */
interface DecisionCounters {
  readonly allowed: { inc(): void };
  readonly limited: { inc(): void };
}

export class InboundProxy {
  /** Decision counters per limiter (limiters live across rebuilds; dropped ones are collected). */
  private readonly counters = new WeakMap<LocalRateLimiter, DecisionCounters>();

  constructor(private readonly deps: InboundDeps) {}

  /**
   * The local limit for a request from the caller on `socket`: takes a token and counts the
   * decision. Undefined when admitted, else the quota for the 429's headers.
   */
  private takeLocal(limiter: LocalRateLimiter, socket: Socket | undefined): RateLimitQuota | undefined {
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
  readonly handle = (req: DownstreamRequest, res: DownstreamResponse): void => {
    void this.serve(req, res).catch((err: unknown) => {
      this.deps.hooks.error("inbound", err);
      sendLocalReply(res, isGrpc(req.headers["content-type"]), "upstream_reset", "internal proxy error");
    });
  };

  private async serve(req: DownstreamRequest, res: DownstreamResponse): Promise<void> {
    const started = performance.now();
    const grpc = isGrpc(req.headers["content-type"]);
    const rt = this.deps.runtime();
    const hooks = this.deps.hooks;
    if (rt === undefined) {
      const status = sendLocalReply(res, grpc, "no_healthy_upstream", "the sidecar has no configuration yet");
      hooks.inbound(
        undefined,
        status,
        "no_healthy_upstream",
        started,
        0,
        grpc ? REASON_STATUS.no_healthy_upstream.grpc : undefined,
      );
      return;
    }
    const headers = forwardableRaw(req.rawHeaders);
    const named = first(headers[APP_PORT_HEADER]);
    delete headers[APP_PORT_HEADER];
    delete headers[PEER_IDENTITY_HEADER];
    const target = named !== undefined ? rt.ports.get(Number(named)) : rt.defaultPort;
    if (target === undefined) {
      const status = sendLocalReply(
        res,
        grpc,
        "no_route",
        named !== undefined ? `app port ${named} is not served here` : "no app port",
      );
      hooks.inbound(rt, status, "no_route", started, 0, grpc ? REASON_STATUS.no_route.grpc : undefined);
      return;
    }
    if (target.localLimit !== undefined) {
      const refused = this.takeLocal(target.localLimit, req.socket);
      if (refused !== undefined) {
        const status = sendLocalReply(
          res,
          grpc,
          "rate_limited",
          `local rate limit of ${target.localLimit.name} exceeded`,
          { headers: rateLimitHeaders(refused) },
        );
        hooks.inbound(
          rt,
          status,
          "rate_limited",
          started,
          0,
          grpc ? REASON_STATUS.rate_limited.grpc : undefined,
        );
        return;
      }
    }
    appendForwardedFor(headers, req.socket?.remoteAddress);
    ensureRequestId(headers);
    const method = req.method ?? "GET";
    const path = req.url ?? "/";
    const authority =
      (req as http2.Http2ServerRequest).authority ?? first(req.headers.host) ?? `127.0.0.1:${target.port}`;
    const result = await this.deps.app.forward(
      target.port,
      target.protocol,
      method,
      path,
      authority,
      headers,
      req,
      res,
    );
    if (result.failure !== undefined) {
      if (callerGone(req, res)) {
        // The caller cancelled (and so did we, upstream): recorded, not blamed on the app.
        hooks.inbound(rt, 0, "", started, 0);
        return;
      }
      const status = sendLocalReply(res, grpc, result.failure.reason, result.failure.message);
      hooks.inbound(
        rt,
        status,
        result.failure.reason,
        started,
        0,
        grpc ? REASON_STATUS[result.failure.reason].grpc : undefined,
      );
      return;
    }
    hooks.inbound(rt, result.status, "", started, result.responseBytes, result.grpcStatus);
  }

  /**
   * An extended CONNECT stream (RFC 8441) from a calling sidecar carrying a WebSocket: open an
   * HTTP/1.1 Upgrade to the app, answer 200 with the app's 101 headers, then pipe bytes.
   */
  readonly handleConnect = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void => {
    const started = performance.now();
    const rt = this.deps.runtime();
    const named = first(headers[APP_PORT_HEADER]);
    const target =
      rt === undefined ? undefined : named !== undefined ? rt.ports.get(Number(named)) : rt.defaultPort;
    // Every tunnel is recorded once, however it ends (refused, failed, or closed after its 101).
    let recorded = false;
    const record = (status: number, reason: string) => {
      if (recorded) return;
      recorded = true;
      this.deps.hooks.inbound(rt, status, reason, started, 0);
    };
    if (headers[":protocol"] !== "websocket" || target === undefined) {
      const status = target === undefined ? 404 : 501;
      const reason = target === undefined ? "no_route" : "bad_request";
      stream.respond({ ":status": status, "x-trellis-error": reason }, { endStream: true });
      record(status, reason);
      return;
    }
    if (target.localLimit !== undefined) {
      const refused = this.takeLocal(target.localLimit, stream.session?.socket);
      if (refused !== undefined) {
        stream.respond(
          { ":status": 429, "x-trellis-error": "rate_limited", ...rateLimitHeaders(refused) },
          { endStream: true },
        );
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
      for (const one of Array.isArray(v) ? v : [v]) head += `${k}: ${one}\r\n`;
    head += "\r\n";
    upstream.once("connect", () => upstream.write(head));
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf("\r\n\r\n");
      if (end < 0) {
        // An app that never finishes its handshake answer must not grow our memory.
        if (buffered.length > MAX_UPGRADE_HEAD) {
          upstream.destroy();
          stream.respond(
            { ":status": 502, "x-trellis-error": "upstream_protocol_error" },
            { endStream: true },
          );
          record(502, "upstream_protocol_error");
        }
        return;
      }
      upstream.off("data", onData);
      const [statusLine = "", ...lines] = buffered.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(statusLine.split(" ")[1]);
      const rest = buffered.subarray(end + 4);
      const raw: string[] = [];
      for (const l of lines) {
        const i = l.indexOf(":");
        if (i > 0) raw.push(l.slice(0, i).trim(), l.slice(i + 1).trim());
      }
      // Connection, Upgrade and the other hop-by-hop fields are the app hop's; duplicates kept.
      const out: http2.OutgoingHttpHeaders = forwardableResponseRaw(raw);
      if (status !== 101) {
        const answered = Number.isFinite(status) ? status : 502;
        stream.respond({ ...out, ":status": answered }, { endStream: true });
        upstream.destroy();
        record(answered, Number.isFinite(status) ? "" : "upstream_protocol_error");
        return;
      }
      stream.respond({ ...out, ":status": 200 });
      if (rest.length > 0) stream.write(rest);
      upstream.pipe(stream);
      stream.pipe(upstream);
    };
    upstream.on("data", onData);
    const fail = () => {
      if (!stream.headersSent) {
        if (!stream.destroyed)
          stream.respond(
            { ":status": 502, "x-trellis-error": "upstream_connect_failure" },
            { endStream: true },
          );
        record(502, "upstream_connect_failure");
      } else stream.close(http2.constants.NGHTTP2_CONNECT_ERROR);
    };
    upstream.on("error", fail);
    stream.on("error", () => upstream.destroy());
    stream.on("close", () => {
      upstream.destroy();
      // The tunnel's whole life: 101 once it was established, else the caller left before.
      record(stream.headersSent ? 101 : 0, "");
    });
    upstream.on("close", () => {
      if (!stream.closed) stream.end();
    });
  };
}

export type { HeaderMap, http };
