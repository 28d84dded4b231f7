/**
 * Deadlines and retries for ordinary etcd calls (not watch streams, which live as long as their
 * watcher). A call either resolves or fails with a TrellisError within its deadline; it never hangs
 * on a dead or restarting etcd.
 */
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { etcdError } from "./etcd-errors.js";

/** How long one store call may take and how it waits between attempts, ms. */
export interface CallPolicy {
  /** Overall deadline of one store call, all attempts included. */
  timeoutMs: number;
  /** Backoff between attempts: starts here, doubles, capped at retryMaxMs and the time left. */
  retryMinMs: number;
  retryMaxMs: number;
}

/**
 * Runs `attempt` until it succeeds, fails with an error `retryable` refuses, or the deadline passes.
 *
 * 1. Each attempt receives the call's absolute deadline (epoch ms) to pass to gRPC, so an attempt
 *    never outlives the call.
 * 2. A failure is mapped to a TrellisError. If `retryable` accepts it and time is left, wait
 *    (backoff, never past the deadline) and try again; the attempt closure decides what a retry
 *    means (e.g. re-reading the key first after an ambiguous compare-and-swap).
 * 3. Otherwise — or once the deadline has passed, or too little of it is left for a real attempt —
 *    throw the last error (UNAVAILABLE or TIMEOUT for an unreachable etcd).
 * A local timer backs the gRPC deadline up, so even a call stuck before reaching gRPC (connection
 * setup) fails with TIMEOUT shortly after the deadline.
 */
export async function callWithDeadline<T>(
  what: string,
  policy: CallPolicy,
  attempt: (deadline: number) => Promise<T>,
  retryable: (err: TrellisError) => boolean,
): Promise<T> {
  const deadline = Date.now() + policy.timeoutMs;
  let wait = policy.retryMinMs;
  for (;;) {
    let err: TrellisError;
    try {
      return await bounded(attempt(deadline), deadline, what);
    } catch (e) {
      err = etcdError(e, what);
    }
    const left = deadline - Date.now();
    if (!retryable(err) || left <= 0) throw err;
    await new Promise((resolve) => setTimeout(resolve, Math.min(wait, left)));
    wait = Math.min(policy.retryMaxMs, wait * 2);
    // An attempt with almost no time left can only time out (a new channel alone needs a few ms to
    // resolve and connect), which would replace an informative error such as "connection refused".
    if (deadline - Date.now() < minAttemptMs(policy)) throw err;
  }
}

/** The least time worth starting an attempt with. */
function minAttemptMs(policy: CallPolicy): number {
  return Math.min(100, policy.timeoutMs / 10);
}

/** Grace after the deadline for gRPC to report DEADLINE_EXCEEDED itself before the backstop fires. */
const BACKSTOP_GRACE_MS = 250;

async function bounded<T>(work: Promise<T>, deadline: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const backstop = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new TrellisError(ErrorCode.TIMEOUT, `etcd ${what}: no answer by the deadline`)),
      Math.max(0, deadline - Date.now()) + BACKSTOP_GRACE_MS,
    );
  });
  try {
    return await Promise.race([work, backstop]);
  } finally {
    clearTimeout(timer);
  }
}
