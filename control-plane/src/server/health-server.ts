/**
 * The replica's plain-HTTP side port (15014): `/live` (the process runs), `/ready` (serving
 * discovery: the model is loaded and 15010 listens; 503 while starting or draining), `/metrics`
 * (Prometheus text), and read-only `/debug/*` JSON for operators.
 */
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export interface HealthServerOptions {
  ready: () => boolean;
  registry: Registry;
  /** Read-only debug documents by name (`/debug/<name>`). */
  debug?: Record<string, () => unknown>;
}

export function createHealthServer(opts: HealthServerOptions): Server {
  return createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/live") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/ready") {
      const ok = opts.ready();
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ready\n" : "not ready\n");
    } else if (path === "/metrics") {
      opts.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": opts.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    } else if (path.startsWith("/debug/") && opts.debug?.[path.slice(7)] !== undefined) {
      const body = JSON.stringify(
        opts.debug[path.slice(7)]?.(),
        (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v),
        2,
      );
      res.writeHead(200, { "content-type": "application/json" }).end(body);
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
}
