/**
 * `trellis delete KIND NAME [-n NS]`: removes one stored policy (namespace default "default").
 * Prints `<Kind>/<namespace>/<name> deleted`; a policy that does not exist is an error (exit 2).
 */
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { DEFAULT_NAMESPACE, KINDS, lookupKind } from "@trellis/proto/kinds";
import type { Command } from "commander";
import { withAdmin } from "../client.js";
import type { CliIo } from "../io.js";

export function registerDelete(program: Command, io: CliIo): void {
  program
    .command("delete")
    .description("remove a stored policy")
    .argument("<kind>", "a kind or alias (routes, tp, svc, …)")
    .argument("<name>", "the policy's name")
    .option("-n, --namespace <ns>", "the policy's namespace", DEFAULT_NAMESPACE)
    .option("--resource-version <version>", "delete only if the stored version still matches")
    .action(
      async (
        kindArg: string,
        name: string,
        opts: { namespace: string; resourceVersion?: string },
        cmd: Command,
      ) => {
        const info = lookupKind(kindArg);
        if (info === undefined) {
          throw new TrellisError(
            ErrorCode.INVALID_ARGUMENT,
            `unknown kind ${JSON.stringify(kindArg)}; expected one of ${KINDS.map((k) => k.kind).join(", ")} (or an alias)`,
          );
        }
        const request = {
          kind: info.kind,
          namespace: opts.namespace,
          name,
          resourceVersion: opts.resourceVersion ?? "",
        };
        await withAdmin(cmd, (conn) => conn.call((c, o) => c.delete(request, o)));
        io.out(`${info.kind}/${opts.namespace}/${name} deleted`);
      },
    );
}
