/**
 * Entry point of the `trellis-sidecar` binary. `run` is the sidecar; `gateway` and `init` arrive with
 * their issues (only verbs that exist are listed). Bad flags fail fast with one clear message per
 * problem and exit 2; SIGTERM / SIGINT drain, then exit 0.
 */
import { TrellisError } from "@trellis/proto/errors";
import { Command, Option } from "commander";
import { pino } from "pino";
import { registerRunOptions, resolveSidecarConfig } from "../config/flags.js";
import { parseIp, SettingProblem } from "../config/values.js";
import { SIDECAR_VERSION, Sidecar } from "../sidecar.js";
const program = new Command("trellis-sidecar")
    .description("Trellis sidecar proxy (data plane)")
    .version(SIDECAR_VERSION)
    .showHelpAfterError();
const run = program
    .command("run")
    .description("run the sidecar beside one workload (explicit capture: the app uses the outbound port as its HTTP proxy)");
registerRunOptions(run);
// Ours, beyond INTERFACES.md (docs/reference.md): where the app listens. In a pod that is loopback;
// several instances on one host (VMs, tests) each give their app its own loopback address
// (127.0.0.2, …) and keep one app port number, the one every replica registers. Kept here until
// config/flags.ts takes it into SidecarConfig.
run.addOption(new Option("--app-address <ip>", "address the app listens on, that inbound traffic is delivered to (default 127.0.0.1) [env TRELLIS_APP_ADDRESS]").helpGroup("Ports:"));
run.action(async (opts) => {
    const config = resolveSidecarConfig(opts, process.env);
    const options = sidecarOptions(opts.appAddress ?? process.env.TRELLIS_APP_ADDRESS);
    const log = pino({ name: "trellis-sidecar", level: config.logLevel, base: { pid: process.pid, proxy: config.proxyId } }, pino.destination(2));
    const sidecar = new Sidecar(config, log, options);
    let stopping = false;
    const stop = (signal) => {
        if (stopping)
            return;
        stopping = true;
        log.info({ signal }, "stopping");
        sidecar.drain().then(() => {
            log.info("stopped");
            process.exit(0);
        }, (err) => {
            log.error({ err: String(err) }, "unclean stop");
            process.exit(1);
        });
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
    try {
        await sidecar.start();
    }
    catch (err) {
        await sidecar.stop().catch(() => undefined);
        throw err;
    }
});
/** The settings not (yet) in SidecarConfig; a bad value fails like any bad flag. */
function sidecarOptions(appAddress) {
    if (appAddress === undefined || appAddress.trim() === "")
        return {};
    try {
        return { appAddress: parseIp(appAddress) };
    }
    catch (err) {
        if (err instanceof SettingProblem)
            throw new TrellisError("TRELLIS_ERR_CONFIG", `--app-address ${err.message}`);
        throw err;
    }
}
try {
    await program.parseAsync(process.argv);
}
catch (err) {
    const e = TrellisError.from(err);
    process.stderr.write(`error: ${e.message}\n`);
    process.exitCode = 2;
}
