/**
 * The TrafficPolicy a caller's proxy uses for one destination cluster: the applicable policies
 * merged from least to most specific.
 *
 * Merge rule (deliberately coarse): each top-level section — loadBalancer, connectionLimits,
 * outlierDetection, healthCheck, timeouts, retryBudget — is taken whole from the most specific
 * policy that sets it; sections are never merged field by field. A consumer that sets
 * `connectionLimits: {maxRequests: 10}` therefore gets the pinned defaults for the other limits,
 * not the producer's values: what a policy says about a section is the whole of that section, so
 * reading one policy tells you what applies. `targetRef` is cleared and `outboundTrafficPolicy`
 * (a listener setting) is never copied.
 */
import { create } from "@bufbuild/protobuf";
import type { PolicyRef } from "@trellis/proto/gen/trellis/v1/resources_pb";
import type { TrafficPolicy, TrafficPolicySpec } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { TrafficPolicySpecSchema } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { MESH_NAMESPACE } from "@trellis/proto/kinds";
import type { BuildContext } from "./context.js";
import type { TypedPolicy } from "./policy-index.js";
import { sortedRefs, targetNamespace } from "./policy-index.js";

/** The sections that merge by whole replacement. */
export const TRAFFIC_POLICY_SECTIONS = [
  "loadBalancer",
  "connectionLimits",
  "outlierDetection",
  "healthCheck",
  "timeouts",
  "retryBudget",
] as const satisfies readonly (keyof TrafficPolicySpec)[];

type Section = (typeof TRAFFIC_POLICY_SECTIONS)[number];

export interface MergedTrafficPolicy {
  /** The merged spec (targetRef and outboundTrafficPolicy unset); unset sections take defaults. */
  readonly spec: TrafficPolicySpec;
  /** The policies that supplied at least one section, sorted. */
  readonly used: readonly PolicyRef[];
}

/**
 * Merges the TrafficPolicies that apply to calls from the build's proxy to `<service>.<namespace>`
 * on `port`.
 *  1. Layers, least specific first: the mesh default (`trellis-system`, no targetRef); the caller's
 *     namespace default (proxy's namespace, no targetRef); the producer's (service's namespace,
 *     targetRef the service); the consumer's (proxy's namespace, targetRef the service in its other
 *     namespace). A policy whose targetRef has a `port` applies to that port only.
 *  2. Within a layer several policies resolve oldest first, like routes: the oldest that sets a
 *     section wins it (they are applied newest to oldest).
 *  3. Each later layer replaces the sections it sets.
 */
export function mergeTrafficPolicy(
  ctx: BuildContext,
  service: string,
  namespace: string,
  port: number,
): MergedTrafficPolicy {
  const callerNs = ctx.proxy.namespace;
  const untargeted = (ns: string) =>
    ctx.index.inNamespace("TrafficPolicy", ns).filter((p) => p.message.spec?.targetRef === undefined);
  const targeting = (ns: string, explicitOnly: boolean) =>
    ctx.index.inNamespace("TrafficPolicy", ns).filter((p) => {
      const ref = p.message.spec?.targetRef;
      if (ref === undefined || ref.name !== service) return false;
      if (ref.port !== undefined && ref.port !== port) return false;
      return explicitOnly
        ? ref.kind === "Service" && ref.namespace === namespace
        : targetNamespace(ns, ref) === namespace;
    });

  const layers: (readonly TypedPolicy<TrafficPolicy>[])[] = [];
  if (callerNs !== MESH_NAMESPACE) layers.push(untargeted(MESH_NAMESPACE));
  layers.push(untargeted(callerNs));
  layers.push(targeting(namespace, false));
  if (callerNs !== namespace) layers.push(targeting(callerNs, true));

  const spec = create(TrafficPolicySpecSchema);
  const winners = new Map<Section, PolicyRef>();
  for (const layer of layers) {
    for (let i = layer.length - 1; i >= 0; i--) {
      const p = layer[i];
      const src = p?.message.spec;
      if (p === undefined || src === undefined) continue;
      for (const section of TRAFFIC_POLICY_SECTIONS) {
        if (copySection(spec, src, section)) winners.set(section, p.ref);
      }
    }
  }
  return { spec, used: sortedRefs(winners.values()) };
}

/** Replaces `dst[section]` with a copy of `src[section]` when the latter is set. */
function copySection<K extends Section>(dst: TrafficPolicySpec, src: TrafficPolicySpec, section: K): boolean {
  const value = src[section];
  if (value === undefined) return false;
  // Shared with the model for now; the builder canonicalizes (clones) every resource it stores.
  dst[section] = value;
  return true;
}
