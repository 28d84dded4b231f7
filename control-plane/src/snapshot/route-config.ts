/**
 * RouteConfig for one destination service, as one caller's proxy routes to it: its domains, its
 * ports, and the merged HTTPRoute rules (consumer overrides, producer defaults, implicit catch-all)
 * compiled per port with their backends resolved to cluster names.
 */
import { clone, create } from "@bufbuild/protobuf";
import type { HTTPRoute, HTTPRouteRule } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import { HTTPRouteRuleSchema, MirrorSchema } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import type {
  CompiledRouteRule,
  RouteConfig,
  WeightedCluster,
} from "@trellis/proto/gen/trellis/v1/resources_pb";
import {
  CompiledRouteRuleSchema,
  RouteConfigSchema,
  WeightedClusterSchema,
} from "@trellis/proto/gen/trellis/v1/resources_pb";
import { Protocol, ServicePortSchema } from "@trellis/proto/gen/trellis/v1/service_pb";
import { clusterName, routeName } from "@trellis/proto/resource-types";
import type { BuildContext } from "./context.js";
import type { TypedPolicy } from "./policy-index.js";
import { sortedRefs, targetNamespace } from "./policy-index.js";
import type { ServiceView } from "./services.js";

/** The DNS suffix of a service's fully qualified name (`<svc>.<ns>.svc.cluster.local`). */
export const CLUSTER_DNS_SUFFIX = "svc.cluster.local";

/** A cluster a compiled rule sends to (or mirrors to). */
export interface ClusterTarget {
  /** `<service>.<namespace>:<port>`. */
  readonly name: string;
  readonly service: string;
  readonly namespace: string;
  readonly port: number;
}

export interface CompiledRoute {
  readonly route: RouteConfig;
  /** Every cluster its rules name (backends, catch-alls and mirrors), by cluster name. */
  readonly clusters: ReadonlyMap<string, ClusterTarget>;
}

/**
 * Compiles the RouteConfig of `view` (an existing service) for the build's proxy.
 *  1. Applicable routes: consumer routes first — HTTPRoutes in the proxy's namespace whose targetRef
 *     names this service with `namespace` set to the service's, when that is not the proxy's — then
 *     producer routes (the service's namespace, targeting it); oldest first within each level.
 *  2. For each service port (ascending), the rules of every applicable route in that order (a route
 *     whose targetRef has a `port` only on that port), then the implicit catch-all to the service
 *     itself on that port, so an unmatched request still reaches the service. TCP ports get only
 *     the catch-all: no HTTP policy applies to opaque TCP.
 *  3. Each rule's backends become clusters (resolveBackendPort); none → the service on this port.
 *  4. Domains: `<svc>.<ns>`, `<svc>.<ns>.svc.cluster.local`, and `<svc>` when the caller shares the
 *     namespace, each bare and with `:<port>` for every port, plus every applicable route's
 *     `hosts`; lower-cased, deduplicated, sorted.
 */
export function compileRouteConfig(ctx: BuildContext, view: ServiceView): CompiledRoute {
  const name = routeName(view.service, view.namespace);
  const routes = applicableRoutes(ctx, view);
  const clusters = new Map<string, ClusterTarget>();
  const rules: CompiledRouteRule[] = [];

  for (const sp of view.ports) {
    if (sp.protocol !== Protocol.TCP) {
      for (const route of routes) {
        const spec = route.message.spec;
        if (spec === undefined) continue;
        if (spec.targetRef?.port !== undefined && spec.targetRef.port !== sp.port) continue;
        spec.rules.forEach((rule, i) => {
          const where = `route ${name} port ${sp.port}: ${route.ref.kind} ${route.ref.namespace}/${route.ref.name} rules[${i}]`;
          rules.push(compileRule(ctx, view, sp.port, route, rule, where, clusters));
        });
      }
    }
    const self = addCluster(clusters, view.service, view.namespace, sp.port);
    rules.push(
      create(CompiledRouteRuleSchema, {
        rule: create(HTTPRouteRuleSchema),
        clusters: [create(WeightedClusterSchema, { cluster: self, weight: 1 })],
        port: sp.port,
      }),
    );
  }

  const refs = routes.map((r) => r.ref);
  if (view.policy !== undefined) refs.push(view.policy.ref);
  return {
    route: create(RouteConfigSchema, {
      name,
      service: view.service,
      namespace: view.namespace,
      domains: domains(ctx, view, routes),
      ports: view.ports.map((p) => clone(ServicePortSchema, p)),
      rules,
      policies: sortedRefs(refs),
    }),
    clusters,
  };
}

/** Step 1: consumer routes, then producer routes, each oldest first. */
function applicableRoutes(ctx: BuildContext, view: ServiceView): TypedPolicy<HTTPRoute>[] {
  const callerNs = ctx.proxy.namespace;
  const consumer =
    callerNs === view.namespace
      ? []
      : ctx.index.inNamespace("HTTPRoute", callerNs).filter((r) => {
          const ref = r.message.spec?.targetRef;
          return ref?.kind === "Service" && ref.name === view.service && ref.namespace === view.namespace;
        });
  const producer = ctx.index.inNamespace("HTTPRoute", view.namespace).filter((r) => {
    const ref = r.message.spec?.targetRef;
    return (
      ref !== undefined &&
      ref.name === view.service &&
      targetNamespace(view.namespace, ref) === view.namespace
    );
  });
  return [...consumer, ...producer];
}

/**
 * Step 3 for one rule. The rule is embedded as written, except that a `mirror` gets its resolved
 * `namespace` and `port` filled in: CompiledRouteRule has no field naming the mirror's cluster, and
 * the proxy cannot resolve a default port itself (it does not know the mirror service's ports).
 */
function compileRule(
  ctx: BuildContext,
  view: ServiceView,
  port: number,
  route: TypedPolicy<HTTPRoute>,
  rule: HTTPRouteRule,
  where: string,
  clusters: Map<string, ClusterTarget>,
): CompiledRouteRule {
  let weighted: WeightedCluster[];
  if (rule.backends.length === 0) {
    weighted = [
      create(WeightedClusterSchema, {
        cluster: addCluster(clusters, view.service, view.namespace, port),
        weight: 1,
      }),
    ];
  } else {
    weighted = rule.backends.map((b, j) => {
      const ns = b.namespace !== "" ? b.namespace : view.namespace;
      const resolved = resolveBackendPort(ctx, b.service, ns, b.port, port, `${where}.backends[${j}]`);
      // Unresolved: a name no cluster can have, so checkConsistency also flags the rule.
      const cluster =
        resolved === undefined ? routeName(b.service, ns) : addCluster(clusters, b.service, ns, resolved);
      return create(WeightedClusterSchema, { cluster, weight: b.weight ?? 1 });
    });
  }

  let embedded = rule;
  if (rule.mirror !== undefined) {
    const m = rule.mirror;
    const ns = m.namespace !== "" ? m.namespace : view.namespace;
    const resolved = resolveBackendPort(ctx, m.service, ns, m.port, port, `${where}.mirror`);
    if (resolved !== undefined) {
      addCluster(clusters, m.service, ns, resolved);
      embedded = clone(HTTPRouteRuleSchema, rule);
      embedded.mirror = Object.assign(clone(MirrorSchema, m), { namespace: ns, port: resolved });
    }
  }

  return create(CompiledRouteRuleSchema, { rule: embedded, clusters: weighted, origin: route.ref, port });
}

/**
 * The port of backend `<service>.<namespace>` for a rule on service port `rulePort`:
 *  1. the backend's explicit `port`;
 *  2. else the backend's port with the same number, when it has one;
 *  3. else its only port;
 *  4. else, when it has no known port at all (not registered yet, no Service policy), the same
 *     number — a backend that is still rolling out must not block every caller's config;
 *  5. else (several ports, none matching) it is ambiguous: a problem is recorded and undefined
 *     returned.
 */
function resolveBackendPort(
  ctx: BuildContext,
  service: string,
  namespace: string,
  explicit: number | undefined,
  rulePort: number,
  where: string,
): number | undefined {
  if (explicit !== undefined) return explicit;
  const ports = ctx.service(namespace, service).ports.map((p) => p.port);
  if (ports.length === 0 || ports.includes(rulePort)) return rulePort;
  if (ports.length === 1) return ports[0];
  ctx.problem(
    `${where}: backend ${routeName(service, namespace)} has ports ${ports.join(", ")} and none is ${rulePort}; ` +
      "set its port",
  );
  return undefined;
}

function addCluster(
  clusters: Map<string, ClusterTarget>,
  service: string,
  namespace: string,
  port: number,
): string {
  const name = clusterName(service, namespace, port);
  if (!clusters.has(name)) clusters.set(name, { name, service, namespace, port });
  return name;
}

/** Step 4. */
function domains(ctx: BuildContext, view: ServiceView, routes: readonly TypedPolicy<HTTPRoute>[]): string[] {
  const names = [
    routeName(view.service, view.namespace),
    `${routeName(view.service, view.namespace)}.${CLUSTER_DNS_SUFFIX}`,
  ];
  if (view.namespace === ctx.proxy.namespace) names.push(view.service);
  const out = new Set<string>();
  for (const n of names) {
    out.add(n.toLowerCase());
    for (const p of view.ports) out.add(`${n}:${p.port}`.toLowerCase());
  }
  for (const r of routes) for (const h of r.message.spec?.hosts ?? []) out.add(h.toLowerCase());
  return [...out].sort();
}
