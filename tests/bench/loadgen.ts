/**
 * The two load generators, both run as child processes pinned to the client CPU:
 *
 *  - wrk (Debian), closed-loop, for throughput at saturation: fixed connections and threads for a
 *    fixed time. Its Lua `done` hook prints the summary as JSON, so nothing is scraped from text.
 *  - open-loop (open-loop.c, ours, built with gcc on first use), paced, for latency at a fixed
 *    rate without coordinated omission.
 *
 * Both send `GET / HTTP/1.1` with one Host header and no body, on keep-alive connections, to a
 * loopback address only.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";

/** tests/bench (sources; this file runs from tests/dist/bench). */
export const BENCH_SRC = resolve(import.meta.dirname, "../../bench");
/** Git-ignored scratch space for the built generator and raw profiles. */
export const TMP_DIR = join(BENCH_SRC, "results", "tmp");

/** The only host the generators are ever pointed at. */
const HOST = "127.0.0.1";

/** Runs `cmd args` and resolves with stdout; rejects with stderr on a non-zero exit or a timeout. */
function run(cmd: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err !== null) {
          reject(
            new TrellisError(
              ErrorCode.UNAVAILABLE,
              `${cmd} ${args.join(" ")} failed: ${err.message}\n${stderr}`,
            ),
          );
          return;
        }
        resolvePromise(stdout);
      },
    );
  });
}

/** `taskset -c cpus cmd…` when pinned, as [cmd, args]. */
function onCpus(cpus: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  return cpus === undefined ? [cmd, [...args]] : ["taskset", ["-c", cpus, cmd, ...args]];
}

/** A wrk run's outcome. */
export interface WrkResult {
  /** Responses received. */
  requests: number;
  /** Measured duration, seconds. */
  durationS: number;
  /** requests / durationS. */
  rps: number;
  /** Connect, read, write and timeout errors, and non-2xx/3xx responses. */
  errors: { connect: number; read: number; write: number; timeout: number; status: number };
  /** wrk's own latency percentiles, µs (closed-loop: informative only). */
  latencyUs: { p50: number; p99: number };
}

const WRK_DONE = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},"p50":%d,"p99":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
`;

/** Options of one wrk run. */
export interface WrkOptions {
  port: number;
  host: string;
  connections: number;
  threads: number;
  durationS: number;
  cpus: string | undefined;
}

/** Runs wrk against 127.0.0.1:`port` with `Host: host`. */
export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  mkdirSync(TMP_DIR, { recursive: true });
  const script = join(TMP_DIR, "done.lua");
  if (!existsSync(script)) writeFileSync(script, WRK_DONE);
  const [cmd, args] = onCpus(o.cpus, "wrk", [
    "-t",
    String(o.threads),
    "-c",
    String(o.connections),
    "-d",
    `${o.durationS}s`,
    "--timeout",
    "5s",
    "-H",
    `Host: ${o.host}`,
    "-s",
    script,
    `http://${HOST}:${o.port}/`,
  ]);
  const out = await run(cmd, args, (o.durationS + 20) * 1000);
  const line = out.split("\n").find((l) => l.startsWith('{"requests"'));
  if (line === undefined) throw new TrellisError(ErrorCode.UNAVAILABLE, `wrk printed no summary:\n${out}`);
  const j = JSON.parse(line) as {
    requests: number;
    durationUs: number;
    errors: WrkResult["errors"];
    p50: number;
    p99: number;
  };
  const durationS = j.durationUs / 1e6;
  return {
    requests: j.requests,
    durationS,
    rps: j.requests / durationS,
    errors: j.errors,
    latencyUs: { p50: j.p50, p99: j.p99 },
  };
}

/** An open-loop run's outcome (the JSON open-loop.c prints). */
export interface OpenLoopResult {
  rate: number;
  durationS: number;
  warmupS: number;
  connections: number;
  scheduled: number;
  completed: number;
  /** Requests outside the warm-up whose latency was recorded. */
  recorded: number;
  /** Failed connections, responses without Content-Length, requests unfinished at the end. */
  errors: number;
  non2xx: number;
  unfinished: number;
  reconnects: number;
  /** Most requests ever waiting for a free connection (0 = never fell behind). */
  maxBacklog: number;
  elapsedS: number;
  /** From each request's scheduled time to its last response byte, µs. */
  latencyUs: { p50: number; p90: number; p99: number; p999: number; max: number };
}

/** Builds open-loop.c into TMP_DIR (again only when the source is newer); returns the binary's path. */
export function buildOpenLoop(): string {
  mkdirSync(TMP_DIR, { recursive: true });
  const src = join(BENCH_SRC, "open-loop.c");
  const bin = join(TMP_DIR, "open-loop");
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    execFileSync("gcc", ["-O2", "-Wall", "-Wextra", "-Werror", "-o", bin, src], { stdio: "inherit" });
  }
  return bin;
}

/** Options of one open-loop run. */
export interface OpenLoopOptions {
  bin: string;
  port: number;
  host: string;
  /** Requests per second, paced evenly. */
  rate: number;
  /** Total seconds, warm-up included. */
  durationS: number;
  /** Leading seconds whose requests are not recorded. */
  warmupS: number;
  connections: number;
  cpus: string | undefined;
}

/** Runs the paced generator against 127.0.0.1:`port`. */
export async function runOpenLoop(o: OpenLoopOptions): Promise<OpenLoopResult> {
  const [cmd, args] = onCpus(o.cpus, o.bin, [
    HOST,
    String(o.port),
    o.host,
    o.rate.toFixed(1),
    String(o.durationS),
    String(o.connections),
    String(o.warmupS),
  ]);
  const out = await run(cmd, args, (o.durationS + 20) * 1000);
  return JSON.parse(out.trim()) as OpenLoopResult;
}
