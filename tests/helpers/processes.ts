/**
 * Child processes a test starts (etcd, redis-server, …), made impossible to leak:
 *
 * 1. Each is spawned through `setpriv --pdeathsig KILL`, so the kernel SIGKILLs it the moment the test
 *    process dies, however it dies (failure, timeout, SIGKILL).
 * 2. Each is recorded as `<run dir>/procs/<pid>.json` ({pid, startTicks, ownerPid, ownerStartTicks,
 *    cmd}); reapStale()/reapAll() in reap.ts kill what a dead owner left behind (pdeathsig has a tiny
 *    window between fork and prctl, and the record also covers anything that escaped it).
 * 3. The test process kills everything it still owns in a process 'exit' hook.
 *
 * Children are unref'd, so a test that forgets stop() does not hang its test file: the file ends,
 * the exit hook kills the child. stdout and stderr go to a log file in a per-process temp dir.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { startTicks } from "./proc-stat.js";
import { removeRecord, writeRecord } from "./run-dir.js";
import { makeTempDir, removeTempDir } from "./temp-dirs.js";
import { withDeadline } from "./wait.js";

/** What a process record holds. */
export interface ProcRecord {
  pid: number;
  /** Field 22 of /proc/PID/stat, so a reused pid is never mistaken for this process. */
  startTicks: number;
  ownerPid: number;
  ownerStartTicks: number;
  cmd: string[];
}

/** Options for spawnManaged. */
export interface SpawnOptions {
  /** Short name for the log dir and error messages (default: basename of cmd). */
  name?: string;
  /** Environment of the child (default: process.env). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** First signal stop() sends (default SIGTERM). etcd callers pass SIGKILL: etcd lingers on TERM. */
  stopSignal?: NodeJS.Signals;
  /** How long stop() waits after stopSignal before it sends SIGKILL, in ms (default 5000). */
  stopTimeoutMs?: number;
  /** Pipe stdin and stdout to the test (stderr still goes to the log file). Default: both to the log. */
  pipe?: boolean;
}

/** How a process ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running child process owned by this test process. */
export interface ManagedProcess {
  readonly pid: number;
  readonly name: string;
  /** stdout and stderr of the process, interleaved. Deleted by stop(). */
  readonly logFile: string;
  /** Resolves (never rejects) when the process has exited. Reading it refs the child, so awaiting it
   * keeps the test process alive until then. */
  readonly exited: Promise<ExitInfo>;
  /** The exit status once the process has exited, else undefined. */
  exitInfo(): ExitInfo | undefined;
  /** Sends `signal` (default SIGKILL) unless the process already exited. Does not wait; see `exited`. */
  kill(signal?: NodeJS.Signals): void;
  /** Sends the stop signal, escalates to SIGKILL after the stop timeout, waits for exit, then removes
   * the record and the log dir. Idempotent. */
  stop(): Promise<void>;
  /** The last `lines` lines of the log (default 30), for error messages. */
  logTail(lines?: number): string;
  /** With `pipe`: the child's stdin and stdout. */
  readonly stdin: NodeJS.WritableStream | null;
  readonly stdout: NodeJS.ReadableStream | null;
}

const owned = new Map<number, ChildProcess>();
let exitHookInstalled = false;

/**
 * Spawns `cmd args` under `setpriv --pdeathsig KILL`, records it in the run directory and returns its
 * handle. Throws a TrellisError (CONFIG) if it cannot be spawned at all.
 */
export function spawnManaged(cmd: string, args: readonly string[], opts: SpawnOptions = {}): ManagedProcess {
  const name = opts.name ?? basename(cmd);
  const logDir = makeTempDir(`log-${name}`);
  const logFile = join(logDir, "output.log");
  const fd = openSync(logFile, "a");
  let child: ChildProcess;
  try {
    child = spawn("setpriv", ["--pdeathsig", "KILL", "--", cmd, ...args], {
      stdio: opts.pipe ? ["pipe", "pipe", fd] : ["ignore", fd, fd],
      env: opts.env ?? process.env,
      ...(opts.cwd !== undefined && { cwd: opts.cwd }),
    });
  } finally {
    closeSync(fd);
  }
  child.on("error", () => {}); // spawn failures are reported below; later kill errors are moot.
  const pid = child.pid;
  if (pid === undefined) {
    void removeTempDir(logDir);
    throw new TrellisError(ErrorCode.CONFIG, `could not spawn ${cmd} (is util-linux setpriv installed?)`);
  }
  const record: ProcRecord = {
    pid,
    startTicks: startTicks(pid) ?? 0,
    ownerPid: process.pid,
    ownerStartTicks: startTicks(process.pid) ?? 0,
    cmd: [cmd, ...args],
  };
  try {
    writeRecord("procs", String(pid), record);
  } catch (err) {
    child.kill("SIGKILL");
    throw TrellisError.from(err, ErrorCode.CONFIG);
  }
  owned.set(pid, child);
  installExitHook();
  child.unref();

  let info: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once("exit", (code, signal) => {
      info = { code, signal };
      resolve(info);
    });
  });
  const logTail = (lines = 30): string => tail(logFile, lines);
  const kill = (signal: NodeJS.Signals = "SIGKILL"): void => {
    if (info !== undefined) return;
    child.ref(); // an awaited `exited` must keep the event loop alive until the exit arrives.
    child.kill(signal);
  };
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (info === undefined) {
        kill(opts.stopSignal ?? "SIGTERM");
        try {
          await withDeadline(exited, opts.stopTimeoutMs ?? 5000, `${name} exit`);
        } catch {
          kill("SIGKILL");
          await exited;
        }
      }
      owned.delete(pid);
      removeRecord("procs", String(pid));
      await removeTempDir(logDir);
    })();
    return stopping;
  };
  return {
    pid,
    name,
    logFile,
    // Reading `exited` means someone is about to wait for it: ref the child so the event loop stays
    // alive until the exit arrives (an awaited promise alone does not keep a process running).
    get exited() {
      child.ref();
      return exited;
    },
    exitInfo: () => info,
    kill,
    stop,
    stdin: child.stdin,
    stdout: child.stdout,
    logTail,
  };
}

/** A TrellisError for a process that misbehaved: `message`, its exit status, log path and log tail. */
export function processError(
  proc: ManagedProcess,
  message: string,
  code: ErrorCode = ErrorCode.UNAVAILABLE,
): TrellisError {
  const info = proc.exitInfo();
  const status = info === undefined ? "still running" : `exited code=${info.code} signal=${info.signal}`;
  return new TrellisError(
    code,
    `${proc.name} (pid ${proc.pid}, ${status}): ${message}\n--- ${proc.logFile} (tail) ---\n${proc.logTail()}`,
  );
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Prepended so it runs before temp-dirs' hook removes the log and data dirs these processes use.
  process.prependListener("exit", () => {
    for (const [pid, child] of owned) {
      child.kill("SIGKILL");
      removeRecord("procs", String(pid));
    }
    owned.clear();
  });
}
