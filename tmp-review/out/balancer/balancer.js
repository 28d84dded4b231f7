/**
 * The load-balancer contract and the one place balancers are built.
 *
 * Build per target, call per request: `createBalancer` runs once per cluster update (a new
 * ClusterLoadAssignment or a new policy) and precomputes everything; `pick` runs per request (and
 * per retry attempt) and does O(1) amortised work with no allocation.
 *
 * Policies: round robin (round-robin.ts), least request by P2C (least-request.ts, the default) and
 * ring hash (ring-hash.ts), each in a `BalancerFactory` registered in `FACTORIES` below. Two
 * options apply across them: slow start (slow-start.ts; RR and P2C weights) and locality
 * preference (locality.ts; a wrapper running the policy per locality tier). Adding a policy:
 * implement `LoadBalancer`, keep the candidate list in a `UsableSet` (ejection, panic mode) and
 * register its factory.
 *
 * What callers pass (the contract with runtime/ and proxy/):
 *  - the runtime, per cluster update: `createBalancer(balancerConfigFrom(cluster.policy?.loadBalancer,
 *    { callerLocality, minHealthPercent }), assignment.endpoints, deps, previousBalancer)`, with
 *    `deps.wallNow` when its clock is not `Date.now`;
 *  - the proxy, per attempt: `pick({ hashKey })` on the first attempt and `pick({ hashKey, exclude })`
 *    on a retry, `hashKey` from `compileHashKey(loadBalancer.hashOn)` (hash-key.ts) — built once
 *    per cluster, run per request; undefined for policies other than RING_HASH.
 */
import { durationMs } from "@trellis/proto/duration";
import { LoadBalancerPolicy, } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { EndpointSignals, EndpointState, endpointDataFrom, sameEndpointData, sameInstance, UsabilityEpoch, } from "./endpoint-state.js";
import { leastRequestFactory } from "./least-request.js";
import { LocalityBalancer } from "./locality.js";
import { DEFAULT_MINIMUM_RING_SIZE, ringHashFactory } from "./ring-hash.js";
import { roundRobinFactory } from "./round-robin.js";
const FACTORIES = new Map([
    [roundRobinFactory.policy, roundRobinFactory],
    [leastRequestFactory.policy, leastRequestFactory],
    [ringHashFactory.policy, ringHashFactory],
]);
/**
 * The policy `createBalancer` will run for `policy`: UNSPECIFIED means LEAST_REQUEST, and a policy
 * with no registered factory (an enum value newer than this sidecar) degrades to LEAST_REQUEST so
 * the cluster keeps serving.
 */
export function effectivePolicy(policy) {
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
export function reconcileEndpoints(endpoints, deps, previous = []) {
    const epoch = previous[0]?.signals.epoch ?? new UsabilityEpoch();
    const byKey = new Map();
    for (const s of previous)
        byKey.set(s.key, s);
    const now = deps.now();
    let seedMs;
    const out = [];
    const seen = new Set();
    for (const endpoint of endpoints) {
        const data = endpointDataFrom(endpoint);
        if (seen.has(data.key))
            continue;
        seen.add(data.key);
        const prev = byKey.get(data.key);
        if (prev !== undefined && sameEndpointData(prev.data, data)) {
            out.push(prev);
        }
        else if (prev !== undefined && sameInstance(prev.data, data)) {
            out.push(new EndpointState(data, prev.signals));
        }
        else {
            seedMs ??= meanLatency(previous, now);
            const options = seedMs === undefined ? { epoch } : { epoch, initialLatencyMs: seedMs };
            out.push(new EndpointState(data, new EndpointSignals(deps.now, options)));
        }
    }
    return out;
}
function meanLatency(states, now) {
    if (states.length === 0)
        return undefined;
    let sum = 0;
    for (const s of states)
        sum += s.latencyMs(now);
    return sum / states.length;
}
/**
 * Builds the balancer for one cluster snapshot. Call once per update, never per request.
 * `previous` is the cluster's current balancer, of any policy: its endpoint states are carried
 * over (see `reconcileEndpoints`) — they hold nothing algorithm-specific, and resetting in-flight
 * counts on a policy switch would misjudge load — and a ring whose membership is unchanged is
 * reused. With `config.locality` (and a caller region) the result is a `LocalityBalancer` running
 * the policy per tier. Never throws for any assignment; an empty one gives a balancer whose `pick`
 * returns undefined.
 */
export function createBalancer(config, endpoints, deps, previous) {
    const policy = effectivePolicy(config.policy);
    const factory = FACTORIES.get(policy) ?? leastRequestFactory;
    const states = reconcileEndpoints(endpoints, deps, previous?.endpoints);
    const min = config.minHealthPercent ?? 0;
    const minHealthPercent = min > 0 ? Math.min(min, 100) : 0;
    const normalized = { ...config, policy, minHealthPercent };
    const samePolicy = previous?.policy === policy ? previous : undefined;
    const locality = config.locality;
    if (locality !== undefined && locality.caller.region !== "")
        return new LocalityBalancer(states, locality, factory, normalized, deps, samePolicy);
    return factory.create(states, normalized, deps, samePolicy);
}
/**
 * The `BalancerConfig` for a cluster's proto `LoadBalancer` (undefined: the defaults). Maps
 * `policy`, `minimumRingSize` (default 1024), `locality` (on when present unless `enabled` is
 * false; needs `options.callerLocality`) and `slowStart` (window in ms; `aggression` and
 * `minWeightPercent` as given, defaults applied by slow-start.ts). `hashOn` is not balancer config:
 * pass it to `compileHashKey` and hand its result's key to `pick`. Pure; never throws.
 */
export function balancerConfigFrom(spec, options = {}) {
    const locality = spec?.locality;
    const caller = options.callerLocality;
    const slow = spec?.slowStart;
    const windowMs = durationMs(slow?.window);
    return {
        policy: spec?.policy ?? LoadBalancerPolicy.UNSPECIFIED,
        minHealthPercent: options.minHealthPercent ?? 0,
        minimumRingSize: spec?.minimumRingSize ?? DEFAULT_MINIMUM_RING_SIZE,
        ...(locality !== undefined && locality.enabled !== false && caller !== undefined && caller.region !== ""
            ? {
                locality: {
                    caller: { region: caller.region, zone: caller.zone, subzone: caller.subzone },
                    failover: locality.failover.map((f) => ({ from: f.from, to: f.to })),
                },
            }
            : {}),
        ...(slow !== undefined && windowMs !== undefined
            ? {
                slowStart: {
                    windowMs,
                    ...(slow.aggression !== undefined ? { aggression: slow.aggression } : {}),
                    ...(slow.minWeightPercent !== undefined ? { minWeightPercent: slow.minWeightPercent } : {}),
                },
            }
            : {}),
    };
}
