/**
 * `trellis validate -f FILE|DIR|-`: offline validation with the same rules the control plane and
 * the sidecars enforce. Every error is printed as `file:line:col field.path: message` on stderr,
 * then exit 1; a clean input prints a one-line summary on stdout and exits 0.
 */

import { formatDiagnostic } from "@trellis/proto/yaml-codec";
import type { Command } from "commander";
import { readInputs } from "../inputs.js";
import type { CliIo } from "../io.js";
import { loadPolicies } from "../load-policies.js";

export function registerValidate(program: Command, io: CliIo): void {
  program
    .command("validate")
    .description("validate policy YAML offline; every error as file:line:col field.path: message")
    .requiredOption(
      "-f, --filename <path...>",
      "a file, a directory (every *.yaml / *.yml below it), or - for stdin",
    )
    .action(async (opts: { filename: string[] }) => {
      const loaded = loadPolicies(await readInputs(opts.filename, io.stdin));
      const files = `${loaded.files} file${loaded.files === 1 ? "" : "s"}`;
      if (loaded.diagnostics.length > 0) {
        for (const d of loaded.diagnostics) io.err(formatDiagnostic(d));
        const n = loaded.diagnostics.length;
        io.err(`${n} error${n === 1 ? "" : "s"} in ${files}; nothing is valid until all are fixed`);
        io.exitCode(1);
        return;
      }
      if (loaded.documents === 0) {
        io.err(`no policy documents in ${files}`);
        io.exitCode(1);
        return;
      }
      const byKind = new Map<string, number>();
      for (const p of loaded.policies) byKind.set(p.info.kind, (byKind.get(p.info.kind) ?? 0) + 1);
      const kinds = [...byKind].map(([k, n]) => `${k} ${n}`).join(", ");
      const docs = `${loaded.documents} document${loaded.documents === 1 ? "" : "s"}`;
      io.out(`valid: ${docs} in ${files} (${kinds})`);
    });
}
