import { UsableSet } from "./usable-set.js";
/**
 * Splits `endpoints` into the tiers of the file comment, nearest first, each in assignment order.
 * Every endpoint lands in exactly one tier; no tier is empty. Pure; runs once per snapshot.
 */
export function localityTiers(endpoints, config) {
    const caller = config.caller;
    if (caller.region === "")
        return endpoints.length === 0 ? [] : [[...endpoints]];
    const regions = failoverOrder(caller.region, config.failover ?? []);
    // Ranks: 0 subzone, 1 zone, 2 region, 3 + i the i-th failover region, 3 + regions.length the rest.
    const rest = 3 + regions.length;
    const buckets = Array.from({ length: rest + 1 }, () => []);
    for (const s of endpoints) {
        const at = s.data.locality;
        let rank;
        if (at.region === caller.region) {
            const sameZone = caller.zone !== "" && at.zone === caller.zone;
            rank = sameZone && caller.subzone !== "" && at.subzone === caller.subzone ? 0 : sameZone ? 1 : 2;
        }
        else {
            const i = at.region === "" ? -1 : regions.indexOf(at.region);
            rank = i >= 0 ? 3 + i : rest;
        }
        buckets[rank].push(s);
    }
    return buckets.filter((b) => b.length > 0);
}
/** Tier 4's regions: breadth first over the failover rules from `home`, each region once. */
export function failoverOrder(home, rules) {
    const order = [];
    const seen = new Set([home]);
    const queue = [home];
    for (let q = 0; q < queue.length; q++) {
        const from = queue[q];
        for (const rule of rules) {
            if (rule.from !== from || rule.to === "" || seen.has(rule.to))
                continue;
            seen.add(rule.to);
            order.push(rule.to);
            queue.push(rule.to);
        }
    }
    return order;
}
/** Locality preference around the cluster's policy; see the file comment. */
export class LocalityBalancer {
    /** The inner policy (what runs inside each tier). */
    policy;
    endpoints;
    /** Nearest first. */
    tiers;
    usable;
    deps;
    /** The whole cluster with the panic threshold; undefined when panic mode is off. */
    cluster;
    /** The policy over every endpoint, used in panic (step 1). */
    whole;
    /**
     * @param factory the cluster's policy, built once per tier (and once over everything when
     *   `config.minHealthPercent` > 0, for panic mode).
     * @param previous the balancer being replaced: when it is a `LocalityBalancer` of the same
     *   policy, its tier i's balancer is offered as `previous` to the new tier i (a ring whose tier
     *   membership is unchanged is reused).
     */
    constructor(endpoints, locality, factory, config, deps, previous) {
        this.policy = factory.policy;
        this.endpoints = endpoints;
        this.deps = deps;
        const prev = previous instanceof LocalityBalancer && previous.policy === factory.policy ? previous : undefined;
        const inner = { ...config, minHealthPercent: 0 };
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
    get panicking() {
        return this.cluster?.panicking === true;
    }
    /** See the file comment for the steps. */
    pick(ctx) {
        const now = this.deps.now();
        if (this.cluster !== undefined) {
            this.cluster.list(now);
            if (this.cluster.panicking)
                return this.whole?.pick(ctx); // 1.
        }
        const exclude = ctx.exclude;
        const tiers = this.usable;
        for (let t = 0; t < tiers.length; t++) {
            if (hasUntried(tiers[t].list(now), exclude))
                return this.tiers[t].balancer.pick(ctx); // 2.
        }
        if (exclude === undefined || exclude.size === 0)
            return undefined; // 4.
        for (let t = 0; t < tiers.length; t++) {
            if (tiers[t].list(now).length > 0)
                return this.tiers[t].balancer.pick(ctx); // 3.
        }
        return undefined; // 4.
    }
}
/** True when `list` has an endpoint whose key is not in `exclude`. */
function hasUntried(list, exclude) {
    if (exclude === undefined || exclude.size === 0)
        return list.length > 0;
    for (let i = 0; i < list.length; i++)
        if (!exclude.has(list[i].key))
            return true;
    return false;
}
