/**
 * Locality preference with failover (the proto's `LocalityLoadBalancing`): a wrapper that keeps
 * traffic as close to the caller as its usable endpoints allow and runs the cluster's own policy
 * (round robin, least request, ring hash) inside the chosen tier.
 *
 * Why: a hop to another zone adds latency and is billed by the cloud provider, and a zone that
 * loses its endpoints must be routed around without a config change. Sources: Envoy's locality
 * priorities (`LocalityLbEndpoints.priority`, zone-aware routing) and Istio's `localityLbSetting`
 * with its `failover: [{from, to}]` regions. Simplified to strict preference: a tier takes all the
 * traffic while it has a usable endpoint, where Envoy spills a share in proportion to the tier's
 * health (its overprovisioning factor); strictness is what makes "no traffic leaves the zone"
 * something a user can rely on.
 *
 * Tiers (`localityTiers`, once per snapshot; empty tiers are dropped):
 *  1. same region, zone and subzone as the caller (only when the caller has a subzone);
 *  2. same region and zone (only when the caller has a zone);
 *  3. same region;
 *  4. the failover regions, one tier each: the `to` of every rule whose `from` is the caller's
 *     region, in list order, then the rules from those regions, breadth first (us-east → us-west
 *     and us-west → eu-west: a us-east caller tries us-west, then eu-west), each region once;
 *  5. every other endpoint (other regions, endpoints without a locality).
 * A caller without a region (no `--locality`) gets a single tier: the preference is off.
 *
 * A pick:
 *  1. Panic mode (`minHealthPercent`) is judged over the whole cluster; in panic, locality is set
 *     aside and the cluster's policy picks among all endpoints (as Envoy drops zone awareness in
 *     panic): spreading a broken cluster's load beats crushing the few local survivors. Tiers
 *     themselves never panic, or a degraded local zone would keep its traffic on unhealthy
 *     endpoints instead of failing over.
 *  2. The first tier with a usable endpoint not in `exclude` picks, with its own balancer over that
 *     tier's endpoints.
 *  3. When every usable endpoint was already tried, the first tier with a usable endpoint picks
 *     (a repeat beats failing).
 *  4. Nothing usable anywhere → undefined.
 * By step 2, the retry of a request whose every local endpoint was tried leaves the locality: for
 * one already-failed request the cross-zone hop is worth more than a repeat at an endpoint that just
 * refused it. A first attempt (no `exclude`) never leaves a tier that has a usable endpoint.
 */
import type { LoadBalancerPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import type { BalancerConfig, BalancerDeps, BalancerFactory, LoadBalancer, PickContext } from "./balancer.js";
import type { EndpointLocality, EndpointState } from "./endpoint-state.js";
import { UsableSet } from "./usable-set.js";

/** One region failover rule (proto `LocalityFailover`). */
export interface LocalityFailoverRule {
  readonly from: string;
  readonly to: string;
}

/** Locality preference as `createBalancer` receives it. */
export interface LocalityConfig {
  /** Where the calling sidecar runs (its `--locality`). An empty region turns the preference off. */
  readonly caller: EndpointLocality;
  /** Region failover rules in proto order (tier 4). Rules naming the caller's own region as `to` are ignored. */
  readonly failover?: readonly LocalityFailoverRule[];
}

/**
 * Splits `endpoints` into the tiers of the file comment, nearest first, each in assignment order.
 * Every endpoint lands in exactly one tier; no tier is empty. Pure; runs once per snapshot.
 */
export function localityTiers(
  endpoints: readonly EndpointState[],
  config: LocalityConfig,
): EndpointState[][] {
  const caller = config.caller;
  if (caller.region === "") return endpoints.length === 0 ? [] : [[...endpoints]];
  const regions = failoverOrder(caller.region, config.failover ?? []);
  // Ranks: 0 subzone, 1 zone, 2 region, 3 + i the i-th failover region, 3 + regions.length the rest.
  const rest = 3 + regions.length;
  const buckets: EndpointState[][] = Array.from({ length: rest + 1 }, () => []);
  for (const s of endpoints) {
    const at = s.data.locality;
    let rank: number;
    if (at.region === caller.region) {
      const sameZone = caller.zone !== "" && at.zone === caller.zone;
      rank = sameZone && caller.subzone !== "" && at.subzone === caller.subzone ? 0 : sameZone ? 1 : 2;
    } else {
      const i = at.region === "" ? -1 : regions.indexOf(at.region);
      rank = i >= 0 ? 3 + i : rest;
    }
    buckets[rank]!.push(s);
  }
  return buckets.filter((b) => b.length > 0);
}

/** Tier 4's regions: breadth first over the failover rules from `home`, each region once. */
export function failoverOrder(home: string, rules: readonly LocalityFailoverRule[]): string[] {
  const order: string[] = [];
  const seen = new Set([home]);
  const queue = [home];
  for (let q = 0; q < queue.length; q++) {
    const from = queue[q]!;
    for (const rule of rules) {
      if (rule.from !== from || rule.to === "" || seen.has(rule.to)) continue;
      seen.add(rule.to);
      order.push(rule.to);
      queue.push(rule.to);
    }
  }
  return order;
}

/** One tier: its endpoints, their usability, and the cluster's policy over them. */
export interface LocalityTier {
  /** The tier's endpoints, in assignment order; never empty. */
  readonly endpoints: readonly EndpointState[];
  /** The cluster's policy over `endpoints` alone. */
  readonly balancer: LoadBalancer;
}

/** Locality preference around the cluster's policy; see the file comment. */
export class LocalityBalancer implements LoadBalancer {
  /** The inner policy (what runs inside each tier). */
  readonly policy: LoadBalancerPolicy;
  readonly endpoints: readonly EndpointState[];
  /** Nearest first. */
  readonly tiers: readonly LocalityTier[];
  private readonly usable: readonly UsableSet[];
  private readonly deps: BalancerDeps;
  /** The whole cluster with the panic threshold; undefined when panic mode is off. */
  private readonly cluster: UsableSet | undefined;
  /** The policy over every endpoint, used in panic (step 1). */
  private readonly whole: LoadBalancer | undefined;

  /**
   * @param factory the cluster's policy, built once per tier (and once over everything when
   *   `config.minHealthPercent` > 0, for panic mode).
   * @param previous the balancer being replaced: when it is a `LocalityBalancer` of the same
   *   policy, its tier i's balancer is offered as `previous` to the new tier i (a ring whose tier
   *   membership is unchanged is reused).
   */
  constructor(
    endpoints: readonly EndpointState[],
    locality: LocalityConfig,
    factory: BalancerFactory,
    config: BalancerConfig,
    deps: BalancerDeps,
    previous: LoadBalancer | undefined,
  ) {
    this.policy = factory.policy;
    this.endpoints = endpoints;
    this.deps = deps;
    const prev =
      previous instanceof LocalityBalancer && previous.policy === factory.policy ? previous : undefined;
    const inner: BalancerConfig = { ...config, minHealthPercent: 0 };
    this.tiers = localityTiers(endpoints, locality).map((members, i) => ({
      endpoints: members,
      balancer: factory.create(members, inner, deps, prev?.tiers[i]?.balancer),
    }));
    this.usable = this.tiers.map((t) => new UsableSet(t.endpoints));
    const min = config.minHealthPercent ?? 0;
    this.cluster = min > 0 ? new UsableSet(endpoints, min) : undefined;
    this.whole = min > 0 ? factory.create(endpoints, config, deps, prev?.whole) : undefined;
  }

  /** True when the last pick found the whole cluster below its panic threshold. */
  get panicking(): boolean {
    return this.cluster?.panicking === true;
  }

  /** See the file comment for the steps. */
  pick(ctx: PickContext): EndpointState | undefined {
    const now = this.deps.now();
    if (this.cluster !== undefined) {
      this.cluster.list(now);
      if (this.cluster.panicking) return this.whole?.pick(ctx); // 1.
    }
    const exclude = ctx.exclude;
    const tiers = this.usable;
    for (let t = 0; t < tiers.length; t++) {
      if (hasUntried(tiers[t]!.list(now), exclude)) return this.tiers[t]!.balancer.pick(ctx); // 2.
    }
    if (exclude === undefined || exclude.size === 0) return undefined; // 4.
    for (let t = 0; t < tiers.length; t++) {
      if (tiers[t]!.list(now).length > 0) return this.tiers[t]!.balancer.pick(ctx); // 3.
    }
    return undefined; // 4.
  }
}

/** True when `list` has an endpoint whose key is not in `exclude`. */
function hasUntried(list: readonly EndpointState[], exclude: ReadonlySet<string> | undefined): boolean {
  if (exclude === undefined || exclude.size === 0) return list.length > 0;
  for (let i = 0; i < list.length; i++) if (!exclude.has(list[i]!.key)) return true;
  return false;
}
