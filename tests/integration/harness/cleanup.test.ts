/**
 * The harness's central promise: whatever a test process does (fails, or is SIGKILLed), the etcd and
 * redis-server processes it started do not outlive it. Each case runs the fixture
 * tests/fixtures/harness/leaky.test.ts in a child `node --test` with its own run dir and TMPDIR, so
 * this file's own records are never touched.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import type { LeakyReport } from "../../fixtures/harness/leaky.test.js";
import { isRunning } from "../../helpers/proc-stat.js";
import { type ManagedProcess, spawnManaged } from "../../helpers/processes.js";
import { reapAll, reapStale } from "../../helpers/reap.js";
import { readRecords } from "../../helpers/run-dir.js";
import { makeTempDir, removeTempDir } from "../../helpers/temp-dirs.js";
import { waitFor, withDeadline } from "../../helpers/wait.js";

const fixture = join(dirname(fileURLToPath(import.meta.url)), "../../fixtures/harness/leaky.test.js");

interface ChildRun {
  runner: ManagedProcess;
  runDir: string;
  pidsFile: string;
}

/** Starts the fixture under `node --test` in-process (isolation none: the runner IS the test process,
 * so killing it kills the owner of etcd and redis). The runner itself is a managed process. */
function startChild(t: { after: (fn: () => Promise<void>) => void }, mode: "fail" | "hang"): ChildRun {
  const runDir = makeTempDir("child-run");
  mkdirSync(join(runDir, "tmp"));
  const pidsFile = join(runDir, "pids.json");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TRELLIS_TEST_RUN_DIR: runDir,
    TMPDIR: join(runDir, "tmp"), // the child's temp dirs live inside runDir, so removing it removes all
    TRELLIS_HARNESS_PIDS_FILE: pidsFile,
    TRELLIS_HARNESS_FIXTURE_MODE: mode,
  };
  delete env.NODE_TEST_CONTEXT; // else the nested runner talks the parent runner's private protocol
  const args = ["--test", "--test-isolation=none", "--test-reporter=spec", fixture];
  const runner = spawnManaged(process.execPath, args, { name: `leaky-${mode}`, env });
  t.after(async () => {
    await runner.stop();
    await reapAll(runDir);
    await removeTempDir(runDir);
  });
  return { runner, runDir, pidsFile };
}

async function readReport(child: ChildRun): Promise<LeakyReport> {
  return waitFor(
    () => existsSync(child.pidsFile) && (JSON.parse(readFileSync(child.pidsFile, "utf8")) as LeakyReport),
    {
      what: "the fixture's pid report",
      timeoutMs: 30_000,
      failIf: () =>
        child.runner.exitInfo() === undefined ? undefined : `runner exited:\n${child.runner.logTail()}`,
    },
  );
}

async function assertAllGone(report: LeakyReport): Promise<void> {
  assert.equal(report.procs.length, 2);
  for (const p of report.procs) assert.ok(p.startTicks > 0, `${p.name} was running when reported`);
  await waitFor(() => report.procs.every((p) => !isRunning(p.pid, p.startTicks)), {
    what: `etcd and redis (${report.procs.map((p) => p.pid).join(", ")}) dead`,
    timeoutMs: 5000,
  });
}

test("a failing test's etcd and redis are killed and its records and dirs removed at exit", async (t) => {
  const child = startChild(t, "fail");
  const exit = await withDeadline(child.runner.exited, 60_000, "fixture run");
  const log = child.runner.logTail(60);
  assert.equal(exit.code, 1, log);
  assert.match(log, /failing on purpose/);
  const report = await readReport(child);
  await assertAllGone(report);
  // The exit hooks ran: nothing is left for a reaper.
  assert.deepEqual(readRecords("procs", child.runDir), []);
  assert.deepEqual(readRecords("dirs", child.runDir), []);
  for (const dir of report.dirs) assert.equal(existsSync(dir), false, `${dir} removed`);
});

test("a SIGKILLed test's etcd and redis die with it; reapStale clears what it left", async (t) => {
  const child = startChild(t, "hang");
  const report = await readReport(child);
  assert.equal(report.owner, child.runner.pid, "the fixture ran in the runner process");
  child.runner.kill("SIGKILL");
  const exit = await withDeadline(child.runner.exited, 10_000, "fixture runner exit");
  assert.equal(exit.signal, "SIGKILL");
  await assertAllGone(report);
  // No exit hook could run: the records and the data dir are still there, for the reaper.
  assert.equal(readRecords("procs", child.runDir).length, 2);
  for (const dir of report.dirs) assert.ok(existsSync(dir), `${dir} still there before the reap`);
  const reaped = await reapStale(child.runDir);
  assert.deepEqual(reaped.killed, [], "pdeathsig had already killed them");
  assert.deepEqual(readRecords("procs", child.runDir), []);
  assert.deepEqual(readRecords("dirs", child.runDir), []);
  for (const dir of report.dirs) assert.equal(existsSync(dir), false, `${dir} reaped`);
});
