/**
 * The demo mesh's policy: what `trellis dev` applies when it starts (through the admin API, like
 * `trellis apply`), and writes to `<work dir>/policy.yaml` for the user to read. It is what makes
 * the scenarios (scenarios.ts) end the way they do:
 *
 *  - HTTPRoute `orders`: up to 2 retries on a gateway error (502/503/504, connect failure, reset),
 *    each on a replica not tried yet — a failing orders replica costs its callers a retry, not an
 *    error.
 *  - TrafficPolicy `defaults` (namespace-wide): the default outlier detection (5 consecutive gateway
 *    errors eject an endpoint; at most 50% of a service's endpoints at once), with a 3 s first
 *    ejection instead of 30 s, so an ejection ends (and a second, twice as long, follows) within a
 *    demo; and round robin instead of the default latency-aware least-request balancer. That one
 *    counts a failure as a slow answer and soon stops picking a failing replica at all — good in
 *    production, but then no run of consecutive errors ever builds up and the demo could not show
 *    outlier ejection. Round robin keeps giving the failing replica its share until it is ejected.
 *  - HTTPRoute `inventory`: a 500 ms timeout — orders waits that long for inventory at most, then
 *    gets DEADLINE_EXCEEDED (`upstream_timeout`) from its sidecar.
 *  - RateLimitPolicy `web`: a local limit at web's inbound sidecar of 1.5 times the load's rate,
 *    with a burst (bucket) of one second of load: the steady load never meets it — even a load
 *    generator stalled for most of a second sends its backlog within the bucket —, a burst does.
 */
import type { Policy } from "@trellis/proto/gen/trellis/v1/admin_pb";
import { toPolicy } from "@trellis/proto/kinds";
import { formatDiagnostic, parsePolicies } from "@trellis/proto/yaml-codec";
import { DEMO_NAMESPACE } from "./demo-wire.js";

/** Retries after the first try on the orders route. */
export const ORDERS_RETRY_ATTEMPTS = 2;
/** Consecutive gateway errors that eject an endpoint (the pinned default, not set in the policy). */
export const EJECTION_THRESHOLD = 5;
/** First ejection, seconds (doubling with each later one). */
export const BASE_EJECTION_S = 3;
/** Route timeout orders → inventory, ms. */
export const INVENTORY_TIMEOUT_MS = 500;

/** web's local rate limit for a load of `rate` requests per second. */
export function webRateLimit(rate: number): { requestsPerSecond: number; burst: number } {
  return { requestsPerSecond: roundTo(1.5 * rate, 3), burst: Math.max(1, Math.round(rate)) };
}

/** The policy as YAML, for a load of `rate` requests per second. */
export function demoPolicyYaml(rate: number): string {
  const limit = webRateLimit(rate);
  const ns = DEMO_NAMESPACE;
  return `# trellis dev: the demo mesh's policy, applied at start (see control-plane/src/dev/demo-policy.ts).
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: ${ns} }
spec:
  targetRef: { kind: Service, name: orders }
  rules:
    # A replica answering 502/503/504, or unreachable, is retried on another one.
    - retry: { attempts: ${ORDERS_RETRY_ATTEMPTS}, retryOn: [gateway-error] }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: defaults, namespace: ${ns} }
spec:
  # The default outlier detection (${EJECTION_THRESHOLD} consecutive gateway errors eject an endpoint, at most
  # 50% of a service's endpoints at once), with a ${BASE_EJECTION_S}s first ejection instead of 30s.
  outlierDetection: { baseEjectionTime: ${BASE_EJECTION_S}s }
  # Round robin gives a failing replica its share until it is ejected; the default (LEAST_REQUEST,
  # latency-aware) would mostly steer around it by itself, leaving outlier detection little to do.
  loadBalancer: { policy: ROUND_ROBIN }
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: inventory, namespace: ${ns} }
spec:
  targetRef: { kind: Service, name: inventory }
  rules:
    # Callers wait for inventory this long at most, then get DEADLINE_EXCEEDED (upstream_timeout).
    - timeout: ${INVENTORY_TIMEOUT_MS}ms
---
apiVersion: trellis.dev/v1
kind: RateLimitPolicy
metadata: { name: web, namespace: ${ns} }
spec:
  targetRef: { kind: Service, name: web }
  # 1.5 times the demo's load, with a burst of one second of it.
  local: { requestsPerSecond: ${limit.requestsPerSecond}, burst: ${limit.burst} }
`;
}

/**
 * The policies of `yaml`, validated like `trellis apply` does. Throws on any diagnostic: the text
 * is ours, so an error here is a bug, reported with its file:line:col.
 */
export function demoPolicies(yaml: string): Policy[] {
  const parsed = parsePolicies(yaml, "policy.yaml");
  if (parsed.diagnostics.length > 0)
    throw new Error(`the demo policy is invalid:\n${parsed.diagnostics.map(formatDiagnostic).join("\n")}`);
  return parsed.policies.map((p) => toPolicy(p.info, p.message));
}

function roundTo(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
