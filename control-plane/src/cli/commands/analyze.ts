/**
 * `trellis analyze [-n NS]`: lint over the stored policy (admin/analyze.ts has the codes). One line
 * per finding, `SEVERITY code Kind/namespace/name path: message`; exit 1 when any finding is an
 * ERROR, so CI can gate on it.
 */
import type { Finding } from "@trellis/proto/gen/trellis/v1/admin_pb";
import { Severity } from "@trellis/proto/gen/trellis/v1/admin_pb";
import type { Command } from "commander";
import { withAdmin } from "../client.js";
import type { CliIo } from "../io.js";

const SEVERITY_WORDS: Record<Severity, string> = {
  [Severity.UNSPECIFIED]: "INFO",
  [Severity.INFO]: "INFO",
  [Severity.WARNING]: "WARNING",
  [Severity.ERROR]: "ERROR",
};

/** `SEVERITY code Kind/ns/name path: message`. */
export function formatFinding(f: Finding): string {
  const ref = f.policy === undefined ? "-" : `${f.policy.kind}/${f.policy.namespace}/${f.policy.name}`;
  return `${SEVERITY_WORDS[f.severity] ?? "INFO"} ${f.code} ${ref}${f.path ? ` ${f.path}` : ""}: ${f.message}`;
}

export function registerAnalyze(program: Command, io: CliIo): void {
  program
    .command("analyze")
    .description("lint the stored policy: unknown services, shadowed rules, unused policies")
    .option("-n, --namespace <ns>", "only policies in this namespace (default: every namespace)")
    .action(async (opts: { namespace?: string }, cmd: Command) => {
      const res = await withAdmin(cmd, (conn) =>
        conn.call((c, o) => c.analyze({ namespace: opts.namespace ?? "" }, o)),
      );
      if (res.findings.length === 0) {
        io.out("no findings");
        return;
      }
      for (const f of res.findings) io.out(formatFinding(f));
      const errors = res.findings.filter((f) => f.severity === Severity.ERROR).length;
      if (errors > 0) io.exitCode(1);
    });
}
