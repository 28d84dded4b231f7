/**
 * The run directory: where the harness records every process and temp dir a test starts, so that a
 * later reaper can clean up after a test process that failed, hung or was SIGKILLed.
 *
 * Layout: `<run dir>/procs/<pid>.json` and `<run dir>/dirs/<name>.json`, one small JSON record each,
 * written atomically (temp file + rename) so a reaper never reads half a record.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Record kinds, one sub-directory each. */
export type RecordKind = "procs" | "dirs";

// This file compiles to <repo>/tests/dist/helpers/run-dir.js.
const repoRoot = resolve(fileURLToPath(import.meta.url), "../../../..");

/** The run directory: env TRELLIS_TEST_RUN_DIR if set, else `<repo>/.trellis-test-run` (git-ignored). */
export function runDir(): string {
  return process.env.TRELLIS_TEST_RUN_DIR ?? join(repoRoot, ".trellis-test-run");
}

/** Writes record `name` of `kind` under `base` atomically, creating directories as needed. */
export function writeRecord(kind: RecordKind, name: string, data: object, base = runDir()): void {
  const dir = join(base, kind);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${name}.${process.pid}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(data)}\n`);
  renameSync(tmp, join(dir, `${name}.json`));
}

/** Removes record `name` of `kind`; a missing record is not an error. */
export function removeRecord(kind: RecordKind, name: string, base = runDir()): void {
  rmSync(join(base, kind, `${name}.json`), { force: true });
}

/** Every readable record of `kind` as `[name, parsed JSON]`; unreadable or corrupt files are skipped. */
export function readRecords(kind: RecordKind, base = runDir()): Array<[string, unknown]> {
  let files: string[];
  try {
    files = readdirSync(join(base, kind));
  } catch {
    return [];
  }
  const out: Array<[string, unknown]> = [];
  for (const file of files) {
    if (!file.endsWith(".json")) continue;
    try {
      out.push([file.slice(0, -5), JSON.parse(readFileSync(join(base, kind, file), "utf8"))]);
    } catch {
      // Removed under our feet by another reaper, or not JSON: nothing to do with it.
    }
  }
  return out;
}
