/**
 * `trellis dev [--duration 30s] [--json] [--no-scenarios] …`: a whole mesh on this machine — a
 * control plane, three demo services (web → orders → inventory, the last hop gRPC; orders as two
 * replicas) each behind its own sidecar, paced load, a live table per service, and three
 * resilience scenarios along the way. The run itself is control-plane/src/dev/run-dev.ts.
 */
import { parseDurationNanos } from "@trellis/proto/duration";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import type { Command } from "commander";
import { type DevOptions, runDev } from "../../dev/run-dev.js";
import type { CliIo } from "../io.js";

interface Options {
  duration: string;
  rate: string;
  json?: boolean;
  interval?: string;
  stateDir?: string;
  home?: string;
  etcd?: string;
  scenarios: boolean;
}

function durationMs(text: string, flag: string, allowZero: boolean): number {
  const n = parseDurationNanos(text);
  if (n === undefined || n < 0n || (n === 0n && !allowZero))
    throw new TrellisError(
      ErrorCode.CONFIG,
      `${flag} must be a ${allowZero ? "" : "positive "}duration like 500ms, 20s or 5m, got ${JSON.stringify(text)}`,
    );
  return Number(n / 1_000_000n);
}

export function registerDev(program: Command, io: CliIo): void {
  program
    .command("dev")
    .summary("a whole mesh on this machine: control plane, demo services behind sidecars, load, live table")
    .description(
      "a whole mesh on this machine: a control plane, demo services web → orders (2 replicas) → inventory (the " +
        "last hop gRPC) each its own process behind its own sidecar, paced load to web, and a live table per " +
        "service (requests/s, success rate, p50/p99). Along the way three scenarios show the demo policy at work: " +
        "a failing orders replica (retries, outlier ejection), a slow inventory (route timeout) and a burst over " +
        "web's local rate limit (429). Ctrl-C or the end of --duration stops every process.",
    )
    .option("--duration <duration>", "how long the load runs (0 = until Ctrl-C)", "30s")
    .option("--rate <req/s>", "requests per second sent to web, at a fixed pace (open loop)", "50")
    .option(
      "--json",
      "JSON lines on stdout instead of the table: first the processes (pid, ports), then periodic stats, last the summary",
    )
    .option("--interval <duration>", "how often the numbers are shown (default 1s on a terminal, else 5s)")
    .option(
      "--state-dir <dir>",
      "keep state (control plane, sidecars, join tokens) and logs in DIR (default: a temporary dir, removed after a clean run)",
    )
    .option(
      "--home <dir>",
      "HOME of the control plane, where it writes .trellis/config for the CLI (default <state-dir>/home)",
    )
    .option(
      "--etcd <urls>",
      "use etcd instead of the embedded store (env TRELLIS_ETCD_ENDPOINTS); needs --state-dir, the same one on " +
        "every run against that etcd: the mesh CA stored there is sealed with <state-dir>/control-plane/secret.key",
      process.env.TRELLIS_ETCD_ENDPOINTS,
    )
    .option(
      "--no-scenarios",
      "steady load only: no failing replica, slow dependency or burst (the demo policy is still applied)",
    )
    .action(async (opts: Options) => {
      const rate = Number(opts.rate);
      if (!Number.isFinite(rate) || rate <= 0 || rate > 100_000)
        throw new TrellisError(
          ErrorCode.CONFIG,
          `--rate must be a number of requests per second in (0, 100000], got ${opts.rate}`,
        );
      const etcd = (opts.etcd ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
      // The first control plane on an etcd seals the mesh CA there with the secret file in its state
      // dir; a temporary state dir would lose that key at exit and lock every later run out.
      if (etcd.length > 0 && opts.stateDir === undefined)
        throw new TrellisError(
          ErrorCode.CONFIG,
          `--etcd (or TRELLIS_ETCD_ENDPOINTS) needs --state-dir DIR, the same DIR on every run against ${etcd.join(",")}: ` +
            "the mesh CA stored in etcd is sealed with DIR/control-plane/secret.key",
        );
      const tty = process.stdout.isTTY === true;
      const devOptions: DevOptions = {
        durationMs: durationMs(opts.duration, "--duration", true),
        rate,
        mode: opts.json === true ? "json" : tty ? "tty" : "plain",
        intervalMs:
          opts.interval !== undefined
            ? durationMs(opts.interval, "--interval", false)
            : tty && opts.json !== true
              ? 1000
              : 5000,
        etcd,
        scenarios: opts.scenarios,
        ...(opts.stateDir !== undefined ? { stateDir: opts.stateDir } : {}),
        ...(opts.home !== undefined ? { home: opts.home } : {}),
      };
      let stdoutOpen = true;
      const closed = new Promise<void>((resolve) =>
        process.stdout.on("error", () => {
          stdoutOpen = false;
          resolve();
        }),
      );
      const code = await runDev(devOptions, {
        stdout: { write: (text: string) => stdoutOpen && process.stdout.write(text) },
        err: (line) => io.err(line),
        closed,
      });
      io.exitCode(code);
      // Every child is gone and every server closed; should a stray handle remain, it must not keep
      // `trellis dev` from exiting.
      setTimeout(() => process.exit(code), 2000).unref();
    });
}
