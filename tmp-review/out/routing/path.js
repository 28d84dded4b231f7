/**
 * Request-path normalisation: the one place where the request-target of HTTP/1.1 (origin-form,
 * RFC 9112 §3.2.1) or the `:path` of HTTP/2 (RFC 9113 §8.3.1) becomes the path that route matching,
 * authorization AND forwarding all see (DESIGN.md §5: "path, host and method are normalised once").
 * Matching one spelling and forwarding another is how path-confusion bypasses happen
 * (`/admin/../public` allowed as `/public`, served by the app as something else), so the normalised
 * path is also the one sent upstream.
 *
 * Paths a backend could read in more than one way are refused rather than guessed at: an encoded
 * slash (%2F), backslash (%5C) or NUL (%00), a raw backslash, control characters. That is what
 * Envoy's hardened configurations do (`path_with_escaped_slashes_action: REJECT_REQUEST`, rejecting
 * backslashes and NUL, `normalize_path: true`, `merge_slashes: true`); the caller answers 400
 * `bad_request`.
 */
const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;
const BACKSLASH = 0x5c;
const HASH = 0x23;
const SPACE = 0x20;
const DEL = 0x7f;
// Reasons are constants so a refusal allocates nothing but its result object.
const ERR_NOT_ORIGIN_FORM = "path must start with '/'";
const ERR_NUL = "path contains NUL";
const ERR_CONTROL = "path contains a control character";
const ERR_SPACE = "path contains a space";
const ERR_BACKSLASH = "path contains a backslash";
const ERR_FRAGMENT = "request-target contains a fragment ('#')";
const ERR_BAD_ESCAPE = "path contains a malformed percent-encoding";
const ERR_ENCODED_SLASH = "path contains an encoded slash (%2F)";
const ERR_ENCODED_BACKSLASH = "path contains an encoded backslash (%5C)";
const ERR_ENCODED_NUL = "path contains an encoded NUL (%00)";
const ERR_QUERY_CONTROL = "query contains a control character or space";
/**
 * Normalises a request-target (HTTP/1.1 origin-form or HTTP/2 `:path`). Pure; never throws.
 *
 *  1. Split off the query at the first "?" (RFC 3986 §3.4); it is returned verbatim, without the
 *     "?". A "#" anywhere is refused: a fragment is never part of a request-target (RFC 9112 §3.2).
 *  2. Refuse a path that does not start with "/" (so also asterisk-form and absolute-form, which
 *     the caller must reduce to origin-form first), that contains a raw control character, NUL,
 *     space or backslash, a malformed "%" escape, or an encoded slash, backslash or NUL
 *     (%2F %5C %00, either hex case). The query is only checked for control characters and spaces,
 *     which would let a forwarded HTTP/1.1 request line be split.
 *  3. Fast path: when the path has no "%", no "//" and no "." or ".." segment it is already in
 *     normal form and is returned as is (the same string; with no query, `rawTarget` itself).
 *  4. Otherwise, percent-encoding normalisation (RFC 3986 §6.2.2.2, §2.3): escapes of unreserved
 *     characters (ALPHA DIGIT - . _ ~) are decoded, the hex digits of every other escape are
 *     upper-cased (§6.2.2.1). This runs first, so "%2e%2e" counts as a ".." segment in step 5.
 *  5. Remove dot-segments (RFC 3986 §5.2.4, §6.2.2.3): "." is dropped, ".." drops the segment before
 *     it (never above the root); empty segments count as segments here, exactly as in the RFC.
 *  6. Merge duplicate slashes: empty segments are dropped, a trailing slash is kept. Doing this
 *     after step 5 gives the same result as Envoy's `normalize_path` followed by `merge_slashes`
 *     (`/a//../b` → `/a/b`).
 * The result is idempotent: normalising a normalised path returns it unchanged. Characters above
 * U+007F are left as they are (neither encoded nor decoded).
 */
export function normalizePath(rawTarget) {
    const q = rawTarget.indexOf("?");
    const end = q < 0 ? rawTarget.length : q;
    const error = checkPath(rawTarget, end) ?? checkQuery(rawTarget, end);
    if (error !== undefined)
        return { error };
    const query = q < 0 ? "" : rawTarget.slice(q + 1);
    if (isNormalPath(rawTarget, end)) {
        return { path: q < 0 ? rawTarget : rawTarget.slice(0, end), query };
    }
    return { path: removeDotSegments(normalizeEscapes(rawTarget, end)), query };
}
/**
 * True when `target.slice(0, end)` (default: all of it) is already in normal form — no "%", no
 * "//", no "." or ".." segment — so normalizePath takes its fast path and returns it unchanged.
 * Assumes the path passed normalizePath's refusal checks. Exported so tests can assert that the
 * fast path is taken: JavaScript cannot observe string identity.
 */
export function isNormalPath(target, end = target.length) {
    for (let i = 0; i < end; i++) {
        const c = target.charCodeAt(i);
        if (c === PERCENT)
            return false;
        if (c !== SLASH)
            continue;
        // A segment starts at i + 1: "//" is a duplicate slash, "/." or "/.." followed by "/" or the
        // end of the path is a dot-segment.
        const n1 = i + 1 < end ? target.charCodeAt(i + 1) : SLASH;
        if (i + 1 < end && n1 === SLASH)
            return false;
        if (n1 !== DOT)
            continue;
        const n2 = i + 2 < end ? target.charCodeAt(i + 2) : SLASH;
        if (n2 === SLASH)
            return false;
        if (n2 === DOT && (i + 3 >= end || target.charCodeAt(i + 3) === SLASH))
            return false;
    }
    return true;
}
/** Step 2 for the path: the reason `target.slice(0, end)` is refused, or undefined. */
function checkPath(target, end) {
    if (end === 0 || target.charCodeAt(0) !== SLASH)
        return ERR_NOT_ORIGIN_FORM;
    for (let i = 1; i < end; i++) {
        const c = target.charCodeAt(i);
        if (c <= SPACE || c === DEL)
            return c === 0 ? ERR_NUL : c === SPACE ? ERR_SPACE : ERR_CONTROL;
        if (c === BACKSLASH)
            return ERR_BACKSLASH;
        if (c === HASH)
            return ERR_FRAGMENT;
        if (c === PERCENT) {
            const v = hexByte(target, i + 1, end);
            if (v < 0)
                return ERR_BAD_ESCAPE;
            if (v === SLASH)
                return ERR_ENCODED_SLASH;
            if (v === BACKSLASH)
                return ERR_ENCODED_BACKSLASH;
            if (v === 0)
                return ERR_ENCODED_NUL;
            i += 2;
        }
    }
    return undefined;
}
/** Step 2 for the query (everything after `end`, the "?"). */
function checkQuery(target, end) {
    for (let i = end + 1; i < target.length; i++) {
        const c = target.charCodeAt(i);
        if (c <= SPACE || c === DEL)
            return ERR_QUERY_CONTROL;
        if (c === HASH)
            return ERR_FRAGMENT;
    }
    return undefined;
}
/** The byte value of the two hex digits at `at` (both before `end`), or -1. */
function hexByte(s, at, end) {
    if (at + 1 >= end)
        return -1;
    const hi = hexDigit(s.charCodeAt(at));
    const lo = hexDigit(s.charCodeAt(at + 1));
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}
function hexDigit(c) {
    if (c >= 0x30 && c <= 0x39)
        return c - 0x30;
    if (c >= 0x41 && c <= 0x46)
        return c - 0x37;
    if (c >= 0x61 && c <= 0x66)
        return c - 0x57;
    return -1;
}
/** RFC 3986 §2.3: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~". */
function isUnreserved(c) {
    return ((c >= 0x41 && c <= 0x5a) ||
        (c >= 0x61 && c <= 0x7a) ||
        (c >= 0x30 && c <= 0x39) ||
        c === 0x2d ||
        c === DOT ||
        c === 0x5f ||
        c === 0x7e);
}
/** Step 4 on `target.slice(0, end)`, whose escapes checkPath has validated. */
function normalizeEscapes(target, end) {
    let out = "";
    let from = 0;
    for (let i = target.indexOf("%"); i >= 0 && i < end; i = target.indexOf("%", i + 3)) {
        const v = hexByte(target, i + 1, end);
        out += target.slice(from, i);
        out += isUnreserved(v) ? String.fromCharCode(v) : `%${target.slice(i + 1, i + 3).toUpperCase()}`;
        from = i + 3;
    }
    return out + target.slice(from, end);
}
/** Steps 5 and 6 on a path that starts with "/". */
function removeDotSegments(path) {
    const segments = path.split("/"); // segments[0] is the "" before the leading slash
    const kept = [];
    for (let i = 1; i < segments.length; i++) {
        const s = segments[i];
        if (s === ".")
            continue;
        if (s === "..")
            kept.pop();
        else
            kept.push(s);
    }
    // A path ending in "/", "/." or "/.." names a directory and keeps its trailing slash (§5.2.4).
    const last = segments[segments.length - 1];
    const trailingSlash = last === "" || last === "." || last === "..";
    let out = "";
    for (const s of kept)
        if (s !== "")
            out += `/${s}`;
    if (out === "")
        return "/";
    return trailingSlash ? `${out}/` : out;
}
