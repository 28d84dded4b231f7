/**
 * The state of one build: its inputs, memoized service views, and the problems found so far. Lives
 * only for one buildProxySnapshot call, so memoization never outlives the model it was made from.
 */
import type { Workload } from "@trellis/proto/gen/trellis/v1/workload_pb";
import type { MeshModel } from "../model/types.js";
import { objectKey } from "../model/types.js";
import type { PolicyIndex } from "./policy-index.js";
import { policyIndex } from "./policy-index.js";
import type { ServiceView } from "./services.js";
import { describeService } from "./services.js";
import type { BuildOptions } from "./snapshot.js";

export interface BuildContext {
  readonly model: MeshModel;
  readonly index: PolicyIndex;
  /** The proxy the snapshot is for. */
  readonly proxy: Workload;
  readonly options: BuildOptions;
  /** A service's view, computed once per build. */
  service(namespace: string, service: string): ServiceView;
  /** Records a problem that makes the snapshot inconsistent (see ProxySnapshot.problems). */
  problem(message: string): void;
  /** The problems recorded so far, in order. */
  readonly problems: readonly string[];
}

/** A fresh context for one build. */
export function createBuildContext(model: MeshModel, proxy: Workload, options: BuildOptions): BuildContext {
  const index = policyIndex(model);
  const views = new Map<string, ServiceView>();
  const problems: string[] = [];
  return {
    model,
    index,
    proxy,
    options,
    service(namespace, service) {
      const key = objectKey(namespace, service);
      let view = views.get(key);
      if (view === undefined) {
        view = describeService(model, index, namespace, service);
        views.set(key, view);
      }
      return view;
    },
    problem(message) {
      problems.push(message);
    },
    problems,
  };
}
