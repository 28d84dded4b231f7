/**
 * What this sidecar version enforces. A policy kind missing here is reported `unsupported` by the
 * control plane (it never reaches us as enforced). A field of a supported kind that this version
 * cannot enforce makes the resource carrying it NACKed with an `unsupported: …` reason, so the
 * policy shows as rejected, never as silently applied.
 */
import type { Cluster, CompiledRouteRule } from "@trellis/proto/gen/trellis/v1/resources_pb";

/** Policy kinds declared at registration. */
export const SUPPORTED_KINDS: readonly string[] = ["Service", "HTTPRoute", "TrafficPolicy"];

/** Problems of route rules that use fields this version does not enforce yet. */
export function unsupportedRuleFields(rules: readonly CompiledRouteRule[]): string[] {
  const out: string[] = [];
  rules.forEach((r, i) => {
    const rule = r.rule;
    if (rule === undefined) return;
    for (const [field, set] of [
      ["retry", rule.retry !== undefined],
      ["fault", rule.fault !== undefined],
      ["mirror", rule.mirror !== undefined],
      ["fallback", rule.fallback !== undefined],
    ] as const) {
      if (set) out.push(`unsupported: rules[${i}].rule.${field} is not enforced by this sidecar version`);
    }
  });
  return out;
}

/** Problems of a cluster's traffic policy that this version does not enforce yet. */
export function unsupportedClusterFields(c: Cluster): string[] {
  const p = c.policy;
  if (p === undefined) return [];
  const out: string[] = [];
  if (p.connectionLimits !== undefined) out.push("connectionLimits");
  if (p.outlierDetection !== undefined) out.push("outlierDetection");
  if (p.healthCheck !== undefined) out.push("healthCheck");
  if (p.retryBudget !== undefined) out.push("retryBudget");
  if (p.timeouts?.idle !== undefined) out.push("timeouts.idle");
  return out.map((f) => `unsupported: policy.${f} is not enforced by this sidecar version`);
}
