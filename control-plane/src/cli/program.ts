/**
 * The `trellis` command tree. Only verbs that exist are registered, so `trellis --help` never
 * advertises something that does not work.
 */
import { Command } from "commander";
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
  registerValidate(program, io);
  return program;
}
