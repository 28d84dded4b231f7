/**
 * `trellis token create --namespace NS --service-account SA [--ttl 24h]`: a join token for a
 * sidecar outside Kubernetes. The token alone goes to stdout (so `$(trellis token create …)` works)
 * and is shown this once: the control plane stores only its hash. Its id and expiry go to stderr.
 */
import { durationFromNanos, parseDurationNanos } from "@trellis/proto/duration";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { formatTimestamp } from "@trellis/proto/timestamp";
import type { Command } from "commander";
import { withAdmin } from "../client.js";
import type { CliIo } from "../io.js";

export function registerToken(program: Command, io: CliIo): void {
  const token = program.command("token").description("join tokens for sidecars outside Kubernetes");
  token
    .command("create")
    .description("create a join token (printed once, stored hashed)")
    .requiredOption("--namespace <ns>", "namespace the token's holder gets certificates for")
    .requiredOption("--service-account <sa>", "service account the token's holder gets certificates for")
    .option("--ttl <duration>", "how long the token is accepted (e.g. 1h, 24h, 7d is 168h)", "24h")
    .action(async (opts: { namespace: string; serviceAccount: string; ttl: string }, cmd: Command) => {
      const nanos = parseDurationNanos(opts.ttl);
      if (nanos === undefined || nanos <= 0n) {
        throw new TrellisError(
          ErrorCode.CONFIG,
          `--ttl: ${JSON.stringify(opts.ttl)} is not a positive duration like 1h or 24h`,
        );
      }
      const res = await withAdmin(cmd, (conn) =>
        conn.call((c, o) =>
          c.createToken(
            { namespace: opts.namespace, serviceAccount: opts.serviceAccount, ttl: durationFromNanos(nanos) },
            o,
          ),
        ),
      );
      io.out(res.token);
      const expires = res.expiresAt === undefined ? "?" : formatTimestamp(res.expiresAt);
      io.err(
        `join token ${res.tokenId} for ${opts.namespace}/${opts.serviceAccount}, valid until ${expires}; ` +
          "it is shown only this once",
      );
    });
}
