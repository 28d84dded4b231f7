/**
 * The admin API (AdminService in admin.proto) that the `trellis` CLI talks to: apply, get, list,
 * delete, status, proxy-config, analyze and join tokens. Register it with
 * `addService(server, AdminService, createAdminService(deps))`.
 *
 * Every call first checks `authorization: Bearer <admin token>` (security/admin-auth.ts,
 * constant-time): a missing or wrong token is UNAUTHENTICATED, and nothing else runs.
 *
 * Reads go to the store, not to the model, so a `get` right after an `apply` sees the write (the
 * model follows the store's watch and may lag by a moment). Analyze is the exception: it is a lint
 * over the model the replica serves from.
 */
import { clone, create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { durationMs } from "@trellis/proto/duration";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { formatPath } from "@trellis/proto/field-path";
import type {
  AdminService,
  AnalyzeRequest,
  ApplyRequest,
  ApplyResponse,
  ApplyResult,
  CreateTokenRequest,
  CreateTokenResponse,
  DeleteRequest,
  DeleteResponse,
  FieldError,
  GetRequest,
  GetResponse,
  ListRequest,
  ListResponse,
  ProxyConfigRequest,
  ProxyConfigResponse,
  ProxyRecord,
  StatusRequest,
  StatusResponse,
} from "@trellis/proto/gen/trellis/v1/admin_pb";
import {
  AnalyzeResponseSchema,
  ApplyAction,
  ApplyResponseSchema,
  ApplyResultSchema,
  CreateTokenResponseSchema,
  DeleteResponseSchema,
  FieldErrorSchema,
  GetResponseSchema,
  ListResponseSchema,
  ProxyConfigResponseSchema,
  ProxyRecordSchema,
  StatusResponseSchema,
  ValidationErrorsSchema,
} from "@trellis/proto/gen/trellis/v1/admin_pb";
import type { ProxyRollout } from "@trellis/proto/gen/trellis/v1/common_pb";
import { MetadataSchema, ProxyRolloutSchema } from "@trellis/proto/gen/trellis/v1/common_pb";
import type { ServiceImplementation } from "@trellis/proto/grpc-adapter";
import { toGrpcError } from "@trellis/proto/grpc-adapter";
import type { KindInfo, PolicyMessage } from "@trellis/proto/kinds";
import { DEFAULT_NAMESPACE, fromPolicy, KINDS, lookupKind, toPolicy } from "@trellis/proto/kinds";
import { RESOURCE_SCHEMAS, SHORT_TYPE_NAMES } from "@trellis/proto/resource-types";
import { timestampFromDate } from "@trellis/proto/timestamp";
import { validate } from "@trellis/proto/validate";
import { decodePolicy, encodePolicy } from "../model/policy-codec.js";
import type { MeshModel } from "../model/types.js";
import { AUTHORIZATION_METADATA_KEY, checkAdminToken } from "../security/admin-auth.js";
import { createJoinToken as storeJoinToken } from "../security/tokens.js";
import { parseStatusKey, policyStatus } from "../status/merge.js";
import { POLICY_PREFIX, PROXY_PREFIX, policyKey, STATUS_PREFIX } from "../store/keys.js";
import type { Compare, KeyValue, Store, TxnOp } from "../store/store.js";
import { analyze } from "./analyze.js";

/** Default lifetime of a join token made through the API: 24 h, in ms. */
export const DEFAULT_JOIN_TOKEN_TTL_MS = 24 * 3600 * 1000;

/**
 * Binary trailer of a refused Apply: `ValidationErrors` (admin.proto), one FieldError per broken
 * rule with the policy's index in the request. The status message says the same in words.
 */
export const VALIDATION_ERRORS_METADATA_KEY = "x-trellis-validation-errors-bin";

/** A join token as the security module makes it. */
export interface JoinTokenGrant {
  token: string;
  tokenId: string;
  expiresAt: Date;
}

export interface AdminServiceDeps {
  store: Store;
  /** The replica's current model (for Analyze). */
  model: () => MeshModel;
  /** The admin token every call must present. */
  adminToken: string;
  /** Makes a join token; default security/tokens.ts `createJoinToken` on `store`. */
  createJoinToken?: (namespace: string, serviceAccount: string, ttlMs: number) => Promise<JoinTokenGrant>;
  /** Clock for creationTime; default `new Date()`. */
  now?: () => Date;
  /** Called with unexpected (non-Trellis) failures, which callers only see as "internal error". */
  onInternalError?: (method: string, err: unknown) => void;
}

export type AdminServiceImpl = ServiceImplementation<typeof AdminService>;

/** The AdminService implementation over `deps`. */
export function createAdminService(deps: AdminServiceDeps): AdminServiceImpl {
  const admin = new Admin(deps);
  const unary = <Req, Res>(
    method: string,
    fn: (req: Req) => Promise<Res>,
  ): grpc.handleUnaryCall<Req, Res> => {
    return (call, callback) => {
      const run = async (): Promise<Res> => {
        checkAdminToken(deps.adminToken, call.metadata.get(AUTHORIZATION_METADATA_KEY));
        return fn(call.request);
      };
      run().then(
        (res) => callback(null, res),
        (err: unknown) => {
          if (!(err instanceof TrellisError)) deps.onInternalError?.(method, err);
          const trailers = TRAILERS.get(err as object);
          callback(toGrpcError(err, trailers === undefined ? {} : { metadata: trailers }));
        },
      );
    };
  };
  return {
    apply: unary("Apply", (req: ApplyRequest) => admin.apply(req)),
    get: unary("Get", (req: GetRequest) => admin.get(req)),
    list: unary("List", (req: ListRequest) => admin.list(req)),
    delete: unary("Delete", (req: DeleteRequest) => admin.delete(req)),
    status: unary("Status", (req: StatusRequest) => admin.status(req)),
    proxyConfig: unary("ProxyConfig", (req: ProxyConfigRequest) => admin.proxyConfig(req)),
    analyze: unary("Analyze", async (req: AnalyzeRequest) =>
      create(AnalyzeResponseSchema, { findings: analyze(deps.model(), { namespace: req.namespace }) }),
    ),
    createToken: unary("CreateToken", (req: CreateTokenRequest) => admin.createToken(req)),
  };
}

/** Trailers to send with an error (the ValidationErrors of a refused Apply). */
const TRAILERS = new WeakMap<object, grpc.Metadata>();

/** One policy of an Apply request, after checks. */
interface PlannedPolicy {
  info: KindInfo;
  namespace: string;
  name: string;
  key: string;
  stored: KeyValue | undefined;
  action: ApplyAction;
  /** What to store, when the action is CREATED or CONFIGURED. */
  value?: Uint8Array;
}

class Admin {
  constructor(private readonly deps: AdminServiceDeps) {}

  private now(): Date {
    return this.deps.now?.() ?? new Date();
  }

  /**
   * Apply, all or nothing:
   *   1. decode every policy, default its namespace, drop status; validate each with the shared
   *      validator — any violation (or a duplicate) refuses the whole request, INVALID_ARGUMENT;
   *   2. read what is stored under each key; an explicit resourceVersion must equal the stored
   *      modRevision (CONFLICT otherwise);
   *   3. per policy: UNCHANGED when spec, labels and annotations equal the stored ones; else
   *      CREATED / CONFIGURED, generation + 1 when the spec changed, creationTime kept;
   *   4. one transaction compares the modRevision of every key read in step 2 (0 = absent) and
   *      puts every changed policy; a concurrent writer makes it fail: CONFLICT, nothing written.
   * dry_run stops after step 3.
   */
  async apply(req: ApplyRequest): Promise<ApplyResponse> {
    const incoming = this.checkApply(req);
    const stored = await Promise.all(incoming.map((p) => this.deps.store.get(p.key)));
    const now = this.now();
    const planned: PlannedPolicy[] = incoming.map((p, i) => this.plan(p, stored[i], now));

    const changed = planned.filter((p) => p.value !== undefined);
    let revision = 0;
    if (!req.dryRun && changed.length > 0) {
      const compares: Compare[] = planned.map((p) => ({
        key: p.key,
        modRevision: p.stored?.modRevision ?? 0,
      }));
      const ops: TxnOp[] = changed.map((p) => ({ type: "put", key: p.key, value: p.value as Uint8Array }));
      const result = await this.deps.store.txn(compares, ops);
      if (!result.succeeded) {
        throw new TrellisError(
          ErrorCode.CONFLICT,
          "a policy changed while applying; nothing was applied, retry",
        );
      }
      revision = result.revision;
    }
    const results: ApplyResult[] = planned.map((p) => {
      let resourceVersion = "";
      if (p.action === ApplyAction.UNCHANGED) resourceVersion = String(p.stored?.modRevision ?? "");
      else if (!req.dryRun) resourceVersion = String(revision);
      return create(ApplyResultSchema, {
        kind: p.info.kind,
        namespace: p.namespace,
        name: p.name,
        action: p.action,
        resourceVersion,
      });
    });
    return create(ApplyResponseSchema, { results });
  }

  /** Step 1 of apply: normalised, validated policies, or INVALID_ARGUMENT naming every problem. */
  private checkApply(
    req: ApplyRequest,
  ): { info: KindInfo; message: PolicyMessage; key: string; desc: string }[] {
    const errors: FieldError[] = [];
    const described: string[] = [];
    const out: { info: KindInfo; message: PolicyMessage; key: string; desc: string }[] = [];
    const seen = new Map<string, number>();
    req.policies.forEach((policy, index) => {
      const decoded = fromPolicy(policy);
      if (decoded === undefined) {
        errors.push(create(FieldErrorSchema, { index, path: "", message: "empty policy (no kind set)" }));
        described.push(`policies[${index}]: empty policy (no kind set)`);
        return;
      }
      const { info } = decoded;
      const message = clone(info.schema, decoded.message as never) as PolicyMessage;
      message.status = undefined; // written by Trellis only
      if (message.metadata !== undefined && message.metadata.namespace === "") {
        message.metadata.namespace = DEFAULT_NAMESPACE;
      }
      const namespace = message.metadata?.namespace ?? DEFAULT_NAMESPACE;
      const name = message.metadata?.name ?? "";
      const desc = `${info.kind} ${namespace}/${name}`;
      const violations = validate(info.schema, message as never);
      for (const v of violations) {
        const path = formatPath(v.path);
        errors.push(create(FieldErrorSchema, { index, path, message: v.message }));
        described.push(`policies[${index}] ${desc}: ${path ? `${path}: ` : ""}${v.message}`);
      }
      if (violations.length > 0) return;
      const key = policyKey(info.kind, namespace, name);
      const first = seen.get(key);
      if (first !== undefined) {
        const msg = `duplicates policies[${first}] (one request may name each policy once)`;
        errors.push(create(FieldErrorSchema, { index, path: "metadata.name", message: msg }));
        described.push(`policies[${index}] ${desc}: metadata.name: ${msg}`);
        return;
      }
      seen.set(key, index);
      out.push({ info, message, key, desc });
    });
    if (req.policies.length === 0) {
      throw new TrellisError(ErrorCode.INVALID_ARGUMENT, "no policies to apply");
    }
    if (errors.length > 0) {
      const n = errors.length;
      const err = new TrellisError(
        ErrorCode.INVALID_ARGUMENT,
        `${n} validation error${n === 1 ? "" : "s"}; nothing was applied: ${described.join("; ")}`,
      );
      const trailers = new grpc.Metadata();
      trailers.set(
        VALIDATION_ERRORS_METADATA_KEY,
        Buffer.from(toBinary(ValidationErrorsSchema, create(ValidationErrorsSchema, { errors }))),
      );
      TRAILERS.set(err, trailers);
      throw err;
    }
    return out;
  }

  /** Steps 2–3 of apply for one policy. */
  private plan(
    p: { info: KindInfo; message: PolicyMessage; key: string; desc: string },
    stored: KeyValue | undefined,
    now: Date,
  ): PlannedPolicy {
    const { info, message } = p;
    const md = message.metadata ?? create(MetadataSchema);
    const expected = md.resourceVersion;
    if (expected !== "") {
      if (stored === undefined) {
        throw new TrellisError(
          ErrorCode.CONFLICT,
          `${p.desc}: resourceVersion ${expected} was given but the policy does not exist; nothing was applied`,
        );
      }
      if (expected !== String(stored.modRevision)) {
        throw new TrellisError(
          ErrorCode.CONFLICT,
          `${p.desc}: resourceVersion ${expected} is stale (now ${stored.modRevision}); ` +
            "nothing was applied; get the policy again and re-apply",
        );
      }
    }
    let previous: PolicyMessage | undefined;
    if (stored !== undefined) {
      try {
        previous = fromBinary(info.schema, stored.value) as unknown as PolicyMessage;
      } catch {
        previous = undefined; // unreadable: overwrite it as a new configuration
      }
    }
    const base = { info, namespace: md.namespace, name: md.name, key: p.key, stored };
    if (previous !== undefined && equals(info.schema, content(info, previous), content(info, message))) {
      return { ...base, action: ApplyAction.UNCHANGED };
    }
    const next = clone(info.schema, message as never) as PolicyMessage;
    const nextMd = next.metadata ?? create(MetadataSchema);
    next.metadata = nextMd;
    const prevMd = previous?.metadata;
    const specChanged =
      previous === undefined || !equals(info.schema, specOnly(info, previous), specOnly(info, message));
    const prevGeneration = prevMd?.generation ?? 0n;
    nextMd.generation = specChanged ? prevGeneration + 1n : prevGeneration;
    nextMd.creationTime = prevMd?.creationTime ?? timestampFromDate(now);
    return {
      ...base,
      action: stored === undefined ? ApplyAction.CREATED : ApplyAction.CONFIGURED,
      value: encodePolicy(info, next),
    };
  }

  async get(req: GetRequest): Promise<GetResponse> {
    const info = kindOf(req.kind);
    if (req.name === "") throw new TrellisError(ErrorCode.INVALID_ARGUMENT, "name is required");
    const namespace = req.namespace || DEFAULT_NAMESPACE;
    const kv = await this.deps.store.get(policyKey(info.kind, namespace, req.name));
    if (kv === undefined) {
      throw new TrellisError(ErrorCode.NOT_FOUND, `${info.kind} ${namespace}/${req.name} not found`);
    }
    const statuses = await this.rollouts();
    return create(GetResponseSchema, { policy: toPolicy(info, withStatus(info, kv, statuses)) });
  }

  async list(req: ListRequest): Promise<ListResponse> {
    const kinds = req.kind === "" ? KINDS : [kindOf(req.kind)];
    const statuses = await this.rollouts();
    const policies = [];
    for (const info of kinds) {
      const prefix = `${POLICY_PREFIX}${info.kind}/${req.namespace ? `${req.namespace}/` : ""}`;
      const listed = await this.deps.store.list(prefix);
      for (const kv of listed.items) {
        // A name may contain no "/", but guard anyway against keys written by someone else.
        if (kv.key.slice(prefix.length).split("/").length !== (req.namespace ? 1 : 2)) continue;
        let message: PolicyMessage;
        try {
          message = withStatus(info, kv, statuses);
        } catch {
          continue; // undecodable: the model skips it too
        }
        policies.push(toPolicy(info, message));
      }
    }
    return create(ListResponseSchema, { policies });
  }

  async delete(req: DeleteRequest): Promise<DeleteResponse> {
    const info = kindOf(req.kind);
    if (req.name === "") throw new TrellisError(ErrorCode.INVALID_ARGUMENT, "name is required");
    const namespace = req.namespace || DEFAULT_NAMESPACE;
    const key = policyKey(info.kind, namespace, req.name);
    const desc = `${info.kind} ${namespace}/${req.name}`;
    const kv = await this.deps.store.get(key);
    if (kv === undefined) throw new TrellisError(ErrorCode.NOT_FOUND, `${desc} not found`);
    if (req.resourceVersion !== "" && req.resourceVersion !== String(kv.modRevision)) {
      throw new TrellisError(
        ErrorCode.CONFLICT,
        `${desc}: resourceVersion ${req.resourceVersion} is stale (now ${kv.modRevision}); nothing was deleted`,
      );
    }
    // Compare against what was read, so a write in between is never silently deleted.
    const deleted = await this.deps.store
      .delete(key, { expectRevision: kv.modRevision })
      .catch((err: unknown) => {
        if (err instanceof TrellisError && err.code === ErrorCode.CONFLICT) {
          throw new TrellisError(
            ErrorCode.CONFLICT,
            `${desc} changed while deleting; nothing was deleted, retry`,
            {
              cause: err,
            },
          );
        }
        throw err;
      });
    if (!deleted) throw new TrellisError(ErrorCode.NOT_FOUND, `${desc} not found`);
    return create(DeleteResponseSchema, { deleted: true });
  }

  async status(req: StatusRequest): Promise<StatusResponse> {
    const records = await this.proxyRecords();
    const proxies = [...records.values()]
      .map((r) => r.status)
      .filter((s) => s !== undefined)
      .filter((s) => req.namespace === "" || s.workload?.namespace === req.namespace)
      .sort((a, b) => {
        const wa = a.workload;
        const wb = b.workload;
        return (
          cmp(wa?.namespace ?? "", wb?.namespace ?? "") ||
          cmp(wa?.service ?? "", wb?.service ?? "") ||
          cmp(wa?.proxyId ?? "", wb?.proxyId ?? "")
        );
      });
    return create(StatusResponseSchema, { proxies });
  }

  async proxyConfig(req: ProxyConfigRequest): Promise<ProxyConfigResponse> {
    if (req.proxyId === "") throw new TrellisError(ErrorCode.INVALID_ARGUMENT, "proxy id is required");
    let typeUrl: string | undefined;
    if (req.type !== "") {
      typeUrl =
        SHORT_TYPE_NAMES.get(req.type.toLowerCase()) ??
        (RESOURCE_SCHEMAS.has(req.type) ? req.type : undefined);
      if (typeUrl === undefined) {
        throw new TrellisError(
          ErrorCode.INVALID_ARGUMENT,
          `unknown resource type ${JSON.stringify(req.type)}; expected one of ${[...SHORT_TYPE_NAMES.keys()].join(", ")} or a type URL`,
        );
      }
    }
    const record = (await this.proxyRecords()).get(req.proxyId);
    if (record === undefined) {
      throw new TrellisError(
        ErrorCode.NOT_FOUND,
        `proxy ${req.proxyId} is not connected to any control-plane replica (see trellis status)`,
      );
    }
    const resources = record.resources.filter((r) => typeUrl === undefined || r.typeUrl === typeUrl);
    return create(ProxyConfigResponseSchema, { proxyId: req.proxyId, resources });
  }

  async createToken(req: CreateTokenRequest): Promise<CreateTokenResponse> {
    if (req.namespace === "") throw new TrellisError(ErrorCode.INVALID_ARGUMENT, "namespace is required");
    if (req.serviceAccount === "") {
      throw new TrellisError(ErrorCode.INVALID_ARGUMENT, "service account is required");
    }
    const ttlMs = durationMs(req.ttl, DEFAULT_JOIN_TOKEN_TTL_MS);
    if (!(ttlMs > 0)) throw new TrellisError(ErrorCode.INVALID_ARGUMENT, "ttl must be positive");
    const make =
      this.deps.createJoinToken ??
      ((namespace: string, serviceAccount: string, ms: number) =>
        storeJoinToken(this.deps.store, { namespace, serviceAccount, ttlMs: ms, now: this.now() }));
    const grant = await make(req.namespace, req.serviceAccount, ttlMs);
    return create(CreateTokenResponseSchema, {
      token: grant.token,
      tokenId: grant.tokenId,
      expiresAt: timestampFromDate(grant.expiresAt),
    });
  }

  /** Every replica's rollouts, by `Kind/ns/name`. Undecodable records are skipped. */
  private async rollouts(): Promise<Map<string, ProxyRollout[]>> {
    const out = new Map<string, ProxyRollout[]>();
    const listed = await this.deps.store.list(STATUS_PREFIX);
    for (const kv of listed.items) {
      const k = parseStatusKey(kv.key);
      if (k === undefined) continue;
      let rollout: ProxyRollout;
      try {
        rollout = fromBinary(ProxyRolloutSchema, kv.value);
      } catch {
        continue;
      }
      const id = `${k.kind}/${k.namespace}/${k.name}`;
      const list = out.get(id);
      if (list === undefined) out.set(id, [rollout]);
      else list.push(rollout);
    }
    return out;
  }

  /**
   * Every proxy's record, by proxy id. A proxy that moved between replicas may briefly be recorded
   * by both (the old record lives until the old replica flushes or its lease ends): the one that
   * connected last wins.
   */
  private async proxyRecords(): Promise<Map<string, ProxyRecord>> {
    const out = new Map<string, ProxyRecord>();
    const listed = await this.deps.store.list(PROXY_PREFIX);
    for (const kv of listed.items) {
      const rest = kv.key.slice(PROXY_PREFIX.length).split("/");
      if (rest.length !== 2) continue;
      const [replica = "", encoded = ""] = rest;
      let record: ProxyRecord;
      try {
        record = fromBinary(ProxyRecordSchema, kv.value);
      } catch {
        continue;
      }
      const proxyId = record.status?.workload?.proxyId || decodeURIComponent(encoded);
      if (record.status?.workload !== undefined && record.status.workload.replica === "") {
        record.status.workload.replica = replica;
      }
      const prev = out.get(proxyId);
      if (prev === undefined || connectedAt(record) >= connectedAt(prev)) out.set(proxyId, record);
    }
    return out;
  }
}

/** The kind named by `name` (kind or CLI alias), or INVALID_ARGUMENT listing the kinds. */
function kindOf(name: string): KindInfo {
  const info = lookupKind(name);
  if (info !== undefined) return info;
  if (name === "") throw new TrellisError(ErrorCode.INVALID_ARGUMENT, "kind is required");
  throw new TrellisError(
    ErrorCode.INVALID_ARGUMENT,
    `unknown kind ${JSON.stringify(name)}; expected one of ${KINDS.map((k) => k.kind).join(", ")}`,
  );
}

/** The stored policy with resourceVersion and its merged status. */
function withStatus(info: KindInfo, kv: KeyValue, statuses: Map<string, ProxyRollout[]>): PolicyMessage {
  const message = decodePolicy(info, kv);
  const md = message.metadata;
  const id = `${info.kind}/${md?.namespace ?? ""}/${md?.name ?? ""}`;
  message.status = policyStatus(statuses.get(id) ?? [], md?.generation ?? 0n);
  return message;
}

/** What "unchanged" compares: name, namespace, labels, annotations and spec. */
function content(info: KindInfo, message: PolicyMessage): never {
  const md = message.metadata;
  return create(info.schema, {
    metadata: create(MetadataSchema, {
      name: md?.name ?? "",
      namespace: md?.namespace ?? "",
      labels: md?.labels ?? {},
      annotations: md?.annotations ?? {},
    }),
    spec: message.spec,
  } as never) as never;
}

/** Only the spec: what moves metadata.generation. */
function specOnly(info: KindInfo, message: PolicyMessage): never {
  return create(info.schema, { spec: message.spec } as never) as never;
}

function connectedAt(record: ProxyRecord): bigint {
  const ts = record.status?.connectedSince;
  return ts === undefined ? 0n : ts.seconds * 1_000_000_000n + BigInt(ts.nanos);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
