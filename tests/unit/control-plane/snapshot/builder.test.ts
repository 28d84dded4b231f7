import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { MeshModel, StoredPolicy } from "@trellis/control-plane/model/types";
import { objectKey } from "@trellis/control-plane/model/types";
import type { BuiltResource, ProxySnapshot } from "@trellis/control-plane/snapshot/builder";
import {
  buildProxySnapshot,
  checkConsistency,
  getResource,
  resourceVersion,
  serviceExists,
} from "@trellis/control-plane/snapshot/builder";
import { AuthorizationAction } from "@trellis/proto/gen/trellis/v1/authorization_policy_pb";
import { MtlsMode } from "@trellis/proto/gen/trellis/v1/peer_authentication_pb";
import type {
  Cluster,
  ClusterLoadAssignment,
  InboundListener,
  OutboundListener,
  RouteConfig,
} from "@trellis/proto/gen/trellis/v1/resources_pb";
import {
  ClusterLoadAssignmentSchema,
  ClusterSchema,
  ListenerSchema,
  RouteConfigSchema,
} from "@trellis/proto/gen/trellis/v1/resources_pb";
import { Protocol } from "@trellis/proto/gen/trellis/v1/service_pb";
import { LoadBalancerPolicy, OutboundTrafficPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import type { Workload } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { HealthStatus, WorkloadSchema } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { KINDS } from "@trellis/proto/kinds";
import { TypeUrl } from "@trellis/proto/resource-types";
import { parsePolicies } from "@trellis/proto/yaml-codec";

// ---------------------------------------------------------------------------------------------
// Model helpers: policies from YAML (document order = age: the first document is the oldest),
// workloads by hand.
// ---------------------------------------------------------------------------------------------

const ALL_KINDS = KINDS.map((k) => k.kind);

interface WorkloadInit {
  ports?: (number | [number, Protocol])[];
  sa?: string;
  address?: string;
  labels?: Record<string, string>;
  supportedKinds?: string[];
  identity?: string;
  inboundPort?: number;
  registeredMs?: number;
}

function workload(service: string, namespace: string, proxyId: string, init: WorkloadInit = {}): Workload {
  return create(WorkloadSchema, {
    proxyId,
    service,
    namespace,
    serviceAccount: init.sa ?? service,
    identity: init.identity ?? "",
    address: init.address ?? "10.0.0.1",
    inboundPort: init.inboundPort ?? 15006,
    ports: (init.ports ?? [8080]).map((p) =>
      typeof p === "number" ? { port: p, protocol: Protocol.HTTP } : { port: p[0], protocol: p[1] },
    ),
    labels: init.labels ?? {},
    locality: { region: "eu", zone: "eu-1" },
    health: HealthStatus.HEALTHY,
    supportedKinds: init.supportedKinds ?? ALL_KINDS,
    registeredAt: timestampFromMs(init.registeredMs ?? 1_700_000_000_000),
  });
}

/** Stored policies from YAML; createRevision follows document order, generation = 1. */
function policiesFrom(yaml: string): StoredPolicy[] {
  const parsed = parsePolicies(yaml, "test.yaml");
  assert.deepEqual(parsed.diagnostics, [], "test YAML must be valid");
  return parsed.policies.map((p, i) => {
    const metadata = p.message.metadata;
    assert.ok(metadata !== undefined);
    metadata.generation = 1n;
    return {
      info: p.info,
      namespace: metadata.namespace,
      name: metadata.name,
      message: p.message,
      revision: 100 + i,
      createRevision: 100 + i,
    };
  });
}

function model(yaml: string, workloads: readonly Workload[] = [], revision = 1): MeshModel {
  const policies = new Map<string, Map<string, StoredPolicy>>();
  for (const p of policiesFrom(yaml)) {
    let byKey = policies.get(p.info.kind);
    if (byKey === undefined) {
      byKey = new Map();
      policies.set(p.info.kind, byKey);
    }
    byKey.set(objectKey(p.namespace, p.name), p);
  }
  return { revision, policies, workloads: workloadMap(workloads) };
}

function workloadMap(workloads: readonly Workload[]): Map<string, Map<string, Workload>> {
  const out = new Map<string, Map<string, Workload>>();
  for (const w of workloads) {
    const key = objectKey(w.namespace, w.service);
    let byId = out.get(key);
    if (byId === undefined) {
      byId = new Map();
      out.set(key, byId);
    }
    byId.set(w.proxyId, w);
  }
  return out;
}

function build(m: MeshModel, proxy: Workload, routes: string[] = [], trustDomain?: string): ProxySnapshot {
  const s = buildProxySnapshot(
    m,
    { workload: proxy },
    new Set(routes),
    trustDomain ? { trustDomain } : undefined,
  );
  return s;
}

function route(s: ProxySnapshot, name: string): RouteConfig {
  const r = getResource(s, RouteConfigSchema, name);
  assert.ok(
    r !== undefined,
    `route ${name} missing; have ${[...(s.resources.get(TypeUrl.ROUTE)?.keys() ?? [])]}`,
  );
  return r;
}

function cluster(s: ProxySnapshot, name: string): Cluster {
  const c = getResource(s, ClusterSchema, name);
  assert.ok(
    c !== undefined,
    `cluster ${name} missing; have ${[...(s.resources.get(TypeUrl.CLUSTER)?.keys() ?? [])]}`,
  );
  return c;
}

function endpoints(s: ProxySnapshot, name: string): ClusterLoadAssignment {
  const c = getResource(s, ClusterLoadAssignmentSchema, name);
  assert.ok(c !== undefined, `CLA ${name} missing`);
  return c;
}

function inbound(s: ProxySnapshot): InboundListener {
  const l = getResource(s, ListenerSchema, "inbound");
  assert.ok(l?.kind.case === "inbound");
  return l.kind.value;
}

function outbound(s: ProxySnapshot): OutboundListener {
  const l = getResource(s, ListenerSchema, "outbound");
  assert.ok(l?.kind.case === "outbound");
  return l.kind.value;
}

/** `origin name @port` of each compiled rule, catch-alls as `* @port`. */
function ruleOrigins(r: RouteConfig): string[] {
  return r.rules.map((x) => `${x.origin ? `${x.origin.namespace}/${x.origin.name}` : "*"} @${x.port}`);
}

function versions(s: ProxySnapshot): Map<string, string> {
  const out = new Map<string, string>();
  for (const [type, byName] of s.resources)
    for (const [name, b] of byName) out.set(`${type} ${name}`, b.version);
  return out;
}

// A small shop: orders (8080, 9090) in "shop", called from "web" and from "shop" itself.
const ordersA = workload("orders", "shop", "orders-a", { ports: [8080, 9090], address: "10.0.1.1" });
const ordersB = workload("orders", "shop", "orders-b", { ports: [8080, 9090], address: "10.0.1.2" });
const webProxy = workload("web", "web", "web-1");
const shopCaller = workload("cart", "shop", "cart-1");
const batchCaller = workload("batch", "batch", "batch-1");

// ---------------------------------------------------------------------------------------------

describe("HTTPRoute: producer defaults and consumer overrides", () => {
  const yaml = `
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders-default, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules: [ { name: producer, matches: [ { path: { prefix: /api } } ] } ]
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders-for-web, namespace: web }
spec:
  targetRef: { kind: Service, name: orders, namespace: shop }
  rules: [ { name: consumer, matches: [ { path: { prefix: /api } } ], timeout: 1s } ]
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders-for-batch-only, namespace: other }
spec:
  targetRef: { kind: Service, name: orders, namespace: shop }
  rules: [ { name: other } ]
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: local-orders, namespace: web }
spec:
  targetRef: { kind: Service, name: orders }
  rules: [ { name: web-local-orders } ]
`;
  const m = model(yaml, [ordersA, ordersB]);
  const cases: { caller: Workload; expect: string[] }[] = [
    {
      caller: webProxy,
      expect: [
        "web/orders-for-web @8080",
        "shop/orders-default @8080",
        "* @8080",
        "web/orders-for-web @9090",
        "shop/orders-default @9090",
        "* @9090",
      ],
    },
    {
      caller: shopCaller,
      expect: ["shop/orders-default @8080", "* @8080", "shop/orders-default @9090", "* @9090"],
    },
    {
      caller: batchCaller,
      expect: ["shop/orders-default @8080", "* @8080", "shop/orders-default @9090", "* @9090"],
    },
  ];
  for (const c of cases) {
    it(`a caller in ${c.caller.namespace} gets ${c.expect.filter((e) => e.endsWith("8080")).join(", ")}`, () => {
      const s = build(m, c.caller, ["orders.shop"]);
      const r = route(s, "orders.shop");
      assert.deepEqual(ruleOrigins(r), c.expect);
      assert.deepEqual(checkConsistency(s), []);
    });
  }

  it("embeds the rule as written and lists the routes used in policies", () => {
    const r = route(build(m, webProxy, ["orders.shop"]), "orders.shop");
    assert.equal(r.rules[0]?.rule?.name, "consumer");
    assert.equal(r.rules[0]?.rule?.timeout?.seconds, 1n);
    assert.deepEqual(
      r.policies.map((p) => `${p.kind} ${p.namespace}/${p.name} g${p.generation}`),
      ["HTTPRoute shop/orders-default g1", "HTTPRoute web/orders-for-web g1"],
    );
  });

  it("the implicit catch-all has no matches and no origin and sends to the service on its port", () => {
    const r = route(build(m, shopCaller, ["orders.shop"]), "orders.shop");
    const last = r.rules.at(-1);
    assert.ok(last !== undefined);
    assert.equal(last.origin, undefined);
    assert.equal(last.rule?.matches.length, 0);
    assert.equal(last.port, 9090);
    assert.deepEqual(
      last.clusters.map((c) => [c.cluster, c.weight]),
      [["orders.shop:9090", 1]],
    );
  });
});

describe("HTTPRoute: several routes merge oldest first, per port", () => {
  // The older route is named "z-…" so name order would give the wrong answer.
  const yaml = `
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: z-older, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules: [ { name: old-1, matches: [ { path: { exact: /a } } ] }, { name: old-2, matches: [ { path: { exact: /b } } ] } ]
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: a-newer, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules: [ { name: new-1, matches: [ { path: { exact: /a } } ] } ]
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: m-port-only, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders, port: 9090 }
  rules: [ { name: port-9090 } ]
`;
  it("orders rules by route age, keeps rule order, and narrows port-targeted routes", () => {
    const s = build(model(yaml, [ordersA]), shopCaller, ["orders.shop"]);
    const r = route(s, "orders.shop");
    assert.deepEqual(
      r.rules.map((x) => `${x.rule?.name || "*"}@${x.port}`),
      [
        "old-1@8080",
        "old-2@8080",
        "new-1@8080",
        "*@8080",
        "old-1@9090",
        "old-2@9090",
        "new-1@9090",
        "port-9090@9090",
        "*@9090",
      ],
    );
  });

  it("a TCP port gets only the catch-all (no HTTP policy applies to opaque TCP)", () => {
    const tcp = workload("orders", "shop", "orders-t", { ports: [8080, [5432, Protocol.TCP]] });
    const r = route(build(model(yaml, [tcp]), shopCaller, ["orders.shop"]), "orders.shop");
    assert.deepEqual(
      r.rules.map((x) => `${x.rule?.name || "*"}@${x.port}`),
      ["*@5432", "old-1@8080", "old-2@8080", "new-1@8080", "*@8080"],
    );
  });
});

describe("RouteConfig domains", () => {
  const yaml = `
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  hosts: [ Orders.Example.com ]
  rules: [ { name: all } ]
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders-web, namespace: web }
spec:
  targetRef: { kind: Service, name: orders, namespace: shop }
  hosts: [ orders.web.example ]
  rules: [ { name: all } ]
`;
  const m = model(yaml, [workload("orders", "shop", "o-1", { ports: [8080] })]);
  const cases: { caller: Workload; expect: string[] }[] = [
    {
      caller: shopCaller,
      expect: [
        "orders",
        "orders.example.com",
        "orders.shop",
        "orders.shop.svc.cluster.local",
        "orders.shop.svc.cluster.local:8080",
        "orders.shop:8080",
        "orders:8080",
      ],
    },
    {
      caller: webProxy,
      expect: [
        "orders.example.com",
        "orders.shop",
        "orders.shop.svc.cluster.local",
        "orders.shop.svc.cluster.local:8080",
        "orders.shop:8080",
        "orders.web.example",
      ],
    },
  ];
  for (const c of cases) {
    it(`from ${c.caller.namespace}: ${c.caller.namespace === "shop" ? "with" : "without"} the short name`, () => {
      assert.deepEqual(route(build(m, c.caller, ["orders.shop"]), "orders.shop").domains, c.expect);
    });
  }
});

describe("service existence", () => {
  const yaml = `
apiVersion: trellis.dev/v1
kind: Service
metadata: { name: billing, namespace: shop }
spec: { ports: [ { port: 80, protocol: http, targetPort: 8080 }, { port: 9000, protocol: grpc } ] }
`;
  const m = model(yaml, [ordersA]);
  const cases: [string, string, boolean][] = [
    ["shop", "orders", true],
    ["shop", "billing", true],
    ["shop", "ghost", false],
    ["web", "orders", false],
  ];
  for (const [ns, svc, exists] of cases) {
    it(`serviceExists(${svc}.${ns}) = ${exists}`, () => assert.equal(serviceExists(m, ns, svc), exists));
  }

  it("a Service policy with no registrations gives a route and empty endpoints; unknown names are notFound", () => {
    const s = build(m, shopCaller, ["billing.shop", "ghost.shop", "no-dots", "a.b.c", "*"]);
    assert.deepEqual([...s.notFound].sort(), ["a.b.c", "ghost.shop", "no-dots"]);
    const r = route(s, "billing.shop");
    assert.deepEqual(
      r.ports.map((p) => [p.port, p.protocol, p.targetPort]),
      [
        [80, Protocol.HTTP, 8080],
        [9000, Protocol.GRPC, undefined],
      ],
    );
    assert.deepEqual(endpoints(s, "billing.shop:80").endpoints, []);
    assert.deepEqual(endpoints(s, "billing.shop:9000").endpoints, []);
    assert.equal(cluster(s, "billing.shop:9000").protocol, Protocol.GRPC);
    assert.deepEqual([...(s.resources.get(TypeUrl.ROUTE)?.keys() ?? [])], ["billing.shop"]);
    assert.deepEqual(checkConsistency(s), []);
  });
});

describe("backends and clusters", () => {
  const yaml = `
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules:
    - name: split
      matches: [ { path: { prefix: /api } } ]
      backends:
        - { service: orders-v1, weight: 90 }
        - { service: orders-v2, weight: 10 }
        - { service: orders-v3 }
        - { service: orders-canary, namespace: canary, port: 7000, weight: 0 }
      mirror: { service: shadow, percentage: 5 }
`;
  const regs = [
    ordersA,
    workload("orders-v1", "shop", "v1-a", { ports: [8080] }), // same number
    workload("orders-v2", "shop", "v2-a", { ports: [9000] }), // its only port
    // orders-v3 is not registered yet: same number
    workload("orders-canary", "canary", "c-a", { ports: [7000] }),
    workload("shadow", "shop", "sh-a", { ports: [8080] }),
  ];
  const only8080 = { ...ordersA, ports: ordersA.ports.filter((p) => p.port === 8080) } as Workload;
  const s = build(model(yaml, [only8080, ...regs.slice(1)]), webProxy, ["orders.shop"]);

  it("resolves weighted backends to cluster names (weight default 1)", () => {
    const r = route(s, "orders.shop");
    assert.deepEqual(
      r.rules[0]?.clusters.map((c) => [c.cluster, c.weight]),
      [
        ["orders-v1.shop:8080", 90],
        ["orders-v2.shop:9000", 10],
        ["orders-v3.shop:8080", 1],
        ["orders-canary.canary:7000", 0],
      ],
    );
  });

  it("builds a Cluster and a ClusterLoadAssignment for every backend, the mirror and the service", () => {
    const names = [
      "orders-canary.canary:7000",
      "orders-v1.shop:8080",
      "orders-v2.shop:9000",
      "orders-v3.shop:8080",
      "orders.shop:8080",
      "shadow.shop:8080",
    ];
    assert.deepEqual([...(s.resources.get(TypeUrl.CLUSTER)?.keys() ?? [])], names);
    assert.deepEqual([...(s.resources.get(TypeUrl.ENDPOINTS)?.keys() ?? [])], names);
    assert.deepEqual(
      endpoints(s, "shadow.shop:8080").endpoints.map((e) => e.proxyId),
      ["sh-a"],
    );
    assert.deepEqual(endpoints(s, "orders-v3.shop:8080").endpoints, []);
    assert.deepEqual(checkConsistency(s), []);
  });

  it("fills in the mirror's resolved namespace and port in the embedded rule", () => {
    const m = route(s, "orders.shop").rules[0]?.rule?.mirror;
    assert.deepEqual([m?.service, m?.namespace, m?.port, m?.percentage], ["shadow", "shop", 8080, 5]);
  });

  it("an ambiguous backend port is a consistency problem", () => {
    const ambiguous = `
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules: [ { backends: [ { service: multi } ] } ]
`;
    const multi = workload("multi", "shop", "m-1", { ports: [7000, 7001] });
    const bad = build(model(ambiguous, [only8080, multi]), webProxy, ["orders.shop"]);
    const problems = checkConsistency(bad);
    assert.ok(
      problems.some((p) =>
        /backends\[0\]: backend multi\.shop has ports 7000, 7001 and none is 8080/.test(p),
      ),
      problems.join("\n"),
    );
    assert.ok(
      problems.some((p) => /names cluster multi\.shop, which does not exist/.test(p)),
      problems.join("\n"),
    );
  });
});

describe("TrafficPolicy: merged per cluster, whole sections", () => {
  const yaml = `
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: mesh, namespace: trellis-system }
spec: { timeouts: { connect: 5s }, connectionLimits: { maxConnections: 50 }, outboundTrafficPolicy: REGISTRY_ONLY }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  loadBalancer: { policy: ROUND_ROBIN }
  connectionLimits: { maxRequests: 100, maxConnections: 200 }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: orders-from-web, namespace: web }
spec:
  targetRef: { kind: Service, name: orders, namespace: shop }
  connectionLimits: { maxRequests: 10 }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: web-defaults, namespace: web }
spec: { retryBudget: { percent: 5 }, loadBalancer: { policy: LEAST_REQUEST } }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: orders-from-other, namespace: other }
spec:
  targetRef: { kind: Service, name: orders, namespace: shop }
  connectionLimits: { maxRequests: 1 }
`;
  const m = model(yaml, [ordersA]);
  const cases: {
    caller: Workload;
    lb: LoadBalancerPolicy | undefined;
    maxRequests: number | undefined;
    maxConnections: number | undefined;
    budget: number | undefined;
    used: string[];
  }[] = [
    {
      caller: webProxy,
      lb: LoadBalancerPolicy.ROUND_ROBIN, // producer over caller-namespace default
      maxRequests: 10, // consumer override...
      maxConnections: undefined, // ...replaces the whole section
      budget: 5,
      used: ["shop/orders", "trellis-system/mesh", "web/orders-from-web", "web/web-defaults"],
    },
    {
      caller: shopCaller,
      lb: LoadBalancerPolicy.ROUND_ROBIN,
      maxRequests: 100,
      maxConnections: 200,
      budget: undefined,
      used: ["shop/orders", "trellis-system/mesh"],
    },
  ];
  for (const c of cases) {
    it(`a caller in ${c.caller.namespace} gets maxRequests ${c.maxRequests}`, () => {
      const s = build(m, c.caller, ["orders.shop"]);
      const cl = cluster(s, "orders.shop:8080");
      assert.equal(cl.policy?.loadBalancer?.policy, c.lb);
      assert.equal(cl.policy?.connectionLimits?.maxRequests, c.maxRequests);
      assert.equal(cl.policy?.connectionLimits?.maxConnections, c.maxConnections);
      assert.equal(cl.policy?.retryBudget?.percent, c.budget);
      assert.equal(cl.policy?.timeouts?.connect?.seconds, 5n, "mesh default kept");
      assert.equal(cl.policy?.targetRef, undefined);
      assert.equal(cl.policy?.outboundTrafficPolicy, OutboundTrafficPolicy.UNSPECIFIED);
      assert.deepEqual(
        cl.policies.map((p) => `${p.namespace}/${p.name}`),
        c.used,
      );
    });
  }

  it("several policies at one level: the oldest wins each section", () => {
    const two = `
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: z-older, namespace: shop }
spec: { targetRef: { kind: Service, name: orders }, loadBalancer: { policy: RING_HASH, hashOn: { header: x-user } } }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: a-newer, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  loadBalancer: { policy: ROUND_ROBIN }
  timeouts: { idle: 30s }
`;
    const cl = cluster(build(model(two, [ordersA]), shopCaller, ["orders.shop"]), "orders.shop:8080");
    assert.equal(cl.policy?.loadBalancer?.policy, LoadBalancerPolicy.RING_HASH);
    assert.equal(cl.policy?.timeouts?.idle?.seconds, 30n);
  });
});

describe("outbound listener", () => {
  const cases: {
    name: string;
    yaml: string;
    caller: Workload;
    expect: OutboundTrafficPolicy;
    from: string[];
  }[] = [
    {
      name: "default ALLOW_ANY",
      yaml: "",
      caller: webProxy,
      expect: OutboundTrafficPolicy.ALLOW_ANY,
      from: [],
    },
    {
      name: "mesh REGISTRY_ONLY",
      yaml: `
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: mesh, namespace: trellis-system }
spec: { outboundTrafficPolicy: REGISTRY_ONLY }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: lb-only, namespace: web }
spec: { loadBalancer: { policy: ROUND_ROBIN } }
`,
      caller: webProxy,
      expect: OutboundTrafficPolicy.REGISTRY_ONLY,
      from: ["trellis-system/mesh"],
    },
    {
      name: "namespace ALLOW_ANY over mesh REGISTRY_ONLY",
      yaml: `
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: mesh, namespace: trellis-system }
spec: { outboundTrafficPolicy: REGISTRY_ONLY }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: open, namespace: web }
spec: { outboundTrafficPolicy: ALLOW_ANY }
`,
      caller: webProxy,
      expect: OutboundTrafficPolicy.ALLOW_ANY,
      from: ["web/open"],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = build(model(c.yaml), c.caller);
      assert.equal(outbound(s).outboundTrafficPolicy, c.expect);
      const l = getResource(s, ListenerSchema, "outbound");
      assert.deepEqual(
        l?.policies.map((p) => `${p.namespace}/${p.name}`),
        c.from,
      );
    });
  }
});

describe("PeerAuthentication: port > service > namespace > mesh, then portLevelMtls", () => {
  const pa = (name: string, ns: string, spec: string) => `
apiVersion: trellis.dev/v1
kind: PeerAuthentication
metadata: { name: ${name}, namespace: ${ns} }
spec: ${spec}
---`;
  const { STRICT, PERMISSIVE } = MtlsMode;
  const cases: { name: string; yaml: string; expect: [MtlsMode, MtlsMode] }[] = [
    { name: "none → PERMISSIVE", yaml: "", expect: [PERMISSIVE, PERMISSIVE] },
    {
      name: "mesh STRICT",
      yaml: pa("mesh", "trellis-system", "{ mtls: { mode: STRICT } }"),
      expect: [STRICT, STRICT],
    },
    {
      name: "namespace over mesh",
      yaml:
        pa("mesh", "trellis-system", "{ mtls: { mode: STRICT } }") +
        pa("ns", "shop", "{ mtls: { mode: PERMISSIVE } }"),
      expect: [PERMISSIVE, PERMISSIVE],
    },
    {
      name: "service over namespace",
      yaml:
        pa("ns", "shop", "{ mtls: { mode: PERMISSIVE } }") +
        pa("svc", "shop", "{ targetRef: { kind: Service, name: orders }, mtls: { mode: STRICT } }"),
      expect: [STRICT, STRICT],
    },
    {
      name: "port over service",
      yaml:
        pa(
          "port",
          "shop",
          "{ targetRef: { kind: Service, name: orders, port: 9090 }, mtls: { mode: PERMISSIVE } }",
        ) + pa("svc", "shop", "{ targetRef: { kind: Service, name: orders }, mtls: { mode: STRICT } }"),
      expect: [STRICT, PERMISSIVE],
    },
    {
      name: "portLevelMtls overrides the winner's mtls",
      yaml: pa(
        "svc",
        "shop",
        "{ targetRef: { kind: Service, name: orders }, mtls: { mode: STRICT }, portLevelMtls: { 9090: { mode: PERMISSIVE } } }",
      ),
      expect: [STRICT, PERMISSIVE],
    },
    {
      name: "oldest wins within a level",
      yaml:
        pa("z-old", "shop", "{ mtls: { mode: STRICT } }") +
        pa("a-new", "shop", "{ mtls: { mode: PERMISSIVE } }"),
      expect: [STRICT, STRICT],
    },
    {
      name: "a policy that says nothing for a port inherits from the next level",
      yaml:
        pa("mesh", "trellis-system", "{ mtls: { mode: STRICT } }") +
        pa("ns", "shop", "{ portLevelMtls: { 8080: { mode: PERMISSIVE } } }"),
      expect: [PERMISSIVE, STRICT],
    },
    {
      name: "another namespace cannot set this service's mode",
      yaml: pa(
        "intruder",
        "web",
        "{ targetRef: { kind: Service, name: orders, namespace: shop }, mtls: { mode: STRICT } }",
      ),
      expect: [PERMISSIVE, PERMISSIVE],
    },
    {
      name: "a targetRef from trellis-system is not mesh-wide and not the producer's: ignored",
      yaml: pa(
        "targeted",
        "trellis-system",
        "{ targetRef: { kind: Service, name: orders, namespace: shop }, mtls: { mode: STRICT } }",
      ),
      expect: [PERMISSIVE, PERMISSIVE],
    },
    {
      name: "targetRef.port names a Service port mapped to the app port",
      yaml: `
apiVersion: trellis.dev/v1
kind: Service
metadata: { name: orders, namespace: shop }
spec: { ports: [ { port: 80, targetPort: 8080 }, { port: 9090 } ] }
---${pa("port", "shop", "{ targetRef: { kind: Service, name: orders, port: 80 }, mtls: { mode: STRICT } }")}`,
      expect: [STRICT, PERMISSIVE],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = build(model(c.yaml, [ordersA]), ordersA);
      assert.deepEqual(
        inbound(s).ports.map((p) => [p.port, p.mtlsMode]),
        [
          [8080, c.expect[0]],
          [9090, c.expect[1]],
        ],
      );
    });
  }
});

describe("RateLimitPolicy: the most specific one wins", () => {
  const rl = (name: string, ns: string, target: string) => `
apiVersion: trellis.dev/v1
kind: RateLimitPolicy
metadata: { name: ${name}, namespace: ${ns} }
spec: { ${target} local: { requestsPerSecond: 10 } }
---`;
  const mesh = rl("mesh", "trellis-system", "");
  const ns = rl("ns", "shop", "");
  const svc = rl("svc", "shop", "targetRef: { kind: Service, name: orders },");
  const port = rl("port", "shop", "targetRef: { kind: Service, name: orders, port: 9090 },");
  const cases: { name: string; yaml: string; expect: [string | undefined, string | undefined] }[] = [
    { name: "none", yaml: "", expect: [undefined, undefined] },
    { name: "mesh", yaml: mesh, expect: ["mesh", "mesh"] },
    { name: "namespace > mesh", yaml: mesh + ns, expect: ["ns", "ns"] },
    { name: "service > namespace", yaml: mesh + ns + svc, expect: ["svc", "svc"] },
    { name: "port > service", yaml: port + mesh + ns + svc, expect: ["svc", "port"] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const ports = inbound(build(model(c.yaml, [ordersA]), ordersA)).ports;
      assert.deepEqual(
        ports.map((p) => p.rateLimit?.policy?.name),
        c.expect,
      );
      for (const p of ports) if (p.rateLimit) assert.equal(p.rateLimit.spec?.local?.requestsPerSecond, 10);
    });
  }
});

describe("AuthorizationPolicy and RequestAuthentication are additive", () => {
  const az = (name: string, ns: string, target: string, action: string) => `
apiVersion: trellis.dev/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: ${ns} }
spec: { ${target} action: ${action}, rules: [ { from: [ { source: { namespaces: [web] } } ] } ] }
---`;
  const yaml =
    az("mesh-deny", "trellis-system", "", "DENY") +
    az("z-svc-older", "shop", "targetRef: { kind: Service, name: orders },", "ALLOW") +
    az("ns-allow", "shop", "", "ALLOW") +
    az("a-svc-newer", "shop", "targetRef: { kind: Service, name: orders },", "DENY") +
    az("port-9090", "shop", "targetRef: { kind: Service, name: orders, port: 9090 },", "ALLOW") +
    az("other-service", "shop", "targetRef: { kind: Service, name: cart },", "ALLOW") +
    `
apiVersion: trellis.dev/v1
kind: RequestAuthentication
metadata: { name: ns-jwt, namespace: shop }
spec: { jwtRules: [ { issuer: https://issuer.example, jwksUri: "https://issuer.example/jwks" } ] }
---
apiVersion: trellis.dev/v1
kind: RequestAuthentication
metadata: { name: svc-jwt, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  jwtRules: [ { issuer: https://other.example, jwksUri: "https://other.example/jwks" } ]
`;
  const s = build(model(yaml, [ordersA]), ordersA);
  const ports = inbound(s).ports;

  it("every applicable policy, most specific first, oldest first within a level", () => {
    assert.deepEqual(
      ports.map((p) => p.authorization.map((a) => a.policy?.name)),
      [
        ["z-svc-older", "a-svc-newer", "ns-allow", "mesh-deny"],
        ["port-9090", "z-svc-older", "a-svc-newer", "ns-allow", "mesh-deny"],
      ],
    );
    assert.equal(ports[0]?.authorization[1]?.spec?.action, AuthorizationAction.DENY);
  });

  it("JWT rules likewise", () => {
    assert.deepEqual(
      ports.map((p) => p.jwt.map((j) => j.policy?.name)),
      [
        ["svc-jwt", "ns-jwt"],
        ["svc-jwt", "ns-jwt"],
      ],
    );
  });

  it("the listener lists every policy it carries", () => {
    const l = getResource(s, ListenerSchema, "inbound");
    assert.deepEqual(
      l?.policies.map((p) => `${p.kind} ${p.namespace}/${p.name}`),
      [
        "AuthorizationPolicy shop/a-svc-newer",
        "AuthorizationPolicy shop/ns-allow",
        "AuthorizationPolicy shop/port-9090",
        "AuthorizationPolicy shop/z-svc-older",
        "AuthorizationPolicy trellis-system/mesh-deny",
        "RequestAuthentication shop/ns-jwt",
        "RequestAuthentication shop/svc-jwt",
      ],
    );
  });
});

describe("inbound protocol and telemetry", () => {
  const yaml = `
apiVersion: trellis.dev/v1
kind: Service
metadata: { name: orders, namespace: shop }
spec: { ports: [ { port: 80, targetPort: 8080, protocol: http2 }, { port: 9090 } ] }
---
apiVersion: trellis.dev/v1
kind: Telemetry
metadata: { name: mesh, namespace: trellis-system }
spec: { tracing: { samplingPercentage: 1 } }
---
apiVersion: trellis.dev/v1
kind: Telemetry
metadata: { name: ns, namespace: shop }
spec: { tracing: { samplingPercentage: 10 } }
---
apiVersion: trellis.dev/v1
kind: Telemetry
metadata: { name: svc, namespace: shop }
spec: { targetRef: { kind: Service, name: orders }, tracing: { samplingPercentage: 50 } }
`;
  const grpc = workload("orders", "shop", "orders-g", { ports: [8080, [9090, Protocol.GRPC]] });

  it("protocol: the Service's declared protocol for the app port, else the registration's", () => {
    const s = build(model(yaml, [grpc]), grpc);
    assert.deepEqual(
      inbound(s).ports.map((p) => [p.port, p.protocol]),
      [
        [8080, Protocol.HTTP2],
        [9090, Protocol.GRPC],
      ],
    );
  });

  it("inbound telemetry: service > namespace > mesh; outbound: namespace > mesh", () => {
    const s = build(model(yaml, [grpc]), grpc);
    assert.equal(inbound(s).telemetry?.tracing?.samplingPercentage, 50);
    assert.equal(outbound(s).telemetry?.tracing?.samplingPercentage, 10);
    const web = build(model(yaml, [grpc]), webProxy);
    assert.equal(inbound(web).telemetry?.tracing?.samplingPercentage, 1);
    assert.equal(outbound(web).telemetry?.tracing?.samplingPercentage, 1);
  });
});

describe("clusters and endpoints", () => {
  const yaml = `
apiVersion: trellis.dev/v1
kind: Service
metadata: { name: orders, namespace: shop }
spec: { ports: [ { port: 80, targetPort: 8080 } ] }
`;
  const regs = [
    workload("orders", "shop", "orders-c", {
      ports: [8080],
      sa: "orders",
      address: "10.0.0.3",
      inboundPort: 0,
    }),
    workload("orders", "shop", "orders-a", {
      ports: [8080],
      sa: "orders-admin",
      address: "10.0.0.1",
      labels: { version: "v1" },
      registeredMs: 1_000,
    }),
    workload("orders", "shop", "orders-b", { ports: [9999], sa: "orders", address: "10.0.0.2" }),
    workload("orders", "shop", "orders-d", { ports: [8080], identity: "spiffe://legacy/ns/shop/sa/x" }),
  ];
  const s = build(model(yaml, regs), webProxy, ["orders.shop"], "example.org");

  it("one endpoint per registration serving the target port, sorted by proxyId", () => {
    const cla = endpoints(s, "orders.shop:80");
    assert.equal(cla.cluster, "orders.shop:80");
    assert.deepEqual(
      cla.endpoints.map((e) => [e.proxyId, e.address, e.port, e.appPort, e.weight, e.identity]),
      [
        ["orders-a", "10.0.0.1", 15006, 8080, 1, "spiffe://example.org/ns/shop/sa/orders-admin"],
        ["orders-c", "10.0.0.3", 15006, 8080, 1, "spiffe://example.org/ns/shop/sa/orders"],
        ["orders-d", "10.0.0.1", 15006, 8080, 1, "spiffe://legacy/ns/shop/sa/x"],
      ],
    );
    const a = cla.endpoints[0];
    assert.deepEqual(a?.labels, { version: "v1" });
    assert.equal(a?.readySince?.seconds, 1n);
    assert.equal(a?.health, HealthStatus.HEALTHY);
    assert.equal(a?.locality?.zone, "eu-1");
  });

  it("expected identities: sorted, unique, from every registration", () => {
    assert.deepEqual(cluster(s, "orders.shop:80").expectedIdentities, [
      "spiffe://example.org/ns/shop/sa/orders",
      "spiffe://example.org/ns/shop/sa/orders-admin",
      "spiffe://legacy/ns/shop/sa/x",
    ]);
  });
});

describe("concerns", () => {
  const yaml = `
apiVersion: trellis.dev/v1
kind: RateLimitPolicy
metadata: { name: limits, namespace: shop }
spec: { targetRef: { kind: Service, name: orders }, local: { requestsPerSecond: 5 } }
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec: { targetRef: { kind: Service, name: orders }, rules: [ { name: all } ] }
---
apiVersion: trellis.dev/v1
kind: Service
metadata: { name: orders, namespace: shop }
spec: { ports: [ { port: 8080, protocol: http } ] }
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: unrelated, namespace: shop }
spec: { targetRef: { kind: Service, name: cart }, rules: [ { name: all } ] }
`;
  it("reports every compiled policy, unsupported kinds as supported=false", () => {
    const proxy = workload("orders", "shop", "orders-old", {
      ports: [8080],
      supportedKinds: ["HTTPRoute", "TrafficPolicy"],
    });
    const s = build(model(yaml, [proxy]), proxy, ["orders.shop"]);
    assert.deepEqual(
      s.concerns.map((c) => [
        `${c.ref.kind} ${c.ref.namespace}/${c.ref.name}`,
        c.supported,
        c.resources.map((r) => r.name),
      ]),
      [
        ["HTTPRoute shop/orders", true, ["orders.shop"]],
        ["RateLimitPolicy shop/limits", false, ["inbound"]],
        // The control plane resolves Service itself: always supported.
        ["Service shop/orders", true, ["orders.shop:8080", "inbound", "orders.shop"]],
      ],
    );
  });
});

describe("versions", () => {
  const yaml = (order: "ab" | "ba") => `
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules:
    - headers: { request: { set: ${order === "ab" ? '{ x-a: "1", x-b: "2" }' : '{ x-b: "2", x-a: "1" }'} } }
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: tp, namespace: shop }
spec: { targetRef: { kind: Service, name: orders }, loadBalancer: { policy: ROUND_ROBIN } }
`;
  const regs = (order: "ab" | "ba") => [
    workload("orders", "shop", "orders-a", {
      labels: order === "ab" ? { app: "orders", version: "v1" } : { version: "v1", app: "orders" },
    }),
    workload("orders", "shop", "orders-b", { labels: { app: "orders" } }),
  ];

  it("an unchanged rebuild, with maps built in other insertion orders, keeps every version", () => {
    const first = build(model(yaml("ab"), regs("ab")), webProxy, ["orders.shop"]);
    const second = build(model(yaml("ba"), [...regs("ba")].reverse(), 2), webProxy, ["orders.shop"]);
    assert.deepEqual(versions(second), versions(first));
    for (const v of versions(first).values()) assert.match(v, /^[0-9a-f]{16}$/);
  });

  it("versions are content hashes of the stored message", () => {
    const s = build(model(yaml("ab"), regs("ab")), webProxy, ["orders.shop"]);
    const built = s.resources.get(TypeUrl.ROUTE)?.get("orders.shop") as BuiltResource;
    assert.equal(built.version, resourceVersion(RouteConfigSchema, built.resource as RouteConfig));
  });

  it("a removed registration changes only that cluster's ClusterLoadAssignment version", () => {
    const before = build(model(yaml("ab"), regs("ab")), webProxy, ["orders.shop"]);
    const after = build(model(yaml("ab"), regs("ab").slice(1)), webProxy, ["orders.shop"]);
    const b = versions(before);
    const a = versions(after);
    assert.deepEqual([...a.keys()], [...b.keys()]);
    const changed = [...b.keys()].filter((k) => a.get(k) !== b.get(k));
    assert.deepEqual(changed, [`${TypeUrl.ENDPOINTS} orders.shop:8080`]);
  });

  it("a policy change changes the resources that carry it", () => {
    const before = build(model(yaml("ab"), regs("ab")), webProxy, ["orders.shop"]);
    const bumped = model(yaml("ab"), regs("ab"));
    const tp = bumped.policies.get("TrafficPolicy")?.get("shop/tp");
    assert.ok(tp?.message.metadata);
    tp.message.metadata.generation = 2n;
    const after = build(bumped, webProxy, ["orders.shop"]);
    const changed = [...versions(before)].filter(([k, v]) => versions(after).get(k) !== v).map(([k]) => k);
    assert.deepEqual(changed, [`${TypeUrl.CLUSTER} orders.shop:8080`]);
  });
});

describe("checkConsistency", () => {
  const yaml = `
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules: [ { backends: [ { service: orders-v2 } ] } ]
`;
  const good = build(
    model(yaml, [workload("orders", "shop", "o-1"), workload("orders-v2", "shop", "v2-1")]),
    webProxy,
    ["orders.shop"],
  );

  /** A copy of `good` with one type's map replaced by `edit(copy of it)`. */
  function broken(
    typeUrl: TypeUrl,
    edit: (m: Map<string, BuiltResource>) => void,
    notFound: string[] = [],
  ): ProxySnapshot {
    const resources = new Map(good.resources);
    const copy = new Map(good.resources.get(typeUrl));
    edit(copy);
    resources.set(typeUrl, copy);
    return { ...good, resources, notFound: new Set(notFound) };
  }

  const cases: { name: string; snapshot: () => ProxySnapshot; expect: RegExp[] }[] = [
    { name: "the built snapshot is consistent", snapshot: () => good, expect: [] },
    {
      name: "a route names a cluster that is missing",
      snapshot: () => broken(TypeUrl.CLUSTER, (m) => m.delete("orders-v2.shop:8080")),
      expect: [
        /^route orders\.shop rules\[0\] names cluster orders-v2\.shop:8080, which does not exist$/,
        /^ClusterLoadAssignment orders-v2\.shop:8080 has no cluster$/,
      ],
    },
    {
      name: "a cluster without a ClusterLoadAssignment",
      snapshot: () => broken(TypeUrl.ENDPOINTS, (m) => m.delete("orders.shop:8080")),
      expect: [/^cluster orders\.shop:8080 has no ClusterLoadAssignment$/],
    },
    {
      name: "a resource filed under another name (names must be unique and match)",
      snapshot: () =>
        broken(TypeUrl.CLUSTER, (m) => {
          const c = m.get("orders.shop:8080") as BuiltResource;
          m.set("copy.shop:8080", c);
        }),
      expect: [
        /^type\.googleapis\.com\/trellis\.v1\.Cluster copy\.shop:8080: built resource is named orders\.shop:8080$/,
        /^type\.googleapis\.com\/trellis\.v1\.Cluster copy\.shop:8080: message is named orders\.shop:8080$/,
        /^cluster copy\.shop:8080 has no ClusterLoadAssignment$/,
      ],
    },
    {
      name: "a version that is not the content hash",
      snapshot: () =>
        broken(TypeUrl.ROUTE, (m) => {
          const r = m.get("orders.shop") as BuiltResource;
          m.set("orders.shop", { ...r, version: "0000000000000000" });
        }),
      expect: [/orders\.shop: version 0000000000000000 is not the content hash$/],
    },
    {
      name: "a route both served and not found",
      snapshot: () => broken(TypeUrl.ROUTE, () => {}, ["orders.shop"]),
      expect: [/^route orders\.shop is both served and reported not found$/],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const problems = checkConsistency(c.snapshot());
      assert.equal(problems.length, c.expect.length, problems.join("\n"));
      c.expect.forEach((re, i) => {
        assert.match(problems[i] ?? "", re);
      });
    });
  }
});
