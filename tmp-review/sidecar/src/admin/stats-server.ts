/**
 * The stats port (15020, all interfaces; INTERFACES.md "Ports"): health and metrics for kubelet and
 * Prometheus.
 *
 *   GET /live                       200 while the process runs (hooks.live, when given, may say 503)
 *   GET /ready                      200 when hooks.ready(), else 503
 *   GET /metrics                    Prometheus text from hooks.metrics()
 *   GET /app-health/<port>/<path…>  the app's own probe, rewritten by injection: a GET to
 *                                   http://127.0.0.1:<port>/<path…>?<query> answered with the
 *                                   app's status code and no body
 *
 * Why the probes go through the sidecar: with STRICT mTLS the kubelet's plaintext probe to the app
 * port would be refused by the inbound listener, so injection points the probe here instead.
 * Only ports in hooks.appPorts() are probed (404 otherwise), so this port cannot be used to reach
 * arbitrary local services. The app gets 1 s (configurable) to answer with a status line; no
 * connection, a reset or no answer in time gives 503 with `x-trellis-error` saying which.
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type ServerResponse,
} from "node:http";
import {
  type HttpEndpoint,
  httpEndpoint,
  methodNotAllowed,
  PROMETHEUS_CONTENT_TYPE,
  pathOf,
  readyRoute,
  send,
  sendProduced,
} from "./http-endpoint.js";

/** What the stats port reports; supplied by the sidecar's lifecycle. */
export interface StatsHooks {
  /** True once config has arrived and while not draining. */
  ready(): boolean;
  /** Liveness; absent = always live (the process answering is the proof). */
  live?(): boolean;
  /** The Prometheus text exposition (SidecarMetrics.scrape). */
  metrics(): string | Promise<string>;
  /** The app ports that may be probed (the config's appPorts); read per request, so it may change. */
  appPorts(): Iterable<number>;
}

/** Tuning for the probe forwarding; the defaults are what kubelet probes need. */
export interface StatsServerOptions {
  /** Time the app has to send its status line, ms (default 1 000). */
  appHealthTimeoutMs?: number;
  /** Address of the app (default 127.0.0.1). */
  appHost?: string;
}

const TEXT_TYPE = "text/plain; charset=utf-8";
const APP_HEALTH = /^\/app-health\/(\d{1,5})(\/[^?]*)?(\?.*)?$/;

// Connection-level headers of the kubelet's request that must not be forwarded (RFC 9110 §7.6.1),
// plus host (the app is addressed as 127.0.0.1:<port>) and the body framing of a bodiless GET.
const NOT_FORWARDED = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "content-length",
]);

function forwardedHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !NOT_FORWARDED.has(name)) out[name] = value;
  }
  return out;
}

function isAllowedPort(port: number, ports: Iterable<number>): boolean {
  for (const p of ports) if (p === port) return true;
  return false;
}

/** Forwards one rewritten probe to the app and answers with its status code only. */
function probeApp(
  req: IncomingMessage,
  res: ServerResponse,
  port: number,
  path: string,
  opts: Required<StatsServerOptions>,
): void {
  let answered = false;
  const upstream = request({
    host: opts.appHost,
    port,
    path,
    method: "GET",
    headers: forwardedHeaders(req.headers),
    agent: false,
    signal: AbortSignal.timeout(opts.appHealthTimeoutMs),
  });
  upstream.on("response", (appRes) => {
    answered = true;
    // The body is not wanted; read it away (bounded by the same timeout) rather than reset the
    // app's connection mid-write, which some apps log as an error on every probe.
    appRes.on("error", () => {});
    appRes.resume();
    res.writeHead(appRes.statusCode ?? 502, { "cache-control": "no-store" }).end();
  });
  upstream.on("error", (err: Error) => {
    if (answered) return;
    answered = true;
    const timedOut = err.name === "AbortError" || err.name === "TimeoutError";
    res
      .writeHead(503, { "x-trellis-error": timedOut ? "upstream_timeout" : "upstream_connect_failure" })
      .end();
  });
  // A kubelet that gives up first should not leave the probe running.
  res.on("close", () => {
    if (!answered) upstream.destroy();
  });
  upstream.end();
}

function handle(
  hooks: StatsHooks,
  opts: Required<StatsServerOptions>,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const path = pathOf(req);
  const appHealth = path.startsWith("/app-health/") ? APP_HEALTH.exec(req.url ?? "") : null;
  const known = path === "/live" || path === "/ready" || path === "/metrics" || appHealth !== null;
  if (!known) {
    send(res, 404, TEXT_TYPE, "not found\n");
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    methodNotAllowed(res, "GET, HEAD");
    return;
  }
  if (appHealth !== null) {
    const port = Number(appHealth[1]);
    let allowed = false;
    try {
      allowed = isAllowedPort(port, hooks.appPorts());
    } catch {
      allowed = false;
    }
    if (!allowed) {
      send(res, 404, TEXT_TYPE, `port ${port} is not an app port of this sidecar\n`);
      return;
    }
    probeApp(req, res, port, `${appHealth[2] ?? "/"}${appHealth[3] ?? ""}`, opts);
    return;
  }
  switch (path) {
    case "/live":
      readyRoute(res, () => hooks.live?.() ?? true, "live\n", "not live\n");
      return;
    case "/ready":
      readyRoute(res, () => hooks.ready());
      return;
    default:
      sendProduced(res, PROMETHEUS_CONTENT_TYPE, () => hooks.metrics());
      return;
  }
}

/**
 * The stats server. `listen(port)` binds all interfaces (kubelet and Prometheus come from outside
 * the pod). Hooks are called per request; one that throws gives 500 (or 503 for /ready), never a crash.
 */
export function createStatsServer(hooks: StatsHooks, options: StatsServerOptions = {}): HttpEndpoint {
  const opts: Required<StatsServerOptions> = {
    appHealthTimeoutMs: options.appHealthTimeoutMs ?? 1_000,
    appHost: options.appHost ?? "127.0.0.1",
  };
  const server = createServer((req, res) => handle(hooks, opts, req, res));
  return httpEndpoint(server, undefined);
}
