/**
 * Classifies an upstream failure into the local-reply reason the caller sees, and into the retry
 * classes the resilience layer reads (connect failure, refused stream, reset).
 */
import { constants as h2 } from "node:http2";
const CONNECT_CODES = new Set([
    "ECONNREFUSED",
    "EHOSTUNREACH",
    "ENETUNREACH",
    "EADDRNOTAVAIL",
    "ENOTFOUND",
    "EAI_AGAIN",
    "TRELLIS_ERR_TIMEOUT",
]);
/** Maps an error from a mesh stream, a session, or an app connection. */
export function classifyUpstreamError(err, connected) {
    const e = err;
    // Not every error's code is a string: a DOMException (an aborted fetch/undici request) has the
    // number 20. Anything but a string code is no code — never a TypeError out of the data path.
    let code = typeof e?.code === "string" ? e.code : "";
    // A stream opened on a session that never connected is cancelled with the session's error as
    // its cause (ECONNREFUSED, our connect timeout): that is a connect failure, not a reset — the
    // request never left this process, so it is always safe to retry.
    if (code === "ERR_HTTP2_STREAM_CANCEL") {
        const cause = e?.cause?.code;
        if (cause !== undefined && CONNECT_CODES.has(cause))
            code = cause;
    }
    const message = e?.message ?? String(err);
    if (!connected &&
        (CONNECT_CODES.has(code) || code === "ECONNRESET" || code === "ERR_HTTP2_SESSION_ERROR")) {
        return { reason: "upstream_connect_failure", connectFailure: true, refusedStream: false, message };
    }
    if (CONNECT_CODES.has(code) || code === "UND_ERR_CONNECT_TIMEOUT") {
        return { reason: "upstream_connect_failure", connectFailure: true, refusedStream: false, message };
    }
    if (code === "ERR_HTTP2_STREAM_ERROR" && /REFUSED_STREAM/.test(message)) {
        return { reason: "upstream_reset", connectFailure: false, refusedStream: true, message };
    }
    if (code === "ERR_HTTP2_GOAWAY_SESSION") {
        return { reason: "upstream_reset", connectFailure: false, refusedStream: true, message };
    }
    if (code === "HPE_UNEXPECTED_CONTENT_LENGTH" ||
        code.startsWith("HPE_") ||
        code === "UND_ERR_INFO" ||
        code === "ERR_HTTP2_PROTOCOL_ERROR" ||
        code === "ERR_HTTP2_INVALID_HEADER_VALUE") {
        return { reason: "upstream_protocol_error", connectFailure: false, refusedStream: false, message };
    }
    // undici reports a response header block that llhttp refused (e.g. both Content-Length and
    // Transfer-Encoding) as a length mismatch once a Content-Length was seen, else as an
    // HTTPParserError whose code is often undefined: bad framing either way.
    if (code === "UND_ERR_RES_CONTENT_LENGTH_MISMATCH" ||
        err?.name === "HTTPParserError" ||
        (code === "UND_ERR_SOCKET" && /parse|content-length|transfer-encoding/i.test(message))) {
        return { reason: "upstream_protocol_error", connectFailure: false, refusedStream: false, message };
    }
    return { reason: "upstream_reset", connectFailure: false, refusedStream: false, message };
}
/** True for the RST code that means "refused, not processed" (RFC 9113 §8.7). */
export function isRefusedStreamCode(rstCode) {
    return rstCode === h2.NGHTTP2_REFUSED_STREAM;
}
