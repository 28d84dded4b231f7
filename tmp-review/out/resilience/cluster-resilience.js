import { ConnectionLimiter, connectionLimitsConfig } from "./connection-limits.js";
import { OutlierDetector, outlierConfig } from "./outlier-detector.js";
import { RetryBudget, retryBudgetConfig } from "./retry-budget.js";
export class ClusterResilienceRegistry {
    deps;
    byCluster = new Map();
    constructor(deps) {
        this.deps = deps;
    }
    /** The state of cluster `name` under `policy`: created on first use, else reconfigured in place. */
    get(name, policy) {
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
        const created = {
            limiter: new ConnectionLimiter(limits, onSaturation === undefined ? undefined : (limit, saturated) => onSaturation(name, limit, saturated)),
            budget: new RetryBudget(budget, this.deps.now),
            outlier: new OutlierDetector(outlier, this.deps.now),
            outlierConfig: outlier,
        };
        this.byCluster.set(name, created);
        return created;
    }
    /** Drops the state of every cluster not in `names`. */
    retain(names) {
        for (const name of [...this.byCluster.keys()])
            if (!names.has(name))
                this.byCluster.delete(name);
    }
}
