/**
 * `trellis apply -f FILE|DIR|-`: validate locally (the same rules and messages as `trellis
 * validate`), then store everything in one all-or-nothing Apply call. Any local error prints every
 * diagnostic and exits 1 without contacting the control plane. On success one line per resource:
 * `<Kind>/<namespace>/<name> created|configured|unchanged`.
 *
 * `status` in the input is ignored and `metadata.resourceVersion` is a compare-and-swap guard, so
 * the output of `trellis get -o yaml` applies back as unchanged.
 */
import { ApplyAction } from "@trellis/proto/gen/trellis/v1/admin_pb";
import { toPolicy } from "@trellis/proto/kinds";
import { formatDiagnostic } from "@trellis/proto/yaml-codec";
import type { Command } from "commander";
import { withAdmin } from "../client.js";
import { readInputs } from "../inputs.js";
import type { CliIo } from "../io.js";
import { loadPolicies } from "../load-policies.js";

const ACTION_WORDS: Record<ApplyAction, string> = {
  [ApplyAction.UNSPECIFIED]: "applied",
  [ApplyAction.CREATED]: "created",
  [ApplyAction.CONFIGURED]: "configured",
  [ApplyAction.UNCHANGED]: "unchanged",
};

export function registerApply(program: Command, io: CliIo): void {
  program
    .command("apply")
    .description(
      "validate and store policy, all or nothing; prints created / configured / unchanged per resource",
    )
    .requiredOption(
      "-f, --filename <path...>",
      "a file, a directory (every *.yaml / *.yml below it), or - for stdin",
    )
    .option("--dry-run", "validate on the control plane and show what would change, storing nothing")
    .action(async (opts: { filename: string[]; dryRun?: boolean }, cmd: Command) => {
      const loaded = loadPolicies(await readInputs(opts.filename, io.stdin));
      const files = `${loaded.files} file${loaded.files === 1 ? "" : "s"}`;
      if (loaded.diagnostics.length > 0) {
        for (const d of loaded.diagnostics) io.err(formatDiagnostic(d));
        const n = loaded.diagnostics.length;
        io.err(`${n} error${n === 1 ? "" : "s"} in ${files}; nothing was applied`);
        io.exitCode(1);
        return;
      }
      if (loaded.policies.length === 0) {
        io.err(`no policy documents in ${files}; nothing was applied`);
        io.exitCode(1);
        return;
      }
      const dryRun = opts.dryRun === true;
      const policies = loaded.policies.map((p) => toPolicy(p.info, p.message));
      const res = await withAdmin(cmd, (conn) => conn.call((c, o) => c.apply({ policies, dryRun }, o)));
      const suffix = dryRun ? " (dry run)" : "";
      for (const r of res.results) {
        io.out(`${r.kind}/${r.namespace}/${r.name} ${ACTION_WORDS[r.action] ?? "applied"}${suffix}`);
      }
    });
}
