/**
 * Entry point of the `trellis` binary. Errors end as one line on stderr and a non-zero exit; a
 * TrellisError's message is shown as is, anything else as an internal error with its stack.
 */
import { TrellisError } from "@trellis/proto/errors";
import { processIo } from "./io.js";
import { buildProgram } from "./program.js";

try {
  await buildProgram(processIo).parseAsync(process.argv);
} catch (err) {
  const e = TrellisError.from(err);
  process.stderr.write(`error: ${e.message}\n`);
  if (e.code === "TRELLIS_ERR_INTERNAL" && err instanceof Error && err.stack)
    process.stderr.write(`${err.stack}\n`);
  process.exitCode = 2;
}
