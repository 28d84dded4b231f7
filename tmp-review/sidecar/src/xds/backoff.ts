/**
 * Exponential backoff with full jitter (delay uniformly in [0, min(max, base·2^attempt)]), so a
 * fleet of sidecars that lost the control plane together does not reconnect in lockstep.
 */
export interface BackoffOptions {
  /** First ceiling, ms (default 100). */
  baseMs?: number;
  /** Largest ceiling, ms (default 10 000). */
  maxMs?: number;
  /** Source of randomness in [0, 1) (tests pass a fixed one). */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 100;
    this.maxMs = opts.maxMs ?? 10_000;
    this.random = opts.random ?? Math.random;
  }

  /** The next delay in ms. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.floor(this.random() * ceiling);
  }

  /** After a success: start again from the base. */
  reset(): void {
    this.attempt = 0;
  }
}
