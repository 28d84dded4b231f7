/**
 * The inbound listener resource compiled into what the inbound proxy reads per request: the app
 * ports with their protocols and the port to use when a caller names none, and each port's local
 * rate limiter.
 *
 * Limiters come from the builder's LocalRateLimitRegistry, so they outlive this (per-build)
 * object: a rebuild for any reason keeps every bucket's state (see local-rate-limit.ts).
 */
import type { Listener } from "@trellis/proto/gen/trellis/v1/resources_pb";
import type { InboundPort, InboundRuntime } from "../proxy/inbound.js";
import type {
  LimiterSpec,
  LocalRateLimiter,
  LocalRateLimitRegistry,
} from "../resilience/local-rate-limit.js";
import { appProtocol } from "./runtime-config.js";

/**
 * Compiles the inbound listener `l` (undefined: none held). Every call syncs `limits`: the
 * limiters of this listener's ports are kept or made, all others dropped — so a listener that
 * went away, or a policy that no longer applies to a port, releases its buckets.
 *
 *  1. Each port's local limit comes from its `rateLimit` (the most specific RateLimitPolicy, chosen
 *     by the control plane) when that policy has `local`; a policy with only `global` gives none
 *     here (the builder NACKs `global` until it is enforced).
 *  2. The default port: the only port, else the first HTTP one, else the first.
 */
export function inboundRuntime(
  l: Listener | undefined,
  limits: LocalRateLimitRegistry,
): InboundRuntime | undefined {
  const inbound = l?.kind.case === "inbound" ? l.kind.value : undefined;
  if (inbound === undefined) {
    limits.sync([]);
    return undefined;
  }
  const wanted: LimiterSpec[] = [];
  const limitedPort: number[] = [];
  for (const p of inbound.ports) {
    const ref = p.rateLimit?.policy;
    const local = p.rateLimit?.spec?.local;
    if (ref === undefined || local === undefined) continue;
    wanted.push({
      policy: `${ref.namespace}/${ref.name}`,
      port: p.port,
      limits: {
        requestsPerSecond: local.requestsPerSecond,
        burst: local.burst,
        perIdentity: local.perIdentity,
      },
    });
    limitedPort.push(p.port);
  }
  const limiters = limits.sync(wanted);
  const byPort = new Map<number, LocalRateLimiter>();
  limitedPort.forEach((port, i) => {
    const limiter = limiters[i];
    if (limiter !== undefined) byPort.set(port, limiter);
  });

  const ports = new Map<number, InboundPort>();
  for (const p of inbound.ports) {
    if (ports.has(p.port)) continue;
    ports.set(p.port, {
      port: p.port,
      protocol: appProtocol(p.protocol),
      localLimit: byPort.get(p.port),
    });
  }
  const list = [...ports.values()];
  const defaultPort = list.length === 1 ? list[0] : (list.find((p) => p.protocol === "http") ?? list[0]);
  return { service: inbound.service, namespace: inbound.namespace, ports, defaultPort };
}
