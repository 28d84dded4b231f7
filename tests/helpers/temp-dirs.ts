/**
 * Temporary directories (data dirs, log dirs, HOMEs) that are recorded in the run directory, so a
 * reaper removes them even when the test process that made them was killed before it could.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { startTicks } from "./proc-stat.js";
import { removeRecord, writeRecord } from "./run-dir.js";

/** What a temp-dir record holds. */
export interface DirRecord {
  path: string;
  ownerPid: number;
  ownerStartTicks: number;
}

const owned = new Set<string>();
let exitHookInstalled = false;

/** Creates `<tmpdir>/trellis-<prefix>-XXXXXX`, records it, and returns its absolute path. */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `trellis-${prefix}-`));
  const record: DirRecord = {
    path: dir,
    ownerPid: process.pid,
    ownerStartTicks: startTicks(process.pid) ?? 0,
  };
  writeRecord("dirs", basename(dir), record);
  owned.add(dir);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", removeOwnedTempDirsSync);
  }
  return dir;
}

/** Deletes a directory made by makeTempDir, then its record. Safe to call twice. */
export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  removeRecord("dirs", basename(dir));
  owned.delete(dir);
}

/** Synchronously deletes every temp dir this process still owns (the process 'exit' hook). */
export function removeOwnedTempDirsSync(): void {
  for (const dir of owned) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      removeRecord("dirs", basename(dir));
    } catch {
      // Left with its record: the next reapStale() removes it.
    }
  }
  owned.clear();
}

/** True if `path` looks like one of ours; reapers refuse to delete anything else a record names. */
export function isHarnessTempDir(path: string): boolean {
  return basename(path).startsWith("trellis-");
}
