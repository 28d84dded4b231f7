/**
 * Time as the stores see it. Lease expiry in the embedded store and the watch timers (reconnect
 * backoff, periodic reconcile) go through a Clock so tests can drive them; production uses
 * `systemClock`.
 */

/** A pending timer; cancelling twice, or after it fired, is harmless. */
export interface ClockTimer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic-enough scale (only differences matter). */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds. Timers never keep the process alive on their own. */
  setTimer(fn: () => void, ms: number): ClockTimer;
}

/** The real clock: `performance.now()` and unref'd `setTimeout`s. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms) {
    const handle = setTimeout(fn, Math.max(0, ms));
    handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
};

/** Resolves after `ms` on `clock`, or at once when `signal` aborts (never rejects). */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) {
      resolve();
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      resolve();
    };
    const timer = clock.setTimer(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
