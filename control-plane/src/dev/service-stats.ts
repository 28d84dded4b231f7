/**
 * Per-service call outcomes for `trellis dev`'s table: every completed call's completion time,
 * latency and success, kept whole (a 30 s demo at 50 req/s is a few thousand samples per service;
 * an hour at 1,000 req/s is 3.6 M, about 60 MB — fine for a dev tool, and exact percentiles need
 * the samples), queried by time window.
 *
 * Samples are kept in completion order, so a window is a binary search for its start and a scan
 * to its end. They mostly arrive in that order, but not always: inventory is measured by both
 * orders replicas, whose batches interleave. A sample older than the newest is inserted in its
 * place; it is at most a batch interval older, so the move is a short tail.
 */

/** What the table shows for one service over one window. Latencies in ms; null when no sample. */
export interface WindowStats {
  service: string;
  /** Calls that completed in the window. */
  requests: number;
  /** Of those, the successful ones (HTTP 200 / gRPC OK within the deadline). */
  ok: number;
  /** Completed calls per second over the window. */
  rps: number;
  /** ok / requests, 0..1; null when there were none. */
  successRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
}

const INITIAL_CAPACITY = 4096;

/** The samples of one service. */
export class ServiceStats {
  private at = new Float64Array(INITIAL_CAPACITY);
  private ms = new Float64Array(INITIAL_CAPACITY);
  private ok = new Uint8Array(INITIAL_CAPACITY);
  private n = 0;

  constructor(readonly service: string) {}

  /** Number of samples so far. */
  get count(): number {
    return this.n;
  }

  /**
   * Adds one completed call: `atMs` wall-clock completion time (ms since the epoch), `latencyMs`
   * (NaN when there is no meaningful latency, e.g. a request that was never sent; it then counts as
   * a failure and is left out of the percentiles), `ok` its success.
   */
  add(atMs: number, latencyMs: number, ok: boolean): void {
    if (this.n === this.at.length) this.grow();
    const i = this.n > 0 && (this.at[this.n - 1] as number) > atMs ? this.firstAfter(atMs) : this.n;
    if (i < this.n) {
      this.at.copyWithin(i + 1, i, this.n);
      this.ms.copyWithin(i + 1, i, this.n);
      this.ok.copyWithin(i + 1, i, this.n);
    }
    this.at[i] = atMs;
    this.ms[i] = latencyMs;
    this.ok[i] = ok ? 1 : 0;
    this.n++;
  }

  /** Stats of the calls that completed in (fromMs, toMs]; the rate is over that span. */
  window(fromMs: number, toMs: number): WindowStats {
    const start = this.firstAfter(fromMs);
    const latencies: number[] = [];
    let requests = 0;
    let ok = 0;
    for (let i = start; i < this.n; i++) {
      const at = this.at[i] as number;
      if (at > toMs) break;
      requests++;
      ok += this.ok[i] as number;
      const ms = this.ms[i] as number;
      if (!Number.isNaN(ms)) latencies.push(ms);
    }
    latencies.sort((a, b) => a - b);
    const spanS = Math.max(0.001, (toMs - fromMs) / 1000);
    return {
      service: this.service,
      requests,
      ok,
      rps: requests / spanS,
      successRate: requests === 0 ? null : ok / requests,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
    };
  }

  /** Index of the first sample completed after `t` (binary search; samples are in time order). */
  private firstAfter(t: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.at[mid] as number) <= t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private grow(): void {
    const size = this.at.length * 2;
    const at = new Float64Array(size);
    const ms = new Float64Array(size);
    const ok = new Uint8Array(size);
    at.set(this.at);
    ms.set(this.ms);
    ok.set(this.ok);
    this.at = at;
    this.ms = ms;
    this.ok = ok;
  }
}

/**
 * The `q` quantile (0..1) of ascending `sorted` by nearest rank (the smallest value with at least
 * q of the samples at or below it), so p99 of 100 samples is the 99th, never an interpolation
 * between two real latencies. Null when empty.
 */
export function percentile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1] as number;
}
