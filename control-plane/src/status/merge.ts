/**
 * Merging the per-replica policy status that recorder.ts writes. Each replica records, under
 * /trellis/v1/status/<replica>/<Kind>/<ns>/<name>, a ProxyRollout over the proxies it holds; a
 * policy's status is the sum over all replicas (a proxy is connected to one replica at a time, so
 * the sums do not double count), plus one "Applied" condition that says it in words.
 */
import { create } from "@bufbuild/protobuf";
import type {
  Condition,
  PolicyStatus,
  ProxyRollout,
  RejectionReason,
} from "@trellis/proto/gen/trellis/v1/common_pb";
import {
  ConditionSchema,
  PolicyStatusSchema,
  ProxyRolloutSchema,
  RejectionReasonSchema,
} from "@trellis/proto/gen/trellis/v1/common_pb";
import { STATUS_PREFIX } from "../store/keys.js";

/** Sample proxy ids kept per rejection reason (as in common.proto's RejectionReason.proxies). */
export const MAX_PROXIES_PER_REASON = 10;

/** The condition type `get` reports. */
export const APPLIED_CONDITION = "Applied";

/** A status key split into its parts; undefined for keys of another shape. */
export interface StatusKeyParts {
  replica: string;
  kind: string;
  namespace: string;
  name: string;
}

/** Splits `/trellis/v1/status/<replica>/<Kind>/<ns>/<name>`. */
export function parseStatusKey(key: string): StatusKeyParts | undefined {
  if (!key.startsWith(STATUS_PREFIX)) return undefined;
  const parts = key.slice(STATUS_PREFIX.length).split("/");
  if (parts.length !== 4 || parts.some((p) => p.length === 0)) return undefined;
  const [replica, kind, namespace, name] = parts as [string, string, string, string];
  return { replica, kind, namespace, name };
}

/**
 * The sum of several replicas' rollouts of one policy:
 *   1. applied, rejected and pending are summed;
 *   2. reasons with the same text become one entry, counts summed, proxy ids united (sorted,
 *      deduplicated, at most MAX_PROXIES_PER_REASON);
 *   3. reasons are ordered by count (most common first), then by text, so output is stable.
 * The inputs are not modified.
 */
export function mergeRollouts(rollouts: readonly ProxyRollout[]): ProxyRollout {
  const out = create(ProxyRolloutSchema);
  const reasons = new Map<string, { count: number; proxies: Set<string> }>();
  for (const r of rollouts) {
    out.applied += r.applied;
    out.rejected += r.rejected;
    out.pending += r.pending;
    for (const reason of r.reasons) {
      let merged = reasons.get(reason.reason);
      if (merged === undefined) {
        merged = { count: 0, proxies: new Set() };
        reasons.set(reason.reason, merged);
      }
      merged.count += reason.count;
      for (const p of reason.proxies) merged.proxies.add(p);
    }
  }
  const list: RejectionReason[] = [];
  for (const [reason, m] of reasons) {
    const proxies = [...m.proxies].sort().slice(0, MAX_PROXIES_PER_REASON);
    list.push(create(RejectionReasonSchema, { reason, count: m.count, proxies }));
  }
  list.sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0));
  out.reasons = list;
  return out;
}

/**
 * The "Applied" condition of a rollout, computed from `generation` (metadata.generation):
 *   - rejected > 0: False, reason "Rejected", naming the most common reasons;
 *   - pending > 0 (none rejected): False, reason "Pending";
 *   - otherwise True: reason "Applied" when some proxy holds it, "NoProxies" when no connected
 *     proxy is concerned by the policy (nothing refused it; it simply has no audience yet).
 * lastTransitionTime is left unset: replicas record counts, not transitions.
 */
export function appliedCondition(rollout: ProxyRollout, generation: bigint): Condition {
  const total = rollout.applied + rollout.rejected + rollout.pending;
  const of = `of ${total} ${total === 1 ? "proxy" : "proxies"}`;
  let status = "True";
  let reason = "Applied";
  let message: string;
  if (rollout.rejected > 0) {
    status = "False";
    reason = "Rejected";
    const why = rollout.reasons
      .slice(0, 3)
      .map((r) => `${r.reason} (${r.count})`)
      .join("; ");
    message = `${rollout.rejected} ${of} rejected it${why ? `: ${why}` : ""}`;
  } else if (rollout.pending > 0) {
    status = "False";
    reason = "Pending";
    message = `${rollout.pending} ${of} have not answered yet`;
  } else if (total === 0) {
    reason = "NoProxies";
    message = "no connected proxy is concerned by this policy";
  } else {
    message = `applied by ${rollout.applied} ${total === 1 ? "proxy" : "proxies"}`;
  }
  return create(ConditionSchema, {
    type: APPLIED_CONDITION,
    status,
    reason,
    message,
    observedGeneration: generation,
  });
}

/** A policy's full status: the merged rollout and its condition. */
export function policyStatus(rollouts: readonly ProxyRollout[], generation: bigint): PolicyStatus {
  const proxies = mergeRollouts(rollouts);
  return create(PolicyStatusSchema, { proxies, conditions: [appliedCondition(proxies, generation)] });
}
