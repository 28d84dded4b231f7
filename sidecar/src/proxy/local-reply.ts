/**
 * Every response the proxy makes itself (INTERFACES.md "On the wire"): `x-trellis-error: <reason>`,
 * the status of the reason table, and for gRPC callers HTTP 200 trailers-only with the matching
 * grpc-status. One place maps reasons to statuses, so no layer invents its own.
 */
import type { ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";
import { respondHeadersOnly } from "./app-client.js";

export type LocalReason =
  | "bad_request"
  | "no_route"
  | "unauthenticated"
  | "unauthorized"
  | "mtls_required"
  | "rate_limited"
  | "upstream_connect_failure"
  | "upstream_reset"
  | "upstream_protocol_error"
  | "no_healthy_upstream"
  | "overflow"
  | "retry_budget_exhausted"
  | "ratelimit_unavailable"
  | "draining"
  | "upstream_timeout"
  | "fault_injected"
  | "fallback";

/** HTTP status and gRPC status of each reason (fault_injected and fallback are configured per route). */
export const REASON_STATUS: Readonly<Record<LocalReason, { http: number; grpc: number }>> = {
  bad_request: { http: 400, grpc: 13 },
  no_route: { http: 404, grpc: 12 },
  unauthenticated: { http: 401, grpc: 16 },
  unauthorized: { http: 403, grpc: 7 },
  mtls_required: { http: 403, grpc: 7 },
  rate_limited: { http: 429, grpc: 8 },
  upstream_connect_failure: { http: 502, grpc: 14 },
  upstream_reset: { http: 502, grpc: 14 },
  upstream_protocol_error: { http: 502, grpc: 14 },
  no_healthy_upstream: { http: 503, grpc: 14 },
  overflow: { http: 503, grpc: 14 },
  retry_budget_exhausted: { http: 503, grpc: 14 },
  ratelimit_unavailable: { http: 503, grpc: 14 },
  draining: { http: 503, grpc: 14 },
  upstream_timeout: { http: 504, grpc: 4 },
  fault_injected: { http: 503, grpc: 14 },
  fallback: { http: 200, grpc: 0 },
};

/** The gRPC status a plain HTTP status maps to (gRPC over HTTP spec, "HTTP to gRPC Status Code Mapping"). */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return 13;
    case 401:
      return 16;
    case 403:
      return 7;
    case 404:
      return 12;
    case 429:
    case 502:
    case 503:
    case 504:
      return 14;
    default:
      return 2;
  }
}

/** True when the request is gRPC (content-type application/grpc, +proto, +json …). */
export function isGrpc(contentType: string | string[] | undefined): boolean {
  const ct = Array.isArray(contentType) ? contentType[0] : contentType;
  return ct?.startsWith("application/grpc") === true;
}

/**
 * The headers of a `rate_limited` reply (INTERFACES.md "On the wire"): `RateLimit-Limit`,
 * `RateLimit-Remaining`, `RateLimit-Reset` (draft-ietf-httpapi-ratelimit-headers: quota, what is
 * left of it, seconds until it is restored) and `Retry-After` (RFC 9110 §10.2.3, delay-seconds).
 * Whole numbers; the limiter decides their meaning (local-rate-limit.ts `RateLimitQuota`).
 */
export function rateLimitHeaders(q: {
  readonly limit: number;
  readonly remaining: number;
  readonly reset: number;
  readonly retryAfter: number;
}): Record<string, string> {
  return {
    "ratelimit-limit": String(q.limit),
    "ratelimit-remaining": String(q.remaining),
    "ratelimit-reset": String(q.reset),
    "retry-after": String(q.retryAfter),
  };
}

export interface LocalReplyOptions {
  /** Override the reason's HTTP status (fault_injected, fallback). */
  status?: number;
  /** Override the gRPC status. */
  grpcStatus?: number;
  headers?: Readonly<Record<string, string>>;
  body?: string;
  /** Ask the client to close the connection (draining). */
  close?: boolean;
}

type AnyResponse = ServerResponse | Http2ServerResponse;

/**
 * Writes a proxy-made response unless headers were already sent (then the stream is destroyed: a
 * half-sent response must not be completed with something else). Returns the status sent.
 */
export function sendLocalReply(
  res: AnyResponse,
  grpc: boolean,
  reason: LocalReason,
  message: string,
  opts: LocalReplyOptions = {},
): number {
  if (res.headersSent) {
    // With an error: an HTTP/2 caller then gets RST_STREAM(INTERNAL_ERROR), not a clean end.
    res.destroy(new Error(`${reason}: ${message}`));
    return 0;
  }
  const status = opts.status ?? REASON_STATUS[reason].http;
  const headers: Record<string, string> = { ...opts.headers, "x-trellis-error": reason };
  if (opts.close && res.req.httpVersionMajor === 1) headers.connection = "close";
  if (grpc) {
    const grpcStatus =
      opts.grpcStatus ??
      (reason === "fault_injected" ? grpcStatusForHttp(status) : REASON_STATUS[reason].grpc);
    headers["content-type"] = "application/grpc";
    headers["grpc-status"] = String(grpcStatus);
    headers["grpc-message"] = encodeURIComponent(message);
    // Trailers-only: one HEADERS frame that ends the stream (gRPC reads the status only there).
    respondHeadersOnly(res, 200, headers);
    return 200;
  }
  const body = opts.body ?? `${reason}: ${message}\n`;
  if (headers["content-type"] === undefined) headers["content-type"] = "text/plain; charset=utf-8";
  headers["content-length"] = String(Buffer.byteLength(body));
  (res as ServerResponse).writeHead(status, headers);
  res.end(body);
  return status;
}
