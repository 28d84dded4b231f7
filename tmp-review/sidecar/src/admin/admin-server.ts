/**
 * The admin port (127.0.0.1:15000, INTERFACES.md "Ports"): what an operator on the machine (or
 * `kubectl port-forward`) asks the sidecar directly.
 *
 *   GET  /config_dump   JSON of hooks.configDump()
 *   GET  /clusters      JSON of hooks.clusters()
 *   POST /drain         starts the graceful drain (hooks.drain()), answers 202 at once
 *   GET  /ready         200 when hooks.ready(), else 503
 *   GET  /metrics       Prometheus text from hooks.metrics()
 * HEAD is accepted wherever GET is. Unknown path → 404; known path, other method → 405 with Allow.
 *
 * Binding to loopback is not enough on its own: a web page in the operator's browser can still
 * reach 127.0.0.1 (a cross-site POST /drain needs no CORS preflight, and DNS rebinding can read
 * /config_dump). So requests whose Host is not a loopback name, and POSTs that carry an Origin
 * header (browsers add it; curl does not), are refused with 403.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
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
import { toJsonText } from "./json.js";

/** What the admin port shows and does; supplied by the sidecar's lifecycle. */
export interface AdminHooks {
  /** The running config (snapshot, settings); any JSON-able value — bigint, Map, Set, bytes allowed. */
  configDump(): unknown;
  /** Clusters with their endpoints and their state (health, ejection, load); JSON-able as above. */
  clusters(): unknown;
  /**
   * Starts the graceful drain and returns without waiting for it (the response is 202 at once).
   * Throwing answers 500; a rejected promise goes to `onError`.
   */
  drain(): void | Promise<void>;
  /** True once config has arrived and while not draining. */
  ready(): boolean;
  /** The Prometheus text exposition (SidecarMetrics.scrape). */
  metrics(): string | Promise<string>;
  /** Told about failures that happen after the response was sent (a rejected drain). Optional. */
  onError?(err: unknown, route: string): void;
}

const JSON_TYPE = "application/json; charset=utf-8";
const TEXT_TYPE = "text/plain; charset=utf-8";

const GET_ROUTES = new Set(["/config_dump", "/clusters", "/ready", "/metrics"]);

// Host names that are this machine; a DNS-rebound name (attacker.example → 127.0.0.1) is not.
function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined) return true; // HTTP/1.0 without Host: not a browser
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : (host.split(":")[0] ?? "");
  return name === "localhost" || name === "[::1]" || /^127(\.\d{1,3}){3}$/.test(name);
}

function jsonRoute(res: ServerResponse, produce: () => unknown): void {
  sendProduced(res, JSON_TYPE, () => toJsonText(produce()));
}

function handle(hooks: AdminHooks, req: IncomingMessage, res: ServerResponse): void {
  const path = pathOf(req);
  const method = req.method ?? "GET";
  if (!isLoopbackHost(req.headers.host)) {
    send(res, 403, TEXT_TYPE, "admin answers loopback host names only\n");
    return;
  }
  if (path === "/drain") {
    if (method !== "POST") {
      methodNotAllowed(res, "POST");
      return;
    }
    if (req.headers.origin !== undefined) {
      send(res, 403, TEXT_TYPE, "cross-origin requests may not drain the sidecar\n");
      return;
    }
    let pending: void | Promise<void>;
    try {
      pending = hooks.drain();
    } catch (err) {
      send(res, 500, TEXT_TYPE, `error: ${err instanceof Error ? err.message : String(err)}\n`);
      return;
    }
    if (pending instanceof Promise) pending.catch((err: unknown) => hooks.onError?.(err, "/drain"));
    send(res, 202, TEXT_TYPE, "draining\n");
    return;
  }
  if (!GET_ROUTES.has(path)) {
    send(res, 404, TEXT_TYPE, "not found\n");
    return;
  }
  if (method !== "GET" && method !== "HEAD") {
    methodNotAllowed(res, "GET, HEAD");
    return;
  }
  switch (path) {
    case "/config_dump":
      jsonRoute(res, () => hooks.configDump());
      return;
    case "/clusters":
      jsonRoute(res, () => hooks.clusters());
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
 * The admin server. `listen(port)` binds 127.0.0.1 only (INTERFACES.md: never all interfaces).
 * Hooks are called per request; a hook that throws gives 500, never a crash.
 */
export function createAdminServer(hooks: AdminHooks): HttpEndpoint {
  const server = createServer((req, res) => handle(hooks, req, res));
  return httpEndpoint(server, "127.0.0.1");
}
