/**
 * `trellis get KIND [NAME] [-n NS] [-o yaml|json|wide]`: stored policy with its rollout status.
 *
 * KIND is a kind or an alias (`routes`, `tp`, …), or `all`. Without NAME it lists every namespace
 * unless `-n` narrows it; with NAME the namespace is `-n` or "default". Output:
 *   - default: a table NAMESPACE NAME APPLIED REJECTED PENDING AGE (KIND first for `all`);
 *   - `wide`: also GENERATION, VERSION (resourceVersion), TARGET and the most common rejection;
 *   - `yaml`: the canonical YAML of `trellis validate`/`apply` with status, which applies back as
 *     unchanged;
 *   - `json`: each policy's protobuf JSON with apiVersion and kind; a list is a `List` of `items`.
 */
import { type JsonObject, toJson } from "@bufbuild/protobuf";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import type { TargetRef } from "@trellis/proto/gen/trellis/v1/common_pb";
import type { KindInfo, PolicyMessage } from "@trellis/proto/kinds";
import { API_VERSION, DEFAULT_NAMESPACE, fromPolicy, KINDS, lookupKind } from "@trellis/proto/kinds";
import { timestampMs } from "@trellis/proto/timestamp";
import { printPolicies } from "@trellis/proto/yaml-codec";
import type { Command } from "commander";
import { withAdmin } from "../client.js";
import type { CliIo } from "../io.js";
import { formatAge, formatTable } from "../table.js";

const OUTPUTS = ["table", "wide", "yaml", "json"] as const;
type Output = (typeof OUTPUTS)[number];

interface GetOptions {
  namespace?: string;
  output?: string;
}

export function registerGet(program: Command, io: CliIo): void {
  program
    .command("get")
    .description("show stored policy and how the proxies took it (applied / rejected and why)")
    .argument("<kind>", "a kind or alias (HTTPRoute, routes, tp, svc, …), or all")
    .argument("[name]", "one policy's name (namespace: -n, else default)")
    .option("-n, --namespace <ns>", "only this namespace (default: every namespace when listing)")
    .option("-o, --output <format>", "yaml, json or wide (default: a table)")
    .action(async (kindArg: string, name: string | undefined, opts: GetOptions, cmd: Command) => {
      const output = parseOutput(opts.output ?? "table");
      const all = kindArg.toLowerCase() === "all";
      const info = all ? undefined : kindNamed(kindArg);
      if (all && name !== undefined) {
        throw new TrellisError(
          ErrorCode.INVALID_ARGUMENT,
          "get all takes no name; name a kind to get one policy",
        );
      }
      const policies = await withAdmin(cmd, async (conn) => {
        if (name !== undefined && info !== undefined) {
          const res = await conn.call((c, o) =>
            c.get({ kind: info.kind, namespace: opts.namespace ?? DEFAULT_NAMESPACE, name }, o),
          );
          return res.policy === undefined ? [] : [res.policy];
        }
        const res = await conn.call((c, o) =>
          c.list({ kind: info?.kind ?? "", namespace: opts.namespace ?? "" }, o),
        );
        return res.policies;
      });
      const items = policies.map(fromPolicy).filter((p) => p !== undefined);
      print(io, items, output, { showKind: all, single: name !== undefined });
    });
}

function parseOutput(text: string): Output {
  const o = (OUTPUTS as readonly string[]).includes(text) ? (text as Output) : undefined;
  if (o === undefined) {
    throw new TrellisError(
      ErrorCode.INVALID_ARGUMENT,
      `unknown output format ${JSON.stringify(text)}; use yaml, json or wide`,
    );
  }
  return o;
}

function kindNamed(name: string): KindInfo {
  const info = lookupKind(name);
  if (info === undefined) {
    throw new TrellisError(
      ErrorCode.INVALID_ARGUMENT,
      `unknown kind ${JSON.stringify(name)}; expected one of ${KINDS.map((k) => k.kind).join(", ")} (or an alias, or all)`,
    );
  }
  return info;
}

type Item = { info: KindInfo; message: PolicyMessage };

function print(io: CliIo, items: Item[], output: Output, how: { showKind: boolean; single: boolean }): void {
  switch (output) {
    case "yaml":
      if (items.length > 0) io.out(printPolicies(items).replace(/\n$/, ""));
      return;
    case "json": {
      const objects = items.map(policyJson);
      const doc = how.single ? (objects[0] ?? {}) : { apiVersion: API_VERSION, kind: "List", items: objects };
      io.out(JSON.stringify(doc, null, 2));
      return;
    }
    default: {
      if (items.length === 0) {
        io.err("no policies found");
        return;
      }
      const wide = output === "wide";
      const headers = [
        ...(how.showKind ? ["KIND"] : []),
        "NAMESPACE",
        "NAME",
        "APPLIED",
        "REJECTED",
        "PENDING",
        "AGE",
        ...(wide ? ["GENERATION", "VERSION", "TARGET", "REASON"] : []),
      ];
      const now = Date.now();
      const rows = items.map(({ info, message }) => {
        const md = message.metadata;
        const rollout = message.status?.proxies;
        const created = md?.creationTime;
        const target = (message.spec as { targetRef?: TargetRef } | undefined)?.targetRef;
        const topReason = rollout?.reasons[0];
        return [
          ...(how.showKind ? [info.kind] : []),
          md?.namespace ?? "",
          md?.name ?? "",
          String(rollout?.applied ?? 0),
          String(rollout?.rejected ?? 0),
          String(rollout?.pending ?? 0),
          created === undefined ? "-" : formatAge(now - timestampMs(created)),
          ...(wide
            ? [
                String(md?.generation ?? 0n),
                md?.resourceVersion || "-",
                target === undefined
                  ? "-"
                  : `${target.kind}/${target.name}${target.namespace ? `.${target.namespace}` : ""}`,
                topReason === undefined ? "-" : `${topReason.reason} (${topReason.count})`,
              ]
            : []),
        ];
      });
      for (const line of formatTable(headers, rows)) io.out(line);
    }
  }
}

/** One policy's protobuf JSON, with the YAML envelope's apiVersion and kind in front. */
function policyJson(item: Item): JsonObject {
  const body = toJson(item.info.schema, item.message as never) as JsonObject;
  return { apiVersion: API_VERSION, kind: item.info.kind, ...body };
}
