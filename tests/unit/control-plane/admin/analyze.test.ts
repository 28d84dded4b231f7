/**
 * `analyze` over hand-built models: unknown services, shadowed rules (table-driven, both the cases
 * that must be found and the near misses that must not), unused policies.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { analyze } from "@trellis/control-plane/admin/analyze";
import type { MeshModel, StoredPolicy } from "@trellis/control-plane/model/types";
import { Severity } from "@trellis/proto/gen/trellis/v1/admin_pb";
import { WorkloadSchema } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { parsePolicies } from "@trellis/proto/yaml-codec";

/** A model holding the policies of `yaml` (created in document order) and live `services` (`ns/name`). */
function model(yaml: string, services: string[] = []): MeshModel {
  const r = parsePolicies(yaml, "m.yaml");
  assert.deepEqual(r.diagnostics, [], "test YAML must be valid");
  const policies = new Map<string, Map<string, StoredPolicy>>();
  r.policies.forEach((p, i) => {
    const namespace = p.message.metadata?.namespace || "default";
    const name = p.message.metadata?.name ?? "";
    let byKey = policies.get(p.info.kind);
    if (byKey === undefined) {
      byKey = new Map();
      policies.set(p.info.kind, byKey);
    }
    byKey.set(`${namespace}/${name}`, {
      info: p.info,
      namespace,
      name,
      message: p.message,
      revision: i + 1,
      createRevision: i + 1,
    });
  });
  const workloads = new Map(
    services.map((s) => {
      const [ns = "", svc = ""] = s.split("/");
      const w = create(WorkloadSchema, {
        proxyId: `${svc}-1`,
        service: svc,
        namespace: ns,
        address: "10.0.0.1",
      });
      return [s, new Map([[w.proxyId, w]])];
    }),
  );
  return { revision: r.policies.length, policies, workloads };
}

function lines(m: MeshModel, namespace?: string): string[] {
  return analyze(m, namespace === undefined ? {} : { namespace }).map((f) =>
    `${Severity[f.severity]} ${f.code} ${f.policy?.kind}/${f.policy?.namespace}/${f.policy?.name} ${f.path}`.trimEnd(),
  );
}

function route(name: string, rules: string, extra = ""): string {
  return `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: ${name}, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }${extra}
  rules:
${rules}
---
`;
}

const LIVE = ["shop/orders", "shop/orders-v1", "shop/orders-v2"];

describe("analyze: unknown-service", () => {
  it("finds a route's unknown target, backend and mirror, each with its path and severity", () => {
    const yaml = `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: r, namespace: shop }
spec:
  targetRef: { kind: Service, name: ghost }
  rules:
    - backends: [ { service: orders-v1 }, { service: orders-v9 }, { service: payments, namespace: pay } ]
      mirror: { service: shadow }
`;
    assert.deepEqual(lines(model(yaml, LIVE)), [
      "ERROR unknown-service HTTPRoute/shop/r spec.rules[0].backends[1]",
      "ERROR unknown-service HTTPRoute/shop/r spec.rules[0].backends[2]",
      "WARNING unknown-service HTTPRoute/shop/r spec.rules[0].mirror",
      "WARNING unknown-service HTTPRoute/shop/r spec.targetRef",
    ]);
    const f = analyze(model(yaml, LIVE))[1];
    assert.match(f?.message ?? "", /backend service payments\.pay does not exist/);
  });

  it("a Service policy makes a service exist without registrations; the backend namespace defaults to the target's", () => {
    const yaml = `apiVersion: trellis.dev/v1
kind: Service
metadata: { name: payments, namespace: pay }
spec: { ports: [ { port: 80 } ] }
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: r, namespace: shop }
spec:
  targetRef: { kind: Service, name: payments, namespace: pay }
  rules:
    - backends: [ { service: payments } ]
`;
    assert.deepEqual(lines(model(yaml)), []);
  });

  it("flags a TrafficPolicy or inbound policy whose targetRef names no service", () => {
    const yaml = `apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: tp, namespace: shop }
spec: { targetRef: { kind: Service, name: ghost }, connectionLimits: { maxConnections: 10 } }
---
apiVersion: trellis.dev/v1
kind: AuthorizationPolicy
metadata: { name: authz, namespace: shop }
spec: { targetRef: { kind: Service, name: orders }, action: DENY, rules: [ { from: [ { source: { namespaces: [evil] } } ] } ] }
`;
    assert.deepEqual(lines(model(yaml, LIVE)), [
      "WARNING unknown-service TrafficPolicy/shop/tp spec.targetRef",
    ]);
  });
});

describe("analyze: unused-policy", () => {
  it("flags a namespace-wide policy in a namespace with no services, not one in the mesh namespace", () => {
    const yaml = `apiVersion: trellis.dev/v1
kind: PeerAuthentication
metadata: { name: strict, namespace: empty }
spec: { mtls: { mode: STRICT } }
---
apiVersion: trellis.dev/v1
kind: PeerAuthentication
metadata: { name: strict, namespace: shop }
spec: { mtls: { mode: STRICT } }
---
apiVersion: trellis.dev/v1
kind: PeerAuthentication
metadata: { name: mesh, namespace: trellis-system }
spec: { mtls: { mode: STRICT } }
`;
    assert.deepEqual(lines(model(yaml, LIVE)), ["WARNING unused-policy PeerAuthentication/empty/strict"]);
  });
});

interface ShadowCase {
  name: string;
  rules: string;
  /** Indexes of the rules reported as shadowed. */
  shadowed: number[];
}

const B = "backends: [ { service: orders-v1 } ]";

const SHADOW_CASES: ShadowCase[] = [
  {
    name: "a rule after a catch-all rule",
    rules: `    - ${B}\n    - matches: [ { path: { prefix: /api } } ]\n      ${B}`,
    shadowed: [1],
  },
  {
    name: "a catch-all after a catch-all",
    rules: `    - ${B}\n    - ${B}`,
    shadowed: [1],
  },
  {
    name: "prefix / covers everything",
    rules: `    - matches: [ { path: { prefix: / } } ]\n      ${B}\n    - ${B}`,
    shadowed: [1],
  },
  {
    name: "a deeper prefix under an earlier prefix",
    rules: `    - matches: [ { path: { prefix: /api } } ]\n      ${B}\n    - matches: [ { path: { prefix: /api/v1 } } ]\n      ${B}`,
    shadowed: [1],
  },
  {
    name: "an exact path under an earlier prefix, with a method and headers",
    rules: `    - matches: [ { path: { prefix: /api }, method: GET } ]\n      ${B}\n    - matches: [ { path: { exact: /api/x }, method: GET, headers: [ { name: x-a, value: { exact: "1" } } ] } ]\n      ${B}`,
    shadowed: [1],
  },
  {
    name: "each match covered by a different earlier rule",
    rules: `    - matches: [ { path: { prefix: /a } } ]\n      ${B}\n    - matches: [ { path: { prefix: /b } } ]\n      ${B}\n    - matches: [ { path: { prefix: /a/1 } }, { path: { exact: /b } } ]\n      ${B}`,
    shadowed: [2],
  },
  {
    name: "not: prefix /api does not cover /apiv1 (segment-aware)",
    rules: `    - matches: [ { path: { prefix: /api } } ]\n      ${B}\n    - matches: [ { path: { prefix: /apiv1 } } ]\n      ${B}`,
    shadowed: [],
  },
  {
    name: "not: an earlier rule with a method does not cover a later one without",
    rules: `    - matches: [ { path: { prefix: /api }, method: GET } ]\n      ${B}\n    - matches: [ { path: { prefix: /api/v1 } } ]\n      ${B}`,
    shadowed: [],
  },
  {
    name: "not: an earlier header matcher the later rule lacks",
    rules: `    - matches: [ { headers: [ { name: x-canary, value: { exact: "1" } } ] } ]\n      ${B}\n    - ${B}`,
    shadowed: [],
  },
  {
    name: "not: one of the later rule's matches is uncovered",
    rules: `    - matches: [ { path: { prefix: /a } } ]\n      ${B}\n    - matches: [ { path: { prefix: /a/1 } }, { path: { prefix: /c } } ]\n      ${B}`,
    shadowed: [],
  },
  {
    name: "not: different regexes (containment is not decided)",
    rules: `    - matches: [ { path: { regex: "/a.*" } } ]\n      ${B}\n    - matches: [ { path: { regex: "/ab.*" } } ]\n      ${B}`,
    shadowed: [],
  },
  {
    name: "not: an exact path does not cover a prefix",
    rules: `    - matches: [ { path: { exact: /api } } ]\n      ${B}\n    - matches: [ { path: { prefix: /api } } ]\n      ${B}`,
    shadowed: [],
  },
];

describe("analyze: shadowed-rule", () => {
  for (const c of SHADOW_CASES) {
    it(c.name, () => {
      const found = analyze(model(route("r", c.rules), LIVE)).filter((f) => f.code === "shadowed-rule");
      assert.deepEqual(
        found.map((f) => f.path),
        c.shadowed.map((i) => `spec.rules[${i}]`),
      );
      for (const f of found) assert.equal(f.severity, Severity.WARNING);
    });
  }

  it("names the earlier rule in the message", () => {
    const rules = `    - name: all\n      ${B}\n    - matches: [ { path: { prefix: /api } } ]\n      ${B}`;
    const [f] = analyze(model(route("r", rules), LIVE));
    assert.match(
      f?.message ?? "",
      /^rules\[1\] can never match: rules\[0\] \(all\) matches every request it matches/,
    );
  });

  it("across routes of one target: an older route's catch-all shadows a newer route's rules", () => {
    const yaml =
      route("old", `    - ${B}`) + route("new", `    - matches: [ { path: { prefix: /api } } ]\n      ${B}`);
    const found = analyze(model(yaml, LIVE));
    assert.deepEqual(
      found.map((f) => `${f.policy?.name} ${f.path}`),
      ["new spec.rules[0]"],
    );
    assert.match(found[0]?.message ?? "", /HTTPRoute shop\/old rules\[0\] matches every request/);
  });

  it("routes with different extra hosts are not merged", () => {
    const yaml =
      route("old", `    - ${B}`, "\n  hosts: [ a.example.com ]") +
      route("new", `    - matches: [ { path: { prefix: /api } } ]\n      ${B}`);
    assert.deepEqual(lines(model(yaml, LIVE)), []);
  });

  it("the namespace filter keeps only that namespace's findings", () => {
    const yaml = route("r", `    - ${B}\n    - ${B}`);
    assert.equal(lines(model(yaml, LIVE), "shop").length, 1);
    assert.equal(lines(model(yaml, LIVE), "other").length, 0);
  });
});
