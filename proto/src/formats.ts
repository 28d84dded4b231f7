/**
 * Checks for the well-known string formats of options.proto `Format`. Each returns undefined when
 * the value is fine, else a short message that completes "<field path>: ...".
 */
import { isIP } from "node:net";
import { Format } from "../gen/trellis/v1/options_pb.js";
import { principalPatternProblem, spiffeIdProblem } from "./spiffe.js";

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
// RFC 9110 token characters.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const LABEL_NAME = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;

function dnsSubdomainProblem(s: string): string | undefined {
  if (s.length === 0 || s.length > 253) return "must be a DNS name of 1-253 characters";
  for (const label of s.split(".")) {
    if (!DNS_LABEL.test(label)) return "must be a lower-case DNS name (letters, digits, '-' and '.')";
  }
  return undefined;
}

function hostProblem(s: string): string | undefined {
  let host = s;
  const colon = host.lastIndexOf(":");
  if (colon > 0) {
    const port = Number(host.slice(colon + 1));
    if (!Number.isInteger(port) || port < 1 || port > 65535) return "has an invalid port";
    host = host.slice(0, colon);
  }
  if (host.startsWith("*.")) host = host.slice(2);
  return dnsSubdomainProblem(host.toLowerCase()) === undefined
    ? undefined
    : "must be a host name, optionally with ':port' or a leading '*.'";
}

function cidrProblem(s: string): string | undefined {
  const slash = s.indexOf("/");
  const addr = slash < 0 ? s : s.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) return "must be an IP address or CIDR block";
  if (slash >= 0) {
    const bitsText = s.slice(slash + 1);
    const bits = Number(bitsText);
    const max = family === 4 ? 32 : 128;
    if (!/^\d+$/.test(bitsText) || bits > max) return `must have a prefix length of 0-${max}`;
  }
  return undefined;
}

function regexProblem(s: string): string | undefined {
  try {
    new RegExp(s, "u");
    return undefined;
  } catch (err) {
    return `is not a valid regular expression (${(err as Error).message.replace(/^Invalid regular expression: /, "")})`;
  }
}

function urlProblem(s: string): string | undefined {
  try {
    const u = new URL(s);
    return u.protocol === "http:" || u.protocol === "https:" ? undefined : "must be an http or https URL";
  } catch {
    return "must be an absolute http or https URL";
  }
}

function labelKeyProblem(s: string): string | undefined {
  const slash = s.indexOf("/");
  if (slash >= 0) {
    if (dnsSubdomainProblem(s.slice(0, slash)) !== undefined) return "must have a DNS-name prefix before '/'";
    return LABEL_NAME.test(s.slice(slash + 1)) ? undefined : "must be a label key (1-63 of [A-Za-z0-9_.-])";
  }
  return LABEL_NAME.test(s) ? undefined : "must be a label key (1-63 of [A-Za-z0-9_.-])";
}

function localityProblem(s: string): string | undefined {
  const parts = s.split("/");
  if (parts.length > 3 || parts.some((p) => p.length === 0))
    return "must be region, region/zone or region/zone/subzone";
  return undefined;
}

/** The problem with `value` for `format`, or undefined when it conforms. */
export function formatProblem(format: Format, value: string): string | undefined {
  switch (format) {
    case Format.UNSPECIFIED:
      return undefined;
    case Format.DNS_LABEL:
      return DNS_LABEL.test(value)
        ? undefined
        : "must be a DNS label (lower-case letters, digits and '-', at most 63)";
    case Format.DNS_SUBDOMAIN:
      return dnsSubdomainProblem(value);
    case Format.HOST:
      return hostProblem(value);
    case Format.HEADER_NAME:
      return TOKEN.test(value) ? undefined : "must be an HTTP header name";
    case Format.HEADER_VALUE:
      return /[\r\n\0]/.test(value) ? "must not contain CR, LF or NUL" : undefined;
    case Format.SPIFFE_ID:
      return spiffeIdProblem(value);
    case Format.PRINCIPAL:
      return principalPatternProblem(value);
    case Format.CIDR:
      return cidrProblem(value);
    case Format.REGEX:
      return regexProblem(value);
    case Format.URL:
      return urlProblem(value);
    case Format.PATH:
      return value.startsWith("/") && !/[\s#]/.test(value) ? undefined : "must be a path starting with '/'";
    case Format.HTTP_METHOD:
      return /^[A-Z][A-Z0-9_-]*$/.test(value) && TOKEN.test(value)
        ? undefined
        : "must be an upper-case HTTP method (GET, POST, ...)";
    case Format.IP:
      return isIP(value) === 0 ? "must be an IP address" : undefined;
    case Format.HOST_PORT: {
      const colon = value.lastIndexOf(":");
      const port = Number(value.slice(colon + 1));
      return colon > 0 && Number.isInteger(port) && port >= 0 && port <= 65535
        ? undefined
        : "must be host:port";
    }
    case Format.LABEL_KEY:
      return labelKeyProblem(value);
    case Format.LOCALITY:
      return localityProblem(value);
    default:
      return undefined;
  }
}
