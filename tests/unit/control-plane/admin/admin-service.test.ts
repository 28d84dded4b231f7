/**
 * The admin API's handlers against the real embedded store (in memory), called the way grpc-js
 * calls them: a call object carrying the request and its metadata, and a callback.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type AdminServiceImpl,
  createAdminService,
  VALIDATION_ERRORS_METADATA_KEY,
} from "@trellis/control-plane/admin/admin-service";
import { EMPTY_MODEL, type MeshModel } from "@trellis/control-plane/model/types";
import { bearerAuthorization } from "@trellis/control-plane/security/admin-auth";
import { createEmbeddedStore } from "@trellis/control-plane/store/embedded-store";
import { POLICY_PREFIX, policyKey, proxyKey, statusKey } from "@trellis/control-plane/store/keys";
import type { Store, TxnOp } from "@trellis/control-plane/store/store";
import { durationFromMs } from "@trellis/proto/duration";
import {
  ApplyAction,
  type ApplyResponse,
  type Policy,
  ProxyRecordSchema,
  ProxyResourceSchema,
  ProxyStatusSchema,
  SyncState,
  TypeStatusSchema,
  ValidationErrorsSchema,
} from "@trellis/proto/gen/trellis/v1/admin_pb";
import type { Metadata, ProxyRollout } from "@trellis/proto/gen/trellis/v1/common_pb";
import {
  PolicyStatusSchema,
  ProxyRolloutSchema,
  RejectionReasonSchema,
} from "@trellis/proto/gen/trellis/v1/common_pb";
import { type HTTPRoute, RetryPolicySchema } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import { WorkloadSchema } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { fromPolicy, toPolicy } from "@trellis/proto/kinds";
import { TypeUrl } from "@trellis/proto/resource-types";
import { parsePolicies } from "@trellis/proto/yaml-codec";

const TOKEN = "trellis-admin.unit-test-token-0123456789abcdefghijklmnopqrstu";

/** Policies from YAML (the documents must be valid: validation is what the CLI does first). */
function policies(yaml: string): Policy[] {
  const r = parsePolicies(yaml, "test.yaml");
  assert.deepEqual(r.diagnostics, [], "test YAML must be valid");
  return r.policies.map((p) => toPolicy(p.info, p.message));
}

const ROUTE = `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop, labels: { team: a } }
spec:
  targetRef: { kind: Service, name: orders }
  rules:
    - backends: [ { service: orders-v1 } ]
`;

const PEER_AUTH = `apiVersion: trellis.dev/v1
kind: PeerAuthentication
metadata: { name: strict }
spec: { mtls: { mode: STRICT } }
`;

const SERVICE = `apiVersion: trellis.dev/v1
kind: Service
metadata: { name: orders, namespace: shop }
spec: { ports: [ { port: 8080, protocol: http } ] }
`;

/** A grpc-js-like unary call with metadata (`auth` null: no authorization at all); resolves the response or rejects with the status error. */
function invoke<Req, Res>(
  handler: grpc.handleUnaryCall<Req, Res>,
  request: Req,
  auth: string | null = bearerAuthorization(TOKEN),
): Promise<Res> {
  const metadata = new grpc.Metadata();
  if (auth !== null) metadata.set("authorization", auth);
  const call = { request, metadata } as unknown as grpc.ServerUnaryCall<Req, Res>;
  return new Promise((resolve, reject) => {
    handler(call, (err, value) => {
      if (err) reject(err);
      else resolve(value as Res);
    });
  });
}

/** Matches a rejected call's gRPC status and message. */
function status(code: grpc.status, details?: RegExp): (err: unknown) => boolean {
  return (err) => {
    const e = err as grpc.ServiceError;
    assert.equal(e.code, code, `expected ${grpc.status[code]}, got ${grpc.status[e.code]}: ${e.details}`);
    if (details !== undefined) assert.match(e.details, details);
    return true;
  };
}

function actions(res: ApplyResponse): string[] {
  return res.results.map((r) => `${r.kind}/${r.namespace}/${r.name} ${ApplyAction[r.action]}`);
}

describe("admin service", () => {
  let store: Store;
  let impl: AdminServiceImpl;
  let model: MeshModel = EMPTY_MODEL;
  let clock = new Date("2026-03-01T10:00:00Z");
  const tokenCalls: [string, string, number][] = [];

  before(async () => {
    store = await createEmbeddedStore();
  });
  after(async () => {
    await store.close();
  });
  beforeEach(async () => {
    await store.txn([], [{ type: "deletePrefix", prefix: "/trellis/v1/" }]);
    model = EMPTY_MODEL;
    clock = new Date("2026-03-01T10:00:00Z");
    impl = serviceOver(store);
  });

  function serviceOver(s: Store): AdminServiceImpl {
    return createAdminService({
      store: s,
      model: () => model,
      adminToken: TOKEN,
      now: () => clock,
      createJoinToken: async (ns, sa, ttlMs) => {
        tokenCalls.push([ns, sa, ttlMs]);
        return {
          token: "trellis-join.0011223344556677.secret",
          tokenId: "0011223344556677",
          expiresAt: new Date(clock.getTime() + ttlMs),
        };
      },
    });
  }

  async function stored(): Promise<string[]> {
    return (await store.list(POLICY_PREFIX)).items.map((kv) => kv.key);
  }

  async function getMetadata(kind: string, namespace: string, name: string): Promise<Metadata> {
    const res = await invoke(impl.get, { kind, namespace, name } as never);
    const md = res.policy?.kind.value?.metadata;
    assert.ok(md);
    return md;
  }

  describe("authentication", () => {
    for (const [what, auth] of [
      ["no token", null],
      ["a wrong token", bearerAuthorization("trellis-admin.wrong")],
      ["a token without the Bearer scheme", TOKEN],
    ] as const) {
      it(`refuses ${what} with UNAUTHENTICATED and does nothing`, async () => {
        await assert.rejects(
          invoke(impl.apply, { policies: policies(ROUTE), dryRun: false } as never, auth),
          status(grpc.status.UNAUTHENTICATED, /admin token/),
        );
        await assert.rejects(
          invoke(impl.list, { kind: "", namespace: "" } as never, auth),
          status(grpc.status.UNAUTHENTICATED),
        );
        assert.deepEqual(await stored(), []);
      });
    }
  });

  describe("apply", () => {
    it("creates, then reports unchanged without writing, then configured with generation + 1", async () => {
      const first = await invoke(impl.apply, {
        policies: policies(`${ROUTE}---\n${PEER_AUTH}`),
        dryRun: false,
      } as never);
      assert.deepEqual(actions(first), [
        "HTTPRoute/shop/orders CREATED",
        "PeerAuthentication/default/strict CREATED", // namespace defaulted
      ]);
      const rv = first.results[0]?.resourceVersion;
      assert.ok(rv && rv !== "0");
      const md1 = await getMetadata("routes", "shop", "orders");
      assert.equal(md1.resourceVersion, rv);
      assert.equal(md1.generation, 1n);
      assert.equal(md1.creationTime?.seconds, BigInt(Date.parse("2026-03-01T10:00:00Z") / 1000));

      const revBefore = await store.revision();
      const again = await invoke(impl.apply, {
        policies: policies(`${ROUTE}---\n${PEER_AUTH}`),
        dryRun: false,
      } as never);
      assert.deepEqual(actions(again), [
        "HTTPRoute/shop/orders UNCHANGED",
        "PeerAuthentication/default/strict UNCHANGED",
      ]);
      assert.equal(again.results[0]?.resourceVersion, rv, "unchanged keeps its version");
      assert.equal(await store.revision(), revBefore, "an unchanged apply writes nothing");

      clock = new Date("2026-03-02T10:00:00Z");
      const changed = await invoke(impl.apply, {
        policies: policies(`${ROUTE.replace("orders-v1", "orders-v2")}---\n${PEER_AUTH}`),
        dryRun: false,
      } as never);
      assert.deepEqual(actions(changed), [
        "HTTPRoute/shop/orders CONFIGURED",
        "PeerAuthentication/default/strict UNCHANGED",
      ]);
      const md2 = await getMetadata("HTTPRoute", "shop", "orders");
      assert.equal(md2.generation, 2n);
      assert.deepEqual(md2.creationTime, md1.creationTime, "creationTime is kept");
      assert.equal(md2.resourceVersion, changed.results[0]?.resourceVersion);
      assert.notEqual(md2.resourceVersion, rv);

      // Labels only: configured, but the spec (and so the generation) did not change.
      const relabelled = await invoke(impl.apply, {
        policies: policies(ROUTE.replace("team: a", "team: b").replace("orders-v1", "orders-v2")),
        dryRun: false,
      } as never);
      assert.deepEqual(actions(relabelled), ["HTTPRoute/shop/orders CONFIGURED"]);
      const md3 = await getMetadata("HTTPRoute", "shop", "orders");
      assert.equal(md3.generation, 2n);
      assert.deepEqual(md3.labels, { team: "b" });
    });

    it("ignores status and server-set metadata in the request", async () => {
      const [p] = policies(ROUTE);
      assert.ok(p);
      const route = p.kind.value as HTTPRoute;
      route.status = create(PolicyStatusSchema, { proxies: { applied: 99 } });
      if (route.metadata) {
        route.metadata.generation = 42n;
      }
      await invoke(impl.apply, { policies: [p], dryRun: false } as never);
      const res = await invoke(impl.get, { kind: "HTTPRoute", namespace: "shop", name: "orders" } as never);
      const got = res.policy?.kind.value as HTTPRoute;
      assert.equal(got.metadata?.generation, 1n);
      assert.equal(got.status?.proxies?.applied, 0, "status comes from the status keys, never from apply");
    });

    it("is all or nothing: one invalid document refuses the whole request, naming it", async () => {
      const good = policies(`${ROUTE}---\n${PEER_AUTH}`);
      const [bad] = policies(ROUTE.replace("name: orders, namespace: shop", "name: broken, namespace: shop"));
      assert.ok(bad);
      const rule = (bad.kind.value as HTTPRoute).spec?.rules[0];
      assert.ok(rule);
      rule.retry = create(RetryPolicySchema, { attempts: 11 });
      let trailer: Buffer | undefined;
      await assert.rejects(
        invoke(impl.apply, { policies: [...good, bad], dryRun: false } as never),
        (err) => {
          status(
            grpc.status.INVALID_ARGUMENT,
            /nothing was applied.*policies\[2\] HTTPRoute shop\/broken: spec\.rules\[0\]\.retry\.attempts: /,
          )(err);
          trailer = (err as grpc.ServiceError).metadata.get(VALIDATION_ERRORS_METADATA_KEY)[0] as
            | Buffer
            | undefined;
          return true;
        },
      );
      assert.deepEqual(await stored(), [], "nothing was stored");
      assert.ok(trailer, "the errors travel in a trailer too");
      const errors = fromBinary(ValidationErrorsSchema, trailer).errors;
      assert.deepEqual(
        errors.map((e) => [e.index, e.path]),
        [[2, "spec.rules[0].retry.attempts"]],
      );
    });

    it("refuses the same policy twice in one request", async () => {
      await assert.rejects(
        invoke(impl.apply, { policies: policies(`${ROUTE}---\n${ROUTE}`), dryRun: false } as never),
        status(grpc.status.INVALID_ARGUMENT, /policies\[1\].*duplicates policies\[0\]/),
      );
      assert.deepEqual(await stored(), []);
    });

    it("dry run computes the outcome and stores nothing", async () => {
      const res = await invoke(impl.apply, { policies: policies(ROUTE), dryRun: true } as never);
      assert.deepEqual(actions(res), ["HTTPRoute/shop/orders CREATED"]);
      assert.deepEqual(await stored(), []);
    });

    it("an explicit resourceVersion is a compare-and-swap", async () => {
      const created = await invoke(impl.apply, { policies: policies(ROUTE), dryRun: false } as never);
      const rv = created.results[0]?.resourceVersion ?? "";
      // Someone else changes it.
      await invoke(impl.apply, {
        policies: policies(ROUTE.replace("orders-v1", "orders-v3")),
        dryRun: false,
      } as never);
      const [stale] = policies(ROUTE.replace("orders-v1", "orders-v2"));
      assert.ok(stale?.kind.value?.metadata);
      stale.kind.value.metadata.resourceVersion = rv;
      await assert.rejects(
        invoke(impl.apply, { policies: [stale, ...policies(PEER_AUTH)], dryRun: false } as never),
        status(
          grpc.status.ABORTED,
          /HTTPRoute shop\/orders: resourceVersion \d+ is stale.*nothing was applied/,
        ),
      );
      assert.deepEqual(
        await stored(),
        [policyKey("HTTPRoute", "shop", "orders")],
        "the other policy was not applied either",
      );

      // The current version is accepted.
      const current = await getMetadata("HTTPRoute", "shop", "orders");
      stale.kind.value.metadata.resourceVersion = current.resourceVersion;
      const ok = await invoke(impl.apply, { policies: [stale], dryRun: false } as never);
      assert.deepEqual(actions(ok), ["HTTPRoute/shop/orders CONFIGURED"]);
    });

    it("a concurrent writer between read and write makes the whole apply fail with CONFLICT", async () => {
      await invoke(impl.apply, { policies: policies(ROUTE), dryRun: false } as never);
      // A store whose txn lets another writer in first (as a second replica's apply would).
      const racing: Store = Object.create(store) as Store;
      racing.txn = async (compares, success, failure) => {
        await store.put(policyKey("HTTPRoute", "shop", "orders"), new Uint8Array([0x0a, 0x00]));
        return store.txn(compares, success as TxnOp[], failure);
      };
      const raced = serviceOver(racing);
      await assert.rejects(
        invoke(raced.apply, {
          policies: policies(`${ROUTE.replace("orders-v1", "orders-v2")}---\n${PEER_AUTH}`),
          dryRun: false,
        } as never),
        status(grpc.status.ABORTED, /changed while applying; nothing was applied, retry/),
      );
      assert.equal(await store.get(policyKey("PeerAuthentication", "default", "strict")), undefined);
    });
  });

  describe("get and list", () => {
    it("get merges the status that two replicas recorded", async () => {
      await invoke(impl.apply, { policies: policies(ROUTE), dryRun: false } as never);
      const rollout = (applied: number, rejected: number, proxies: string[]): ProxyRollout =>
        create(ProxyRolloutSchema, {
          applied,
          rejected,
          reasons:
            rejected > 0
              ? [create(RejectionReasonSchema, { reason: "unsupported", count: rejected, proxies })]
              : [],
        });
      await store.put(
        statusKey("replica-a", "HTTPRoute", "shop", "orders"),
        toBinary(ProxyRolloutSchema, rollout(3, 1, ["p1"])),
      );
      await store.put(
        statusKey("replica-b", "HTTPRoute", "shop", "orders"),
        toBinary(ProxyRolloutSchema, rollout(2, 2, ["p2", "p3"])),
      );
      // Another policy's status must not leak in.
      await store.put(
        statusKey("replica-b", "HTTPRoute", "shop", "other"),
        toBinary(ProxyRolloutSchema, rollout(7, 0, [])),
      );

      const res = await invoke(impl.get, { kind: "httproutes", namespace: "shop", name: "orders" } as never);
      const route = res.policy?.kind.value as HTTPRoute;
      const proxies = route.status?.proxies;
      assert.equal(proxies?.applied, 5);
      assert.equal(proxies?.rejected, 3);
      assert.deepEqual(
        proxies?.reasons.map((r) => [r.reason, r.count, r.proxies]),
        [["unsupported", 3, ["p1", "p2", "p3"]]],
      );
      const cond = route.status?.conditions[0];
      assert.equal(cond?.type, "Applied");
      assert.equal(cond?.status, "False");
      assert.equal(cond?.reason, "Rejected");
      assert.match(cond?.message ?? "", /3 of 8 proxies rejected it: unsupported \(3\)/);
    });

    it("get of a missing policy is NOT_FOUND; an unknown kind is INVALID_ARGUMENT", async () => {
      await assert.rejects(
        invoke(impl.get, { kind: "HTTPRoute", namespace: "shop", name: "nope" } as never),
        status(grpc.status.NOT_FOUND, /HTTPRoute shop\/nope not found/),
      );
      await assert.rejects(
        invoke(impl.get, { kind: "Gizmo", namespace: "", name: "x" } as never),
        status(grpc.status.INVALID_ARGUMENT, /unknown kind "Gizmo"/),
      );
    });

    it("list filters by kind (alias) and namespace; empty means all", async () => {
      await invoke(impl.apply, {
        policies: policies(`${ROUTE}---\n${PEER_AUTH}---\n${SERVICE}`),
        dryRun: false,
      } as never);
      const names = async (kind: string, namespace: string): Promise<string[]> => {
        const res = await invoke(impl.list, { kind, namespace } as never);
        return res.policies.map((p) => {
          const d = fromPolicy(p);
          return `${d?.info.kind}/${d?.message.metadata?.namespace}/${d?.message.metadata?.name}`;
        });
      };
      assert.deepEqual(await names("", ""), [
        "Service/shop/orders",
        "HTTPRoute/shop/orders",
        "PeerAuthentication/default/strict",
      ]);
      assert.deepEqual(await names("", "shop"), ["Service/shop/orders", "HTTPRoute/shop/orders"]);
      assert.deepEqual(await names("routes", ""), ["HTTPRoute/shop/orders"]);
      assert.deepEqual(await names("pa", "shop"), []);
    });
  });

  describe("delete", () => {
    it("deletes, then NOT_FOUND; a stale resourceVersion is a CONFLICT", async () => {
      const created = await invoke(impl.apply, { policies: policies(ROUTE), dryRun: false } as never);
      const rv = created.results[0]?.resourceVersion ?? "";
      await invoke(impl.apply, {
        policies: policies(ROUTE.replace("orders-v1", "orders-v2")),
        dryRun: false,
      } as never);
      await assert.rejects(
        invoke(impl.delete, {
          kind: "HTTPRoute",
          namespace: "shop",
          name: "orders",
          resourceVersion: rv,
        } as never),
        status(grpc.status.ABORTED, /stale/),
      );
      assert.equal((await stored()).length, 1);
      const res = await invoke(impl.delete, {
        kind: "route",
        namespace: "shop",
        name: "orders",
        resourceVersion: "",
      } as never);
      assert.equal(res.deleted, true);
      assert.deepEqual(await stored(), []);
      await assert.rejects(
        invoke(impl.delete, {
          kind: "HTTPRoute",
          namespace: "shop",
          name: "orders",
          resourceVersion: "",
        } as never),
        status(grpc.status.NOT_FOUND, /HTTPRoute shop\/orders not found/),
      );
    });
  });

  describe("status and proxy-config", () => {
    async function record(
      replica: string,
      proxyId: string,
      namespace: string,
      connectedSec: number,
    ): Promise<void> {
      const rec = create(ProxyRecordSchema, {
        status: create(ProxyStatusSchema, {
          workload: create(WorkloadSchema, { proxyId, namespace, service: "orders", address: "127.0.0.1" }),
          connected: true,
          connectedSince: { seconds: BigInt(connectedSec) },
          types: [
            create(TypeStatusSchema, { typeUrl: TypeUrl.ROUTE, version: "v1", state: SyncState.ACKED }),
          ],
        }),
        resources: [
          create(ProxyResourceSchema, {
            typeUrl: TypeUrl.ROUTE,
            name: "orders.shop",
            version: `${replica}-1`,
            state: SyncState.ACKED,
          }),
          create(ProxyResourceSchema, {
            typeUrl: TypeUrl.CLUSTER,
            name: "orders.shop:8080",
            version: `${replica}-1`,
            state: SyncState.NACKED,
            error: "bad cluster",
          }),
        ],
      });
      await store.put(proxyKey(replica, proxyId), toBinary(ProxyRecordSchema, rec));
    }

    it("status lists every recorded proxy of every replica, filtered by namespace", async () => {
      await record("replica-a", "orders-1", "shop", 100);
      await record("replica-b", "web/1", "front", 100);
      const all = await invoke(impl.status, { namespace: "" } as never);
      const ids = all.proxies.map((p) => `${p.workload?.proxyId}@${p.workload?.replica}`);
      assert.deepEqual(ids, ["web/1@replica-b", "orders-1@replica-a"]);
      const shop = await invoke(impl.status, { namespace: "shop" } as never);
      assert.equal(shop.proxies.length, 1);
    });

    it("proxy-config returns one proxy's resources, by short type name or type URL; the newest record wins", async () => {
      await record("replica-a", "orders-1", "shop", 100);
      await record("replica-b", "orders-1", "shop", 200); // reconnected to b later
      const all = await invoke(impl.proxyConfig, { proxyId: "orders-1", type: "" } as never);
      const resources = all.resources;
      assert.deepEqual(
        resources.map((r) => `${r.name}@${r.version}`),
        ["orders.shop@replica-b-1", "orders.shop:8080@replica-b-1"],
      );
      const routes = await invoke(impl.proxyConfig, { proxyId: "orders-1", type: "routes" } as never);
      assert.deepEqual(
        routes.resources.map((r) => r.name),
        ["orders.shop"],
      );
      const clusters = await invoke(impl.proxyConfig, {
        proxyId: "orders-1",
        type: TypeUrl.CLUSTER,
      } as never);
      assert.deepEqual(
        clusters.resources.map((r) => r.error),
        ["bad cluster"],
      );
      await assert.rejects(
        invoke(impl.proxyConfig, { proxyId: "orders-1", type: "gizmos" } as never),
        status(grpc.status.INVALID_ARGUMENT, /unknown resource type "gizmos"/),
      );
      await assert.rejects(
        invoke(impl.proxyConfig, { proxyId: "ghost", type: "" } as never),
        status(grpc.status.NOT_FOUND, /proxy ghost is not connected/),
      );
    });
  });

  describe("analyze and tokens", () => {
    it("analyze runs over the replica's model", async () => {
      const parsed = parsePolicies(ROUTE, "r.yaml").policies[0];
      assert.ok(parsed);
      model = {
        revision: 1,
        policies: new Map([
          [
            "HTTPRoute",
            new Map([
              [
                "shop/orders",
                {
                  info: parsed.info,
                  namespace: "shop",
                  name: "orders",
                  message: parsed.message,
                  revision: 1,
                  createRevision: 1,
                },
              ],
            ]),
          ],
        ]),
        workloads: new Map(),
      };
      const res = await invoke(impl.analyze, { namespace: "" } as never);
      const findings = res.findings;
      assert.deepEqual(
        findings.map((f) => `${f.code} ${f.path}`),
        ["unknown-service spec.rules[0].backends[0]", "unknown-service spec.targetRef"],
      );
      const other = await invoke(impl.analyze, { namespace: "elsewhere" } as never);
      assert.deepEqual(other.findings, []);
    });

    it("createToken defaults the ttl to 24h and requires namespace and service account", async () => {
      tokenCalls.length = 0;
      const res = await invoke(impl.createToken, { namespace: "shop", serviceAccount: "orders" } as never);
      assert.deepEqual(tokenCalls, [["shop", "orders", 24 * 3600 * 1000]]);
      assert.equal(res.token, "trellis-join.0011223344556677.secret");
      assert.equal(res.expiresAt?.seconds, BigInt((clock.getTime() + 24 * 3600 * 1000) / 1000));
      await assert.rejects(
        invoke(impl.createToken, { namespace: "", serviceAccount: "orders" } as never),
        status(grpc.status.INVALID_ARGUMENT, /namespace is required/),
      );
    });

    it("without an injected token maker, makes real join tokens in the store", async () => {
      const real = createAdminService({ store, model: () => model, adminToken: TOKEN });
      const res = await invoke(real.createToken, {
        namespace: "shop",
        serviceAccount: "orders",
        ttl: durationFromMs(60_000),
      } as never);
      assert.match(res.token, /^trellis-join\.[0-9a-f]{16}\./);
      assert.ok(await store.get(`/trellis/v1/security/join-tokens/${res.tokenId}`));
    });
  });
});
