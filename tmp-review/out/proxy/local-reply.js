import { respondHeadersOnly } from "./app-client.js";
/** HTTP status and gRPC status of each reason (fault_injected and fallback are configured per route). */
export const REASON_STATUS = {
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
export function grpcStatusForHttp(status) {
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
export function isGrpc(contentType) {
    const ct = Array.isArray(contentType) ? contentType[0] : contentType;
    return ct?.startsWith("application/grpc") === true;
}
/**
 * The headers of a `rate_limited` reply (INTERFACES.md "On the wire"): `RateLimit-Limit`,
 * `RateLimit-Remaining`, `RateLimit-Reset` (draft-ietf-httpapi-ratelimit-headers: quota, what is
 * left of it, seconds until it is restored) and `Retry-After` (RFC 9110 §10.2.3, delay-seconds).
 * Whole numbers; the limiter decides their meaning (local-rate-limit.ts `RateLimitQuota`).
 */
export function rateLimitHeaders(q) {
    return {
        "ratelimit-limit": String(q.limit),
        "ratelimit-remaining": String(q.remaining),
        "ratelimit-reset": String(q.reset),
        "retry-after": String(q.retryAfter),
    };
}
/**
 * Writes a proxy-made response unless headers were already sent (then the stream is destroyed: a
 * half-sent response must not be completed with something else). Returns the status sent.
 */
export function sendLocalReply(res, grpc, reason, message, opts = {}) {
    if (res.headersSent) {
        res.destroy();
        return 0;
    }
    const status = opts.status ?? REASON_STATUS[reason].http;
    const headers = { ...opts.headers, "x-trellis-error": reason };
    if (opts.close && res.req.httpVersionMajor === 1)
        headers.connection = "close";
    if (grpc) {
        const grpcStatus = opts.grpcStatus ??
            (reason === "fault_injected" ? grpcStatusForHttp(status) : REASON_STATUS[reason].grpc);
        headers["content-type"] = "application/grpc";
        headers["grpc-status"] = String(grpcStatus);
        headers["grpc-message"] = encodeURIComponent(message);
        // Trailers-only: one HEADERS frame that ends the stream (gRPC reads the status only there).
        respondHeadersOnly(res, 200, headers);
        return 200;
    }
    const body = opts.body ?? `${reason}: ${message}\n`;
    if (headers["content-type"] === undefined)
        headers["content-type"] = "text/plain; charset=utf-8";
    headers["content-length"] = String(Buffer.byteLength(body));
    res.writeHead(status, headers);
    res.end(body);
    return status;
}
