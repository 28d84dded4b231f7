/**
 * Header hygiene at every hop (RFC 9110 §7.6.1): hop-by-hop headers are removed both ways —
 * Connection and every header it names, Keep-Alive, Proxy-Connection, TE (except "trailers"),
 * Transfer-Encoding, Upgrade (unless an upgrade is happening), HTTP2-Settings. We frame bodies
 * ourselves, never with the client's transfer-encoding list.
 */
import type { IncomingHttpHeaders } from "node:http";

/** Lower-case header names → values, duplicates kept as arrays. */
export type HeaderMap = Record<string, string | string[]>;

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

/** Node's own pseudo-headers and HTTP/2 connection-specific fields never forwarded as regular headers. */
function isPseudo(name: string): boolean {
  return name.charCodeAt(0) === 58; // ':'
}

/**
 * Headers to forward: a copy without hop-by-hop headers, without those named by Connection, and
 * without pseudo-headers; `te: trailers` is kept (gRPC needs it); `host` is dropped (the next hop
 * gets :authority / Host from the request's authority). Duplicates keep all their values.
 */
export function forwardableHeaders(
  distinct: Record<string, string[] | undefined>,
  keepUpgrade = false,
): HeaderMap {
  const out: HeaderMap = {};
  const connection = distinct.connection;
  let named: Set<string> | undefined;
  if (connection !== undefined) {
    for (const v of connection) {
      for (const token of v.split(",")) {
        const t = token.trim().toLowerCase();
        if (t.length === 0) continue;
        if (named === undefined) named = new Set();
        named.add(t);
      }
    }
  }
  for (const name in distinct) {
    const values = distinct[name];
    if (values === undefined || isPseudo(name) || name === "host") continue;
    if (HOP_BY_HOP.has(name)) {
      if (name === "te" && values.some((v) => v.toLowerCase().includes("trailers"))) out.te = "trailers";
      else if (name === "upgrade" && keepUpgrade)
        out.upgrade = values.length === 1 ? (values[0] as string) : values;
      continue;
    }
    if (named?.has(name) === true) continue;
    out[name] = values.length === 1 ? (values[0] as string) : values;
  }
  return out;
}

/** Same as forwardableHeaders, for header objects as Node gives them for HTTP/2 (values may be joined). */
export function forwardableFromObject(headers: IncomingHttpHeaders, keepUpgrade = false): HeaderMap {
  const distinct: Record<string, string[]> = {};
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined) continue;
    distinct[name] = Array.isArray(v) ? v : [String(v)];
  }
  return forwardableHeaders(distinct, keepUpgrade);
}

/** Response headers to forward downstream: hop-by-hop and pseudo-headers removed, duplicates kept. */
export function forwardableResponseHeaders(headers: IncomingHttpHeaders): HeaderMap {
  return forwardableFromObject(headers);
}

/** Appends `peer` to X-Forwarded-For (comma-separated, as de-facto standard). */
export function appendForwardedFor(headers: HeaderMap, peer: string | undefined): void {
  if (peer === undefined) return;
  const ip = peer.startsWith("::ffff:") ? peer.slice(7) : peer;
  const prev = headers["x-forwarded-for"];
  headers["x-forwarded-for"] =
    prev === undefined ? ip : `${Array.isArray(prev) ? prev.join(", ") : prev}, ${ip}`;
}

let requestCounter = 0;
const requestPrefix = `${process.pid.toString(16)}-${Date.now().toString(16)}`;

/** Adds `x-request-id` when absent (unique per process and call; cheap — no crypto on the hot path). */
export function ensureRequestId(headers: HeaderMap): string {
  const existing = headers["x-request-id"];
  if (existing !== undefined) return Array.isArray(existing) ? (existing[0] as string) : existing;
  requestCounter = (requestCounter + 1) >>> 0;
  const id = `${requestPrefix}-${requestCounter.toString(16)}`;
  headers["x-request-id"] = id;
  return id;
}

/** First value of a header. */
export function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
