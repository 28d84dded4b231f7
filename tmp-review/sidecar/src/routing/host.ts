/**
 * Host / :authority normalisation, and the mapping from a host name to the RouteConfig the sidecar
 * subscribes to on demand. Route lookup and authorization see the same normalised host
 * (DESIGN.md §5), so `Orders.Shop.:80` and `orders.shop` select the same route.
 */
import { isIPv6 } from "node:net";

/** A normalised authority: `host` lower-case without a trailing dot (IPv6 kept in brackets). */
export interface Authority {
  readonly host: string;
  /** 1-65535; the scheme's default port when the authority named none. */
  readonly port: number;
}

const COLON = 0x3a;
const DOT = 0x2e;
const OPEN_BRACKET = 0x5b;

/**
 * Normalises a Host header or HTTP/2 `:authority` (RFC 9110 §7.2, RFC 3986 §3.2.2-3.2.3).
 * Returns undefined when it is not a usable authority (empty, userinfo, bad characters, bad port).
 *  1. Split host and port. An IPv6 literal keeps its brackets (`[::1]:8080` → `[::1]`); a second
 *     colon outside brackets is refused. An empty port (`host:`) means no port (§3.2.3).
 *  2. Port: decimal 1-65535; absent → `defaultPort` (80 for http, 443 for https), so an explicit
 *     default port and no port compare equal (scheme-based normalisation, §6.2.3).
 *  3. Host: case-folded to lower case (§6.2.2.1, host names are case-insensitive) and one trailing
 *     dot dropped (the DNS root, RFC 1034 §3.1: `orders.shop.` is `orders.shop`). Only letters,
 *     digits, "-", "_" and non-empty dot-separated labels are accepted: a percent-encoded or
 *     otherwise exotic reg-name never names a mesh service and must not reach a DNS lookup.
 * Allocation-free beyond the result object when the header is already lower-case without a port.
 */
export function normalizeAuthority(hostHeader: string, defaultPort: number): Authority | undefined {
  const len = hostHeader.length;
  if (len === 0) return undefined;
  let hostEnd: number;
  let portStart: number;
  if (hostHeader.charCodeAt(0) === OPEN_BRACKET) {
    const close = hostHeader.indexOf("]");
    if (close < 0) return undefined;
    hostEnd = close + 1;
    if (hostEnd === len) portStart = -1;
    else if (hostHeader.charCodeAt(hostEnd) === COLON) portStart = hostEnd + 1;
    else return undefined;
    if (!isIPv6(hostHeader.slice(1, close))) return undefined;
  } else {
    const colon = hostHeader.indexOf(":");
    if (colon >= 0 && hostHeader.indexOf(":", colon + 1) >= 0) return undefined;
    hostEnd = colon < 0 ? len : colon;
    portStart = colon < 0 ? -1 : colon + 1;
    if (!isRegName(hostHeader, hostEnd)) return undefined;
  }
  const port = portStart < 0 || portStart === len ? defaultPort : parsePort(hostHeader, portStart);
  if (port < 0) return undefined;

  let end = hostEnd;
  if (hostHeader.charCodeAt(end - 1) === DOT) end--;
  if (end === 0) return undefined;
  let host = end === len ? hostHeader : hostHeader.slice(0, end);
  if (hasUpperCase(host)) host = host.toLowerCase();
  return { host, port };
}

/** Letters, digits, "-" and "_" in non-empty labels separated by single dots; one trailing dot allowed. */
function isRegName(s: string, end: number): boolean {
  if (end === 0) return false;
  let labelLength = 0;
  for (let i = 0; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === DOT) {
      if (labelLength === 0) return false;
      labelLength = 0;
    } else if (
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x2d ||
      c === 0x5f
    ) {
      labelLength++;
    } else {
      return false;
    }
  }
  return true;
}

/** The decimal port from `start` to the end of `s`, or -1 unless it is 1-65535. */
function parsePort(s: string, start: number): number {
  if (s.length - start > 5) return -1;
  let port = 0;
  for (let i = start; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
    port = port * 10 + (c - 0x30);
  }
  return port >= 1 && port <= 65535 ? port : -1;
}

function hasUpperCase(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return true;
  }
  return false;
}

/** `host` with `:port` unless it is the scheme's default: the key form of RouteConfig domains. */
export function formatAuthority(authority: Authority, defaultPort: number): string {
  return authority.port === defaultPort ? authority.host : `${authority.host}:${authority.port}`;
}

const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const ALL_DIGITS = /^[0-9]+$/;
/** The mesh's DNS suffix after `<service>.<namespace>` (control-plane CLUSTER_DNS_SUFFIX). */
const SVC = "svc";
const CLUSTER_LOCAL = ["svc", "cluster", "local"] as const;

/**
 * The RouteConfig name (`<service>.<namespace>`, resource-types `routeName`) that a normalised host
 * (from normalizeAuthority, without port) addresses, for on-demand subscription; undefined when the
 * host cannot be a mesh name. INTERFACES.md "Service names":
 *   `orders`                          → `orders.<ownNamespace>` (the caller's own namespace)
 *   `orders.shop`                     → `orders.shop`
 *   `orders.shop.svc`                 → `orders.shop` (the Kubernetes search-path form)
 *   `orders.shop.svc.cluster.local`   → `orders.shop`
 * Anything else is not a mesh name: IP literals (and, as in the WHATWG URL host parser, any name
 * whose last label is all digits), `localhost`, names whose labels are not DNS labels, and names
 * with other label counts or suffixes (`api.example.com`). Not on the per-request hot path: callers
 * use it only after a route lookup missed.
 */
export function serviceNameForHost(host: string, ownNamespace: string): string | undefined {
  if (host.length === 0 || host.length > 253 || host === "localhost") return undefined;
  const labels = host.split(".");
  for (const label of labels) if (!DNS_LABEL.test(label)) return undefined;
  if (ALL_DIGITS.test(labels[labels.length - 1] as string)) return undefined;
  const [service, namespace] = labels;
  switch (labels.length) {
    case 1:
      return `${service}.${ownNamespace}`;
    case 2:
      return host;
    case 3:
      return labels[2] === SVC ? `${service}.${namespace}` : undefined;
    case 5:
      return labels[2] === CLUSTER_LOCAL[0] &&
        labels[3] === CLUSTER_LOCAL[1] &&
        labels[4] === CLUSTER_LOCAL[2]
        ? `${service}.${namespace}`
        : undefined;
    default:
      return undefined;
  }
}
