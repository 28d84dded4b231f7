import { PathMatchKind, rulesForPort, StringMatchKind } from "./route-table.js";
const SLASH = 0x2f;
const EMPTY_PARAMS = new Map();
/**
 * The first rule of `table` on service `port` that matches the request, or undefined (no_route).
 * `port` is the service port (servicePortFor maps the request's authority port to it). Other
 * inputs are the normalised forms: `path` and `query` from normalizePath, `method` as received
 * (Node upper-cases the standard ones), `headers` with lower-case names.
 *  1. The rules are the port's bucket (its own and the every-port rules, in config order), or only
 *     the every-port rules for a port the table does not list.
 *  2. A rule without matches matches every request; otherwise any one of its matches may match.
 *  3. Within a match every condition must hold: path, then method, then headers, then query — the
 *     cheap checks first, and the query parsed (once, then reused by later rules) only when a
 *     match gets that far.
 *  4. First matching rule wins.
 */
export function matchRule(table, port, method, path, headers, query) {
    const rules = rulesForPort(table, port);
    let params;
    for (let i = 0; i < rules.length; i++) {
        const rule = rules[i];
        const matchers = rule.matchers;
        if (matchers.length === 0)
            return rule;
        for (let j = 0; j < matchers.length; j++) {
            const m = matchers[j];
            if (m.path !== undefined && !pathMatches(m.path, path))
                continue;
            if (m.method !== "" && m.method !== method)
                continue;
            if (m.headers.length > 0 && !headersMatch(m.headers, headers))
                continue;
            if (m.query.length > 0) {
                params ??= parseQuery(query);
                if (!queryMatches(m.query, params))
                    continue;
            }
            return rule;
        }
    }
    return undefined;
}
/** Path condition on a normalised path. PREFIX is segment-aware: "/api" matches "/api", "/api/x", not "/apix". */
function pathMatches(m, path) {
    switch (m.kind) {
        case PathMatchKind.EXACT:
            return path === m.value;
        case PathMatchKind.PREFIX: {
            const n = m.value.length;
            return path.startsWith(m.value) && (path.length === n || path.charCodeAt(n) === SLASH);
        }
        case PathMatchKind.REGEX:
            return m.regex.test(path);
        default:
            return true;
    }
}
/**
 * Every header condition must hold. A header Node delivers as an array (repeated field lines it
 * does not join itself, e.g. set-cookie) is compared as its values joined with ", " — the same
 * string Node produces when it joins repeated lines of other headers, RFC 9110 §5.3 — so a header
 * matches alike however it was split. An absent header fails every kind, `present` included; with
 * `invert` the result is negated, so an absent header satisfies an inverted condition.
 */
function headersMatch(conditions, headers) {
    for (let i = 0; i < conditions.length; i++) {
        const h = conditions[i];
        const raw = headers[h.name];
        const matched = raw === undefined ? false : stringMatches(h.match, typeof raw === "string" ? raw : raw.join(", "));
        if (matched === h.invert)
            return false;
    }
    return true;
}
/** Every query condition must hold; an absent parameter fails. */
function queryMatches(conditions, params) {
    for (let i = 0; i < conditions.length; i++) {
        const q = conditions[i];
        const value = params.get(q.name);
        if (value === undefined || !stringMatches(q.match, value))
            return false;
    }
    return true;
}
function stringMatches(m, value) {
    switch (m.kind) {
        case StringMatchKind.EXACT:
            return value === m.value;
        case StringMatchKind.PREFIX:
            return value.startsWith(m.value);
        case StringMatchKind.REGEX:
            return m.regex.test(value);
        default:
            return true; // PRESENT: the caller found a value
    }
}
/**
 * Parses a query string (without "?") as application/x-www-form-urlencoded (WHATWG URL §5.1):
 * pairs split on "&", name and value on the first "=", "+" is a space, percent-escapes decoded.
 * When a name repeats, its FIRST value is kept (as Gateway API and Envoy match query parameters).
 * `?flag` and `?flag=` both give "". A component with a malformed escape or invalid UTF-8 is kept
 * as written (with "+" still turned into a space) instead of failing the request.
 */
export function parseQuery(query) {
    if (query.length === 0)
        return EMPTY_PARAMS;
    const params = new Map();
    let start = 0;
    while (start <= query.length) {
        let amp = query.indexOf("&", start);
        if (amp < 0)
            amp = query.length;
        if (amp > start) {
            const eq = query.indexOf("=", start);
            const hasValue = eq >= 0 && eq < amp;
            const name = decodeComponent(query, start, hasValue ? eq : amp);
            if (!params.has(name))
                params.set(name, hasValue ? decodeComponent(query, eq + 1, amp) : "");
        }
        start = amp + 1;
    }
    return params;
}
function decodeComponent(s, from, to) {
    let part = s.slice(from, to);
    if (part.includes("+"))
        part = part.replaceAll("+", " ");
    if (!part.includes("%"))
        return part;
    try {
        return decodeURIComponent(part);
    }
    catch {
        return part;
    }
}
