/**
 * The Cluster of one destination service port, as one caller's proxy talks to it: protocol, merged
 * traffic policy, and the identities its endpoints must prove.
 */
import { create } from "@bufbuild/protobuf";
import type { Cluster } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { ClusterSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import type { BuildContext } from "./context.js";
import { sortedRefs } from "./policy-index.js";
import type { ClusterTarget } from "./route-config.js";
import { workloadIdentity } from "./services.js";
import { mergeTrafficPolicy } from "./traffic-policy.js";

/**
 * Compiles the Cluster `target`.
 *  1. protocol: the service's protocol for that port (Service policy, else registrations).
 *  2. policy: mergeTrafficPolicy (mesh < caller namespace < producer < consumer, whole sections).
 *  3. expected_identities: the sorted, unique identities of all the service's registrations
 *     (registrations without one are skipped).
 *  4. policies: the TrafficPolicies that supplied a section, and the Service policy when it set
 *     the protocol.
 */
export function compileCluster(ctx: BuildContext, target: ClusterTarget): Cluster {
  const view = ctx.service(target.namespace, target.service);
  const merged = mergeTrafficPolicy(ctx, target.service, target.namespace, target.port);
  const identities = new Set<string>();
  for (const w of view.registrations) {
    const id = workloadIdentity(w, ctx.options.trustDomain);
    if (id !== "") identities.add(id);
  }
  const refs = [...merged.used];
  if (view.policy !== undefined && view.protocolFromPolicy(target.port)) refs.push(view.policy.ref);
  return create(ClusterSchema, {
    name: target.name,
    service: target.service,
    namespace: target.namespace,
    port: target.port,
    protocol: view.protocolOf(target.port),
    policy: merged.spec,
    expectedIdentities: [...identities].sort(),
    policies: sortedRefs(refs),
  });
}
