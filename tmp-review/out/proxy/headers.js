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
function isPseudo(name) {
    return name.charCodeAt(0) === 58; // ':'
}
/**
 * The comma-separated tokens of header values, trimmed and lower-cased, empty ones skipped
 * (RFC 9110 §5.6.1: a list may have empty elements). Parameters (`;q=…`) are cut off. Undefined
 * when there is no token.
 */
export function headerTokens(values) {
    if (values === undefined)
        return undefined;
    let out;
    for (const v of values) {
        for (const element of v.split(",")) {
            const semi = element.indexOf(";");
            const t = (semi < 0 ? element : element.slice(0, semi)).trim().toLowerCase();
            if (t.length === 0)
                continue;
            if (out === undefined)
                out = new Set();
            out.add(t);
        }
    }
    return out;
}
/**
 * Headers to forward: a copy without hop-by-hop headers, without those named by Connection, and
 * without pseudo-headers; `te: trailers` is kept (gRPC needs it; only the exact token counts, any
 * other transfer coding the client accepts is this hop's business); `host` is dropped (the next hop
 * gets :authority / Host from the request's authority). Duplicates keep all their values.
 */
export function forwardableHeaders(distinct, keepUpgrade = false) {
    const out = {};
    const named = headerTokens(distinct.connection);
    for (const name in distinct) {
        const values = distinct[name];
        // "__proto__" would replace the map's prototype instead of being a header: dropped.
        if (values === undefined || isPseudo(name) || name === "host" || name === "__proto__")
            continue;
        if (HOP_BY_HOP.has(name)) {
            if (name === "te" && headerTokens(values)?.has("trailers") === true)
                out.te = "trailers";
            else if (name === "upgrade" && keepUpgrade)
                out.upgrade = values.length === 1 ? values[0] : values;
            continue;
        }
        if (named?.has(name) === true)
            continue;
        out[name] = values.length === 1 ? values[0] : values;
    }
    return out;
}
/** Same as forwardableHeaders, for header objects as Node gives them for HTTP/2 (values may be joined). */
export function forwardableFromObject(headers, keepUpgrade = false) {
    const distinct = {};
    for (const name in headers) {
        const v = headers[name];
        if (v === undefined)
            continue;
        distinct[name] = Array.isArray(v) ? v : [String(v)];
    }
    return forwardableHeaders(distinct, keepUpgrade);
}
/**
 * Response headers to forward downstream: hop-by-hop and pseudo-headers removed, duplicates kept.
 * Unlike a request's, a response's `TE: trailers` is dropped too: TE is a request field (RFC 9110
 * §10.1.4), so in a response it can only be a hop's leftover.
 */
export function forwardableResponseHeaders(headers) {
    const out = forwardableFromObject(headers);
    delete out.te;
    return out;
}
/** forwardableResponseHeaders for distinct header lists (lower-case name → every value). */
export function forwardableResponseDistinct(distinct) {
    const out = forwardableHeaders(distinct);
    delete out.te;
    return out;
}
/**
 * Fields a Connection header must never name. Naming them asks a proxy to drop the message's
 * framing (Content-Length, Transfer-Encoding) or its target (Host) before the next hop — the
 * next hop would then read the body or route differently from us (request smuggling). RFC 9110
 * §7.6.1 lets a sender name only hop-by-hop fields; these are end-to-end, so the request is
 * malformed and refused, not "fixed" by stripping.
 */
const NEVER_HOP_BY_HOP = ["content-length", "transfer-encoding", "host"];
/**
 * Checks a request's header lines (Node's `rawHeaders`: `[name, value, …]`, any case) for what the
 * HTTP/1 parser (llhttp, strict) does not refuse itself; it already refuses both Content-Length and
 * Transfer-Encoding, duplicate or signed Content-Length, obs-fold, NUL/CR/LF in values and oversized
 * header blocks. Returns undefined when the request may be proxied.
 *
 * 1. More than `maxHeaders` fields (pseudo-headers not counted) → 431.
 * 2. HTTP/1.x: more than one Host, or none in HTTP/1.1 (RFC 9112 §3.2: "MUST respond with 400");
 *    CONNECT is exempt from the missing-Host rule (its target is the request-target).
 * 3. Connection naming content-length, transfer-encoding or host → 400 (see NEVER_HOP_BY_HOP).
 * 4. HTTP/1.x: Transfer-Encoding other than exactly `chunked` → 400. We strip Transfer-Encoding and
 *    frame the body ourselves; a body under another coding (`gzip, chunked`) would reach the app
 *    with its coding silently lost, and a final coding other than chunked leaves the request's end
 *    undefined (RFC 9112 §6.3 rule 4: 400 and close). RFC 9112 §6.1 suggests 501 for an unknown
 *    coding; we answer 400 `bad_request` like every other malformed request, one reason, one status.
 */
export function checkRequestHeaders(raw, req, maxHeaders) {
    let count = 0;
    let hosts = 0;
    let connection;
    let transferEncoding;
    for (let i = 0; i + 1 < raw.length; i += 2) {
        const name = raw[i];
        if (isPseudo(name))
            continue;
        count++;
        // Length first: most names are none of these three, and lower-casing costs an allocation.
        const len = name.length;
        if (len !== 4 && len !== 10 && len !== 17)
            continue;
        const lower = name.toLowerCase();
        if (lower === "host")
            hosts++;
        else if (lower === "connection")
            connection = append(connection, raw[i + 1]);
        else if (lower === "transfer-encoding")
            transferEncoding = append(transferEncoding, raw[i + 1]);
    }
    // 1.
    if (count > maxHeaders)
        return { status: 431, message: `more than ${maxHeaders} request headers` };
    const http1 = req.httpVersionMajor === 1;
    // 2.
    if (http1 && hosts > 1)
        return { status: 400, message: "more than one Host header" };
    if (http1 && hosts === 0 && req.httpVersionMinor >= 1 && req.method !== "CONNECT")
        return { status: 400, message: "HTTP/1.1 request without Host" };
    // 3.
    const named = headerTokens(connection);
    if (named !== undefined) {
        for (const f of NEVER_HOP_BY_HOP)
            if (named.has(f))
                return { status: 400, message: `Connection names the end-to-end field ${f}` };
    }
    // 4.
    if (http1 && transferEncoding !== undefined) {
        const only = transferEncoding.length === 1 ? transferEncoding[0] : undefined;
        if (only?.trim().toLowerCase() !== "chunked")
            return { status: 400, message: "transfer codings other than chunked are not supported" };
    }
    return undefined;
}
function append(list, value) {
    if (list === undefined)
        return [value];
    list.push(value);
    return list;
}
/** Appends `peer` to X-Forwarded-For (comma-separated, as de-facto standard). */
export function appendForwardedFor(headers, peer) {
    if (peer === undefined)
        return;
    const ip = peer.startsWith("::ffff:") ? peer.slice(7) : peer;
    const prev = headers["x-forwarded-for"];
    headers["x-forwarded-for"] =
        prev === undefined ? ip : `${Array.isArray(prev) ? prev.join(", ") : prev}, ${ip}`;
}
let requestCounter = 0;
const requestPrefix = `${process.pid.toString(16)}-${Date.now().toString(16)}`;
/** Adds `x-request-id` when absent (unique per process and call; cheap — no crypto on the hot path). */
export function ensureRequestId(headers) {
    const existing = headers["x-request-id"];
    if (existing !== undefined)
        return Array.isArray(existing) ? existing[0] : existing;
    requestCounter = (requestCounter + 1) >>> 0;
    const id = `${requestPrefix}-${requestCounter.toString(16)}`;
    headers["x-request-id"] = id;
    return id;
}
/** First value of a header. */
export function first(v) {
    return Array.isArray(v) ? v[0] : v;
}
