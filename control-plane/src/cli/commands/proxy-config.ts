/**
 * `trellis proxy-config PROXY [routes|clusters|endpoints|listeners|secrets] [-o yaml|json]`: what
 * one sidecar was sent and how it answered, from the record its control-plane replica keeps.
 * Default: a table TYPE NAME VERSION STATE ERROR. `yaml` and `json` include each resource's body.
 */
import { createRegistry, toJson } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import type { ProxyResource } from "@trellis/proto/gen/trellis/v1/admin_pb";
import { ProxyConfigResponseSchema } from "@trellis/proto/gen/trellis/v1/admin_pb";
import { RESOURCE_SCHEMAS, SHORT_TYPE_NAMES } from "@trellis/proto/resource-types";
import { toPlain } from "@trellis/proto/yaml-codec";
import type { Command } from "commander";
import { Document } from "yaml";
import { withAdmin } from "../client.js";
import type { CliIo } from "../io.js";
import { formatTable } from "../table.js";
import { syncStateWord } from "./status.js";

const SHORT_NAME_OF = new Map([...SHORT_TYPE_NAMES].map(([short, url]) => [url as string, short]));
const REGISTRY = createRegistry(...RESOURCE_SCHEMAS.values());

export function registerProxyConfig(program: Command, io: CliIo): void {
  program
    .command("proxy-config")
    .description("what one sidecar is running now (through the control plane)")
    .argument("<proxy>", "the proxy id (see trellis status)")
    .argument("[type]", `only one resource type: ${[...SHORT_TYPE_NAMES.keys()].join(", ")}`)
    .option("-o, --output <format>", "yaml or json, with resource bodies (default: a summary table)")
    .action(async (proxyId: string, type: string | undefined, opts: { output?: string }, cmd: Command) => {
      const output = opts.output ?? "table";
      if (!["table", "yaml", "json"].includes(output)) {
        throw new TrellisError(
          ErrorCode.INVALID_ARGUMENT,
          `unknown output format ${JSON.stringify(output)}; use yaml or json`,
        );
      }
      const res = await withAdmin(cmd, (conn) =>
        conn.call((c, o) => c.proxyConfig({ proxyId, type: type ?? "" }, o)),
      );
      if (output === "json") {
        io.out(JSON.stringify(toJson(ProxyConfigResponseSchema, res, { registry: REGISTRY }), null, 2));
        return;
      }
      if (output === "yaml") {
        const doc = new Map<string, unknown>([
          ["proxyId", res.proxyId],
          ["resources", res.resources.map(resourcePlain)],
        ]);
        io.out(new Document(doc).toString({ lineWidth: 0, indentSeq: true }).replace(/\n$/, ""));
        return;
      }
      if (res.resources.length === 0) {
        io.err(`proxy ${res.proxyId} holds no ${type ?? ""}${type ? " " : ""}resources`);
        return;
      }
      const rows = res.resources.map((r) => [
        SHORT_NAME_OF.get(r.typeUrl) ?? r.typeUrl,
        r.name,
        r.version,
        syncStateWord(r.state),
        r.error || "-",
      ]);
      for (const line of formatTable(["TYPE", "NAME", "VERSION", "STATE", "ERROR"], rows)) io.out(line);
    });
}

/** One resource as a YAML mapping, its body in the same canonical form as policy YAML. */
function resourcePlain(r: ProxyResource): Map<string, unknown> {
  const out = new Map<string, unknown>([
    ["type", SHORT_NAME_OF.get(r.typeUrl) ?? r.typeUrl],
    ["name", r.name],
    ["version", r.version],
    ["state", syncStateWord(r.state)],
  ]);
  if (r.error) out.set("error", r.error);
  const schema = RESOURCE_SCHEMAS.get(r.typeUrl);
  const body = r.resource !== undefined && schema !== undefined ? anyUnpack(r.resource, schema) : undefined;
  if (body !== undefined && schema !== undefined) out.set("resource", toPlain(schema, body as never));
  return out;
}
