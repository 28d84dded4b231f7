/**
 * The per-request hash key for RING_HASH, from the proto `HashOn`: compiled once per cluster
 * (`compileHashKey`, at snapshot build), run per request by the outbound proxy, which passes the
 * result as `PickContext.hashKey` — on the first attempt and on the retry alike.
 *
 * What each source yields (an empty value counts as absent: pinning every request that lacks a
 * value to one endpoint would make that endpoint a hot spot; an absent key makes the pick random):
 *  - `header`: the header's value; a repeated header as Node joins it (", "), or the first of an
 *    array-valued one.
 *  - `cookie`: the named cookie's value from the `Cookie` header (RFC 6265 §5.4 syntax; a
 *    DQUOTE-wrapped value is unwrapped). With a `ttl`, a request without the cookie gets one made
 *    up by the proxy (`generatedCookie`, `newHashCookie`), so the client's next requests stick.
 *  - `sourceIp`: the downstream peer address, an IPv4-mapped IPv6 address ("::ffff:10.0.0.1")
 *    reduced to its IPv4 form so a dual-stack listener hashes a client one way. On a sidecar's
 *    outbound listener the peer is the local app, so every request shares one key; the gateway
 *    sees real clients.
 *  - `queryParameter`: the parameter's raw value, still percent-encoded (the key only needs to be
 *    stable, and decoding would allocate per request); the first occurrence wins.
 */
import type { IncomingHttpHeaders } from "node:http";
import { durationMs } from "@trellis/proto/duration";
import type { HashOn } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";

/** A cookie the proxy sets when a request lacks it (proto `HashCookie` with a `ttl`). */
export interface GeneratedCookie {
  readonly name: string;
  /** The cookie's Path attribute; default "/". */
  readonly path: string;
  /** The cookie's Max-Age, whole seconds ≥ 1 (the proto's `ttl`). */
  readonly maxAgeSeconds: number;
}

/** Where a cluster's hash key comes from; built once per cluster, called per request. */
export interface HashKeySource {
  /** "header:x-user", "cookie:session", "source-ip" or "query:user", for logs and config_dump. */
  readonly description: string;
  /**
   * The key of one request, or undefined when the request does not carry it. Never throws; the
   * returned string is a slice of the input (no other allocation).
   * @param headers the request headers as Node gives them (lower-case names).
   * @param query the raw query string, without "?"; undefined or "" when there is none.
   * @param sourceIp the downstream peer's address (`req.socket.remoteAddress`).
   */
  key(
    headers: IncomingHttpHeaders,
    query: string | undefined,
    sourceIp: string | undefined,
  ): string | undefined;
  /**
   * Set for a cookie source with a `ttl`: when `key` returns undefined the proxy calls
   * `newHashCookie(generatedCookie, random)`, uses its `value` as this request's key and appends
   * its `setCookie` to the response.
   */
  readonly generatedCookie?: GeneratedCookie;
}

/** The source for `hashOn`; undefined when there is none (the proto left the oneof unset). */
export function compileHashKey(hashOn: HashOn | undefined): HashKeySource | undefined {
  const source = hashOn?.source;
  switch (source?.case) {
    case "header": {
      const name = source.value.toLowerCase();
      return { description: `header:${name}`, key: (headers) => headerValue(headers[name]) };
    }
    case "cookie": {
      const { name, ttl, path } = source.value;
      const ttlMs = durationMs(ttl);
      const base: HashKeySource = {
        description: `cookie:${name}`,
        key: (headers) => {
          const header = headers.cookie;
          return header === undefined ? undefined : cookieValue(header, name);
        },
      };
      if (ttlMs === undefined) return base;
      const maxAgeSeconds = Math.max(1, Math.floor(ttlMs / 1000));
      return { ...base, generatedCookie: { name, path: path === "" ? "/" : path, maxAgeSeconds } };
    }
    case "sourceIp":
      return source.value ? { description: "source-ip", key: (_h, _q, ip) => sourceKey(ip) } : undefined;
    case "queryParameter": {
      const name = source.value;
      return {
        description: `query:${name}`,
        key: (_h, query) =>
          query === undefined ? undefined : separatedValue(query, name, 38 /* & */, false),
      };
    }
    default:
      return undefined;
  }
}

/** A new random cookie value (64 bits, hex) and the `Set-Cookie` header that delivers it. */
export function newHashCookie(
  cookie: GeneratedCookie,
  random: () => number,
): { value: string; setCookie: string } {
  const hi = Math.floor(random() * 4294967296) >>> 0;
  const lo = Math.floor(random() * 4294967296) >>> 0;
  const value = hi.toString(16).padStart(8, "0") + lo.toString(16).padStart(8, "0");
  return {
    value,
    setCookie: `${cookie.name}=${value}; Path=${cookie.path}; Max-Age=${cookie.maxAgeSeconds}; HttpOnly`,
  };
}

function headerValue(v: string | string[] | undefined): string | undefined {
  const first = typeof v === "string" ? v : v?.[0];
  return first === undefined || first === "" ? undefined : first;
}

/** The value of cookie `name` in a `Cookie` header ("a=1; b=2"), unwrapped from DQUOTEs. */
export function cookieValue(header: string, name: string): string | undefined {
  return separatedValue(header, name, 59 /* ; */, true);
}

/**
 * The value of the first `name=value` item of `text`, items separated by the char code `sep`,
 * with optional whitespace around items (`trim`, cookies) or none (query strings). Empty → undefined.
 */
function separatedValue(text: string, name: string, sep: number, trim: boolean): string | undefined {
  const n = text.length;
  let i = 0;
  while (i < n) {
    if (trim) while (i < n && isSpace(text.charCodeAt(i))) i++;
    let end = i;
    while (end < n && text.charCodeAt(end) !== sep) end++;
    const eq = i + name.length;
    if (eq < end && text.charCodeAt(eq) === 61 /* = */ && text.startsWith(name, i)) {
      let from = eq + 1;
      let to = end;
      if (trim) {
        while (to > from && isSpace(text.charCodeAt(to - 1))) to--;
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

function isSpace(c: number): boolean {
  return c === 32 || c === 9;
}

function sourceKey(ip: string | undefined): string | undefined {
  if (ip === undefined || ip === "") return undefined;
  return ip.startsWith("::ffff:") && ip.includes(".", 7) ? ip.slice(7) : ip;
}
