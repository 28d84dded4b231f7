/** Policy kinds declared at registration. */
export const SUPPORTED_KINDS = [
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
export function unsupportedRuleFields(_rules) {
    return [];
}
/** Problems of a cluster's traffic policy that this version does not enforce yet. */
export function unsupportedClusterFields(c) {
    const p = c.policy;
    if (p === undefined)
        return [];
    const out = [];
    // Active health checks come with their own issue; until then a policy asking for them is
    // rejected rather than silently ignored.
    if (p.healthCheck !== undefined)
        out.push("healthCheck");
    return out.map((f) => `unsupported: policy.${f} is not enforced by this sidecar version`);
}
/**
 * Problems of a listener that this version does not enforce yet: a port's rate limit with `global`
 * (shared counters in Redis come with a later version). The whole listener is NACKed — the last
 * good one stays in force — so every policy it carries shows the reason; the message names the
 * policy at fault.
 */
export function unsupportedListenerFields(l) {
    if (l.kind.case !== "inbound")
        return [];
    const out = [];
    l.kind.value.ports.forEach((p, i) => {
        if (p.rateLimit?.spec?.global === undefined)
            return;
        const ref = p.rateLimit.policy;
        const policy = ref !== undefined ? ` (RateLimitPolicy ${ref.namespace}/${ref.name})` : "";
        out.push(`unsupported: inbound.ports[${i}].rateLimit.spec.global${policy} is not enforced by this sidecar version`);
    });
    return out;
}
