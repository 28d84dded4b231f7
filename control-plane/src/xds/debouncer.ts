/**
 * Adaptive debouncing of model changes before pushes. A burst of changes (an `apply` of many
 * policies, a deployment rolling) becomes one rebuild: the push waits until no change came for a
 * quiet window, but never longer than a maximum delay after the first change. Endpoint-only changes
 * use a much shorter quiet window (the fast path): they are what traffic needs soonest.
 */
import type { ModelChange } from "../model/types.js";

export interface DebounceOptions {
  /** Quiet window after a policy change (default 100 ms). */
  quietMs?: number;
  /** Quiet window when only endpoints changed (default 10 ms). */
  endpointQuietMs?: number;
  /** Upper bound from the first change to the push (default 1 s). */
  maxDelayMs?: number;
}

export class Debouncer {
  private pending: ModelChange | undefined;
  private firstAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly quietMs: number;
  private readonly endpointQuietMs: number;
  private readonly maxDelayMs: number;

  constructor(
    /** Receives the merged change and when its first part arrived (for convergence time). */
    private readonly fire: (change: ModelChange, firstAt: number) => void,
    options: DebounceOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.quietMs = options.quietMs ?? 100;
    this.endpointQuietMs = options.endpointQuietMs ?? 10;
    this.maxDelayMs = options.maxDelayMs ?? 1000;
  }

  /** Records a change and (re)arms the timer. */
  notify(change: ModelChange): void {
    const t = this.now();
    if (this.pending === undefined) {
      this.pending = { endpoints: new Set(), policyKinds: new Set() };
      this.firstAt = t;
    }
    for (const e of change.endpoints) this.pending.endpoints.add(e);
    for (const k of change.policyKinds) this.pending.policyKinds.add(k);
    const quiet = this.pending.policyKinds.size === 0 ? this.endpointQuietMs : this.quietMs;
    const due = Math.min(t + quiet, this.firstAt + this.maxDelayMs);
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), Math.max(0, due - t));
    this.timer.unref();
  }

  /** Fires now if anything is pending. */
  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const change = this.pending;
    this.pending = undefined;
    if (change !== undefined) this.fire(change, this.firstAt);
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }
}
