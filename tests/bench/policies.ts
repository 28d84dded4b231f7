/**
 * The resilience policies of the "+ policies" variants: every policy that costs something per
 * request but does not change the outcome of a healthy request, on one service, so that its
 * variants do the same work as the plain sidecar variants plus the policies' bookkeeping.
 *
 * What each policy puts on the request path, and why it is configured the way it is:
 *
 *  - HTTPRoute `timeout` (5s) and `retry` (2 attempts, `perTryTimeout` 2s, retryOn connect-failure,
 *    refused-stream, reset, 5xx; backoff 25–250 ms): two timers armed and cleared per request
 *    (route deadline, per-try deadline) and the retry decision on each response. The app answers
 *    200 in well under a millisecond, so nothing is ever retried and no timer fires.
 *  - `fault`: a 1 ms delay for 0.0001 % of requests. The schema's smallest delay is 1 ms and
 *    `percentage: 0` would skip the random draw altogether (random.ts `chance`), so a tiny
 *    non-zero share makes every request pay the draw while a fault is expected about once per
 *    million requests (a run sends about 10⁵ through this route) and, if it happens, delays one
 *    request by 1 ms without changing its answer. No `abort`: that would change the outcome.
 *  - `mirror`: copies 0.0001 % of requests, to the same service (it exists, so the control plane
 *    sends the mirror's cluster). Same reasoning: every request pays the draw, about none is
 *    copied. A 100 % mirror would double the upstream work, which is not "the same work".
 *  - `fallback`: only used when no endpoint can serve; on the healthy path it is a field read.
 *  - TrafficPolicy `connectionLimits` far above the benchmark's 32 connections (never trip),
 *    explicit `outlierDetection` (consecutive5xx and gateway errors counted per response; nothing
 *    is ejected: every answer is a 200) and an explicit `retryBudget` (counted per request).
 *    Limits, budget and outlier detection run on every request with their defaults too: the plain
 *    sidecar variants pay for them already; here they run with configured values.
 *  - RateLimitPolicy `local` far above any rate this machine reaches (1,000,000/s, burst 100,000):
 *    one token-bucket take per request at the service's inbound side, never a 429.
 *
 * Not included: header edits (routing, not resilience, and they change the request), TrafficPolicy
 * `timeouts` (per connection, not per request; an idle timeout would close pooled sessions between
 * runs), `healthCheck` (active probes, not per request; not enforced by this sidecar version).
 *
 * Where they act: route and traffic policies at the caller's outbound side, the rate limit at the
 * target's inbound side. So the one-hop "+ policies" variant (client → inbound → app) measures
 * only the rate limit; the two-hop one (client → web outbound ⇒ inbound → app) measures all.
 */
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { runTrellis } from "../helpers/cli.js";
import type { ControlPlaneProcess } from "../helpers/control-plane.js";
import { waitFor } from "../helpers/wait.js";

/** The policy documents for `service` in `namespace` (policy names are `<service>-bench-…`). */
export function benchPolicies(service: string, namespace: string): string {
  const meta = (kind: string) => `metadata: { name: ${service}-bench-${kind}, namespace: ${namespace} }`;
  const target = `targetRef: { kind: Service, name: ${service} }`;
  return `apiVersion: trellis.dev/v1
kind: HTTPRoute
${meta("route")}
spec:
  ${target}
  rules:
    - timeout: 5s
      retry:
        attempts: 2
        perTryTimeout: 2s
        retryOn: [connect-failure, refused-stream, reset, 5xx]
        backoff: { base: 25ms, max: 250ms }
      fault: { delay: 1ms, percentage: 0.0001 }
      mirror: { service: ${service}, percentage: 0.0001 }
      fallback: { status: 503, headers: { content-type: text/plain }, body: "fallback: no endpoint\\n" }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
${meta("traffic")}
spec:
  ${target}
  connectionLimits: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 10000, maxRetries: 100 }
  outlierDetection:
    consecutive5xx: 5
    consecutiveGatewayErrors: 5
    interval: 10s
    baseEjectionTime: 30s
    maxEjectionPercent: 50
    minHealthPercent: 50
  retryBudget: { percent: 20, minRetriesPerSecond: 10, window: 10s }
---
apiVersion: trellis.dev/v1
kind: RateLimitPolicy
${meta("ratelimit")}
spec:
  ${target}
  local: { requestsPerSecond: 1000000, burst: 100000 }
`;
}

/** The kinds and names `benchPolicies(service, …)` creates, as `trellis get` takes them. */
function policyRefs(service: string): [kind: string, name: string][] {
  return [
    ["httproute", `${service}-bench-route`],
    ["trafficpolicy", `${service}-bench-traffic`],
    ["ratelimitpolicy", `${service}-bench-ratelimit`],
  ];
}

/** `trellis apply` of `benchPolicies(service, namespace)`; throws with the CLI's message on failure. */
export async function applyBenchPolicies(
  cp: Pick<ControlPlaneProcess, "env">,
  service: string,
  namespace: string,
): Promise<void> {
  const r = await runTrellis(["apply", "-f", "-"], cp.env, benchPolicies(service, namespace));
  if (r.code !== 0)
    throw new TrellisError(
      ErrorCode.CONFIG,
      `trellis apply of the bench policies failed: ${r.stderr}${r.stdout}`,
    );
}

interface Rollout {
  applied?: number;
  rejected?: number;
  reasons?: { reason?: string }[];
}

/**
 * Waits until every bench policy of `service` is applied by at least one proxy and rejected by
 * none (the caller's sidecar takes the route and traffic policy once it has sent to the service,
 * the service's own sidecar the rate limit), so a variant can never be measured without its
 * policies. Throws with the rejection reasons, or after 20 s.
 */
export async function waitBenchPoliciesApplied(
  cp: Pick<ControlPlaneProcess, "env">,
  service: string,
  namespace: string,
): Promise<void> {
  for (const [kind, name] of policyRefs(service)) {
    let rejected: string | undefined;
    await waitFor(
      async () => {
        const r = await runTrellis(["get", kind, name, "-n", namespace, "-o", "json"], cp.env);
        if (r.code !== 0) return undefined;
        const doc = JSON.parse(r.stdout) as { status?: { proxies?: Rollout } };
        const p = doc.status?.proxies ?? {};
        if ((p.rejected ?? 0) > 0)
          rejected = `rejected: ${(p.reasons ?? []).map((x) => x.reason).join("; ")}`;
        return (p.applied ?? 0) > 0 && rejected === undefined ? true : undefined;
      },
      {
        what: `${kind} ${namespace}/${name} applied`,
        timeoutMs: 20_000,
        intervalMs: 200,
        failIf: () => rejected,
      },
    );
  }
}
