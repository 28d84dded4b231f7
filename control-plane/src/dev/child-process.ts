/**
 * The processes `trellis dev` starts (control plane, demo services, sidecars), made impossible to
 * leak and easy to wait on:
 *
 * 1. Each runs under `setpriv --pdeathsig KILL` (util-linux) when setpriv exists, so the kernel
 *    SIGKILLs it the moment `trellis dev` dies, however it dies (SIGKILL included). setpriv execs
 *    node in place, so the pid we hold is the node process itself.
 * 2. With setpriv, each also gets its own process group (`detached`): Ctrl-C in a terminal signals
 *    the whole foreground group, and the children must stop in our order (load first, control
 *    plane last), not all at once. Without setpriv they stay in our group, so Ctrl-C still reaches
 *    them if we are SIGKILLed.
 * 3. A process 'exit' hook SIGKILLs whatever is still running, for exits that skip `stop()`.
 * 4. `stop()` sends SIGTERM (every Trellis program drains and exits 0 on it), then SIGKILL after a
 *    grace period, and resolves once the process is gone, which is when the kernel has released its
 *    ports.
 *
 * Output: stderr (where the programs log JSON lines), and stdout unless the caller reads it, is
 * appended to a log file; the last lines are kept in memory for error messages. `waitForLine`
 * watches both streams, so the `listening` log line can be awaited without polling the file.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, createWriteStream, type WriteStream } from "node:fs";
import { delimiter, join } from "node:path";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";

/** How a process ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when it had to be SIGKILLed after the grace period. */
  forced: boolean;
}

export interface ChildOptions {
  /** Short name for messages: `control-plane`, `web`, `web-sidecar`. */
  name: string;
  /** Arguments to node (process.execPath): the script, then its arguments. */
  args: readonly string[];
  env: NodeJS.ProcessEnv;
  /** stderr (and stdout, unless `onStdoutLine`) is appended here. */
  logFile: string;
  /** Give the child a stdin pipe (see `writeLine`); else stdin is /dev/null. */
  stdin?: boolean;
  /** Receive stdout line by line instead of logging it (the demo services' protocol). */
  onStdoutLine?: (line: string) => void;
}

const TAIL_LINES = 40;

let setprivPath: string | null | undefined;

/** The setpriv binary, or undefined when this machine has none. Looked up once. */
export function findSetpriv(): string | undefined {
  if (setprivPath === undefined) {
    setprivPath = null;
    const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/bin", "/bin"];
    for (const dir of dirs) {
      if (dir === "") continue;
      try {
        accessSync(join(dir, "setpriv"), constants.X_OK);
        setprivPath = join(dir, "setpriv");
        break;
      } catch {
        // not here
      }
    }
  }
  return setprivPath ?? undefined;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of running) child.kill("SIGKILL");
  });
}

interface LineWaiter {
  match: (line: string) => boolean;
  resolve: (line: string) => void;
}

/** One child process of `trellis dev`. */
export class DevChild {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves (never rejects) once the process has exited. */
  readonly exited: Promise<ExitInfo>;
  private readonly child: ChildProcess;
  private readonly log: WriteStream;
  private readonly tail: string[] = [];
  private readonly waiters = new Set<LineWaiter>();
  private info: ExitInfo | undefined;
  private killed = false;
  private stopping: Promise<ExitInfo> | undefined;

  /** Spawns the process. Throws a TrellisError (CONFIG) when it cannot be spawned at all. */
  constructor(opts: ChildOptions) {
    this.name = opts.name;
    this.logFile = opts.logFile;
    this.log = createWriteStream(opts.logFile, { flags: "a" });
    this.log.on("error", () => {}); // a full disk must not take `trellis dev` down; the tail remains
    const setpriv = findSetpriv();
    const [cmd, args] =
      setpriv !== undefined
        ? [setpriv, ["--pdeathsig", "KILL", "--", process.execPath, ...opts.args]]
        : [process.execPath, [...opts.args]];
    this.child = spawn(cmd, args, {
      stdio: [opts.stdin === true ? "pipe" : "ignore", "pipe", "pipe"],
      env: opts.env,
      detached: setpriv !== undefined,
    });
    this.child.on("error", () => {}); // reported through pid / exit below
    const pid = this.child.pid;
    if (pid === undefined)
      throw new TrellisError(ErrorCode.CONFIG, `could not start ${opts.name} (${cmd} ${args.join(" ")})`);
    this.pid = pid;
    running.add(this.child);
    installExitHook();
    this.child.stdin?.on("error", () => {}); // the child may be gone before it reads what we wrote
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        running.delete(this.child);
        this.info = { code, signal, forced: this.killed };
        resolve(this.info);
      });
    });
    this.readLines(this.child.stderr, (line) => this.logLine(line));
    const onStdout = opts.onStdoutLine;
    if (onStdout !== undefined) {
      this.readLines(this.child.stdout, (line) => {
        this.check(line);
        onStdout(line);
      });
    } else {
      this.readLines(this.child.stdout, (line) => this.logLine(line));
    }
  }

  /** The exit status once it exited, else undefined. */
  exitInfo(): ExitInfo | undefined {
    return this.info;
  }

  /**
   * Resolves with the first line (on stderr or stdout) for which `match` is true. Rejects when the
   * process exits first or `timeoutMs` passes, with the log tail in the message.
   */
  waitForLine(match: (line: string) => boolean, what: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: LineWaiter = {
        match,
        resolve: (line) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(line);
        },
      };
      const fail = (message: string) => {
        if (!this.waiters.delete(waiter)) return;
        clearTimeout(timer);
        reject(this.error(message));
      };
      timer = setTimeout(() => fail(`no ${what} within ${timeoutMs} ms`), timeoutMs);
      this.waiters.add(waiter);
      void this.exited.then(() => fail(`exited before ${what}`));
    });
  }

  /** Writes one line to the child's stdin (with `stdin: true`); ignored once it is gone. */
  writeLine(line: string): void {
    if (this.info === undefined) this.child.stdin?.write(`${line}\n`);
  }

  /** Sends a signal unless the process already exited. */
  signal(sig: NodeJS.Signals): void {
    if (this.info !== undefined) return;
    if (sig === "SIGKILL") this.killed = true;
    try {
      this.child.kill(sig);
    } catch {
      // already gone
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. Idempotent. */
  stop(graceMs: number): Promise<ExitInfo> {
    this.stopping ??= (async () => {
      if (this.info === undefined) {
        this.signal("SIGTERM");
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
        });
        await Promise.race([this.exited, late]);
        clearTimeout(timer);
        if (this.info === undefined) this.signal("SIGKILL");
      }
      const info = await this.exited;
      await new Promise<void>((resolve) => this.log.end(() => resolve()));
      return info;
    })();
    return this.stopping;
  }

  /** The last lines the process wrote (at most 40), for error messages. */
  logTail(lines = TAIL_LINES): string {
    return this.tail.slice(-lines).join("\n");
  }

  /** A TrellisError naming this process, its state and its log. */
  error(message: string): TrellisError {
    const info = this.info;
    const state =
      info === undefined ? "running" : `exited with code ${info.code ?? "-"} signal ${info.signal ?? "-"}`;
    return new TrellisError(
      ErrorCode.UNAVAILABLE,
      `${this.name} (pid ${this.pid}, ${state}): ${message}\n--- last lines of ${this.logFile} ---\n${this.logTail()}`,
    );
  }

  private logLine(line: string): void {
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES * 2) this.tail.splice(0, this.tail.length - TAIL_LINES);
    this.log.write(`${line}\n`);
    this.check(line);
  }

  private check(line: string): void {
    for (const w of this.waiters) if (w.match(line)) w.resolve(line);
  }

  private readLines(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
    if (stream === null) return;
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      const text = partial + chunk;
      const parts = text.split("\n");
      partial = parts.pop() ?? "";
      for (const p of parts) onLine(p);
    });
    stream.on("end", () => {
      if (partial.length > 0) onLine(partial);
      partial = "";
    });
    stream.on("error", () => {});
  }
}
