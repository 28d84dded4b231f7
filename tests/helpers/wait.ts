/**
 * Waiting for conditions with a deadline: the harness never sleeps "to let things settle", it polls
 * the condition it needs and fails with a clear TIMEOUT error when the deadline passes.
 */
import { setTimeout as delay } from "node:timers/promises";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";

/** Options for waitFor. */
export interface WaitOptions {
  /** What is being waited for, for the error message ("etcd on 127.0.0.1:2379 healthy"). */
  what: string;
  /** Give up after this many ms (default 10000). */
  timeoutMs?: number;
  /** Poll every this many ms (default 25). */
  intervalMs?: number;
  /** Checked after each unsuccessful poll; a returned string aborts the wait with that reason (e.g.
   * "the process exited"). */
  failIf?: () => string | undefined;
}

/**
 * Polls `probe` until it returns a value other than undefined/false and returns that value. A probe that
 * throws counts as "not yet"; its last error is kept as the cause of the TIMEOUT TrellisError.
 */
export async function waitFor<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  opts: WaitOptions,
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    const reason = opts.failIf?.();
    if (reason !== undefined) {
      throw new TrellisError(ErrorCode.UNAVAILABLE, `gave up waiting for ${opts.what}: ${reason}`);
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      const last = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
      throw new TrellisError(ErrorCode.TIMEOUT, `${opts.what}: not true after ${timeoutMs} ms${last}`, {
        cause: lastError,
      });
    }
    await delay(Math.min(opts.intervalMs ?? 25, left));
  }
}

/** Resolves like `promise`, or rejects with a TIMEOUT TrellisError naming `what` after `ms`. */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new TrellisError(ErrorCode.TIMEOUT, `${what}: no result in ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
