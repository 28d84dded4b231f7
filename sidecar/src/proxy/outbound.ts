/**
 * The outbound listener (15001): the app's requests to the mesh (explicit mode: the app uses the
 * listener as its HTTP proxy, absolute-form or CONNECT, or sends to it with the service's Host).
 *
 * Per request (the runtime config is captured once at the start; a swap never disturbs it):
 *  1. Authority and path: absolute-form URL or Host/:authority; path normalised once (what is
 *     matched is what is forwarded); a malformed one is 400 `bad_request`.
 *  2. Route table by authority. An unknown mesh-looking host waits (≤ subscribe timeout) for the
 *     on-demand subscription; "does not exist" means a non-mesh destination: passed through to its
 *     real address, or 404 `no_route` under REGISTRY_ONLY. No answer in time: `no_route`.
 *  3. Rule match (404 `no_route` when none) → weighted cluster → endpoint from its balancer
 *     (503 `no_healthy_upstream` when none).
 *  4. Headers: hop-by-hop stripped, route edits, X-Forwarded-For, x-request-id, the app port for
 *     the peer; then one HTTP/2 stream on the mesh transport; bodies and trailers stream both ways.
 */

import type * as http from "node:http";
import { STATUS_CODES } from "node:http";
import type * as http2 from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { OutboundTrafficPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { Agent, type Dispatcher } from "undici";
import { newHashCookie } from "../balancer/hash-key.js";
import { chance, type Random, stream } from "../resilience/random.js";
import { applyRequestEdits, applyResponseEdits } from "../routing/header-edits.js";
import { normalizeAuthority, serviceNameForHost } from "../routing/host.js";
import { matchRule } from "../routing/match.js";
import { normalizePath } from "../routing/path.js";
import { type RouteTable, servicePortFor } from "../routing/route-table.js";
import { pickCluster } from "../routing/weighted.js";
import type { ClusterRuntime, RuntimeConfig } from "../runtime/runtime-config.js";
import type { DownstreamRequest, DownstreamResponse } from "./app-client.js";
import {
  callerGone,
  detachedBody,
  forwardableRaw,
  forwardableResponseRaw,
  requestHasBody,
  writeHead,
} from "./app-client.js";
import { appendForwardedFor, ensureRequestId, first, forwardableResponseHeaders } from "./headers.js";
import type { OutboundRecord, ProxyHooks } from "./hooks.js";
import { APP_PORT_HEADER } from "./inbound.js";
import {
  isGrpc,
  type LocalReason,
  type LocalReplyOptions,
  REASON_STATUS,
  sendLocalReply,
} from "./local-reply.js";
import { cancelStream, type MeshTransport } from "./mesh-transport.js";
import { type MirrorCopy, startMirror } from "./mirror.js";
import { type ExchangeEnv, OutboundExchange } from "./outbound-exchange.js";
import { splice } from "./splice.js";
import { classifyUpstreamError } from "./upstream-error.js";

export interface OutboundDeps {
  runtime: () => RuntimeConfig | undefined;
  /** Subscribes to a RouteConfig name on demand; resolves when it arrived, was refused, or timed out. */
  resolve: (routeName: string) => Promise<void>;
  /** This sidecar's namespace (bare service names resolve in it). */
  namespace: string;
  transport: MeshTransport;
  hooks: ProxyHooks;
  random: () => number;
  /** `--random-seed`: fault, mirror and backoff draws come from streams of this seed (tests). */
  seed?: number | undefined;
  /** Accepts a socket as if it were a new app connection (CONNECT to a mesh service). */
  adopt: (socket: Socket, defaultAuthority: string) => void;
}

const HTTP_DEFAULT_PORT = 80;

/** Longest a mirrored copy may run when its route has no timeout, ms. */
const MIRROR_TIMEOUT_MS = 10_000;

/** Resolves after `ms`, or as soon as the caller goes away. */
function delay(ms: number, res: DownstreamResponse): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      res.off("close", done);
      resolve();
    }
    res.once("close", done);
  });
}

const NO_PICK_CONTEXT = {};

/**
 * The RING_HASH key of a request, from the cluster's hashOn source; with a generated cookie
 * (`cookie.ttl`) and no cookie on the request, a new one is made and set on the response.
 */
function requestHashKey(
  cluster: ClusterRuntime,
  req: DownstreamRequest,
  res: DownstreamResponse,
  query: string,
  random: () => number,
): string | undefined {
  const source = cluster.hashKey;
  if (source === undefined) return undefined;
  const key = source.key(req.headers, query, req.socket?.remoteAddress);
  if (key !== undefined || source.generatedCookie === undefined) return key;
  const c = newHashCookie(source.generatedCookie, random);
  res.appendHeader("set-cookie", c.setCookie);
  return c.value;
}

export class OutboundProxy {
  private readonly passthrough: Dispatcher = new Agent({ connections: 64, keepAliveTimeout: 30_000 });
  private readonly faultRandom: Random;
  private readonly mirrorRandom: Random;
  private readonly env: ExchangeEnv;

  constructor(private readonly deps: OutboundDeps) {
    this.faultRandom = stream(deps.seed, "fault");
    this.mirrorRandom = stream(deps.seed, "mirror");
    this.env = {
      transport: deps.transport,
      hooks: deps.hooks,
      random: stream(deps.seed, "backoff"),
      now: () => performance.now(),
      wallNow: Date.now,
    };
  }

  readonly handle = (req: DownstreamRequest, res: DownstreamResponse): void => {
    void this.serve(req, res).catch((err: unknown) => {
      this.deps.hooks.error("outbound", err);
      sendLocalReply(res, isGrpc(req.headers["content-type"]), "upstream_reset", "internal proxy error");
    });
  };

  private reply(
    req: DownstreamRequest,
    res: DownstreamResponse,
    reason: LocalReason,
    message: string,
    started: number,
    dst?: { service: string; namespace: string },
    opts?: LocalReplyOptions,
  ): void {
    const grpc = isGrpc(req.headers["content-type"]);
    const status = sendLocalReply(res, grpc, reason, message, opts);
    this.deps.hooks.outbound(
      dst === undefined
        ? undefined
        : { destinationService: dst.service, destinationNamespace: dst.namespace },
      status,
      reason,
      started,
      0,
      grpc ? (opts?.grpcStatus ?? REASON_STATUS[reason].grpc) : undefined,
    );
  }

  private async serve(req: DownstreamRequest, res: DownstreamResponse): Promise<void> {
    const started = performance.now();
    let rt = this.deps.runtime();
    if (rt === undefined)
      return this.reply(req, res, "no_healthy_upstream", "the sidecar has no configuration yet", started);
    // 1.
    let target = req.url ?? "/";
    let authorityText = (req as http2.Http2ServerRequest).authority ?? first(req.headers.host);
    if (target.startsWith("http://") || target.startsWith("HTTP://")) {
      const slash = target.indexOf("/", 7);
      authorityText = slash < 0 ? target.slice(7) : target.slice(7, slash);
      target = slash < 0 ? "/" : target.slice(slash);
    } else if (!target.startsWith("/")) {
      return this.reply(
        req,
        res,
        "bad_request",
        `unsupported request target ${JSON.stringify(target.slice(0, 64))}`,
        started,
      );
    }
    const np = normalizePath(target);
    if ("error" in np) return this.reply(req, res, "bad_request", np.error, started);
    const auth =
      authorityText === undefined ? undefined : normalizeAuthority(authorityText, HTTP_DEFAULT_PORT);
    if (auth === undefined) return this.reply(req, res, "bad_request", "missing or malformed Host", started);
    // 2.
    let table = rt.routes.lookup(auth.host, auth.port);
    if (table === undefined) {
      const found = await this.subscribeAndLookup(auth);
      if (found.noRoute !== undefined) return this.reply(req, res, "no_route", found.noRoute, started);
      rt = found.rt ?? rt;
      table = found.table;
      if (table === undefined) {
        if (rt.outboundTrafficPolicy === OutboundTrafficPolicy.REGISTRY_ONLY) {
          return this.reply(
            req,
            res,
            "no_route",
            `${auth.host} is not a mesh service (REGISTRY_ONLY)`,
            started,
          );
        }
        return this.passThrough(
          req,
          res,
          authorityText as string,
          np.path + (np.query ? `?${np.query}` : ""),
          started,
        );
      }
    }
    // 3.
    const dst = { service: table.service, namespace: table.namespace };
    const port = servicePortFor(table, auth.port, HTTP_DEFAULT_PORT);
    if (port === undefined)
      return this.reply(req, res, "no_route", `${table.name} has no port ${auth.port}`, started, dst);
    const rule = matchRule(table, port, req.method ?? "GET", np.path, req.headers, np.query);
    if (rule === undefined)
      return this.reply(req, res, "no_route", `no rule of ${table.name} matches`, started, dst);
    const policy = rule.policy;
    // 4. Fault injection: one draw decides the delay and the abort together.
    const fault = policy.fault;
    if (fault !== undefined && chance(this.faultRandom, fault.percentage)) {
      if (fault.delayMs !== undefined) {
        await delay(fault.delayMs, res);
        if (callerGone(req, res)) {
          this.deps.hooks.outbound(
            { destinationService: dst.service, destinationNamespace: dst.namespace },
            0,
            "",
            started,
            0,
          );
          return;
        }
      }
      if (fault.abort !== undefined)
        return this.reply(
          req,
          res,
          "fault_injected",
          "fault injected by the route",
          started,
          dst,
          fault.abort,
        );
      rt = this.deps.runtime() ?? rt;
    }
    const cluster = rt.clusters.get(pickCluster(rule, this.deps.random));
    if (cluster === undefined) {
      const why = "the route's cluster is not known yet";
      const fb = policy.fallback;
      if (fb === undefined) return this.reply(req, res, "no_healthy_upstream", why, started, dst);
      return this.reply(req, res, "fallback", why, started, dst, fb);
    }
    const hashKey = requestHashKey(cluster, req, res, np.query, this.deps.random);
    // 5. Headers, the mirror's copy, then the exchange (timeouts, retries, limits, balancing).
    const headers = forwardableRaw(req.rawHeaders);
    applyRequestEdits(headers, rule.headerEdits);
    appendForwardedFor(headers, req.socket?.remoteAddress);
    ensureRequestId(headers);
    const path = np.query ? `${np.path}?${np.query}` : np.path;
    const hasBody = requestHasBody(req);
    const method = req.method ?? "GET";
    const m = policy.mirror;
    let mirror: MirrorCopy | undefined;
    if (m !== undefined && chance(this.mirrorRandom, m.percentage)) {
      const mc = rt.clusters.get(m.cluster);
      if (mc !== undefined)
        mirror = startMirror(
          this.deps.transport,
          mc,
          method,
          authorityText as string,
          path,
          headers,
          !hasBody,
          policy.timeoutMs ?? MIRROR_TIMEOUT_MS,
        );
    }
    new OutboundExchange(
      this.env,
      req,
      res,
      { table, rule, cluster, hashKey },
      authorityText as string,
      path,
      headers,
      started,
      isGrpc(req.headers["content-type"]),
      hasBody,
      mirror,
    ).start();
  }

  /**
   * Step 2's slow path, for a host the current config has no route table for: subscribe to its
   * route on demand and wait (bounded by the subscribe timeout). Returns the table and the runtime
   * that has it; no table when the host is not a mesh service (never was one, or the control plane
   * said it does not exist); `noRoute` (the message) when the service is known but not on this
   * port, or when no answer came in time.
   */
  private async subscribeAndLookup(auth: {
    host: string;
    port: number;
  }): Promise<{ rt?: RuntimeConfig; table?: RouteTable; noRoute?: string }> {
    const routeName = serviceNameForHost(auth.host, this.deps.namespace);
    const before = this.deps.runtime();
    if (routeName === undefined || before === undefined || before.notFound.has(routeName)) return {};
    // Held already, just not on this port: waiting would only delay the same answer.
    if (before.routes.get(routeName) !== undefined)
      return { noRoute: `${routeName} does not serve port ${auth.port}` };
    await this.deps.resolve(routeName);
    const rt = this.deps.runtime();
    if (rt === undefined) return {};
    const table = rt.routes.lookup(auth.host, auth.port);
    if (table !== undefined) return { rt, table };
    if (rt.routes.get(routeName) !== undefined)
      return { noRoute: `${routeName} does not serve port ${auth.port}` };
    if (!rt.notFound.has(routeName)) return { noRoute: `no configuration for ${routeName} arrived in time` };
    return { rt };
  }

  /** A non-mesh destination: forwarded to its real address as is (ALLOW_ANY), counted. */
  private async passThrough(
    req: DownstreamRequest,
    res: DownstreamResponse,
    authority: string,
    path: string,
    started: number,
  ): Promise<void> {
    const headers = forwardableRaw(req.rawHeaders);
    appendForwardedFor(headers, req.socket?.remoteAddress);
    headers.host = authority;
    try {
      const r = await this.passthrough.request({
        origin: `http://${authority}`,
        method: (req.method ?? "GET") as "GET",
        path,
        headers,
        body: requestHasBody(req) ? detachedBody(req) : null,
      });
      writeHead(res, r.statusCode, forwardableResponseHeaders(r.headers as http.IncomingHttpHeaders));
      let bytes = 0;
      r.body.on("data", (c: Buffer) => {
        bytes += c.length;
      });
      await new Promise<void>((resolve) => splice(r.body, res, () => resolve()));
      this.deps.hooks.outbound(
        { destinationService: "passthrough", destinationNamespace: "" },
        r.statusCode,
        "",
        started,
        bytes,
      );
    } catch (err) {
      const f = classifyUpstreamError(err, false);
      const status = sendLocalReply(res, isGrpc(req.headers["content-type"]), f.reason, f.message);
      this.deps.hooks.outbound(
        { destinationService: "passthrough", destinationNamespace: "" },
        status,
        f.reason,
        started,
        0,
      );
    }
  }

  /**
   * HTTP/1 CONNECT from the app. To a mesh service: answer 200 and treat the tunnel as a new app
   * connection (HTTP/1.1 or h2c inside is detected and proxied with policy). To anything else: a
   * raw pass-through tunnel (REGISTRY_ONLY refuses it).
   */
  readonly handleConnect = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on("error", () => socket.destroy());
    void this.connectTunnel(req, socket as Socket, head).catch((err: unknown) => {
      this.deps.hooks.error("connect", err);
      socket.destroy();
    });
  };

  private async connectTunnel(req: http.IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const started = performance.now();
    const target = req.url ?? "";
    const auth = normalizeAuthority(target, 443);
    const fail = (reason: LocalReason, message: string, status = REASON_STATUS[reason].http) => {
      refuseRaw(socket, status, reason, message);
      this.deps.hooks.outbound(undefined, status, reason, started, 0);
    };
    if (auth === undefined || !/:\d+$/.test(target))
      return fail("bad_request", "CONNECT needs host:port", 400);
    let rt = this.deps.runtime();
    if (rt === undefined) return fail("no_healthy_upstream", "the sidecar has no configuration yet");
    let table = rt.routes.lookup(auth.host, auth.port);
    if (table === undefined) {
      const found = await this.subscribeAndLookup(auth);
      if (found.noRoute !== undefined) return fail("no_route", found.noRoute);
      rt = found.rt ?? rt;
      table = found.table;
    }
    if (socket.destroyed) return;
    if (table !== undefined) {
      socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) socket.unshift(head);
      this.deps.adopt(socket, target);
      return;
    }
    if (rt.outboundTrafficPolicy === OutboundTrafficPolicy.REGISTRY_ONLY)
      return fail("no_route", `${auth.host} is not a mesh service (REGISTRY_ONLY)`);
    const upstream = netConnect({ host: auth.host.replace(/^\[|\]$/g, ""), port: auth.port });
    let established = false;
    upstream.once("connect", () => {
      established = true;
      socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.once("error", (err) => {
      if (!established) fail("upstream_connect_failure", String((err as Error).message));
      else socket.destroy();
    });
    socket.once("close", () => {
      upstream.destroy();
      if (!established) return;
      this.deps.hooks.outbound(
        { destinationService: "passthrough", destinationNamespace: "" },
        200,
        "",
        started,
        upstream.bytesRead,
      );
    });
  }

  /**
   * HTTP/1 Upgrade (WebSocket) from the app: routed like any request (on-demand subscription
   * included), then carried to the peer sidecar as an extended CONNECT stream (RFC 8441) and
   * spliced. The peer answers 200 with the app's 101 headers, which become our 101.
   */
  readonly handleUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on("error", () => socket.destroy());
    void this.upgrade(req, socket as Socket, head).catch((err: unknown) => {
      this.deps.hooks.error("upgrade", err);
      socket.destroy();
    });
  };

  private async upgrade(req: http.IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const started = performance.now();
    let rt = this.deps.runtime();
    const fail = (
      reason: LocalReason,
      message: string,
      status = REASON_STATUS[reason].http,
      dst?: OutboundRecord,
    ) => {
      refuseRaw(socket, status, reason, message);
      this.deps.hooks.outbound(dst, status, reason, started, 0);
    };
    if (rt === undefined) return fail("no_healthy_upstream", "the sidecar has no configuration yet");
    if ((first(req.headers.upgrade) ?? "").toLowerCase() !== "websocket")
      return fail("bad_request", "only WebSocket upgrades are proxied", 400);
    let authorityText = first(req.headers.host) ?? "";
    let target = req.url ?? "/";
    if (/^http:\/\//i.test(target)) {
      const slash = target.indexOf("/", 7);
      authorityText = slash < 0 ? target.slice(7) : target.slice(7, slash);
      target = slash < 0 ? "/" : target.slice(slash);
    }
    const auth = normalizeAuthority(authorityText, HTTP_DEFAULT_PORT);
    const np = normalizePath(target);
    if (auth === undefined) return fail("bad_request", "missing or malformed Host", 400);
    if ("error" in np) return fail("bad_request", np.error, 400);
    let table = rt.routes.lookup(auth.host, auth.port);
    if (table === undefined) {
      const found = await this.subscribeAndLookup(auth);
      if (found.noRoute !== undefined) return fail("no_route", found.noRoute);
      rt = found.rt ?? rt;
      table = found.table;
    }
    if (table === undefined)
      return fail("no_route", `${auth.host} is not a mesh service (WebSocket pass-through is not supported)`);
    const dst = { destinationService: table.service, destinationNamespace: table.namespace };
    const port = servicePortFor(table, auth.port, HTTP_DEFAULT_PORT);
    const rule =
      port === undefined ? undefined : matchRule(table, port, "GET", np.path, req.headers, np.query);
    if (rule === undefined) return fail("no_route", `no rule of ${table.name} matches`, undefined, dst);
    const cluster = rt.clusters.get(pickCluster(rule, this.deps.random));
    // No response object here to set a generated cookie on: an existing key is used, else random.
    const wsKey = cluster?.hashKey?.key(req.headers, np.query, req.socket?.remoteAddress);
    const endpoint = cluster?.balancer.pick(wsKey === undefined ? NO_PICK_CONTEXT : { hashKey: wsKey });
    if (cluster === undefined || endpoint === undefined)
      return fail("no_healthy_upstream", `${table.name} has no usable endpoint`, undefined, dst);
    if (socket.destroyed) return;
    // Upgrade and Connection are this hop's; the peer rebuilds them for the app.
    const headers = forwardableRaw(req.rawHeaders);
    applyRequestEdits(headers, rule.headerEdits);
    appendForwardedFor(headers, req.socket?.remoteAddress);
    ensureRequestId(headers);
    headers[APP_PORT_HEADER] = String(endpoint.data.appPort || cluster.port);
    endpoint.onStart();
    const stream = this.deps.transport.request(
      { address: endpoint.data.address, port: endpoint.data.port },
      {
        ...headers,
        ":method": "CONNECT",
        ":protocol": "websocket",
        ":scheme": "http",
        ":path": np.query ? `${np.path}?${np.query}` : np.path,
        ":authority": authorityText,
      },
      false,
      cluster.streamOptions,
    );
    if (stream === undefined) {
      endpoint.onFinish(0, false);
      return fail("overflow", `${cluster.name} is at its connection limit`, undefined, dst);
    }
    let status = 0;
    let reason = "";
    stream.on("response", (h, _flags, raw) => {
      status = Number(h[":status"]);
      if (status !== 200) {
        const why = first(h["x-trellis-error"]);
        reason = why ?? "";
        // The peer's rate-limit headers tell the caller when to come back: keep them.
        const extra: string[] = [];
        for (const name of RATE_LIMIT_HEADERS) {
          const v = first(h[name]);
          if (v !== undefined && /^[\x20-\x7e]*$/.test(v)) extra.push(`${name}: ${v}`);
        }
        refuseRaw(socket, status || 502, why ?? "upstream_reset", "the peer refused the WebSocket", extra);
        cancelStream(stream);
        return;
      }
      status = 101;
      let out = "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n";
      const fwd = forwardableResponseRaw(raw);
      applyResponseEdits(fwd, rule.headerEdits);
      for (const k in fwd) {
        const v = fwd[k] as string | string[];
        for (const one of Array.isArray(v) ? v : [v]) out += `${k}: ${one}\r\n`;
      }
      socket.write(`${out}\r\n`);
      if (head.length > 0) stream.write(head);
      stream.pipe(socket);
      socket.pipe(stream);
    });
    stream.on("error", (err) => {
      if (status === 0) {
        const f = classifyUpstreamError(err, stream.session?.connecting === false);
        reason = f.reason;
        refuseRaw(socket, REASON_STATUS[f.reason].http, f.reason, f.message);
      } else socket.destroy();
    });
    socket.on("close", () => cancelStream(stream));
    stream.once("close", () => {
      socket.destroy();
      endpoint.onFinish(performance.now() - started, status === 101);
      this.deps.hooks.outbound(
        dst,
        status === 101 ? 101 : status || 502,
        reason,
        started,
        socket.bytesWritten,
      );
    });
  }

  async close(): Promise<void> {
    await this.passthrough.close();
  }
}

/**
 * A proxy-made answer on a raw socket (CONNECT and Upgrade happen outside the response API):
 * status line, `x-trellis-error`, a short text body, and the connection closed.
 */
/** Headers of a peer's refusal that a raw refusal passes on (429 `rate_limited`). */
const RATE_LIMIT_HEADERS = ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after"];

function refuseRaw(
  socket: Socket,
  status: number,
  reason: string,
  message: string,
  extraHeaders: readonly string[] = [],
): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const body = `${reason}: ${message.replace(/[\r\n]+/g, " ")}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\nx-trellis-error: ${reason}\r\n` +
      extraHeaders.map((h) => `${h}\r\n`).join("") +
      `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `connection: close\r\n\r\n${body}`,
  );
}
