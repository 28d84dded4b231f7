/**
 * The consistency check a snapshot must pass before it is served (after go-control-plane's
 * `Snapshot.Consistent()`): a proxy must never hold a route to a cluster it lacks, or a cluster
 * without endpoints to balance over.
 */
import type { RouteConfig } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { clusterName, RESOURCE_SCHEMAS, TypeUrl } from "@trellis/proto/resource-types";
import type { ProxySnapshot, ResourceMessage } from "./snapshot.js";
import { resourceVersion } from "./version.js";

/**
 * Every reason `snapshot` is not safe to serve; empty when it is consistent.
 *  1. The problems the builder recorded (ambiguous backend ports, duplicate names).
 *  2. Each resource is filed under its own type and name, and its version is its content hash.
 *  3. Every cluster a route names — rule backends and mirrors — exists.
 *  4. Every cluster has a ClusterLoadAssignment of the same name, and every assignment a cluster.
 *  5. No RouteConfig is both served and reported not found.
 */
export function checkConsistency(snapshot: ProxySnapshot): string[] {
  const problems = [...snapshot.problems];

  for (const [typeUrl, byName] of snapshot.resources) {
    const schema = RESOURCE_SCHEMAS.get(typeUrl);
    for (const [name, built] of byName) {
      if (built.typeUrl !== typeUrl)
        problems.push(`${name}: filed under ${typeUrl} but has type ${built.typeUrl}`);
      if (built.name !== name) problems.push(`${typeUrl} ${name}: built resource is named ${built.name}`);
      const own = ownName(built.resource);
      if (own !== name) problems.push(`${typeUrl} ${name}: message is named ${own}`);
      if (schema === undefined || schema.typeName !== built.resource.$typeName) {
        problems.push(`${typeUrl} ${name}: message is a ${built.resource.$typeName}`);
      } else if (built.version !== resourceVersion(schema, built.resource)) {
        problems.push(`${typeUrl} ${name}: version ${built.version} is not the content hash`);
      }
    }
  }

  const clusters = snapshot.resources.get(TypeUrl.CLUSTER) ?? new Map();
  const assignments = snapshot.resources.get(TypeUrl.ENDPOINTS) ?? new Map();
  for (const [name, built] of snapshot.resources.get(TypeUrl.ROUTE) ?? []) {
    if (snapshot.notFound.has(name)) problems.push(`route ${name} is both served and reported not found`);
    if (built.resource.$typeName !== "trellis.v1.RouteConfig") continue;
    for (const missing of namedClusters(built.resource)) {
      if (!clusters.has(missing.cluster)) {
        problems.push(
          `route ${name} rules[${missing.rule}] names cluster ${missing.cluster}, which does not exist`,
        );
      }
    }
  }
  for (const name of clusters.keys()) {
    if (!assignments.has(name)) problems.push(`cluster ${name} has no ClusterLoadAssignment`);
  }
  for (const name of assignments.keys()) {
    if (!clusters.has(name)) problems.push(`ClusterLoadAssignment ${name} has no cluster`);
  }
  return problems;
}

/** Every cluster name a route's rules use, with the rule's index. */
function namedClusters(route: RouteConfig): { rule: number; cluster: string }[] {
  const out: { rule: number; cluster: string }[] = [];
  route.rules.forEach((r, i) => {
    for (const wc of r.clusters) out.push({ rule: i, cluster: wc.cluster });
    const m = r.rule?.mirror;
    if (m !== undefined) {
      const ns = m.namespace !== "" ? m.namespace : route.namespace;
      // The builder fills in the mirror's port; without one the mirror has no cluster.
      out.push({
        rule: i,
        cluster: m.port !== undefined ? clusterName(m.service, ns, m.port) : `${m.service}.${ns}`,
      });
    }
  });
  return out;
}

/** The name a resource message gives itself. */
function ownName(resource: ResourceMessage): string {
  switch (resource.$typeName) {
    case "trellis.v1.ClusterLoadAssignment":
      return resource.cluster;
    default:
      return resource.name;
  }
}
