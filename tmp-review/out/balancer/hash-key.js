import { durationMs } from "@trellis/proto/duration";
/** The source for `hashOn`; undefined when there is none (the proto left the oneof unset). */
export function compileHashKey(hashOn) {
    const source = hashOn?.source;
    switch (source?.case) {
        case "header": {
            const name = source.value.toLowerCase();
            return { description: `header:${name}`, key: (headers) => headerValue(headers[name]) };
        }
        case "cookie": {
            const { name, ttl, path } = source.value;
            const ttlMs = durationMs(ttl);
            const base = {
                description: `cookie:${name}`,
                key: (headers) => {
                    const header = headers.cookie;
                    return header === undefined ? undefined : cookieValue(header, name);
                },
            };
            if (ttlMs === undefined)
                return base;
            const maxAgeSeconds = Math.max(1, Math.floor(ttlMs / 1000));
            return { ...base, generatedCookie: { name, path: path === "" ? "/" : path, maxAgeSeconds } };
        }
        case "sourceIp":
            return source.value ? { description: "source-ip", key: (_h, _q, ip) => sourceKey(ip) } : undefined;
        case "queryParameter": {
            const name = source.value;
            return {
                description: `query:${name}`,
                key: (_h, query) => query === undefined ? undefined : separatedValue(query, name, 38 /* & */, false),
            };
        }
        default:
            return undefined;
    }
}
/** A new random cookie value (64 bits, hex) and the `Set-Cookie` header that delivers it. */
export function newHashCookie(cookie, random) {
    const hi = Math.floor(random() * 4294967296) >>> 0;
    const lo = Math.floor(random() * 4294967296) >>> 0;
    const value = hi.toString(16).padStart(8, "0") + lo.toString(16).padStart(8, "0");
    return {
        value,
        setCookie: `${cookie.name}=${value}; Path=${cookie.path}; Max-Age=${cookie.maxAgeSeconds}; HttpOnly`,
    };
}
function headerValue(v) {
    const first = typeof v === "string" ? v : v?.[0];
    return first === undefined || first === "" ? undefined : first;
}
/** The value of cookie `name` in a `Cookie` header ("a=1; b=2"), unwrapped from DQUOTEs. */
export function cookieValue(header, name) {
    return separatedValue(header, name, 59 /* ; */, true);
}
/**
 * The value of the first `name=value` item of `text`, items separated by the char code `sep`,
 * with optional whitespace around items (`trim`, cookies) or none (query strings). Empty → undefined.
 */
function separatedValue(text, name, sep, trim) {
    const n = text.length;
    let i = 0;
    while (i < n) {
        if (trim)
            while (i < n && isSpace(text.charCodeAt(i)))
                i++;
        let end = i;
        while (end < n && text.charCodeAt(end) !== sep)
            end++;
        const eq = i + name.length;
        if (eq < end && text.charCodeAt(eq) === 61 /* = */ && text.startsWith(name, i)) {
            let from = eq + 1;
            let to = end;
            if (trim) {
                while (to > from && isSpace(text.charCodeAt(to - 1)))
                    to--;
                if (to - from >= 2 && text.charCodeAt(from) === 34 && text.charCodeAt(to - 1) === 34) {
                    from++;
                    to--;
                }
            }
            return to > from ? text.slice(from, to) : undefined;
        }
        i = end + 1;
    }
    return undefined;
}
function isSpace(c) {
    return c === 32 || c === 9;
}
function sourceKey(ip) {
    if (ip === undefined || ip === "")
        return undefined;
    return ip.startsWith("::ffff:") && ip.includes(".", 7) ? ip.slice(7) : ip;
}
