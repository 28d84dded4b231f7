/**
 * `trellis status [-n NS] [-o json]`: every connected sidecar, as the control-plane replicas
 * recorded it. One table row per proxy: PROXY NAMESPACE SERVICE REPLICA IDENTITY, the state of each
 * resource type (ACK / NACK / PENDING, `-` when none was sent), CONFIG-AGE (time since its last ACK,
 * as recorded) and CERT-EXPIRY. Every NACK's detail follows the table, one line each.
 */
import { toJson } from "@bufbuild/protobuf";
import { durationMs } from "@trellis/proto/duration";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import type { ProxyStatus } from "@trellis/proto/gen/trellis/v1/admin_pb";
import { StatusResponseSchema, SyncState } from "@trellis/proto/gen/trellis/v1/admin_pb";
import { SHORT_TYPE_NAMES, type TypeUrl } from "@trellis/proto/resource-types";
import { timestampMs } from "@trellis/proto/timestamp";
import type { Command } from "commander";
import { withAdmin } from "../client.js";
import type { CliIo } from "../io.js";
import { formatAge, formatTable } from "../table.js";

/** Column order of the per-type states. */
const TYPE_COLUMNS: readonly [string, TypeUrl][] = [...SHORT_TYPE_NAMES];

/** A sync state as a table cell. */
export function syncStateWord(state: SyncState | undefined): string {
  switch (state) {
    case SyncState.ACKED:
      return "ACK";
    case SyncState.NACKED:
      return "NACK";
    case SyncState.PENDING:
      return "PENDING";
    default:
      return "-";
  }
}

export function registerStatus(program: Command, io: CliIo): void {
  program
    .command("status")
    .description("every connected sidecar: identity, replica, config state per type, config age, cert expiry")
    .option("-n, --namespace <ns>", "only sidecars of this namespace")
    .option("-o, --output <format>", "json (default: a table)")
    .action(async (opts: { namespace?: string; output?: string }, cmd: Command) => {
      const output = opts.output ?? "table";
      if (output !== "table" && output !== "json") {
        throw new TrellisError(
          ErrorCode.INVALID_ARGUMENT,
          `unknown output format ${JSON.stringify(output)}; use json`,
        );
      }
      const res = await withAdmin(cmd, (conn) =>
        conn.call((c, o) => c.status({ namespace: opts.namespace ?? "" }, o)),
      );
      if (output === "json") {
        io.out(JSON.stringify(toJson(StatusResponseSchema, res), null, 2));
        return;
      }
      if (res.proxies.length === 0) {
        io.err("no connected sidecars");
        return;
      }
      const now = Date.now();
      const headers = [
        "PROXY",
        "NAMESPACE",
        "SERVICE",
        "REPLICA",
        "IDENTITY",
        ...TYPE_COLUMNS.map(([short]) => short.toUpperCase()),
        "CONFIG-AGE",
        "CERT-EXPIRY",
      ];
      const rows = res.proxies.map((p) => row(p, now));
      for (const line of formatTable(headers, rows)) io.out(line);
      for (const p of res.proxies) {
        for (const t of p.types) {
          if (t.state !== SyncState.NACKED) continue;
          const short = TYPE_COLUMNS.find(([, url]) => url === t.typeUrl)?.[0] ?? t.typeUrl;
          io.out(`${p.workload?.proxyId ?? "?"} NACKed ${short} (version ${t.version}): ${t.error}`);
        }
      }
    });
}

function row(p: ProxyStatus, now: number): string[] {
  const w = p.workload;
  const ageMs = durationMs(p.configAge);
  const expiry = p.certExpiry === undefined ? undefined : timestampMs(p.certExpiry) - now;
  return [
    w?.proxyId ?? "?",
    w?.namespace ?? "",
    w?.service ?? "",
    w?.replica || "-",
    w?.identity || "-",
    ...TYPE_COLUMNS.map(([, url]) => syncStateWord(p.types.find((t) => t.typeUrl === url)?.state)),
    ageMs === undefined ? "-" : formatAge(ageMs),
    expiry === undefined ? "-" : expiry <= 0 ? "expired" : `in ${formatAge(expiry)}`,
  ];
}
