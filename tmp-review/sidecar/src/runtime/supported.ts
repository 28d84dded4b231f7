/**
 * What this sidecar version enforces. A policy kind missing here is reported `unsupported` by the
 * control plane (it never reaches us as enforced). A field of a supported kind that this version
 * cannot enforce makes the resource carrying it NACKed with an `unsupported: …` reason, so the
 * policy shows as rejected, never as silently applied.
 */
import type { Cluster, CompiledRouteRule, Listener } from "@trellis/proto/gen/trellis/v1/resources_pb";

/** Policy kinds declared at registration. */
export const SUPPORTED_KINDS: readonly string[] = [
  "Service",
  "HTTPRoute",
  "TrafficPolicy",
  "RateLimitPolicy",
];

/**
 * Problems of route rules that use fields this version does not enforce. Every HTTPRouteRule field
 * is enforced now (timeout, retry, fault, mirror, fallback since the resilience layer); the check
 * stays as the seam for fields a newer control plane may send.
 */
export function unsupportedRuleFields(_rules: readonly CompiledRouteRule[]): string[] {
  return [];
}

/** Problems of a cluster's traffic policy that this version does not enforce yet. */
export function unsupportedClusterFields(c: Cluster): string[] {
  const p = c.policy;
  if (p === undefined) return [];
  const out: string[] = [];
  // Active health checks come with their own issue; until then a policy asking for them is
  // rejected rather than silently ignored.
  if (p.healthCheck !== undefined) out.push("healthCheck");
  return out.map((f) => `unsupported: policy.${f} is not enforced by this sidecar version`);
}

/**
 * Problems of a listener that this version does not enforce yet: a port's rate limit with `global`
 * (shared counters in Redis come with a later version). The whole listener is NACKed — the last
 * good one stays in force — so every policy it carries shows the reason; the message names the
 * policy at fault.
 */
export function unsupportedListenerFields(l: Listener): string[] {
  if (l.kind.case !== "inbound") return [];
  const out: string[] = [];
  l.kind.value.ports.forEach((p, i) => {
    if (p.rateLimit?.spec?.global === undefined) return;
    const ref = p.rateLimit.policy;
    const policy = ref !== undefined ? ` (RateLimitPolicy ${ref.namespace}/${ref.name})` : "";
    out.push(
      `unsupported: inbound.ports[${i}].rateLimit.spec.global${policy} is not enforced by this sidecar version`,
    );
  });
  return out;
}
