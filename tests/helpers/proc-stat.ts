/**
 * Facts about a live process from /proc (Linux only).
 *
 * A pid alone is not an identity: after a process dies the kernel may hand its pid to a new, unrelated
 * process. The start time (field 22 of /proc/PID/stat, in clock ticks since boot) never changes for
 * the life of a process, so (pid, startTicks) names exactly one process and a reaper that checks both
 * cannot kill a stranger that inherited a recorded pid.
 */
import { readFileSync } from "node:fs";

interface ProcStat {
  /** One-letter state (R, S, D, Z, …); Z and X mean dead but not yet reaped. */
  state: string;
  /** Start time in clock ticks after boot. */
  startTicks: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Field 2 (comm) is parenthesised and may itself contain spaces or ')': split after the last ')'.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state), so field N is rest[N - 3].
  const state = rest[0];
  const startTicks = Number(rest[22 - 3]);
  if (state === undefined || !Number.isFinite(startTicks)) return undefined;
  return { state, startTicks };
}

/** Start time of a running process in clock ticks since boot; undefined if it is gone or a zombie. */
export function startTicks(pid: number): number | undefined {
  const stat = readStat(pid);
  if (stat === undefined || stat.state === "Z" || stat.state === "X") return undefined;
  return stat.startTicks;
}

/** True while the process `pid` that started at `ticks` is still running (zombies count as dead). */
export function isRunning(pid: number, ticks: number): boolean {
  return ticks > 0 && startTicks(pid) === ticks;
}
