/**
 * What the admin and stats servers share: a listen/close handle around a node:http server, and the
 * few response helpers their routes use. Not on the data path.
 */

import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import { METRICS_CONTENT_TYPE } from "../metrics/exposition.js";

/** Prometheus text exposition format 0.0.4. */
export const PROMETHEUS_CONTENT_TYPE = METRICS_CONTENT_TYPE;

/** A small HTTP server owned by the sidecar's lifecycle. */
export interface HttpEndpoint {
  /** The underlying server (for tests and for the lead's `listening` log line). */
  readonly server: Server;
  /**
   * Binds `port` (0 = the OS picks) on this endpoint's fixed interface and resolves with the bound
   * port; rejects with the listen error (EADDRINUSE, EACCES).
   */
  listen(port: number): Promise<number>;
  /**
   * Stops accepting, closes idle keep-alive connections at once, lets requests in flight finish for
   * up to `graceMs` (default 1 000), then destroys what is left. Resolves when the server is closed.
   */
  close(graceMs?: number): Promise<void>;
}

/** Wraps `server` as an HttpEndpoint bound to `host` (undefined = all interfaces, dual-stack). */
export function httpEndpoint(server: Server, host: string | undefined): HttpEndpoint {
  return {
    server,
    listen(port: number): Promise<number> {
      return new Promise((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        server.once("error", onError);
        const done = () => {
          server.off("error", onError);
          resolve((server.address() as AddressInfo).port);
        };
        if (host === undefined) server.listen(port, done);
        else server.listen(port, host, done);
      });
    },
    close(graceMs = 1_000): Promise<void> {
      if (!server.listening) return Promise.resolve();
      return new Promise((resolve) => {
        // A keep-alive connection turns idle only when its response ends, so idle ones are closed
        // as they appear, not just once; whatever is still busy at the deadline is destroyed.
        const sweep = setInterval(() => server.closeIdleConnections(), 25);
        const deadline = setTimeout(() => server.closeAllConnections(), graceMs);
        server.close(() => {
          clearInterval(sweep);
          clearTimeout(deadline);
          resolve();
        });
        server.closeIdleConnections();
      });
    },
  };
}

/** The request path without the query string ("/" when absent). */
export function pathOf(req: IncomingMessage): string {
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  return q < 0 ? url : url.slice(0, q);
}

/** Sends a complete response. A HEAD request gets the headers only (node:http drops the body). */
export function send(
  res: ServerResponse,
  status: number,
  contentType: string | undefined,
  body: string | undefined,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = { "cache-control": "no-store" };
  if (contentType !== undefined) headers["content-type"] = contentType;
  res.writeHead(status, headers).end(body);
}

/** 405 with the Allow header (RFC 9110 §15.5.6 requires it). */
export function methodNotAllowed(res: ServerResponse, allow: string): void {
  if (res.headersSent) return;
  res.writeHead(405, { allow, "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
}

/** Answers with `produce()`'s text, or 500 with the error's message when it throws or rejects. */
export function sendProduced(
  res: ServerResponse,
  contentType: string,
  produce: () => string | Promise<string>,
): void {
  const fail = (err: unknown) =>
    send(
      res,
      500,
      "text/plain; charset=utf-8",
      `error: ${err instanceof Error ? err.message : String(err)}\n`,
    );
  let result: string | Promise<string>;
  try {
    result = produce();
  } catch (err) {
    fail(err);
    return;
  }
  if (typeof result === "string") send(res, 200, contentType, result);
  else result.then((text) => send(res, 200, contentType, text), fail);
}

/** 200 `okBody` / 503 `failBody` from a health check; a check that throws counts as failing. */
export function readyRoute(
  res: ServerResponse,
  check: () => boolean,
  okBody = "ready\n",
  failBody = "not ready\n",
): void {
  let ok = false;
  try {
    ok = check();
  } catch {
    ok = false;
  }
  send(res, ok ? 200 : 503, "text/plain; charset=utf-8", ok ? okBody : failBody);
}
