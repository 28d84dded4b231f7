/**
 * Route tables: a RouteConfig compiled once per snapshot into the form the per-request matcher
 * walks (match.ts) — regexes compiled and anchored, names lower-cased, path values normalised,
 * rules bucketed per port, weights accumulated — and the RouteIndex that finds a table by the
 * request's authority. A RouteConfig that cannot be compiled yields every problem at once, as
 * data, for the NACK; the sidecar keeps its last good table (CONVENTIONS.md "Bad config is data").
 */

import type { StringMatch } from "@trellis/proto/gen/trellis/v1/common_pb";
import type {
  HeaderMatch,
  HTTPRouteMatch,
  HTTPRouteRule,
  PathMatch,
  QueryMatch,
} from "@trellis/proto/gen/trellis/v1/http_route_pb";
import type { PolicyRef, RouteConfig, WeightedCluster } from "@trellis/proto/gen/trellis/v1/resources_pb";
import type { ServicePort } from "@trellis/proto/gen/trellis/v1/service_pb";
import { Protocol } from "@trellis/proto/gen/trellis/v1/service_pb";
import { compileRoutePolicy, type RoutePolicy } from "../resilience/route-policy.js";
import type { CompiledHeaderEdits } from "./header-edits.js";
import { compileHeaderEdits } from "./header-edits.js";
import { normalizeAuthority } from "./host.js";
import { normalizePath } from "./path.js";
import type { WeightedClusters } from "./weighted.js";
import { compileWeightedClusters } from "./weighted.js";

/** How a path condition compares. Numbers, so the matcher switches on a small integer. */
export const PathMatchKind = {
  /** path === value. */
  EXACT: 0,
  /** Segment-aware prefix: value, then the end of the path or "/". */
  PREFIX: 1,
  /** The anchored regex matches the whole path. */
  REGEX: 2,
  /** Prefix "/": every path. */
  ANY: 3,
} as const;
export type PathMatchKind = (typeof PathMatchKind)[keyof typeof PathMatchKind];

/** How a header or query value compares. */
export const StringMatchKind = {
  EXACT: 0,
  PREFIX: 1,
  REGEX: 2,
  PRESENT: 3,
} as const;
export type StringMatchKind = (typeof StringMatchKind)[keyof typeof StringMatchKind];

/** A path condition; `value` is normalised like request paths (path.ts), `regex` is anchored. */
export interface CompiledPathMatcher {
  readonly kind: PathMatchKind;
  /** EXACT: the path; PREFIX: the prefix without a trailing slash; REGEX: the source; ANY: "/". */
  readonly value: string;
  readonly regex: RegExp | undefined;
}

/** A header or query value condition. All instances share one shape (monomorphic hot path). */
export interface CompiledStringMatcher {
  readonly kind: StringMatchKind;
  /** EXACT / PREFIX: the string compared; REGEX: the source; PRESENT: "". */
  readonly value: string;
  /** REGEX only: `^(?:source)$` with the "u" flag. */
  readonly regex: RegExp | undefined;
}

export interface CompiledHeaderMatcher {
  /** Lower-cased, as Node's IncomingHttpHeaders keys are. */
  readonly name: string;
  readonly match: CompiledStringMatcher;
  /** The condition holds when `match` does NOT (including when the header is absent). */
  readonly invert: boolean;
}

export interface CompiledQueryMatcher {
  /** The decoded parameter name, compared case-sensitively. */
  readonly name: string;
  readonly match: CompiledStringMatcher;
}

/** One HTTPRouteMatch: every condition must hold. */
export interface CompiledMatch {
  readonly path: CompiledPathMatcher | undefined;
  /** Upper-case method compared exactly (RFC 9110 §9.1: methods are case-sensitive); "" = any. */
  readonly method: string;
  readonly headers: readonly CompiledHeaderMatcher[];
  readonly query: readonly CompiledQueryMatcher[];
}

/** One CompiledRouteRule, ready for the hot path. Immutable; shared by every port it applies to. */
export interface CompiledRule extends WeightedClusters {
  /** The rule's name ("" when unnamed), for metrics and `proxy-config`. */
  readonly name: string;
  /** Position in RouteConfig.rules, for diagnostics. */
  readonly index: number;
  /** The port the rule applies to; 0 = every port. */
  readonly port: number;
  /** Any one may match; empty = the rule matches every request. */
  readonly matchers: readonly CompiledMatch[];
  /** The rule as written: timeout, retry, fault, mirror and fallback are read from it by later layers. */
  readonly rule: HTTPRouteRule;
  /** The HTTPRoute the rule came from; undefined for the implicit catch-all. */
  readonly origin: PolicyRef | undefined;
  readonly headerEdits: CompiledHeaderEdits;
  /** Timeout, retries, fault, mirror and fallback, compiled (resilience/route-policy.ts). */
  readonly policy: RoutePolicy;
}

/** A host (and port) that selects a table; see RouteIndex. */
export interface RouteDomain {
  /** Lower-case host; for a wildcard, the suffix after "*" (".example.com"). */
  readonly host: string;
  /** The port given with the domain; 0 when none (the scheme's default port). */
  readonly port: number;
  readonly wildcard: boolean;
}

/** A compiled RouteConfig. Immutable; swapped whole with its snapshot. */
export interface RouteTable {
  /** The RouteConfig name, `<service>.<namespace>`. */
  readonly name: string;
  readonly service: string;
  readonly namespace: string;
  /** The domains as sent (lower-case, with and without port). */
  readonly domains: readonly string[];
  /** The same, parsed for RouteIndex. */
  readonly parsedDomains: readonly RouteDomain[];
  readonly ports: readonly ServicePort[];
  /** The service's only HTTP port — what a request naming no port means — or undefined. */
  readonly defaultPort: number | undefined;
  /** Per listed port: its own rules and the every-port (port 0) rules, in config order. */
  readonly rulesByPort: ReadonlyMap<number, readonly CompiledRule[]>;
  /** For a port the table does not list: only the every-port rules. */
  readonly anyPortRules: readonly CompiledRule[];
  /** Every rule in config order. */
  readonly rules: readonly CompiledRule[];
  /** The RouteConfig this was compiled from (for config_dump). */
  readonly source: RouteConfig;
}

/** compileRouteConfig's outcome: a table, or every problem found (the NACK's error detail). */
export type RouteTableResult = { readonly table: RouteTable } | { readonly errors: readonly string[] };

/**
 * Compiles a RouteConfig. Pure: no I/O, no clock, throws nothing.
 *  1. Check identity: `service` and `namespace` set; parse every domain (lower-case host, optional
 *     `:port`, optional leading `*.`).
 *  2. Compile each rule: its matches (path values normalised as request paths are — a value that
 *     normalisation refuses or changes to something else is kept normalised, one with "?" is an
 *     error; prefixes lose a trailing slash, as in Gateway API; regexes anchored as
 *     `^(?:source)$` with "u"), header names lower-cased, its weighted clusters, its header edits.
 *     Unknown or missing oneof kinds (a newer control plane's match kind) are errors, never
 *     "match anything".
 *  3. Bucket per port: every port named by `ports` or by a rule gets its own rules and the
 *     port-0 rules, keeping config order, so the first matching rule is the first in the list.
 *  4. Default port: the only port whose protocol is not TCP, when there is exactly one.
 * Every error names its field path (`rules[3].rule.matches[0].path.regex: …`) and, for rules from
 * an HTTPRoute, that route (`[HTTPRoute shop/orders]`), so the control plane can attribute it.
 */
export function compileRouteConfig(rc: RouteConfig): RouteTableResult {
  const errors: string[] = [];
  if (rc.service === "") errors.push("service: must be set");
  if (rc.namespace === "") errors.push("namespace: must be set");
  const parsedDomains = parseDomains(rc.domains, errors);

  const rules: CompiledRule[] = [];
  rc.rules.forEach((cr, i) => {
    const origin = cr.origin;
    const suffix = origin === undefined ? "" : ` [${origin.kind} ${origin.namespace}/${origin.name}]`;
    const ruleErrors: string[] = [];
    const compiled = compileRule(cr.rule, cr.clusters, cr.port, i, origin, ruleErrors);
    for (const e of ruleErrors) errors.push(`${e}${suffix}`);
    if (compiled !== undefined) rules.push(compiled);
  });
  if (errors.length > 0) return { errors };

  const portNumbers = new Set<number>();
  for (const p of rc.ports) portNumbers.add(p.port);
  for (const r of rules) if (r.port !== 0) portNumbers.add(r.port);
  const rulesByPort = new Map<number, readonly CompiledRule[]>();
  for (const port of [...portNumbers].sort((a, b) => a - b)) {
    rulesByPort.set(
      port,
      rules.filter((r) => r.port === port || r.port === 0),
    );
  }
  const httpPorts = rc.ports.filter((p) => p.protocol !== Protocol.TCP);

  return {
    table: {
      name: rc.name,
      service: rc.service,
      namespace: rc.namespace,
      domains: rc.domains,
      parsedDomains,
      ports: rc.ports,
      defaultPort: httpPorts.length === 1 ? httpPorts[0]?.port : undefined,
      rulesByPort,
      anyPortRules: rules.filter((r) => r.port === 0),
      rules,
      source: rc,
    },
  };
}

/**
 * The table's port for a request whose authority named `requestPort` (normalizeAuthority puts the
 * scheme's default there when none was named): that port when the table lists it; else, when the
 * request named no port (or the scheme's default, RFC 3986 §6.2.3), the service's only HTTP port
 * (INTERFACES.md: "a port left out means the service's only HTTP port"); else undefined (no_route).
 */
export function servicePortFor(
  table: RouteTable,
  requestPort: number,
  schemeDefaultPort: number,
): number | undefined {
  if (table.rulesByPort.has(requestPort)) return requestPort;
  return requestPort === schemeDefaultPort ? table.defaultPort : undefined;
}

/** The rules that apply on `port`, in order: its bucket, or the every-port rules for a port not listed. */
export function rulesForPort(table: RouteTable, port: number): readonly CompiledRule[] {
  return table.rulesByPort.get(port) ?? table.anyPortRules;
}

function parseDomains(domains: readonly string[], errors: string[]): RouteDomain[] {
  const out: RouteDomain[] = [];
  domains.forEach((d, i) => {
    const wildcard = d.startsWith("*.");
    const authority = normalizeAuthority(wildcard ? d.slice(2) : d, 0);
    if (authority === undefined || authority.host.startsWith("[")) {
      errors.push(`domains[${i}]: ${JSON.stringify(d)} is not a host name with an optional port`);
      return;
    }
    out.push({ host: wildcard ? `.${authority.host}` : authority.host, port: authority.port, wildcard });
  });
  return out;
}

function compileRule(
  rule: HTTPRouteRule | undefined,
  clusters: readonly WeightedCluster[],
  port: number,
  index: number,
  origin: PolicyRef | undefined,
  errors: string[],
): CompiledRule | undefined {
  const where = `rules[${index}]`;
  if (port > 65535) errors.push(`${where}.port: ${port} is not a port number`);
  const weighted = compileWeightedClusters(clusters, `${where}.clusters`, errors);
  if (rule === undefined) {
    errors.push(`${where}.rule: must be set`);
    return undefined;
  }
  const matchers = rule.matches.map((m, j) => compileMatch(m, `${where}.rule.matches[${j}]`, errors));
  const headerEdits = compileHeaderEdits(rule.headers, `${where}.rule.headers`, errors);
  if (weighted === undefined || errors.length > 0) return undefined;
  const policy = compileRoutePolicy(rule);
  return { ...weighted, name: rule.name, index, port, matchers, rule, origin, headerEdits, policy };
}

function compileMatch(m: HTTPRouteMatch, where: string, errors: string[]): CompiledMatch {
  return {
    path: m.path === undefined ? undefined : compilePathMatch(m.path, `${where}.path`, errors),
    method: m.method,
    headers: m.headers.map((h, k) => compileHeaderMatch(h, `${where}.headers[${k}]`, errors)),
    query: m.query.map((q, k) => compileQueryMatch(q, `${where}.query[${k}]`, errors)),
  };
}

const ANY_PATH: CompiledPathMatcher = Object.freeze({
  kind: PathMatchKind.ANY,
  value: "/",
  regex: undefined,
});

function compilePathMatch(p: PathMatch, where: string, errors: string[]): CompiledPathMatcher {
  switch (p.kind.case) {
    case "exact": {
      const path = normalizedValue(p.kind.value, `${where}.exact`, errors);
      return { kind: PathMatchKind.EXACT, value: path, regex: undefined };
    }
    case "prefix": {
      let path = normalizedValue(p.kind.value, `${where}.prefix`, errors);
      // Gateway API PathPrefix: a trailing slash is ignored, "/api/" matches "/api" too.
      if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);
      return path === "/" ? ANY_PATH : { kind: PathMatchKind.PREFIX, value: path, regex: undefined };
    }
    case "regex":
      return {
        kind: PathMatchKind.REGEX,
        value: p.kind.value,
        regex: anchored(p.kind.value, `${where}.regex`, errors),
      };
    default:
      errors.push(`${where}: unknown or missing path match kind`);
      return ANY_PATH;
  }
}

/**
 * A path value in the form request paths are compared in. Without this, `exact: /a/./b` or
 * `prefix: /%61pi` could never match, since requests are normalised before matching.
 */
function normalizedValue(value: string, where: string, errors: string[]): string {
  if (value.includes("?")) {
    errors.push(
      `${where}: ${JSON.stringify(value)} must not contain '?' (paths are matched without the query)`,
    );
    return value;
  }
  const n = normalizePath(value);
  if ("error" in n) {
    errors.push(`${where}: ${JSON.stringify(value)} can never match: ${n.error}`);
    return value;
  }
  return n.path;
}

function compileHeaderMatch(h: HeaderMatch, where: string, errors: string[]): CompiledHeaderMatcher {
  if (h.name === "") errors.push(`${where}.name: must be set`);
  return {
    name: h.name.toLowerCase(),
    match: compileStringMatch(h.value, `${where}.value`, errors),
    invert: h.invert,
  };
}

function compileQueryMatch(q: QueryMatch, where: string, errors: string[]): CompiledQueryMatcher {
  if (q.name === "") errors.push(`${where}.name: must be set`);
  return { name: q.name, match: compileStringMatch(q.value, `${where}.value`, errors) };
}

const PRESENT: CompiledStringMatcher = Object.freeze({
  kind: StringMatchKind.PRESENT,
  value: "",
  regex: undefined,
});

function compileStringMatch(
  s: StringMatch | undefined,
  where: string,
  errors: string[],
): CompiledStringMatcher {
  switch (s?.kind.case) {
    case "exact":
      return { kind: StringMatchKind.EXACT, value: s.kind.value, regex: undefined };
    case "prefix":
      return { kind: StringMatchKind.PREFIX, value: s.kind.value, regex: undefined };
    case "regex":
      return {
        kind: StringMatchKind.REGEX,
        value: s.kind.value,
        regex: anchored(s.kind.value, `${where}.regex`, errors),
      };
    case "present":
      // `present: false` has no meaning of its own (absence is `invert` on `present: true`); refusing
      // it keeps a typo from silently matching every request.
      if (!s.kind.value) errors.push(`${where}.present: must be true (use invert to require absence)`);
      return PRESENT;
    default:
      errors.push(`${where}: unknown or missing match kind`);
      return PRESENT;
  }
}

/**
 * `source` compiled to match whole strings only: `^(?:source)$` with the "u" flag, the same flag
 * the control plane's validator checks with. The group keeps alternations whole (`a|b` must not
 * become `^a|b$`) and does not renumber capture groups. No "g" or "y" flag, so `test` is stateless.
 */
function anchored(source: string, where: string, errors: string[]): RegExp | undefined {
  try {
    return new RegExp(`^(?:${source})$`, "u");
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    errors.push(`${where}: invalid regular expression ${JSON.stringify(source)}: ${detail}`);
    return undefined;
  }
}

/** A table claimed by a host and port, for RouteIndex. */
type PortMap = Map<number, RouteTable>;

/**
 * Finds the table for a request's authority. Built once per snapshot from every compiled table.
 *  - A domain without a port stands for the scheme's default port (`schemeDefaultPort`), so
 *    `orders.shop` and `orders.shop:80` are one key; other ports must be listed (the control plane
 *    lists `<name>:<port>` for every service port).
 *  - `<service>.<namespace>.svc` (and with each port) is added for every table unless some table
 *    claims it: serviceNameForHost maps that Kubernetes search-path form to the table, but the
 *    control plane does not list it among the domains.
 *  - Wildcard domains (`*.example.com`) match any host with that suffix and at least one more
 *    label; the longest suffix wins; exact domains win over wildcards.
 *  - Two tables claiming one domain: the one whose name sorts first wins (deterministic whatever
 *    the arrival order) and the clash is listed in `conflicts`.
 */
export class RouteIndex {
  /** Human-readable domain clashes found while building (for a warn log). */
  readonly conflicts: readonly string[];
  readonly schemeDefaultPort: number;
  private readonly exact = new Map<string, PortMap>();
  private readonly wildcards = new Map<string, PortMap>();
  private readonly byName = new Map<string, RouteTable>();

  constructor(tables: Iterable<RouteTable>, schemeDefaultPort = 80) {
    this.schemeDefaultPort = schemeDefaultPort;
    const conflicts: string[] = [];
    const sorted = [...tables].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const table of sorted) {
      this.byName.set(table.name, table);
      for (const d of table.parsedDomains) {
        const map = d.wildcard ? this.wildcards : this.exact;
        const port = d.port === 0 ? schemeDefaultPort : d.port;
        const holder = claim(map, d.host, port, table);
        if (holder !== table) {
          conflicts.push(
            `domain ${d.wildcard ? "*" : ""}${d.host}:${port} of ${table.name} is already ${holder.name}'s`,
          );
        }
      }
    }
    for (const table of sorted) {
      const alias = `${table.service}.${table.namespace}.svc`;
      claim(this.exact, alias, schemeDefaultPort, table);
      for (const p of table.ports) claim(this.exact, alias, p.port, table);
    }
    this.conflicts = conflicts;
  }

  /**
   * The table for a normalised host (normalizeAuthority's `host`) and port (its `port`, which is
   * the scheme's default when the request named none); undefined when no table claims it (the
   * caller may then subscribe on demand via serviceNameForHost, or pass the request through).
   * Allocation-free for exact domains.
   */
  lookup(host: string, port: number = this.schemeDefaultPort): RouteTable | undefined {
    const table = this.exact.get(host)?.get(port);
    if (table !== undefined || this.wildcards.size === 0) return table;
    for (let dot = host.indexOf("."); dot > 0; dot = host.indexOf(".", dot + 1)) {
      const wild = this.wildcards.get(host.slice(dot))?.get(port);
      if (wild !== undefined) return wild;
    }
    return undefined;
  }

  /** The table of a RouteConfig name (`<service>.<namespace>`). */
  get(name: string): RouteTable | undefined {
    return this.byName.get(name);
  }

  /** Number of tables. */
  get size(): number {
    return this.byName.size;
  }
}

/** Records `table` for host:port unless another holds it; returns the holder. */
function claim(map: Map<string, PortMap>, host: string, port: number, table: RouteTable): RouteTable {
  let ports = map.get(host);
  if (ports === undefined) {
    ports = new Map();
    map.set(host, ports);
  }
  const holder = ports.get(port);
  if (holder !== undefined) return holder;
  ports.set(port, table);
  return table;
}
