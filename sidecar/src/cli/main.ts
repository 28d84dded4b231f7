/**
 * Entry point of the `trellis-sidecar` binary. The `run`, `gateway` and `init` commands arrive with
 * the sidecar issues; until then only --help and --version exist.
 */
import { Command } from "commander";

const program = new Command("trellis-sidecar")
  .description("Trellis sidecar proxy (data plane)")
  .version("0.1.0")
  .showHelpAfterError();

await program.parseAsync(process.argv);
