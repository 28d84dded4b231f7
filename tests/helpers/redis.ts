/**
 * A real standalone redis-server for tests, on a free loopback port with a temporary working dir and
 * no persistence (`--save "" --appendonly no`), so a kill loses all data like a real crash would.
 */
import { connect } from "node:net";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { withFreePorts } from "./ports.js";
import { type ManagedProcess, processError, spawnManaged } from "./processes.js";
import { makeTempDir, removeTempDir } from "./temp-dirs.js";
import { waitFor } from "./wait.js";

/** Options for startRedis. */
export interface RedisOptions {
  /** Extra redis-server arguments, appended last (e.g. `["--maxmemory", "10mb"]`). */
  extraArgs?: readonly string[];
  /** Deadline for PING to answer, ms (default 10000). */
  startTimeoutMs?: number;
}

/** A running redis-server. Stop it in `t.after`; the harness kills it anyway on exit. */
export interface RedisServer {
  /** `redis://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;
  /** Pid of the running process, or undefined while it is killed. */
  readonly pid: number | undefined;
  /** SIGKILLs the server (a crash: data is lost) and waits until it has exited. No-op if down. */
  kill(): Promise<void>;
  /** Starts it again, empty, on the same port; waits for PING. Throws if it is running. */
  restart(): Promise<void>;
  /** Stops the server (SIGTERM, then SIGKILL after 2 s) and deletes its dir. Idempotent. */
  stop(): Promise<void>;
}

/** Starts redis-server on a fresh loopback port and waits until it answers PING. Retries on EADDRINUSE. */
export function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  return withFreePorts(1, async ([port]) => {
    const server = new Redis(port!, makeTempDir("redis"), opts);
    try {
      await server.restart();
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  });
}

class Redis implements RedisServer {
  readonly url: string;
  private proc: ManagedProcess | undefined;
  private stopped: Promise<void> | undefined;

  constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly opts: RedisOptions,
  ) {
    this.url = `redis://127.0.0.1:${port}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  async restart(): Promise<void> {
    if (this.proc !== undefined) {
      throw new TrellisError(ErrorCode.INVALID_ARGUMENT, `redis on ${this.port} is running; kill it first`);
    }
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    args.push("--dir", this.dir, "--protected-mode", "no", ...(this.opts.extraArgs ?? []));
    const proc = spawnManaged("redis-server", args, { name: "redis", stopTimeoutMs: 2000 });
    this.proc = proc;
    try {
      await waitFor(() => ping(this.port), {
        what: `redis on 127.0.0.1:${this.port} answering PING`,
        timeoutMs: this.opts.startTimeoutMs ?? 10_000,
        failIf: () => (proc.exitInfo() === undefined ? undefined : "the process exited"),
      });
    } catch (err) {
      const e = TrellisError.from(err);
      throw processError(proc, e.message, e.code);
    }
  }

  async kill(): Promise<void> {
    const proc = this.proc;
    if (proc === undefined) return;
    this.proc = undefined;
    proc.kill("SIGKILL");
    await proc.stop();
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      await this.proc?.stop();
      this.proc = undefined;
      await removeTempDir(this.dir);
    })();
    return this.stopped;
  }
}

/** True once the server replies +PONG (not -LOADING or anything else) on a fresh connection. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", timeout: 1000 });
    let reply = "";
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk: string) => {
      reply += chunk;
      if (reply.includes("\r\n")) {
        socket.destroy();
        resolve(reply.startsWith("+PONG"));
      }
    });
    socket.on("timeout", () => socket.destroy(new Error("PING timed out")));
    socket.on("error", reject);
    socket.on("close", () => resolve(false));
  });
}
