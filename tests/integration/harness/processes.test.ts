/** spawnManaged records, logs and stops its processes; the reapers kill exactly what they should. */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { isRunning, startTicks } from "../../helpers/proc-stat.js";
import { processError, spawnManaged } from "../../helpers/processes.js";
import { reapAll, reapStale } from "../../helpers/reap.js";
import { readRecords, writeRecord } from "../../helpers/run-dir.js";
import { removeTempDir } from "../../helpers/temp-dirs.js";
import { waitFor, withDeadline } from "../../helpers/wait.js";

test("a managed process is recorded, logged, and stopped with its record and log removed", async () => {
  const proc = spawnManaged("sh", ["-c", "echo to-stdout; echo to-stderr >&2; exec sleep 1000"]);
  const ticks = startTicks(proc.pid);
  assert.ok(ticks !== undefined && isRunning(proc.pid, ticks));
  const record = readRecords("procs").find(([name]) => name === String(proc.pid))?.[1];
  assert.deepEqual(record, {
    pid: proc.pid,
    startTicks: ticks,
    ownerPid: process.pid,
    ownerStartTicks: startTicks(process.pid),
    cmd: ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exec sleep 1000"],
  });
  await waitFor(() => /to-stdout/.test(proc.logTail()) && /to-stderr/.test(proc.logTail()), {
    what: "both streams in the log",
  });
  await proc.stop();
  assert.deepEqual(proc.exitInfo(), { code: null, signal: "SIGTERM" });
  assert.equal(isRunning(proc.pid, ticks), false);
  assert.equal(
    readRecords("procs").some(([name]) => name === String(proc.pid)),
    false,
  );
  assert.equal(existsSync(dirname(proc.logFile)), false);
});

test("stop() escalates to SIGKILL when the process ignores its stop signal", async () => {
  const script = "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000);";
  const proc = spawnManaged(process.execPath, ["-e", script], { name: "stubborn", stopTimeoutMs: 200 });
  await waitFor(() => proc.logTail().includes("ready"), { what: "stubborn ready" });
  await withDeadline(proc.stop(), 5000, "stop");
  assert.equal(proc.exitInfo()?.signal, "SIGKILL");
});

test("processError carries the exit status and the log tail", async () => {
  const proc = spawnManaged("sh", ["-c", "echo boom-marker; exit 3"]);
  await proc.exited;
  const err = processError(proc, "did not start");
  assert.match(err.message, /did not start/);
  assert.match(err.message, /code=3/);
  assert.match(err.message, /boom-marker/);
  assert.equal(err.code, "TRELLIS_ERR_UNAVAILABLE");
  await proc.stop();
});

test("reapStale kills processes of dead owners only, never a reused pid; reapAll kills the rest", async (t) => {
  const base = mkdtempSync(join(tmpdir(), "trellis-reap-test-"));
  const victims: ChildProcess[] = [];
  const sleeper = (): { pid: number; ticks: number; exited: Promise<unknown> } => {
    const child = spawn("sleep", ["60"], { stdio: "ignore" });
    victims.push(child);
    const pid = child.pid!;
    return { pid, ticks: startTicks(pid)!, exited: new Promise((r) => child.once("exit", r)) };
  };
  t.after(async () => {
    for (const v of victims) v.kill("SIGKILL");
    await removeTempDir(base);
  });
  const deadOwner = spawnSync("true").pid; // a pid whose process has certainly exited
  const me = { ownerPid: process.pid, ownerStartTicks: startTicks(process.pid) };
  const orphan = sleeper();
  const owned = sleeper();
  const reused = sleeper();
  const rec = (p: { pid: number; ticks: number }, owner: object) => ({
    pid: p.pid,
    startTicks: p.ticks,
    cmd: ["sleep"],
    ...owner,
  });
  writeRecord("procs", "orphan", rec(orphan, { ownerPid: deadOwner, ownerStartTicks: 1 }), base);
  writeRecord("procs", "owned", rec(owned, me), base);
  // Same pid, different start time: the recorded process is gone and this pid now belongs to a stranger.
  writeRecord(
    "procs",
    "reused",
    rec({ pid: reused.pid, ticks: reused.ticks + 1 }, { ownerPid: deadOwner }),
    base,
  );
  const staleDir = mkdtempSync(join(tmpdir(), "trellis-stale-"));
  const foreignDir = mkdtempSync(join(tmpdir(), "not-ours-"));
  t.after(() => removeTempDir(foreignDir));
  writeRecord("dirs", "stale", { path: staleDir, ownerPid: deadOwner, ownerStartTicks: 1 }, base);
  writeRecord("dirs", "foreign", { path: foreignDir, ownerPid: deadOwner, ownerStartTicks: 1 }, base);

  const result = await reapStale(base);
  assert.deepEqual(result.killed, [orphan.pid]);
  await withDeadline(orphan.exited, 5000, "orphan exit");
  assert.ok(isRunning(owned.pid, owned.ticks), "a live owner's process is spared");
  assert.ok(isRunning(reused.pid, reused.ticks), "a reused pid is spared");
  assert.deepEqual(
    readRecords("procs", base).map(([name]) => name),
    ["owned"],
  );
  assert.equal(existsSync(staleDir), false, "a dead owner's temp dir is removed");
  assert.equal(existsSync(foreignDir), true, "a recorded path that is not a harness temp dir is kept");
  assert.deepEqual(readRecords("dirs", base), []);

  const all = await reapAll(base);
  assert.deepEqual(all.killed, [owned.pid]);
  assert.deepEqual(readRecords("procs", base), []);
});
