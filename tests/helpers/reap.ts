/**
 * Reapers for what test processes recorded in the run directory (see processes.ts, temp-dirs.ts).
 * Used by scripts/run-tests.mjs before and after a run; imports nothing from node:test, so importing
 * it does not turn the importer into a test file.
 */
import { rm } from "node:fs/promises";
import { isRunning } from "./proc-stat.js";
import type { ProcRecord } from "./processes.js";
import { readRecords, removeRecord, runDir } from "./run-dir.js";
import type { DirRecord } from "./temp-dirs.js";
import { isHarnessTempDir } from "./temp-dirs.js";
import { waitFor } from "./wait.js";

/** What a reap did. */
export interface ReapResult {
  /** Pids that were still running and got SIGKILL. */
  killed: number[];
  /** Temp dirs deleted. */
  removedDirs: string[];
}

/**
 * Kills every recorded process whose owner is dead (pid and start ticks both checked, so reused pids
 * are safe), deletes every recorded temp dir whose owner is dead, and removes those records. Leaves
 * records of live owners alone, so a concurrent test run in the same checkout is not disturbed.
 */
export function reapStale(base = runDir()): Promise<ReapResult> {
  return reap(base, (owner, ownerTicks) => !isRunning(owner, ownerTicks));
}

/** Like reapStale, but for every record whatever its owner: kills all recorded processes. */
export function reapAll(base = runDir()): Promise<ReapResult> {
  return reap(base, () => true);
}

async function reap(base: string, ownerGone: (pid: number, ticks: number) => boolean): Promise<ReapResult> {
  const killed: Array<[pid: number, ticks: number]> = [];
  const removedDirs: string[] = [];
  // 1. Processes first, so nothing is still writing into the dirs removed in step 3.
  for (const [name, value] of readRecords("procs", base)) {
    const rec = value as Partial<ProcRecord>;
    if (typeof rec.pid !== "number" || typeof rec.ownerPid !== "number") {
      removeRecord("procs", name, base);
      continue;
    }
    if (!ownerGone(rec.ownerPid, rec.ownerStartTicks ?? 0)) continue;
    const pid = rec.pid;
    const ticks = rec.startTicks ?? 0;
    if (isRunning(pid, ticks)) {
      try {
        process.kill(pid, "SIGKILL");
        killed.push([pid, ticks]);
      } catch {
        // Exited between the check and the kill.
      }
    }
    removeRecord("procs", name, base);
  }
  // 2. SIGKILL is delivered asynchronously: wait until the kernel has really taken them down.
  if (killed.length > 0) {
    await waitFor(() => killed.every(([pid, ticks]) => !isRunning(pid, ticks)), {
      what: `reaped pids ${killed.map(([pid]) => pid).join(",")} gone`,
      timeoutMs: 5000,
    });
  }
  // 3. Temp dirs of dead owners.
  for (const [name, value] of readRecords("dirs", base)) {
    const rec = value as Partial<DirRecord>;
    if (typeof rec.ownerPid === "number" && !ownerGone(rec.ownerPid, rec.ownerStartTicks ?? 0)) continue;
    if (typeof rec.path === "string" && isHarnessTempDir(rec.path)) {
      await rm(rec.path, { recursive: true, force: true, maxRetries: 3 });
      removedDirs.push(rec.path);
    }
    removeRecord("dirs", name, base);
  }
  return { killed: killed.map(([pid]) => pid), removedDirs };
}
