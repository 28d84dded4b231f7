/**
 * The load-balancer contract and the one place balancers are built.
 *
 * Build per target, call per request: `createBalancer` runs once per cluster update (a new
 * ClusterLoadAssignment or a new policy) and precomputes everything; `pick` runs per request (and
 * per retry attempt) and does O(1) amortised work with no allocation.
 *
 * Adding a policy (ring hash, and wrappers such as locality preference or slow start): implement
 * `LoadBalancer`, keep the candidate list in a `UsableSet` (ejection, panic mode) and register a
 * `BalancerFactory` in `FACTORIES` below.
 */
import type { Endpoint } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { LoadBalancerPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import {
  EndpointSignals,
  EndpointState,
  endpointDataFrom,
  sameEndpointData,
  sameInstance,
  UsabilityEpoch,
} from "./endpoint-state.js";
import { leastRequestFactory } from "./least-request.js";
import { roundRobinFactory } from "./round-robin.js";

/** Per-pick input. Built by the caller per request; the balancer never keeps it. */
export interface PickContext {
  /**
   * Keys (`address:port`) this request has already tried. The balancer picks another usable
   * endpoint where one exists, and otherwise allows a repeat rather than failing the attempt.
   */
  readonly exclude?: ReadonlySet<string>;
  /** The request's hash key, for hash-based policies (RING_HASH); others ignore it. */
  readonly hashKey?: string;
}

/** Picks an endpoint for each request of one cluster. One instance per cluster snapshot. */
export interface LoadBalancer {
  /** The algorithm actually in use (after defaults and fallbacks). */
  readonly policy: LoadBalancerPolicy;
  /** Every endpoint of the snapshot, usable or not, in assignment order (duplicates dropped). */
  readonly endpoints: readonly EndpointState[];
  /** True when the last pick was made in panic mode (see `BalancerConfig.minHealthPercent`). */
  readonly panicking: boolean;
  /**
   * Chooses the endpoint for one attempt; undefined when no endpoint is usable (the caller
   * answers `no_healthy_upstream`). Never throws. The caller brackets the attempt with the
   * returned state's `onStart()` / `onFinish()`.
   */
  pick(ctx: PickContext): EndpointState | undefined;
}

/** How the cluster wants to balance; field names follow the proto `LoadBalancer`. */
export interface BalancerConfig {
  /** The algorithm; UNSPECIFIED means LEAST_REQUEST (the documented default). */
  readonly policy: LoadBalancerPolicy;
  /**
   * Panic threshold in percent, 0–100 (out-of-range values are clamped, NaN is 0). When fewer than
   * this share of the non-draining endpoints are usable, pick among all non-draining endpoints.
   * Default 0: never panic. The resilience layer passes `OutlierDetection.minHealthPercent` here.
   */
  readonly minHealthPercent?: number;
}

/** What balancers take from the outside world, injected so tests are deterministic. */
export interface BalancerDeps {
  /** Milliseconds on a monotonic clock (only differences matter). */
  readonly now: () => number;
  /** Uniform in [0, 1). */
  readonly random: () => number;
}

/** Builds balancers of one policy. */
export interface BalancerFactory {
  readonly policy: LoadBalancerPolicy;
  /**
   * Builds a balancer over `endpoints` (already reconciled: see `reconcileEndpoints`).
   * `previous` is the balancer being replaced when it has the same policy, for algorithm state
   * worth keeping (a ring whose membership is unchanged); undefined otherwise.
   */
  create(
    endpoints: readonly EndpointState[],
    config: BalancerConfig,
    deps: BalancerDeps,
    previous: LoadBalancer | undefined,
  ): LoadBalancer;
}

const FACTORIES: ReadonlyMap<LoadBalancerPolicy, BalancerFactory> = new Map([
  [roundRobinFactory.policy, roundRobinFactory],
  [leastRequestFactory.policy, leastRequestFactory],
]);

/**
 * The policy `createBalancer` will run for `policy`: UNSPECIFIED means LEAST_REQUEST, and a policy
 * with no registered factory (RING_HASH until the ring lands) degrades to LEAST_REQUEST so the
 * cluster keeps serving.
 */
export function effectivePolicy(policy: LoadBalancerPolicy): LoadBalancerPolicy {
  return FACTORIES.has(policy) ? policy : LoadBalancerPolicy.LEAST_REQUEST;
}

/**
 * Turns an assignment's endpoints into states, reusing `previous` ones:
 *  - same key and identical data → the previous `EndpointState` object itself;
 *  - same instance, changed attributes (health, weight, labels, locality) → a new state sharing
 *    the previous one's `signals` (in-flight count, latency, ejection);
 *  - anything else → a fresh state, its latency estimate seeded with the mean of the previous
 *    endpoints' estimates (a newcomer neither floods nor starves), or the default without any.
 * A key that appears twice keeps its first occurrence. Every returned state shares one
 * `UsabilityEpoch` (the previous one's, so older balancers still see ejections).
 */
export function reconcileEndpoints(
  endpoints: readonly Endpoint[],
  deps: Pick<BalancerDeps, "now">,
  previous: readonly EndpointState[] = [],
): EndpointState[] {
  const epoch = previous[0]?.signals.epoch ?? new UsabilityEpoch();
  const byKey = new Map<string, EndpointState>();
  for (const s of previous) byKey.set(s.key, s);
  const now = deps.now();
  let seedMs: number | undefined;
  const out: EndpointState[] = [];
  const seen = new Set<string>();
  for (const endpoint of endpoints) {
    const data = endpointDataFrom(endpoint);
    if (seen.has(data.key)) continue;
    seen.add(data.key);
    const prev = byKey.get(data.key);
    if (prev !== undefined && sameEndpointData(prev.data, data)) {
      out.push(prev);
    } else if (prev !== undefined && sameInstance(prev.data, data)) {
      out.push(new EndpointState(data, prev.signals));
    } else {
      seedMs ??= meanLatency(previous, now);
      const options = seedMs === undefined ? { epoch } : { epoch, initialLatencyMs: seedMs };
      out.push(new EndpointState(data, new EndpointSignals(deps.now, options)));
    }
  }
  return out;
}

function meanLatency(states: readonly EndpointState[], now: number): number | undefined {
  if (states.length === 0) return undefined;
  let sum = 0;
  for (const s of states) sum += s.latencyMs(now);
  return sum / states.length;
}

/**
 * Builds the balancer for one cluster snapshot. Call once per update, never per request.
 * `previous` is the cluster's current balancer, of any policy: its endpoint states are carried
 * over (see `reconcileEndpoints`) — they hold nothing algorithm-specific, and resetting in-flight
 * counts on a policy switch would misjudge load. Never throws for any assignment; an empty one
 * gives a balancer whose `pick` returns undefined.
 */
export function createBalancer(
  config: BalancerConfig,
  endpoints: readonly Endpoint[],
  deps: BalancerDeps,
  previous?: LoadBalancer,
): LoadBalancer {
  const policy = effectivePolicy(config.policy);
  const factory = FACTORIES.get(policy) ?? leastRequestFactory;
  const states = reconcileEndpoints(endpoints, deps, previous?.endpoints);
  const min = config.minHealthPercent ?? 0;
  const minHealthPercent = min > 0 ? Math.min(min, 100) : 0;
  return factory.create(
    states,
    { ...config, policy, minHealthPercent },
    deps,
    previous?.policy === policy ? previous : undefined,
  );
}
