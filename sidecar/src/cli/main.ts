/**
 * Entry point of the `trellis-sidecar` binary. `run` is the sidecar; `gateway` and `init` arrive with
 * their issues (only verbs that exist are listed). Bad flags fail fast with one clear message per
 * problem and exit 2; SIGTERM / SIGINT drain, then exit 0.
 */

import { TrellisError } from "@trellis/proto/errors";
import { Command } from "commander";
import { pino } from "pino";
import { type RunOptionValues, registerRunOptions, resolveSidecarConfig } from "../config/flags.js";
import { SIDECAR_VERSION, Sidecar } from "../sidecar.js";

const program = new Command("trellis-sidecar")
  .description("Trellis sidecar proxy (data plane)")
  .version(SIDECAR_VERSION)
  .showHelpAfterError();

const run = program
  .command("run")
  .description(
    "run the sidecar beside one workload (explicit capture: the app uses the outbound port as its HTTP proxy)",
  );
registerRunOptions(run);
run.action(async (opts: RunOptionValues) => {
  const config = resolveSidecarConfig(opts, process.env);
  const log = pino(
    { name: "trellis-sidecar", level: config.logLevel, base: { pid: process.pid, proxy: config.proxyId } },
    pino.destination(2),
  );
  const sidecar = new Sidecar(config, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    sidecar.drain().then(
      () => {
        log.info("stopped");
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err: String(err) }, "unclean stop");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  try {
    await sidecar.start();
  } catch (err) {
    await sidecar.stop().catch(() => undefined);
    throw err;
  }
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const e = TrellisError.from(err);
  process.stderr.write(`error: ${e.message}\n`);
  process.exitCode = 2;
}
