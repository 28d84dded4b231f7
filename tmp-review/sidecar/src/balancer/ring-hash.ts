/**
 * Ring hash (policy RING_HASH): consistent hashing on a per-request key (a header, a cookie, the
 * source IP, a query parameter — see hash-key.ts), so requests with the same key keep landing on
 * the same endpoint (its caches stay warm), and a change of membership moves only the keys it must.
 *
 * Source: Karger et al., "Consistent Hashing and Random Trees: Distributed Caching Protocols for
 * Relieving Hot Spots on the World Wide Web" (STOC 1997): endpoints and keys are hashed onto one
 * circle, a key belongs to the first endpoint point clockwise from it, and each endpoint sits at
 * many points ("virtual nodes") so the arcs even out. The layout — points per endpoint in
 * proportion to its weight, each point the hash of the endpoint's name and an index — follows
 * libketama; Envoy's `ring_hash` is the same family.
 *
 * Building the ring (`buildRing`; once per membership change — a health change reuses the
 * previous ring, since unusable endpoints are skipped at pick time):
 *  1. Take every endpoint of the snapshot, usable or not, sorted by key: the ring depends on the
 *     set of (key, weight) only, not on assignment order, so every caller of the service builds
 *     the same ring and sends a key to the same endpoint.
 *  2. Divide the weights by their gcd ({100, 100} places like {1, 1}, at a hundredth of the memory).
 *  3. Only if the reduced weights sum to more than the point budget, scale them to it (each ≥ 1).
 *  4. P, the points per unit of weight, is `minimumRingSize`, halved (rounding up) while the ring
 *     would exceed the budget. A lone weight-1 endpoint gets `minimumRingSize` points, so the ring
 *     always has at least that many (step 3 aside), and every endpoint at least P·weight.
 *  5. Endpoint i's points are murmur3Uint32(j, murmur3(key_i)) for j = 0 … w_i·P − 1: a fixed
 *     sequence per key of which the ring takes a prefix (libketama hashes "key-j"; this builds no
 *     string per point).
 *  6. Sort the points by hash, equal hashes by endpoint rank: an LSD radix sort (stable, so the
 *     rank-major generation order settles ties), O(points) where a comparison sort of a million
 *     points blocks the event loop for 200 ms.
 *
 * Why per-unit points rather than Envoy's "spread minimumRingSize over the endpoints": an
 * endpoint's points depend only on its key, its weight and P. Removing an endpoint removes its
 * points and nothing else, so every key that mapped to a surviving endpoint still does — exactly
 * the removed endpoint's keys move — and adding one moves keys only to the newcomer. Envoy's
 * scaling gives the survivors more points after a removal, which also moves keys between them.
 * That exactness holds while P and the gcd are unchanged: P changes only when a ring crosses the
 * budget (over a thousand weight-1 endpoints at the default size), the gcd only when weights
 * differ. When P does change, the prefix property of step 5 keeps the move proportional.
 *
 * A pick (O(log ring) plus a short walk, no allocation):
 *  1. Take the candidates (usable endpoints, or all non-draining ones in panic mode; see
 *     usable-set.ts). None → undefined.
 *  2. h = murmur3(hashKey). Without a key, h is random: such requests are spread at random (the
 *     proto's contract), in proportion to the endpoints' arcs.
 *  3. Binary-search the first point ≥ h, wrapping past the last to the first.
 *  4. Walk clockwise to the first point whose endpoint is a candidate and not in `exclude`. An
 *     ejected, unhealthy or draining endpoint's keys thus go to its ring successors and come back
 *     when it does, while every other key stays put; a retry goes to the next endpoint on the ring.
 *     When every candidate is excluded, walk ignoring `exclude`: a repeat beats failing.
 */
import { LoadBalancerPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import type { BalancerConfig, BalancerDeps, BalancerFactory, LoadBalancer, PickContext } from "./balancer.js";
import type { EndpointState } from "./endpoint-state.js";
import { murmur3, murmur3Uint32 } from "./hash.js";
import { allExcluded, UsableSet } from "./usable-set.js";

/** `LoadBalancer.minimumRingSize` when unset (the proto's documented default). */
export const DEFAULT_MINIMUM_RING_SIZE = 1024;

/** The largest `minimumRingSize` accepted (the proto's validation bound); larger values are clamped. */
export const MAX_MINIMUM_RING_SIZE = 8_388_608;

/**
 * Points a ring may hold before P is halved (step 4): 8 bytes each, so 8 MiB at most by default.
 * A larger `minimumRingSize` raises it to twice that size.
 */
export const RING_POINT_BUDGET = 1 << 20;

/** At most this many members (endpoints) per ring; the rest are left out (far beyond any real cluster). */
const MAX_MEMBERS = 1 << 21;

/** One endpoint as the ring sees it. */
export interface RingMember {
  readonly key: string;
  /** Relative weight ≥ 1. */
  readonly weight: number;
}

/** An immutable hash ring over a set of members. Shared by successive balancers while membership holds. */
export class Ring {
  /** Member keys by rank (ascending key order, step 1). */
  readonly keys: readonly string[];
  /** Member weights by rank, as given. */
  readonly weights: readonly number[];
  /** The `minimumRingSize` the ring was built for. */
  readonly minimumRingSize: number;
  /** P: points per unit of (reduced) weight (step 4). */
  readonly pointsPerWeight: number;
  /** Point hashes, ascending. */
  readonly hashes: Uint32Array;
  /** `owners[i]` is the rank of the member owning point i. */
  readonly owners: Uint32Array;

  constructor(
    members: readonly RingMember[],
    minimumRingSize: number,
    pointsPerWeight: number,
    hashes: Uint32Array,
    owners: Uint32Array,
  ) {
    this.keys = members.map((m) => m.key);
    this.weights = members.map((m) => m.weight);
    this.minimumRingSize = minimumRingSize;
    this.pointsPerWeight = pointsPerWeight;
    this.hashes = hashes;
    this.owners = owners;
  }

  /** Number of points. */
  get size(): number {
    return this.hashes.length;
  }

  /** Index of the first point with hash ≥ `h` (a uint32), wrapping to 0 (pick step 3). Ring non-empty. */
  find(h: number): number {
    const hashes = this.hashes;
    let lo = 0;
    let hi = hashes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (hashes[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === hashes.length ? 0 : lo;
  }

  /** True when this ring was built from exactly `sorted` (by key) and `minimumRingSize`. */
  builtFrom(sorted: readonly RingMember[], minimumRingSize: number): boolean {
    if (this.minimumRingSize !== minimumRingSize || this.keys.length !== sorted.length) return false;
    for (let i = 0; i < sorted.length; i++) {
      const m = sorted[i]!;
      if (this.keys[i] !== m.key || this.weights[i] !== m.weight) return false;
    }
    return true;
  }
}

/** Members sorted by key, code-unit order (build step 1); at most `MAX_MEMBERS`. */
export function sortMembers(members: readonly RingMember[]): RingMember[] {
  const sorted = [...members].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  if (sorted.length > MAX_MEMBERS) sorted.length = MAX_MEMBERS;
  return sorted;
}

/**
 * Builds the ring for `members` (steps 1–6 of the file comment). `minimumRingSize` is clamped to
 * [1, MAX_MINIMUM_RING_SIZE]. Duplicate keys are the caller's bug (`reconcileEndpoints` drops
 * them). Runs per membership change, never per request: O(points · log points).
 */
export function buildRing(members: readonly RingMember[], minimumRingSize = DEFAULT_MINIMUM_RING_SIZE): Ring {
  const min = clampRingSize(minimumRingSize);
  const sorted = sortMembers(members); // 1.
  const n = sorted.length;
  if (n === 0) return new Ring(sorted, min, 0, new Uint32Array(0), new Uint32Array(0));
  const budget = Math.max(RING_POINT_BUDGET, 2 * min);
  let g = 0; // 2.
  for (const m of sorted) g = gcd(g, Math.max(1, Math.floor(m.weight)));
  let units = sorted.map((m) => Math.max(1, Math.floor(m.weight)) / g);
  let total = units.reduce((a, b) => a + b, 0);
  if (total > budget) {
    // 3. Rounded down against what the ≥ 1 floors may add, so the sum stays within the budget.
    const room = Math.max(0, budget - n);
    units = units.map((u) => Math.max(1, Math.floor((u * room) / total)));
    total = units.reduce((a, b) => a + b, 0);
  }
  let per = min; // 4.
  while (per > 1 && total * per > budget) per = Math.ceil(per / 2);
  const size = total * per;
  const hashes = new Uint32Array(size);
  const owners = new Uint32Array(size);
  let at = 0;
  for (let rank = 0; rank < n; rank++) {
    const seed = murmur3(sorted[rank]!.key); // 5.
    const count = units[rank]! * per;
    for (let j = 0; j < count; j++) {
      hashes[at] = murmur3Uint32(j, seed);
      owners[at++] = rank;
    }
  }
  radixSort(hashes, owners); // 6.
  return new Ring(sorted, min, per, hashes, owners);
}

/**
 * Sorts `keys` ascending in place, moving `values[i]` with `keys[i]`; stable. LSD radix sort,
 * four passes of 8 bits through one scratch pair of arrays.
 */
export function radixSort(keys: Uint32Array, values: Uint32Array): void {
  const n = keys.length;
  let srcK: Uint32Array = keys;
  let srcV: Uint32Array = values;
  let dstK: Uint32Array = new Uint32Array(n);
  let dstV: Uint32Array = new Uint32Array(n);
  const offsets = new Uint32Array(256);
  for (let shift = 0; shift < 32; shift += 8) {
    offsets.fill(0);
    for (let i = 0; i < n; i++) offsets[(srcK[i]! >>> shift) & 0xff]!++;
    let sum = 0;
    for (let d = 0; d < 256; d++) {
      const c = offsets[d]!;
      offsets[d] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const k = srcK[i]!;
      const slot = offsets[(k >>> shift) & 0xff]!++;
      dstK[slot] = k;
      dstV[slot] = srcV[i]!;
    }
    [srcK, dstK] = [dstK, srcK];
    [srcV, dstV] = [dstV, srcV];
  }
  // Four passes: the sorted data is back in the caller's arrays.
}

/** NaN → the default; otherwise an integer in [1, MAX_MINIMUM_RING_SIZE]. */
function clampRingSize(size: number): number {
  if (Number.isNaN(size)) return DEFAULT_MINIMUM_RING_SIZE;
  return Math.min(Math.max(1, Math.floor(size)), MAX_MINIMUM_RING_SIZE);
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Consistent hashing over a cluster snapshot's endpoints; see the file comment. */
export class RingHashBalancer implements LoadBalancer {
  readonly policy = LoadBalancerPolicy.RING_HASH;
  readonly endpoints: readonly EndpointState[];
  /** The ring (shared with the previous balancer when membership is unchanged). */
  readonly ring: Ring;
  private readonly usable: UsableSet;
  private readonly deps: BalancerDeps;
  /** This snapshot's state for each ring rank. */
  private readonly byRank: EndpointState[];
  private readonly rankOf: Map<EndpointState, number>;
  /** `candidate[rank]` is 1 when that endpoint is in the current candidate list. */
  private readonly candidate: Uint8Array;
  private builtFor = -1;

  constructor(
    endpoints: readonly EndpointState[],
    config: BalancerConfig,
    deps: BalancerDeps,
    previous: LoadBalancer | undefined,
  ) {
    this.endpoints = endpoints;
    this.usable = new UsableSet(endpoints, config.minHealthPercent ?? 0);
    this.deps = deps;
    const sorted = sortMembers(endpoints.map((s) => ({ key: s.key, weight: s.data.weight })));
    const min = clampRingSize(config.minimumRingSize ?? DEFAULT_MINIMUM_RING_SIZE);
    const reusable = previous instanceof RingHashBalancer && previous.ring.builtFrom(sorted, min);
    this.ring = reusable ? previous.ring : buildRing(sorted, min);
    const byKey = new Map<string, EndpointState>();
    for (const s of endpoints) byKey.set(s.key, s);
    this.byRank = this.ring.keys.map((k) => byKey.get(k)!);
    this.rankOf = new Map(this.byRank.map((s, rank) => [s, rank]));
    this.candidate = new Uint8Array(this.byRank.length);
  }

  get panicking(): boolean {
    return this.usable.panicking;
  }

  /** See the file comment for the steps; `ctx.hashKey` is the request's key. */
  pick(ctx: PickContext): EndpointState | undefined {
    const list = this.usable.list(this.deps.now()); // 1.
    if (list.length === 0) return undefined;
    if (this.builtFor !== this.usable.version) this.refresh(list);
    const key = ctx.hashKey;
    const h = key === undefined ? (this.deps.random() * 4294967296) >>> 0 : murmur3(key); // 2.
    const start = this.ring.find(h); // 3.
    let exclude = ctx.exclude;
    if (exclude !== undefined && (exclude.size === 0 || allExcluded(list, exclude))) exclude = undefined;
    return this.walk(start, exclude); // 4.
  }

  /** Step 4: the first candidate (not in `exclude`) at or after point `start`. */
  private walk(start: number, exclude: ReadonlySet<string> | undefined): EndpointState | undefined {
    const owners = this.ring.owners;
    const size = owners.length;
    for (let k = 0; k < size; k++) {
      const i = start + k < size ? start + k : start + k - size;
      const rank = owners[i]!;
      if (this.candidate[rank] === 0) continue;
      const s = this.byRank[rank]!;
      if (exclude === undefined || !exclude.has(s.key)) return s;
    }
    return undefined;
  }

  /** Marks the ranks of the current candidates. */
  private refresh(list: readonly EndpointState[]): void {
    this.candidate.fill(0);
    for (let i = 0; i < list.length; i++) {
      const rank = this.rankOf.get(list[i]!);
      if (rank !== undefined) this.candidate[rank] = 1;
    }
    this.builtFor = this.usable.version;
  }
}

/** Builds `RingHashBalancer`s, reusing `previous`'s ring when its membership is unchanged. */
export const ringHashFactory: BalancerFactory = {
  policy: LoadBalancerPolicy.RING_HASH,
  create: (endpoints, config, deps, previous) => new RingHashBalancer(endpoints, config, deps, previous),
};
