/**
 * The `trellis` command tree. Only verbs that exist are registered, so `trellis --help` never
 * advertises something that does not work.
 */
import { Command } from "commander";
import { addConnectionOptions } from "./client.js";
import { registerAnalyze } from "./commands/analyze.js";
import { registerApply } from "./commands/apply.js";
import { registerControlPlane } from "./commands/control-plane.js";
import { registerDelete } from "./commands/delete.js";
import { registerDev } from "./commands/dev.js";
import { registerGet } from "./commands/get.js";
import { registerProxyConfig } from "./commands/proxy-config.js";
import { registerStatus } from "./commands/status.js";
import { registerToken } from "./commands/token.js";
import { registerValidate } from "./commands/validate.js";
import type { CliIo } from "./io.js";

export const VERSION = "0.1.0";

/** Builds the program; `io` receives all output. */
export function buildProgram(io: CliIo): Command {
  const program = new Command("trellis")
    .description("Trellis service mesh: policy, control plane and diagnostics")
    .version(VERSION)
    .showHelpAfterError()
    .configureOutput({
      writeOut: (s) => io.out(s.replace(/\n$/, "")),
      writeErr: (s) => io.err(s.replace(/\n$/, "")),
    });
  // How the admin verbs reach the control plane (cli/client.ts).
  addConnectionOptions(program);
  registerControlPlane(program);
  registerDev(program, io);
  registerValidate(program, io);
  registerApply(program, io);
  registerGet(program, io);
  registerDelete(program, io);
  registerAnalyze(program, io);
  registerStatus(program, io);
  registerProxyConfig(program, io);
  registerToken(program, io);
  return program;
}
