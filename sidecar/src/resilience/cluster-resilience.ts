/**
 * The per-cluster resilience state — connection limiter, retry budget, outlier detector — kept
 * across config updates. A cluster whose policy changes gets its limits reconfigured in place:
 * requests in flight, the budget's window and every endpoint's ejection state carry over, so an
 * update (even of the same cluster) never resets a breaker or lets a bad endpoint back early.
 * State of clusters that left the config is dropped.
 */
import type { TrafficPolicySpec } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import type { ConnectionLimitKind } from "../metrics/labels.js";
import { ConnectionLimiter, connectionLimitsConfig } from "./connection-limits.js";
import { type OutlierConfig, OutlierDetector, outlierConfig } from "./outlier-detector.js";
import { RetryBudget, retryBudgetConfig } from "./retry-budget.js";

export interface ClusterResilience {
  readonly limiter: ConnectionLimiter;
  readonly budget: RetryBudget;
  readonly outlier: OutlierDetector;
  /** The outlier config in force (its minHealthPercent is the balancer's panic threshold). */
  readonly outlierConfig: OutlierConfig;
}

export interface ClusterResilienceDeps {
  /** Monotonic clock, ms. */
  now: () => number;
  /** A connection limit of `cluster` became full (true) or stopped being full (false). */
  onSaturation?: (cluster: string, limit: ConnectionLimitKind, saturated: boolean) => void;
}

export class ClusterResilienceRegistry {
  private readonly byCluster = new Map<string, ClusterResilience>();

  constructor(private readonly deps: ClusterResilienceDeps) {}

  /** The state of cluster `name` under `policy`: created on first use, else reconfigured in place. */
  get(name: string, policy: TrafficPolicySpec | undefined): ClusterResilience {
    const limits = connectionLimitsConfig(policy?.connectionLimits);
    const budget = retryBudgetConfig(policy?.retryBudget);
    const outlier = outlierConfig(policy?.outlierDetection);
    const prev = this.byCluster.get(name);
    if (prev !== undefined) {
      prev.limiter.reconfigure(limits);
      prev.budget.reconfigure(budget);
      prev.outlier.reconfigure(outlier);
      const next = { ...prev, outlierConfig: outlier };
      this.byCluster.set(name, next);
      return next;
    }
    const onSaturation = this.deps.onSaturation;
    // Requests of a dropped cluster still finish on its limiter; their transitions must not
    // recreate the dropped cluster's gauges (or overwrite a re-added cluster's).
    const report =
      onSaturation === undefined
        ? undefined
        : (limit: ConnectionLimitKind, saturated: boolean) => {
            if (this.byCluster.get(name)?.limiter === limiter) onSaturation(name, limit, saturated);
          };
    const limiter = new ConnectionLimiter(limits, report);
    const created: ClusterResilience = {
      limiter,
      budget: new RetryBudget(budget, this.deps.now),
      outlier: new OutlierDetector(outlier, this.deps.now),
      outlierConfig: outlier,
    };
    this.byCluster.set(name, created);
    return created;
  }

  /** Drops the state of every cluster not in `names`. */
  retain(names: ReadonlySet<string>): void {
    for (const name of [...this.byCluster.keys()]) if (!names.has(name)) this.byCluster.delete(name);
  }
}
