/**
 * The snapshot builder: a pure function from the mesh model and one proxy (its registration and
 * the RouteConfig names it subscribed to) to everything that proxy should hold. No I/O, no clock:
 * the same inputs always give the same resources and versions, on any replica.
 *
 * This module is the entry point; each resource type is compiled in its own file.
 */
import type { GenMessage } from "@bufbuild/protobuf/codegenv2";
import type { PolicyRef } from "@trellis/proto/gen/trellis/v1/resources_pb";
import {
  ClusterLoadAssignmentSchema,
  ClusterSchema,
  ListenerSchema,
  RouteConfigSchema,
} from "@trellis/proto/gen/trellis/v1/resources_pb";
import { parseRouteName, TypeUrl, UPSERT_ORDER, WILDCARD } from "@trellis/proto/resource-types";
import type { MeshModel } from "../model/types.js";
import { compileCluster } from "./cluster.js";
import type { BuildContext } from "./context.js";
import { createBuildContext } from "./context.js";
import { compileLoadAssignment } from "./endpoints.js";
import { compileInboundListener } from "./inbound-listener.js";
import { compileOutboundListener } from "./outbound-listener.js";
import { compareRefs, refKey } from "./policy-index.js";
import type { ClusterTarget } from "./route-config.js";
import { compileRouteConfig } from "./route-config.js";
import type {
  BuildOptions,
  BuiltResource,
  PolicyConcern,
  ProxyContext,
  ProxySnapshot,
  ResourceId,
  ResourceMessage,
} from "./snapshot.js";
import { DEFAULT_BUILD_OPTIONS } from "./snapshot.js";
import { canonicalize, resourceVersion } from "./version.js";

export { checkConsistency } from "./consistency.js";
export { serviceExists } from "./services.js";
export type {
  BuildOptions,
  BuiltResource,
  PolicyConcern,
  ProxyContext,
  ProxySnapshot,
  ResourceId,
  ResourceMessage,
} from "./snapshot.js";
export { DEFAULT_BUILD_OPTIONS, getResource, typeUrlOf } from "./snapshot.js";
export { canonicalize, resourceVersion } from "./version.js";

/**
 * Kinds the proxy never has to interpret: the control plane resolves a `Service` policy into plain
 * ports and protocols, so a proxy cannot fail to "support" it.
 */
const ALWAYS_SUPPORTED_KINDS: ReadonlySet<string> = new Set(["Service"]);

/**
 * Builds `proxy`'s snapshot from `model`.
 *  1. Listener "inbound" (its own service's inbound policy) and "outbound" (caller-wide settings).
 *  2. For each subscribed RouteConfig name, in sorted order: "*" is ignored (routes are only ever
 *     subscribed by name); a malformed name, or a service with neither registrations nor a Service
 *     policy, goes to `notFound`; otherwise its RouteConfig is compiled.
 *  3. A Cluster and a ClusterLoadAssignment for every cluster those routes name.
 *  4. Every resource is canonicalized (sorted map keys) and versioned by content hash.
 *  5. `concerns`: each policy in any resource's `policies`, with the resources carrying it and
 *     whether the proxy's `supportedKinds` lists its kind.
 * Never throws on model content; problems that make the snapshot unsafe go to `problems` (and so
 * to checkConsistency).
 */
export function buildProxySnapshot(
  model: MeshModel,
  proxy: ProxyContext,
  routeSubscriptions: ReadonlySet<string>,
  opts: BuildOptions = DEFAULT_BUILD_OPTIONS,
): ProxySnapshot {
  const ctx = createBuildContext(model, proxy.workload, opts);
  const listeners = new Map<string, BuiltResource>();
  const routes = new Map<string, BuiltResource>();
  const clusters = new Map<string, BuiltResource>();
  const assignments = new Map<string, BuiltResource>();
  const notFound = new Set<string>();

  const inbound = compileInboundListener(ctx);
  put(ctx, listeners, ListenerSchema, TypeUrl.LISTENER, inbound.name, inbound, inbound.policies);
  const outbound = compileOutboundListener(ctx);
  put(ctx, listeners, ListenerSchema, TypeUrl.LISTENER, outbound.name, outbound, outbound.policies);

  const targets = new Map<string, ClusterTarget>();
  for (const name of [...routeSubscriptions].sort()) {
    if (name === WILDCARD) continue;
    const parsed = parseRouteName(name);
    const view = parsed === undefined ? undefined : ctx.service(parsed.namespace, parsed.service);
    if (view === undefined || !view.exists) {
      notFound.add(name);
      continue;
    }
    const compiled = compileRouteConfig(ctx, view);
    put(ctx, routes, RouteConfigSchema, TypeUrl.ROUTE, name, compiled.route, compiled.route.policies);
    for (const [clusterName, target] of compiled.clusters) targets.set(clusterName, target);
  }

  for (const name of [...targets.keys()].sort()) {
    const target = targets.get(name);
    if (target === undefined) continue;
    const cluster = compileCluster(ctx, target);
    put(ctx, clusters, ClusterSchema, TypeUrl.CLUSTER, name, cluster, cluster.policies);
    const cla = compileLoadAssignment(ctx, target);
    put(ctx, assignments, ClusterLoadAssignmentSchema, TypeUrl.ENDPOINTS, name, cla, []);
  }

  const resources = new Map<TypeUrl, ReadonlyMap<string, BuiltResource>>([
    [TypeUrl.LISTENER, listeners],
    [TypeUrl.ROUTE, routes],
    [TypeUrl.CLUSTER, clusters],
    [TypeUrl.ENDPOINTS, assignments],
  ]);
  return {
    resources,
    notFound,
    concerns: concernsOf(resources, proxy.workload.supportedKinds),
    problems: [...ctx.problems],
  };
}

/** Step 4 for one resource: canonical copy, content version, filed under its name. */
function put<M extends ResourceMessage>(
  ctx: BuildContext,
  into: Map<string, BuiltResource>,
  schema: GenMessage<M>,
  typeUrl: TypeUrl,
  name: string,
  message: M,
  policies: readonly PolicyRef[],
): void {
  if (into.has(name)) {
    ctx.problem(`${typeUrl} ${name}: built twice`);
    return;
  }
  const resource = canonicalize(schema, message);
  into.set(name, { name, version: resourceVersion(schema, resource), typeUrl, resource, policies });
}

/** Step 5. */
function concernsOf(
  resources: ReadonlyMap<TypeUrl, ReadonlyMap<string, BuiltResource>>,
  supportedKinds: readonly string[],
): PolicyConcern[] {
  const supported = new Set(supportedKinds);
  const byKey = new Map<string, { ref: PolicyRef; resources: ResourceId[] }>();
  for (const typeUrl of UPSERT_ORDER) {
    const byName = resources.get(typeUrl);
    if (byName === undefined) continue;
    for (const name of [...byName.keys()].sort()) {
      for (const ref of byName.get(name)?.policies ?? []) {
        const key = refKey(ref);
        let entry = byKey.get(key);
        if (entry === undefined) {
          entry = { ref, resources: [] };
          byKey.set(key, entry);
        }
        entry.resources.push({ typeUrl, name });
      }
    }
  }
  return [...byKey.values()]
    .sort((a, b) => compareRefs(a.ref, b.ref))
    .map((entry) => ({
      ref: entry.ref,
      supported: ALWAYS_SUPPORTED_KINDS.has(entry.ref.kind) || supported.has(entry.ref.kind),
      resources: entry.resources,
    }));
}
