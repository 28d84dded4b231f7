/**
 * SPIFFE IDs for Trellis workloads: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
 *
 * Validation follows the SPIFFE ID specification (github.com/spiffe/spiffe, standards/SPIFFE-ID.md):
 *   §2.1 trust domain: lower-case letters, digits, `.`, `-`, `_`; no port, no userinfo; ≤ 255 chars.
 *   §2.2 path: `/`-separated non-empty segments of [A-Za-z0-9._-]; no `.` or `..` segments; no
 *        trailing slash; no query or fragment.
 *   §2.3 the whole ID is at most 2048 bytes.
 * The `*Problem` functions return `undefined` when the input is fine, else one short lower-case
 * message meant to follow a field path in a user-facing error (`…principals[0]: <message>`).
 */
import { ErrorCode, TrellisError } from "./errors.js";

/** Trust domain used when none is configured. */
export const DEFAULT_TRUST_DOMAIN = "cluster.local";

/** The scheme prefix every SPIFFE ID starts with (lower case; the spec forbids other spellings). */
export const SPIFFE_SCHEME = "spiffe://";

/** SPIFFE-ID.md §2.3: maximum length of a whole ID, in bytes. */
export const MAX_SPIFFE_ID_BYTES = 2048;

/** SPIFFE-ID.md §2.1: maximum length of a trust domain name, in characters. */
export const MAX_TRUST_DOMAIN_LENGTH = 255;

/** The parts of a Trellis workload identity. All three must be valid SPIFFE pieces. */
export interface WorkloadId {
  /** Trust domain, e.g. `cluster.local`. */
  readonly trustDomain: string;
  /** Kubernetes namespace (or the equivalent grouping outside Kubernetes). */
  readonly namespace: string;
  /** Kubernetes ServiceAccount name (or the equivalent outside Kubernetes). */
  readonly serviceAccount: string;
}

const TRUST_DOMAIN_CHAR = /^[a-z0-9._-]$/;
const PATH_CHAR = /^[A-Za-z0-9._-]$/;
const WORKLOAD_PATH = /^\/ns\/([^/]+)\/sa\/([^/]+)$/;

/**
 * Why `td` is not a valid SPIFFE trust domain name (SPIFFE-ID.md §2.1), or undefined when it is.
 * Named problems: empty, too long, port, userinfo, upper case, any other character.
 */
export function trustDomainProblem(td: string): string | undefined {
  if (td.length === 0) return "trust domain must not be empty";
  if (td.length > MAX_TRUST_DOMAIN_LENGTH) {
    return `trust domain must be at most ${MAX_TRUST_DOMAIN_LENGTH} characters (got ${td.length})`;
  }
  return trustDomainCharsProblem(td);
}

/**
 * Why `s` is not a valid SPIFFE ID, or undefined when it is. An ID with an empty path
 * (`spiffe://example.org`, the trust domain's own ID) is valid per the spec.
 */
export function spiffeIdProblem(s: string): string | undefined {
  const bytes = Buffer.byteLength(s, "utf8");
  if (bytes > MAX_SPIFFE_ID_BYTES) return `must be at most ${MAX_SPIFFE_ID_BYTES} bytes (got ${bytes})`;
  const scheme = schemeProblem(s);
  if (scheme !== undefined) return scheme;
  // Query and fragment are checked before characters so the message names the real mistake.
  if (s.includes("?")) return "query is not allowed";
  if (s.includes("#")) return "fragment is not allowed";
  const rest = s.slice(SPIFFE_SCHEME.length);
  const slash = rest.indexOf("/");
  const td = slash === -1 ? rest : rest.slice(0, slash);
  const tdProblem = trustDomainProblem(td);
  if (tdProblem !== undefined) return tdProblem;
  if (slash === -1) return undefined;
  return pathProblem(rest.slice(slash), false);
}

/** True when `s` is a valid SPIFFE ID (see {@link spiffeIdProblem}). */
export function isSpiffeId(s: string): boolean {
  return spiffeIdProblem(s) === undefined;
}

/**
 * Why `s` is not a valid principal pattern for an AuthorizationPolicy, or undefined when it is.
 * Accepted forms (Istio-compatible):
 *   `*`               any authenticated (mTLS) caller;
 *   `<spiffe-id>`     exact match;
 *   `<prefix>*`       prefix match; the prefix starts with `spiffe://` (e.g. `spiffe://td/ns/prod/*`);
 *   `*<suffix>`       suffix match (e.g. `*\/sa/frontend`).
 * The non-star part obeys the same character rules as a SPIFFE ID.
 */
export function principalPatternProblem(s: string): string | undefined {
  if (s.length === 0) return "must not be empty";
  const bytes = Buffer.byteLength(s, "utf8");
  if (bytes > MAX_SPIFFE_ID_BYTES) return `must be at most ${MAX_SPIFFE_ID_BYTES} bytes (got ${bytes})`;
  if (s === "*") return undefined;
  const first = s.indexOf("*");
  if (first === -1) return spiffeIdProblem(s);
  if (first !== s.lastIndexOf("*")) return "only one '*' is allowed";
  if (first === 0) return suffixProblem(s.slice(1));
  if (first === s.length - 1) return prefixProblem(s.slice(0, -1));
  return "'*' is allowed only alone, at the start or at the end";
}

/**
 * True when SPIFFE ID `id` matches principal `pattern` (see {@link principalPatternProblem}).
 * Case-sensitive and allocation-free (it runs per request); `*` matches any non-empty id (any
 * caller with a verified identity). Patterns are assumed to have passed validation.
 */
export function matchPrincipal(pattern: string, id: string): boolean {
  if (id.length === 0) return false;
  const last = pattern.length - 1;
  if (pattern.charCodeAt(0) === STAR) {
    if (last === 0) return true;
    // Suffix: pattern[1..] against the tail of id.
    return id.length >= last && regionEquals(id, id.length - last, pattern, 1, last);
  }
  if (pattern.charCodeAt(last) === STAR) return id.length >= last && regionEquals(id, 0, pattern, 0, last);
  return id === pattern;
}

const STAR = 42; // "*"

function regionEquals(a: string, aFrom: number, b: string, bFrom: number, len: number): boolean {
  for (let i = 0; i < len; i++) {
    if (a.charCodeAt(aFrom + i) !== b.charCodeAt(bFrom + i)) return false;
  }
  return true;
}

/**
 * `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`.
 * Throws TrellisError INVALID_ARGUMENT when a part would make an invalid SPIFFE ID.
 */
export function formatWorkloadId(w: WorkloadId): string {
  for (const [field, value] of [
    ["namespace", w.namespace],
    ["serviceAccount", w.serviceAccount],
  ] as const) {
    if (value.length === 0) throw new TrellisError(ErrorCode.INVALID_ARGUMENT, `${field} must not be empty`);
    if (value.includes("/")) {
      throw new TrellisError(ErrorCode.INVALID_ARGUMENT, `${field} must not contain '/'`);
    }
  }
  const id = `${SPIFFE_SCHEME}${w.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`;
  const problem = spiffeIdProblem(id);
  if (problem !== undefined) {
    throw new TrellisError(
      ErrorCode.INVALID_ARGUMENT,
      `invalid workload identity ${JSON.stringify(id)}: ${problem}`,
    );
  }
  return id;
}

/**
 * The parts of a Trellis workload ID, or undefined when `s` is not a valid SPIFFE ID of exactly the
 * shape `spiffe://<td>/ns/<namespace>/sa/<service-account>`.
 */
export function parseWorkloadId(s: string): WorkloadId | undefined {
  if (spiffeIdProblem(s) !== undefined) return undefined;
  const rest = s.slice(SPIFFE_SCHEME.length);
  const slash = rest.indexOf("/");
  if (slash === -1) return undefined;
  const m = WORKLOAD_PATH.exec(rest.slice(slash));
  if (m === null) return undefined;
  return { trustDomain: rest.slice(0, slash), namespace: m[1]!, serviceAccount: m[2]! };
}

function schemeProblem(s: string): string | undefined {
  if (s.startsWith(SPIFFE_SCHEME)) return undefined;
  if (s.slice(0, SPIFFE_SCHEME.length).toLowerCase() === SPIFFE_SCHEME) {
    return "scheme must be lower-case 'spiffe://'";
  }
  return "must start with spiffe://";
}

/** Character rules for a whole or partial trust domain (no length or emptiness checks). */
function trustDomainCharsProblem(td: string): string | undefined {
  if (td.includes("@")) return "trust domain must not contain userinfo ('@')";
  if (td.includes(":")) return "trust domain must not contain a port";
  for (const c of td) {
    if (TRUST_DOMAIN_CHAR.test(c)) continue;
    if (c !== c.toLowerCase()) return `trust domain must be lower-case (got '${td}')`;
    return `trust domain has invalid character ${quoteChar(c)} (allowed: a-z 0-9 . - _)`;
  }
  return undefined;
}

/**
 * Rules for a path that starts with `/`. When `partial` is true the last segment may be cut short
 * (a prefix pattern), so it may be empty or look like `.`/`..` (`spiffe://td/ns/.*` could match
 * `/ns/.x`).
 */
function pathProblem(path: string, partial: boolean): string | undefined {
  const segments = path.slice(1).split("/");
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    const isLast = i === segments.length - 1;
    if (isLast && partial) return segmentCharsProblem(seg);
    if (seg.length === 0) return isLast ? "trailing slash is not allowed" : "path segments must not be empty";
    if (seg === "." || seg === "..") return `path segment '${seg}' is not allowed`;
    const chars = segmentCharsProblem(seg);
    if (chars !== undefined) return chars;
  }
  return undefined;
}

function segmentCharsProblem(seg: string): string | undefined {
  for (const c of seg) {
    if (!PATH_CHAR.test(c)) {
      return `path segment '${seg}' has invalid character ${quoteChar(c)} (allowed: A-Z a-z 0-9 . - _)`;
    }
  }
  return undefined;
}

/** `<prefix>*`: the prefix must be the start of some valid SPIFFE ID. */
function prefixProblem(prefix: string): string | undefined {
  if (!prefix.startsWith(SPIFFE_SCHEME)) return schemeProblem(prefix) ?? "must start with spiffe://";
  if (prefix.includes("?")) return "query is not allowed";
  if (prefix.includes("#")) return "fragment is not allowed";
  const rest = prefix.slice(SPIFFE_SCHEME.length);
  const slash = rest.indexOf("/");
  const td = slash === -1 ? rest : rest.slice(0, slash);
  if (slash !== -1) {
    // The trust domain is complete here, so it must be a whole valid one.
    const tdProblem = trustDomainProblem(td);
    if (tdProblem !== undefined) return tdProblem;
    return pathProblem(rest.slice(slash), true);
  }
  if (td.length > MAX_TRUST_DOMAIN_LENGTH) {
    return `trust domain must be at most ${MAX_TRUST_DOMAIN_LENGTH} characters (got ${td.length})`;
  }
  return trustDomainCharsProblem(td);
}

/**
 * `*<suffix>`: the suffix must be the end of some valid SPIFFE ID. Its first piece may be cut short
 * (the tail of a trust domain or segment); every piece after a `/` is a whole path segment.
 */
function suffixProblem(suffix: string): string | undefined {
  if (suffix.includes("://")) return "a suffix pattern must not contain a scheme; use an exact id instead";
  if (suffix.includes("?")) return "query is not allowed";
  if (suffix.includes("#")) return "fragment is not allowed";
  const pieces = suffix.split("/");
  const head = pieces[0]!;
  if (head.length > 0) {
    // `*example.org/ns/a` (trust-domain tail) and `*-frontend` (segment tail) are both fine: check
    // against the looser path alphabet, which includes the trust-domain one.
    const chars = segmentCharsProblem(head);
    if (chars !== undefined) return chars;
  }
  if (pieces.length === 1) return undefined;
  return pathProblem(`/${pieces.slice(1).join("/")}`, false);
}

function quoteChar(c: string): string {
  if (c === " ") return "' ' (space)";
  const code = c.codePointAt(0)!;
  return code < 0x20 || code === 0x7f ? `U+${code.toString(16).toUpperCase().padStart(4, "0")}` : `'${c}'`;
}
