/**
 * The candidates a balancer picks from: its endpoints that are usable now, kept precomputed so a
 * pick does no scan and builds no array. The list is rebuilt lazily, at the first pick after
 *  - an ejection changed (the cluster's `UsabilityEpoch` moved), or
 *  - the earliest ejection in force expired (a time recorded at the last rebuild).
 * Health does not change within a snapshot (a new health is a new snapshot, hence a new set).
 *
 * Panic mode (the hook the resilience layer configures through `minHealthPercent`): when fewer
 * than that percent of the non-draining endpoints are usable, the candidates are all non-draining
 * endpoints — unhealthy and ejected included — because spreading load over a partly broken set
 * beats crushing the few survivors (Envoy's "panic threshold"). Draining endpoints are never
 * candidates: they asked for no new requests.
 */
import { type EndpointState, UsabilityEpoch } from "./endpoint-state.js";

export class UsableSet {
  /** Every endpoint of the snapshot, in assignment order. */
  readonly all: readonly EndpointState[];
  /**
   * Bumped each time the candidate list changes; a balancer that derives structures from the list
   * (a round-robin schedule) rebuilds them when this differs from the value it built for.
   */
  version = 0;
  /** True when the current list was chosen in panic mode. */
  panicking = false;

  private readonly epoch: UsabilityEpoch;
  private readonly minHealthPercent: number;
  private readonly nonDraining: EndpointState[];
  private seenEpoch = -1;
  /** The list must be rebuilt once the clock reaches this (earliest ejection expiry). */
  private validUntil = Number.NEGATIVE_INFINITY;
  private current: EndpointState[] = [];
  // Two buffers, alternated, so a rebuild can compare old and new without allocating.
  private readonly bufA: EndpointState[] = [];
  private readonly bufB: EndpointState[] = [];

  /**
   * @param all the snapshot's endpoints (not copied; the caller must not mutate it). They share
   *   one `UsabilityEpoch` (`reconcileEndpoints` guarantees it); the first one's is watched.
   * @param minHealthPercent panic threshold, 0–100; 0 turns panic mode off.
   */
  constructor(all: readonly EndpointState[], minHealthPercent = 0) {
    this.all = all;
    this.epoch = all[0]?.signals.epoch ?? new UsabilityEpoch();
    this.minHealthPercent = minHealthPercent;
    this.nonDraining = all.filter((s) => !s.draining);
  }

  /**
   * The candidates at `nowMs`: usable endpoints in assignment order, or the panic list. Empty when
   * nothing may be picked. The array is owned by this set and valid until the next call.
   */
  list(nowMs: number): readonly EndpointState[] {
    if (this.seenEpoch !== this.epoch.value || nowMs >= this.validUntil) this.refresh(nowMs);
    return this.current;
  }

  private refresh(nowMs: number): void {
    this.seenEpoch = this.epoch.value;
    const next = this.current === this.bufA ? this.bufB : this.bufA;
    next.length = 0;
    let until = Number.POSITIVE_INFINITY;
    for (const s of this.all) {
      if (s.usable(nowMs)) next.push(s);
      else if (s.healthy && s.ejectedUntil < until) until = s.ejectedUntil;
    }
    this.validUntil = until;
    const panic =
      this.minHealthPercent > 0 && next.length * 100 < this.minHealthPercent * this.nonDraining.length;
    this.panicking = panic;
    const chosen = panic ? this.nonDraining : next;
    if (!sameList(chosen, this.current)) {
      this.current = chosen;
      this.version++;
    }
  }
}

function sameList(a: readonly EndpointState[], b: readonly EndpointState[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * True when every endpoint of `list` has its key in `exclude` (the attempts of one request): the
 * balancers then allow a repeat rather than failing the attempt.
 */
export function allExcluded(list: readonly EndpointState[], exclude: ReadonlySet<string>): boolean {
  if (exclude.size < list.length) return false;
  for (let i = 0; i < list.length; i++) if (!exclude.has(list[i]!.key)) return false;
  return true;
}
