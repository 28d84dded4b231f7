/**
 * `trellis analyze`: lint over the stored policy. A pure function of the MeshModel, so the admin
 * API, tests and any future webhook get the same findings for the same model.
 *
 * Codes (stable; scripts match on them):
 *   - `unknown-service`  a policy's targetRef, or an HTTPRoute backend or mirror, names a service
 *                        that does not exist (no live registration and no Service policy).
 *                        ERROR for a backend (requests sent there fail); WARNING for a targetRef
 *                        (the policy is dormant until the service appears) and for a mirror (copies
 *                        are lost, the primary is unaffected).
 *   - `shadowed-rule`    an HTTPRoute rule that can never match, because earlier rules (of the same
 *                        route, or of an older route merged before it for the same target) match
 *                        every request it matches. WARNING.
 *   - `unused-policy`    a namespace-wide policy (no targetRef, outside the mesh namespace) in a
 *                        namespace where no service exists. WARNING.
 *
 * The shadowing check is conservative: it reports only what it can prove from the matchers'
 * syntax (see `covers`), never a rule that some request could still reach.
 */
import { create, equals } from "@bufbuild/protobuf";
import type { Finding } from "@trellis/proto/gen/trellis/v1/admin_pb";
import { FindingSchema, Severity } from "@trellis/proto/gen/trellis/v1/admin_pb";
import type { TargetRef } from "@trellis/proto/gen/trellis/v1/common_pb";
import type {
  HTTPRoute,
  HTTPRouteMatch,
  HTTPRouteRule,
  PathMatch,
} from "@trellis/proto/gen/trellis/v1/http_route_pb";
import {
  HeaderMatchSchema,
  HTTPRouteMatchSchema,
  QueryMatchSchema,
} from "@trellis/proto/gen/trellis/v1/http_route_pb";
import { PolicyRefSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { KINDS, MESH_NAMESPACE } from "@trellis/proto/kinds";
import type { MeshModel, StoredPolicy } from "../model/types.js";
import { serviceExists } from "../snapshot/services.js";

/** Options of `analyze`. */
export interface AnalyzeOptions {
  /** Only findings about policies in this namespace; empty or absent: every namespace. */
  namespace?: string;
}

export const FindingCode = {
  UNKNOWN_SERVICE: "unknown-service",
  SHADOWED_RULE: "shadowed-rule",
  UNUSED_POLICY: "unused-policy",
} as const;

/**
 * Every finding over `model`, ordered by policy (kinds in KINDS order, then namespace, then name),
 * then by field path within a policy.
 */
export function analyze(model: MeshModel, opts: AnalyzeOptions = {}): Finding[] {
  const only = opts.namespace ?? "";
  const out: Finding[] = [];
  const routes: StoredPolicy[] = [];
  for (const kind of KINDS) {
    const policies = [...(model.policies.get(kind.kind)?.values() ?? [])].sort(byNamespaceName);
    for (const p of policies) {
      if (kind.kind === "HTTPRoute") routes.push(p);
      if (only !== "" && p.namespace !== only) continue;
      checkTargetRef(model, p, out);
      if (kind.kind === "HTTPRoute") checkRouteServices(model, p, out);
    }
  }
  // Shadowing is about the merged rule list of each target, so it looks at all routes of a group
  // (also those outside `only`: they are in the same namespace anyway, groups never span two).
  const shadowed = shadowedRules(routes).filter((f) => only === "" || f.policy?.namespace === only);
  return [...out, ...shadowed].sort(compareFindings);
}

// ---------------------------------------------------------------------------------------------
// unknown-service, unused-policy

function targetRefOf(p: StoredPolicy): TargetRef | undefined {
  return (p.message.spec as { targetRef?: TargetRef } | undefined)?.targetRef;
}

function checkTargetRef(model: MeshModel, p: StoredPolicy, out: Finding[]): void {
  if (p.info.kind === "Service") return;
  const ref = targetRefOf(p);
  if (ref === undefined) {
    if (p.namespace !== MESH_NAMESPACE && !namespaceHasServices(model, p.namespace)) {
      out.push(
        finding(
          p,
          Severity.WARNING,
          FindingCode.UNUSED_POLICY,
          "",
          `applies to namespace ${p.namespace}, which has no services (no registrations and no Service policy)`,
        ),
      );
    }
    return;
  }
  const ns = ref.namespace || p.namespace;
  if (!serviceExists(model, ns, ref.name)) {
    out.push(
      finding(
        p,
        Severity.WARNING,
        FindingCode.UNKNOWN_SERVICE,
        "spec.targetRef",
        `targets service ${ref.name}.${ns}, which does not exist (no registrations and no Service policy); ` +
          "the policy has no effect until it does",
      ),
    );
  }
}

function checkRouteServices(model: MeshModel, p: StoredPolicy, out: Finding[]): void {
  const spec = (p.message as HTTPRoute).spec;
  if (spec === undefined) return;
  const defaultNs = spec.targetRef?.namespace || p.namespace;
  spec.rules.forEach((rule, i) => {
    rule.backends.forEach((b, j) => {
      const ns = b.namespace || defaultNs;
      if (!serviceExists(model, ns, b.service)) {
        out.push(
          finding(
            p,
            Severity.ERROR,
            FindingCode.UNKNOWN_SERVICE,
            `spec.rules[${i}].backends[${j}]`,
            `backend service ${b.service}.${ns} does not exist (no registrations and no Service policy); ` +
              "requests routed to it fail",
          ),
        );
      }
    });
    const m = rule.mirror;
    if (m !== undefined) {
      const ns = m.namespace || defaultNs;
      if (!serviceExists(model, ns, m.service)) {
        out.push(
          finding(
            p,
            Severity.WARNING,
            FindingCode.UNKNOWN_SERVICE,
            `spec.rules[${i}].mirror`,
            `mirror service ${m.service}.${ns} does not exist (no registrations and no Service policy); ` +
              "mirrored copies are dropped",
          ),
        );
      }
    }
  });
}

function namespaceHasServices(model: MeshModel, namespace: string): boolean {
  const prefix = `${namespace}/`;
  for (const [key, workloads] of model.workloads)
    if (key.startsWith(prefix) && workloads.size > 0) return true;
  for (const key of model.policies.get("Service")?.keys() ?? []) if (key.startsWith(prefix)) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// shadowed-rule

interface PlacedRule {
  route: StoredPolicy;
  index: number;
  rule: HTTPRouteRule;
}

/**
 * Routes merge per (route namespace, target service, extra hosts), oldest first (createRevision),
 * and the first matching rule wins. For each rule of the merged list:
 *   1. treat "no matches" as one match with no conditions (it matches everything);
 *   2. the rule is shadowed when each of its matches is covered by some match of an earlier rule;
 *   3. report it on its own route, naming the earlier rules that cover it.
 */
function shadowedRules(routes: readonly StoredPolicy[]): Finding[] {
  const groups = new Map<string, StoredPolicy[]>();
  for (const r of routes) {
    const spec = (r.message as HTTPRoute).spec;
    const target = spec?.targetRef;
    if (spec === undefined || target === undefined) continue;
    const hosts = [...spec.hosts].sort().join(",");
    const key = `${r.namespace}\n${target.namespace || r.namespace}\n${target.name}\n${hosts}`;
    let g = groups.get(key);
    if (g === undefined) {
      g = [];
      groups.set(key, g);
    }
    g.push(r);
  }
  const out: Finding[] = [];
  for (const group of groups.values()) {
    group.sort((a, b) => a.createRevision - b.createRevision || byNamespaceName(a, b));
    const placed: PlacedRule[] = [];
    for (const route of group) {
      (route.message as HTTPRoute).spec?.rules.forEach((rule, index) => {
        placed.push({ route, index, rule });
      });
    }
    placed.forEach((later, k) => {
      const earlier = placed.slice(0, k);
      const shadowers = new Set<PlacedRule>();
      for (const m of matchesOf(later.rule)) {
        const by = earlier.find((e) => matchesOf(e.rule).some((em) => covers(em, m)));
        if (by === undefined) return;
        shadowers.add(by);
      }
      const names = [...shadowers].map((s) => describeRule(s, later.route)).join(" and ");
      out.push(
        finding(
          later.route,
          Severity.WARNING,
          FindingCode.SHADOWED_RULE,
          `spec.rules[${later.index}]`,
          `${describeRule(later, later.route)} can never match: ${names} ${shadowers.size === 1 ? "matches" : "match"} ` +
            "every request it matches, and the first matching rule wins",
        ),
      );
    });
  }
  return out;
}

/** A match with no conditions: what a rule without matches means. */
const MATCH_ALL: readonly HTTPRouteMatch[] = [create(HTTPRouteMatchSchema)];

function matchesOf(rule: HTTPRouteRule): readonly HTTPRouteMatch[] {
  return rule.matches.length === 0 ? MATCH_ALL : rule.matches;
}

function describeRule(r: PlacedRule, from: StoredPolicy): string {
  const name = r.rule.name ? ` (${r.rule.name})` : "";
  const own = r.route === from ? "" : `HTTPRoute ${r.route.namespace}/${r.route.name} `;
  return `${own}rules[${r.index}]${name}`;
}

/**
 * True when every request that `b` matches is also matched by `a`: `a`'s method is absent or the
 * same; `a`'s path is absent, or covers `b`'s path (see `pathCovers`); `a`'s header and query
 * matchers are each present, identical, in `b`.
 */
export function covers(a: HTTPRouteMatch, b: HTTPRouteMatch): boolean {
  if (a.method !== "" && a.method !== b.method) return false;
  if (!pathCovers(a.path, b.path)) return false;
  if (!a.headers.every((h) => b.headers.some((x) => equals(HeaderMatchSchema, h, x)))) return false;
  return a.query.every((q) => b.query.some((x) => equals(QueryMatchSchema, q, x)));
}

/**
 * Path coverage: absent covers everything; prefix `/` covers everything (every normalised path
 * starts with it); a segment-aware prefix p covers an exact path or prefix q when q is p or lies
 * below it (`/api` covers `/api` and `/api/v1`, not `/apiv1`); exact covers only the same exact;
 * a regex covers only the identical regex (regex containment is not decided).
 */
function pathCovers(a: PathMatch | undefined, b: PathMatch | undefined): boolean {
  const ak = a?.kind;
  if (ak === undefined || ak.case === undefined) return true;
  if (ak.case === "prefix" && ak.value === "/") return true;
  const bk = b?.kind;
  if (bk === undefined || bk.case === undefined) return false;
  switch (ak.case) {
    case "exact":
      return bk.case === "exact" && bk.value === ak.value;
    case "regex":
      return bk.case === "regex" && bk.value === ak.value;
    case "prefix":
      return (bk.case === "exact" || bk.case === "prefix") && underPrefix(ak.value, bk.value);
  }
}

function underPrefix(prefix: string, path: string): boolean {
  if (prefix.endsWith("/")) return path.startsWith(prefix);
  return path === prefix || path.startsWith(`${prefix}/`);
}

// ---------------------------------------------------------------------------------------------
// helpers

function finding(p: StoredPolicy, severity: Severity, code: string, path: string, message: string): Finding {
  return create(FindingSchema, {
    severity,
    code,
    message,
    path,
    policy: create(PolicyRefSchema, {
      kind: p.info.kind,
      namespace: p.namespace,
      name: p.name,
      generation: p.message.metadata?.generation ?? 0n,
    }),
  });
}

function byNamespaceName(a: StoredPolicy, b: StoredPolicy): number {
  return cmp(a.namespace, b.namespace) || cmp(a.name, b.name);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `spec.rules[10]` after `spec.rules[9]`: indexes compare as numbers. */
function comparePaths(a: string, b: string): number {
  const pa = a.split(/(\d+)/);
  const pb = b.split(/(\d+)/);
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i] as string;
    const y = pb[i] as string;
    if (x === y) continue;
    return i % 2 === 1 ? Number(x) - Number(y) : cmp(x, y);
  }
  return pa.length - pb.length;
}

const KIND_ORDER = new Map(KINDS.map((k, i) => [k.kind, i]));

function compareFindings(a: Finding, b: Finding): number {
  const pa = a.policy;
  const pb = b.policy;
  return (
    (KIND_ORDER.get(pa?.kind ?? "") ?? 0) - (KIND_ORDER.get(pb?.kind ?? "") ?? 0) ||
    cmp(pa?.namespace ?? "", pb?.namespace ?? "") ||
    cmp(pa?.name ?? "", pb?.name ?? "") ||
    comparePaths(a.path, b.path)
  );
}
