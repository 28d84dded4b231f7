/**
 * The YAML codec as a user meets it through `trellis validate` / `apply` / `get -o yaml`:
 *
 * 1. every valid example (tests/fixtures/policies/*.yaml, including the INTERFACES.md examples)
 *    parses cleanly, and its canonical print is a fixed point that loses and adds no field;
 * 2. every kind has a table of invalid documents, each with the exact `line:col path` and the
 *    message (or a distinctive part of it) the user sees;
 * 3. every error of every document of a file is reported at once, sorted by position.
 *
 * The invalid documents are written out in full so the expected line:col can be read off them:
 * every one starts with the same three envelope lines (apiVersion, kind, metadata), so `spec:` is
 * line 4, its first field line 5, and columns are 1-based. Expected values are written by hand from
 * the input, never computed by the codec.
 *
 * Tests marked `{ todo: "bug: …" }` pin behaviour the codec gets wrong today (see each reason);
 * they run, but do not fail the suite.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { equals } from "@bufbuild/protobuf";
import type { HTTPRoute } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import { MtlsMode, type PeerAuthentication } from "@trellis/proto/gen/trellis/v1/peer_authentication_pb";
import type { RateLimitPolicy } from "@trellis/proto/gen/trellis/v1/rate_limit_policy_pb";
import {
  LoadBalancerPolicy,
  OutboundTrafficPolicy,
  type TrafficPolicy,
} from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { KINDS } from "@trellis/proto/kinds";
import { formatDiagnostic, parsePolicies, printPolicies, printPolicy } from "@trellis/proto/yaml-codec";

/** The file name every diagnostic must carry. */
const FILE = "shop/policy.yaml";

const FIXTURES = new URL("../../../fixtures/policies/", import.meta.url);

/**
 * A YAML document written indented inside the test source: the first (empty) line and the common
 * indentation are removed, so line 1 is the first line shown and column 1 its first character.
 */
function y(strings: TemplateStringsArray): string {
  const lines = strings.join("").split("\n");
  if (lines[0]?.trim() === "") lines.shift();
  if (lines.at(-1)?.trim() === "") lines.pop();
  const indent = Math.min(
    ...lines.filter((l) => l.trim() !== "").map((l) => l.length - l.trimStart().length),
  );
  return `${lines.map((l) => l.slice(indent)).join("\n")}\n`;
}

/** One expected diagnostic: 1-based line and column, field path ("" for YAML syntax), message part. */
type Want = readonly [line: number, col: number, path: string, message: string];

interface BadCase {
  name: string;
  yaml: string;
  want: readonly Want[];
  /** Set when the case pins a known codec bug: the test runs as todo. */
  todo?: string;
}

/** Asserts that `text` yields exactly `want`, in that order, and no policy. */
function expectDiagnostics(text: string, want: readonly Want[]): void {
  const r = parsePolicies(text, FILE);
  const shown = `diagnostics were:\n${r.diagnostics.map(formatDiagnostic).join("\n") || "(none)"}`;
  assert.deepEqual(
    r.diagnostics.map((d) => `${d.line}:${d.col} ${d.path}`),
    want.map(([line, col, path]) => `${line}:${col} ${path}`),
    shown,
  );
  want.forEach(([, , , message], i) => {
    const d = r.diagnostics[i]!;
    assert.ok(d.message.includes(message), `diagnostic ${i + 1}: expected "${message}" in\n${shown}`);
    assert.equal(d.file, FILE);
  });
  assert.equal(r.policies.length, 0, "a document with errors must not be returned as a policy");
}

function runTable(title: string, cases: readonly BadCase[]): void {
  describe(title, () => {
    for (const c of cases) {
      const fn = () => expectDiagnostics(c.yaml, c.want);
      if (c.todo !== undefined) it(c.name, { todo: c.todo }, fn);
      else it(c.name, fn);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// 1. Valid examples

/** The field names written in a YAML text (block or flow style), comments left out, as a sorted list. */
function fieldNames(text: string): string[] {
  const names: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/(^|\s)#.*$/, "");
    for (const m of line.matchAll(/([A-Za-z0-9_-]+):(?=\s|$)/g)) names.push(m[1]!);
  }
  return names.sort();
}

const fixtureFiles = readdirSync(FIXTURES)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

describe("valid examples (tests/fixtures/policies)", () => {
  it("include the INTERFACES.md examples and at least one document of every kind", () => {
    assert.ok(fixtureFiles.includes("interfaces-examples.yaml"), "interfaces-examples.yaml is missing");
    const kinds = new Set<string>();
    for (const f of fixtureFiles) {
      for (const p of parsePolicies(readFileSync(new URL(f, FIXTURES), "utf8"), f).policies) {
        kinds.add(p.info.kind);
      }
    }
    assert.deepEqual([...kinds].sort(), KINDS.map((k) => k.kind).sort());
  });

  for (const file of fixtureFiles) {
    describe(file, () => {
      const text = readFileSync(new URL(file, FIXTURES), "utf8");
      const docCount = text.split("\n").filter((l) => l.startsWith("kind: ")).length;

      it(`parses all ${docCount} documents with no diagnostics`, () => {
        const r = parsePolicies(text, file);
        assert.deepEqual(r.diagnostics.map(formatDiagnostic), []);
        assert.equal(r.documents, docCount);
        assert.equal(r.policies.length, docCount);
        assert.deepEqual(
          r.policies.map((p) => p.index),
          [...Array(docCount).keys()],
        );
      });

      it("prints canonically: print(parse(P)) == P and parse(P) equals parse(text)", () => {
        const first = parsePolicies(text, file);
        const printed = printPolicies(first.policies);
        const again = parsePolicies(printed, "printed.yaml");
        assert.deepEqual(again.diagnostics.map(formatDiagnostic), [], `printed form:\n${printed}`);
        assert.equal(printPolicies(again.policies), printed);
        assert.equal(again.policies.length, first.policies.length);
        first.policies.forEach((p, i) => {
          const q = again.policies[i]!;
          assert.equal(q.info.kind, p.info.kind);
          assert.ok(equals(p.info.schema, p.message as never, q.message as never), `document ${i} differs`);
        });
      });

      it("prints every field it was given, and no other", () => {
        const printed = printPolicies(parsePolicies(text, file).policies);
        assert.deepEqual(fieldNames(printed), fieldNames(text));
      });
    });
  }
});

describe("decoded values of the examples", () => {
  const load = (file: string) => parsePolicies(readFileSync(new URL(file, FIXTURES), "utf8"), file).policies;

  it("HTTPRoute: byte sizes, durations, weights and all retryOn tokens", () => {
    const route = load("http-route.yaml")[0]!.message as HTTPRoute;
    const rule = route.spec!.rules[0]!;
    assert.equal(rule.retry!.maxBufferedBody, 65536, '"64KiB" is 65536 bytes');
    assert.equal(rule.retry!.attempts, 3);
    assert.equal(rule.retry!.retryOn.length, 11);
    assert.deepEqual(rule.retry!.retriableStatusCodes, [409, 429]);
    assert.deepEqual([rule.timeout?.seconds, rule.timeout?.nanos], [2n, 0], "timeout: 2s");
    assert.deepEqual(
      [rule.retry!.perTryTimeout?.seconds, rule.retry!.perTryTimeout?.nanos],
      [0n, 500_000_000],
    );
    assert.deepEqual(
      rule.backends.map((b) => [b.service, b.weight]),
      [
        ["orders-v1", 90],
        ["orders-v2", 10],
      ],
    );
    assert.equal(rule.matches[2]!.path!.kind.case, "regex");
    assert.equal(rule.fault!.percentage, 0.5);
    assert.deepEqual(rule.headers!.request!.set, { "x-route": "api-read" });
  });

  it("TrafficPolicy: RING_HASH on a header, and a namespace-wide REGISTRY_ONLY", () => {
    const [orders, , , defaults] = load("traffic-policy.yaml").map((p) => p.message as TrafficPolicy);
    assert.equal(orders!.spec!.loadBalancer!.policy, LoadBalancerPolicy.RING_HASH);
    assert.deepEqual(orders!.spec!.loadBalancer!.hashOn!.source, { case: "header", value: "x-user-id" });
    assert.equal(orders!.spec!.connectionLimits!.maxPendingRequests, 0, "an explicit 0 is kept");
    assert.equal(defaults!.spec!.targetRef, undefined);
    assert.equal(defaults!.spec!.outboundTrafficPolicy, OutboundTrafficPolicy.REGISTRY_ONLY);
  });

  it("PeerAuthentication: portLevelMtls keyed by port number", () => {
    const pa = load("peer-authentication.yaml")[0]!.message as PeerAuthentication;
    assert.deepEqual(Object.keys(pa.spec!.portLevelMtls).sort(), ["8080", "9090"]);
    assert.equal(pa.spec!.portLevelMtls[8080]!.mode, MtlsMode.PERMISSIVE);
  });

  it("RateLimitPolicy: fractional rate and seven descriptor sources", () => {
    const rl = load("rate-limit-policy.yaml")[0]!.message as RateLimitPolicy;
    assert.equal(rl.spec!.local!.requestsPerSecond, 0.5);
    assert.deepEqual(
      rl.spec!.global!.descriptors.map((d) => d.from!.source.case),
      ["header", "identity", "remoteAddress", "path", "method", "literal", "queryParameter"],
    );
  });

  it("anchors and aliases resolve", () => {
    const r = parsePolicies(
      y`
        apiVersion: trellis.dev/v1
        kind: PeerAuthentication
        metadata: { name: strict, namespace: shop }
        spec:
          mtls: &strict { mode: STRICT }
          portLevelMtls: { 8080: *strict }
      `,
      FILE,
    );
    assert.deepEqual(r.diagnostics, []);
    const pa = r.policies[0]!.message as PeerAuthentication;
    assert.equal(pa.spec!.portLevelMtls[8080]!.mode, MtlsMode.STRICT);
  });
});

describe("canonical print (the form `get -o yaml` shows)", () => {
  it("block style, envelope and proto field order, sorted map keys, canonical durations and sizes", () => {
    const text = y`
      spec:
        rules:
          - retry: { maxBufferedBody: 64KiB, backoff: { max: 60000ms, base: 0.025s }, attempts: 2 }
            timeout: 1.5s
            backends: [ { weight: 3, service: orders-v1 } ]
        targetRef: { name: orders, kind: Service }
      metadata:
        labels: { tier: backend, app: orders }
        namespace: shop
        name: orders
      kind: HTTPRoute
      apiVersion: trellis.dev/v1
    `;
    const r = parsePolicies(text, FILE);
    assert.deepEqual(r.diagnostics, []);
    const p = r.policies[0]!;
    assert.equal(
      printPolicy(p.info, p.message),
      y`
        apiVersion: trellis.dev/v1
        kind: HTTPRoute
        metadata:
          name: orders
          namespace: shop
          labels:
            app: orders
            tier: backend
        spec:
          targetRef:
            kind: Service
            name: orders
          rules:
            - backends:
                - service: orders-v1
                  weight: 3
              timeout: 1500ms
              retry:
                attempts: 2
                backoff:
                  base: 25ms
                  max: 1m
                maxBufferedBody: 65536
      `,
    );
  });

  it("numeric map keys in numeric order; several documents joined by ---", () => {
    const r = parsePolicies(
      y`
        apiVersion: trellis.dev/v1
        kind: PeerAuthentication
        metadata: { name: a, namespace: shop }
        spec: { portLevelMtls: { 9090: { mode: STRICT }, 80: { mode: PERMISSIVE } } }
        ---
        apiVersion: trellis.dev/v1
        kind: Telemetry
        metadata: { name: b, namespace: shop }
        spec: { accessLog: { enabled: true } }
      `,
      FILE,
    );
    assert.deepEqual(r.diagnostics, []);
    assert.equal(
      printPolicies(r.policies),
      y`
        apiVersion: trellis.dev/v1
        kind: PeerAuthentication
        metadata:
          name: a
          namespace: shop
        spec:
          portLevelMtls:
            80:
              mode: PERMISSIVE
            9090:
              mode: STRICT
        ---
        apiVersion: trellis.dev/v1
        kind: Telemetry
        metadata:
          name: b
          namespace: shop
        spec:
          accessLog:
            enabled: true
      `,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Invalid documents, kind by kind

describe("diagnostic format", () => {
  it("is `file:line:col path: message`", () => {
    const r = parsePolicies(
      y`
        apiVersion: trellis.dev/v1
        kind: HTTPRoute
        metadata: { name: orders, namespace: shop }
        spec:
          targetRef: { kind: Service, name: orders }
          rules:
            - retry:
                attempts: -1
      `,
      FILE,
    );
    assert.deepEqual(r.diagnostics.map(formatDiagnostic), [
      "shop/policy.yaml:8:9 spec.rules[0].retry.attempts: must be ≥ 0",
    ]);
  });

  it("is `file:line:col message` for YAML syntax errors (no field path)", () => {
    const r = parsePolicies(
      y`
        apiVersion: trellis.dev/v1
        kind: PeerAuthentication
        metadata: { name: strict, namespace: shop }
        spec:
          mtls: { mode: STRICT }
          mtls: { mode: PERMISSIVE }
      `,
      FILE,
    );
    assert.equal(r.diagnostics.length, 1);
    assert.match(formatDiagnostic(r.diagnostics[0]!), /^shop\/policy\.yaml:6:3 Map keys must be unique/);
  });
});

const ALL_KINDS =
  "Service, TrafficPolicy, HTTPRoute, RateLimitPolicy, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Telemetry";

runTable("envelope and YAML errors (any kind)", [
  {
    name: "bad apiVersion",
    yaml: y`
      apiVersion: trellis.dev/v2
      kind: PeerAuthentication
      metadata: { name: strict, namespace: shop }
      spec: { mtls: { mode: STRICT } }
    `,
    want: [[1, 1, "apiVersion", "must be trellis.dev/v1"]],
  },
  {
    name: "missing apiVersion",
    yaml: y`
      kind: PeerAuthentication
      metadata: { name: strict, namespace: shop }
      spec: { mtls: { mode: STRICT } }
    `,
    want: [[1, 1, "apiVersion", "is required"]],
  },
  {
    name: "unknown kind lists the kinds",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HttpRoute
      metadata: { name: orders, namespace: shop }
      spec: {}
    `,
    want: [[2, 1, "kind", `unknown kind "HttpRoute"; expected one of ${ALL_KINDS}`]],
  },
  {
    name: "missing kind",
    yaml: y`
      apiVersion: trellis.dev/v1
      metadata: { name: orders, namespace: shop }
      spec: {}
    `,
    want: [[1, 1, "kind", "is required"]],
  },
  {
    name: "empty kind is reported as missing",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind:
      metadata: { name: orders, namespace: shop }
      spec: {}
    `,
    want: [[2, 1, "kind", "is required"]],
  },
  {
    name: "bad apiVersion and unknown kind are both reported",
    yaml: y`
      apiVersion: v1
      kind: Pod
      metadata: { name: orders }
    `,
    want: [
      [1, 1, "apiVersion", "must be trellis.dev/v1"],
      [2, 1, "kind", 'unknown kind "Pod"'],
    ],
  },
  {
    name: "missing metadata",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      spec: { mtls: { mode: STRICT } }
    `,
    want: [[1, 1, "metadata", "is required"]],
  },
  {
    name: "missing spec",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: strict, namespace: shop }
    `,
    want: [[1, 1, "spec", "is required"]],
  },
  {
    name: "missing metadata.name (at metadata)",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { namespace: shop }
      spec: { mtls: { mode: STRICT } }
    `,
    want: [[3, 1, "metadata.name", "is required"]],
  },
  {
    name: "upper-case name and namespace",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata:
        name: Strict
        namespace: Shop
      spec: { mtls: { mode: STRICT } }
    `,
    want: [
      [4, 3, "metadata.name", "must be a lower-case DNS name"],
      [5, 3, "metadata.namespace", "must be a DNS label"],
    ],
  },
  {
    name: "unknown metadata fields: did-you-mean, else the known fields",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata:
        name: strict
        resource_version: "1"
        owner: me
      spec: { mtls: { mode: STRICT } }
    `,
    want: [
      [
        5,
        3,
        "metadata.resource_version",
        'unknown field "resource_version"; did you mean "resourceVersion"?',
      ],
      [
        6,
        3,
        "metadata.owner",
        'unknown field "owner"; known fields: name, namespace, labels, annotations, resourceVersion, generation, creationTime',
      ],
    ],
  },
  {
    name: "bad label key; number where a string is expected",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata:
        name: strict
        labels:
          "bad key!": v
          replicas: 5
      spec: { mtls: { mode: STRICT } }
    `,
    want: [
      [6, 5, "metadata.labels[bad key!]", "key must be a label key"],
      [7, 5, "metadata.labels[replicas]", 'must be a string; quote the value ("5")'],
    ],
  },
  {
    name: "a document that is a list",
    yaml: y`
      - apiVersion: trellis.dev/v1
      - kind: PeerAuthentication
    `,
    want: [[1, 1, "", "a policy document must be a mapping with apiVersion, kind, metadata and spec"]],
  },
  {
    name: "YAML syntax: unclosed flow mapping",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: strict, namespace: shop
      spec: { mtls: { mode: STRICT } }
    `,
    want: [[4, 1, "", "end with a }"]],
  },
  {
    name: "YAML syntax: tab indentation",
    yaml: "apiVersion: trellis.dev/v1\nkind: PeerAuthentication\nmetadata:\n\tname: strict\nspec: {}\n",
    want: [[4, 1, "", "Tabs are not allowed as indentation"]],
  },
  {
    name: "duplicate key in spec (at the second one)",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: strict, namespace: shop }
      spec:
        mtls: { mode: STRICT }
        mtls: { mode: PERMISSIVE }
    `,
    want: [[6, 3, "", "Map keys must be unique"]],
  },
  {
    name: "duplicate kind",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      kind: Service
      metadata: { name: strict, namespace: shop }
      spec: { mtls: { mode: STRICT } }
    `,
    want: [[3, 1, "", "Map keys must be unique"]],
  },
  {
    name: "alias to an anchor that does not exist",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: strict, namespace: shop }
      spec:
        mtls: *strict
    `,
    want: [[5, 3, "spec.mtls", "*strict refers to no anchor"]],
  },
]);

runTable("Service: invalid documents", [
  {
    name: "port 0",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Service
      metadata: { name: orders, namespace: shop }
      spec:
        ports:
          - port: 0
    `,
    want: [[6, 7, "spec.ports[0].port", "must be ≥ 1"]],
  },
  {
    name: "port -1 names the declared bound",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Service
      metadata: { name: orders, namespace: shop }
      spec:
        ports:
          - port: -1
    `,
    want: [[6, 7, "spec.ports[0].port", "must be ≥ 1"]],
  },
  {
    name: "port above 65535",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Service
      metadata: { name: orders, namespace: shop }
      spec:
        ports:
          - port: 70000
    `,
    want: [[6, 7, "spec.ports[0].port", "must be ≤ 65535"]],
  },
  {
    name: "string where a number is expected; bool and fraction too",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Service
      metadata: { name: orders, namespace: shop }
      spec:
        ports:
          - port: "8080"
          - port: true
          - port: 80.5
    `,
    want: [
      [6, 7, "spec.ports[0].port", "must be a whole number"],
      [7, 7, "spec.ports[1].port", "must be a whole number"],
      [8, 7, "spec.ports[2].port", "must be a whole number"],
    ],
  },
  {
    name: "missing port (at the list item)",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Service
      metadata: { name: orders, namespace: shop }
      spec:
        ports:
          - name: web
    `,
    want: [[6, 7, "spec.ports[0].port", "is required"]],
  },
  {
    name: "unknown protocol lists the tokens; tokens are case-sensitive",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Service
      metadata: { name: orders, namespace: shop }
      spec:
        ports:
          - { port: 80, protocol: udp }
          - { port: 81, protocol: HTTP }
    `,
    want: [
      [6, 19, "spec.ports[0].protocol", 'unknown value "udp"; expected one of http, http2, grpc, tcp'],
      [7, 19, "spec.ports[1].protocol", 'unknown value "HTTP"; expected one of http, http2, grpc, tcp'],
    ],
  },
  {
    name: "number where a string is expected",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Service
      metadata: { name: orders, namespace: shop }
      spec:
        ports:
          - name: 80
            port: 8080
    `,
    want: [[6, 7, "spec.ports[0].name", 'must be a string; quote the value ("80")']],
  },
  {
    name: "port name not a DNS label; targetPort 0",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Service
      metadata: { name: orders, namespace: shop }
      spec:
        ports:
          - { port: 80, name: Web }
          - { port: 81, targetPort: 0 }
    `,
    want: [
      [6, 19, "spec.ports[0].name", "must be a DNS label"],
      [7, 19, "spec.ports[1].targetPort", "must be ≥ 1"],
    ],
  },
  {
    name: "mapping where a list is expected",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Service
      metadata: { name: orders, namespace: shop }
      spec:
        ports: { port: 80 }
    `,
    want: [[5, 3, "spec.ports", "must be a list"]],
  },
  {
    name: "empty ports list",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Service
      metadata: { name: orders, namespace: shop }
      spec:
        ports: []
    `,
    want: [[5, 3, "spec.ports", "must have at least 1 item"]],
  },
  {
    name: "spec is a list",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Service
      metadata: { name: orders, namespace: shop }
      spec:
        - port: 80
    `,
    want: [[4, 1, "spec", "must be a mapping"]],
  },
  {
    name: "unknown field: did you mean",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Service
      metadata: { name: orders, namespace: shop }
      spec:
        port: 80
    `,
    want: [[5, 3, "spec.port", 'unknown field "port"; did you mean "ports"?']],
  },
]);

runTable("TrafficPolicy: invalid documents", [
  {
    name: "outboundTrafficPolicy together with targetRef",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        outboundTrafficPolicy: REGISTRY_ONLY
    `,
    want: [
      [
        6,
        3,
        "spec.outboundTrafficPolicy",
        "outboundTrafficPolicy applies to a namespace's callers; it is allowed only without targetRef",
      ],
    ],
  },
  {
    name: "unknown outboundTrafficPolicy",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: defaults, namespace: shop }
      spec:
        outboundTrafficPolicy: registry-only
    `,
    want: [
      [
        5,
        3,
        "spec.outboundTrafficPolicy",
        'unknown value "registry-only"; expected one of ALLOW_ANY, REGISTRY_ONLY',
      ],
    ],
  },
  {
    name: "unknown load balancer policy",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancer:
          policy: RANDOM
    `,
    want: [
      [
        6,
        5,
        "spec.loadBalancer.policy",
        'unknown value "RANDOM"; expected one of ROUND_ROBIN, LEAST_REQUEST, RING_HASH',
      ],
    ],
  },
  {
    name: "hashOn without policy",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancer:
          hashOn: { header: x-user }
    `,
    want: [[6, 5, "spec.loadBalancer.hashOn", "hashOn needs policy: RING_HASH"]],
  },
  {
    name: "hashOn with ROUND_ROBIN",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancer:
          policy: ROUND_ROBIN
          hashOn: { header: x-user }
    `,
    want: [[7, 5, "spec.loadBalancer.hashOn", "RING_HASH"]],
  },
  {
    name: "both members of the hashOn oneof",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancer:
          policy: RING_HASH
          hashOn:
            header: x-user
            cookie: { name: session }
    `,
    want: [
      [
        9,
        7,
        "spec.loadBalancer.hashOn.cookie",
        "only one of header, cookie, sourceIp, queryParameter may be set (header is already)",
      ],
    ],
  },
  {
    name: "empty hashOn (required oneof)",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancer:
          policy: RING_HASH
          hashOn: {}
    `,
    want: [[7, 5, "spec.loadBalancer.hashOn", "one of header, cookie, sourceIp, queryParameter is required"]],
  },
  {
    name: "bad hash header name; ring size 0",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancer:
          policy: RING_HASH
          hashOn: { header: "x user" }
          minimumRingSize: 0
    `,
    want: [
      [7, 15, "spec.loadBalancer.hashOn.header", "must be an HTTP header name"],
      [8, 5, "spec.loadBalancer.minimumRingSize", "must be ≥ 1"],
    ],
  },
  {
    name: "bad hash cookie: name, ttl below 1s, relative path",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancer:
          policy: RING_HASH
          hashOn:
            cookie: { name: "a b", ttl: 500ms, path: x }
    `,
    want: [
      [8, 17, "spec.loadBalancer.hashOn.cookie.name", "must be a cookie name (RFC 6265 token)"],
      [8, 30, "spec.loadBalancer.hashOn.cookie.ttl", "must be ≥ 1s"],
      [8, 42, "spec.loadBalancer.hashOn.cookie.path", "must be a path starting with '/'"],
    ],
  },
  {
    name: "slowStart: negative window, aggression 0, percentage above 100",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancer:
          slowStart:
            window: -5s
            aggression: 0
            minWeightPercent: 150
    `,
    want: [
      [7, 7, "spec.loadBalancer.slowStart.window", "must not be negative"],
      [8, 7, "spec.loadBalancer.slowStart.aggression", "must be > 0"],
      [9, 7, "spec.loadBalancer.slowStart.minWeightPercent", "must be ≤ 100"],
    ],
  },
  {
    name: "slowStart window above 1h",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancer:
          slowStart:
            window: 2h
    `,
    want: [[7, 7, "spec.loadBalancer.slowStart.window", "must be ≤ 1h"]],
  },
  {
    name: "slowStart without its required window",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancer:
          slowStart: { aggression: 2 }
    `,
    want: [[6, 5, "spec.loadBalancer.slowStart.window", "is required"]],
  },
  {
    name: "locality failover entries without from / to",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancer:
          locality:
            failover:
              - from: us-east
              - to: us-west
    `,
    want: [
      [8, 11, "spec.loadBalancer.locality.failover[0].to", "is required"],
      [9, 11, "spec.loadBalancer.locality.failover[1].from", "is required"],
    ],
  },
  {
    name: "connectionLimits: 0, negative count, words and fractions",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        connectionLimits:
          maxConnections: 0
          maxPendingRequests: -1
          maxRequests: many
          maxRetries: 1.5
    `,
    want: [
      [6, 5, "spec.connectionLimits.maxConnections", "must be ≥ 1"],
      [7, 5, "spec.connectionLimits.maxPendingRequests", "must be ≥ 0"],
      [8, 5, "spec.connectionLimits.maxRequests", "must be a whole number"],
      [9, 5, "spec.connectionLimits.maxRetries", "must be a whole number"],
    ],
  },
  {
    name: "outlierDetection: unit-less duration, base > max ejection, percentages, zero threshold",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        outlierDetection:
          interval: 5
          baseEjectionTime: 10m
          maxEjectionTime: 5m
          maxEjectionPercent: 101
          minHealthPercent: -1
          consecutive5xx: 0
    `,
    want: [
      [6, 5, "spec.outlierDetection.interval", 'must be a duration like "250ms", "2s", "1m" or "24h"'],
      [7, 5, "spec.outlierDetection.baseEjectionTime", "must not be greater than maxEjectionTime"],
      [9, 5, "spec.outlierDetection.maxEjectionPercent", "must be ≤ 100"],
      [10, 5, "spec.outlierDetection.minHealthPercent", "must be ≥ 0"],
      [11, 5, "spec.outlierDetection.consecutive5xx", "must be ≥ 1"],
    ],
  },
  {
    name: "healthCheck with two checks",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        healthCheck:
          http: { path: /healthz }
          tcp: {}
    `,
    want: [[7, 5, "spec.healthCheck.tcp", "only one of http, grpc, tcp may be set (http is already)"]],
  },
  {
    name: "healthCheck without a check",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        healthCheck:
          interval: 5s
    `,
    want: [[5, 3, "spec.healthCheck", "one of http, grpc, tcp is required"]],
  },
  {
    name: "healthCheck timeout longer than interval",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        healthCheck:
          tcp: {}
          interval: 1s
          timeout: 2s
    `,
    want: [[8, 5, "spec.healthCheck.timeout", "must not be greater than interval"]],
  },
  {
    name: "http health check: relative path, duplicate and out-of-range statuses, thresholds",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        healthCheck:
          http:
            path: healthz
            expectedStatuses: [200, 200, 600]
          healthyThreshold: 0
          unhealthyThreshold: 101
    `,
    want: [
      [7, 7, "spec.healthCheck.http.path", "must be a path starting with '/'"],
      [8, 31, "spec.healthCheck.http.expectedStatuses[1]", "duplicate value 200"],
      [8, 36, "spec.healthCheck.http.expectedStatuses[2]", "must be ≤ 599"],
      [9, 5, "spec.healthCheck.healthyThreshold", "must be ≥ 1"],
      [10, 5, "spec.healthCheck.unhealthyThreshold", "must be ≤ 100"],
    ],
  },
  {
    name: "a check that fails to decode is not also reported as missing",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        healthCheck:
          tcp: true
    `,
    want: [[6, 5, "spec.healthCheck.tcp", "must be a mapping"]],
  },
  {
    name: "timeouts: negative connect, idle above 24h",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        timeouts:
          connect: -1s
          idle: 25h
    `,
    want: [
      [6, 5, "spec.timeouts.connect", "must not be negative"],
      [7, 5, "spec.timeouts.idle", "must be ≤ 24h"],
    ],
  },
  {
    name: "timeouts: connect above 1m, idle below 1s",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        timeouts:
          connect: 2m
          idle: 500ms
    `,
    want: [
      [6, 5, "spec.timeouts.connect", "must be ≤ 1m"],
      [7, 5, "spec.timeouts.idle", "must be ≥ 1s"],
    ],
  },
  {
    name: "retryBudget: percent above 100, negative rate, short window",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        retryBudget:
          percent: 120
          minRetriesPerSecond: -1
          window: 0.5s
    `,
    want: [
      [6, 5, "spec.retryBudget.percent", "must be ≤ 100"],
      [7, 5, "spec.retryBudget.minRetriesPerSecond", "must be ≥ 0"],
      [8, 5, "spec.retryBudget.window", "must be ≥ 1s"],
    ],
  },
  {
    name: "unknown fields: the known list, and did-you-mean for snake_case",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancing: { policy: ROUND_ROBIN }
        load_balancer: { policy: ROUND_ROBIN }
    `,
    want: [
      [
        5,
        3,
        "spec.loadBalancing",
        'unknown field "loadBalancing"; known fields: targetRef, loadBalancer, connectionLimits, outlierDetection, healthCheck, timeouts, retryBudget, outboundTrafficPolicy',
      ],
      [6, 3, "spec.load_balancer", 'unknown field "load_balancer"; did you mean "loadBalancer"?'],
    ],
  },
  {
    name: "list where a mapping is expected",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: TrafficPolicy
      metadata: { name: orders, namespace: shop }
      spec:
        loadBalancer: [ROUND_ROBIN]
    `,
    want: [[5, 3, "spec.loadBalancer", "must be a mapping"]],
  },
]);

const RETRY_ON_TOKENS =
  "connect-failure, refused-stream, reset, 5xx, gateway-error, retriable-status-codes, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable";

runTable("HTTPRoute: invalid documents", [
  {
    name: "missing targetRef (at spec)",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        rules:
          - backends: [ { service: orders-v1 } ]
    `,
    want: [[4, 1, "spec.targetRef", "is required"]],
  },
  {
    name: "empty rules",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules: []
    `,
    want: [[6, 3, "spec.rules", "must have at least 1 item"]],
  },
  {
    name: "targetRef: kind, name and port",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Deployment, name: Orders, port: 0 }
        rules: [ {} ]
    `,
    want: [
      [5, 16, "spec.targetRef.kind", "must be one of Service"],
      [5, 34, "spec.targetRef.name", "must be a DNS label"],
      [5, 48, "spec.targetRef.port", "must be ≥ 1"],
    ],
  },
  {
    name: "retry: negative attempts and negative perTryTimeout",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - retry:
              attempts: -1
              perTryTimeout: -500ms
    `,
    want: [
      [8, 9, "spec.rules[0].retry.attempts", "must be ≥ 0"],
      [9, 9, "spec.rules[0].retry.perTryTimeout", "must not be negative"],
    ],
  },
  {
    name: "retry: attempts above 10; unknown retryOn tokens (at each item)",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - retry:
              attempts: 11
              retryOn: [5XX, connect_failure]
    `,
    want: [
      [8, 9, "spec.rules[0].retry.attempts", "must be ≤ 10"],
      [9, 19, "spec.rules[0].retry.retryOn[0]", `unknown value "5XX"; expected one of ${RETRY_ON_TOKENS}`],
      [
        9,
        24,
        "spec.rules[0].retry.retryOn[1]",
        `unknown value "connect_failure"; expected one of ${RETRY_ON_TOKENS}`,
      ],
    ],
  },
  {
    name: "retry: quoted number, a word for a number, a scalar for a list",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - retry:
              attempts: "3"
              retryOn: 5xx
          - retry:
              attempts: three
    `,
    want: [
      [8, 9, "spec.rules[0].retry.attempts", "must be a whole number"],
      [9, 9, "spec.rules[0].retry.retryOn", "must be a list"],
      [11, 9, "spec.rules[1].retry.attempts", "must be a whole number"],
    ],
  },
  {
    name: "retry: retriable-status-codes without retriableStatusCodes",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - retry:
              retryOn: [5xx, retriable-status-codes]
    `,
    want: [
      [8, 9, "spec.rules[0].retry.retryOn", "retryOn retriable-status-codes needs retriableStatusCodes"],
    ],
  },
  {
    name: "retry: status code below 100 and a duplicate",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - retry:
              retryOn: [retriable-status-codes]
              retriableStatusCodes: [99, 503, 503]
    `,
    want: [
      [9, 32, "spec.rules[0].retry.retriableStatusCodes[0]", "must be ≥ 100"],
      [9, 41, "spec.rules[0].retry.retriableStatusCodes[2]", "duplicate value 503"],
    ],
  },
  {
    name: "retry: a duplicate retryOn token is named as written",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - retry:
              retryOn: [5xx, reset, 5xx]
    `,
    want: [[8, 31, "spec.rules[0].retry.retryOn[2]", 'duplicate value "5xx"']],
  },
  {
    name: "retry: backoff base greater than max",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - retry:
              backoff: { base: 1s, max: 250ms }
    `,
    want: [[8, 20, "spec.rules[0].retry.backoff.base", "must not be greater than max"]],
  },
  {
    name: "retry: maxBufferedBody not a size, above 16MiB, negative",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - retry:
              maxBufferedBody: 64 potatoes
          - retry:
              maxBufferedBody: 32MiB
          - retry:
              maxBufferedBody: -1
    `,
    want: [
      [8, 9, "spec.rules[0].retry.maxBufferedBody", 'must be a byte count or a size like "64KiB"'],
      [10, 9, "spec.rules[1].retry.maxBufferedBody", "must be ≤ 16777216"],
      [12, 9, "spec.rules[2].retry.maxBufferedBody", "must be ≥ 0"],
    ],
  },
  {
    name: "fault without delay or abort",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - fault: { percentage: 50 }
    `,
    want: [[7, 7, "spec.rules[0].fault", "at least one of delay, abort must be set"]],
  },
  {
    name: "fault: abort status and grpcStatus out of range, percentage above 100, missing status",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - fault:
              abort: { status: 100, grpcStatus: 17 }
              percentage: 150
          - fault:
              abort: { grpcStatus: 14 }
    `,
    want: [
      [8, 18, "spec.rules[0].fault.abort.status", "must be ≥ 200"],
      [8, 31, "spec.rules[0].fault.abort.grpcStatus", "must be ≤ 16"],
      [9, 9, "spec.rules[0].fault.percentage", "must be ≤ 100"],
      [11, 9, "spec.rules[1].fault.abort.status", "is required"],
    ],
  },
  {
    name: "fault: a delay that fails to decode is not also reported as missing",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - fault:
              delay: soon
    `,
    want: [[8, 9, "spec.rules[0].fault.delay", "must be a duration like"]],
  },
  {
    name: "mirror: negative percentage, missing service",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - mirror: { service: orders-shadow, percentage: -1 }
          - mirror: { percentage: 10 }
    `,
    want: [
      [7, 41, "spec.rules[0].mirror.percentage", "must be ≥ 0"],
      [8, 7, "spec.rules[1].mirror.service", "is required"],
    ],
  },
  {
    name: "backends: weights out of range, bad and missing service",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - backends:
              - { service: orders-v1, weight: 1000001 }
              - { service: orders-v2, weight: -1 }
              - { service: Orders }
              - { weight: 1 }
    `,
    want: [
      [8, 33, "spec.rules[0].backends[0].weight", "must be ≤ 1000000"],
      [9, 33, "spec.rules[0].backends[1].weight", "must be ≥ 0"],
      [10, 13, "spec.rules[0].backends[2].service", "must be a DNS label"],
      [11, 11, "spec.rules[0].backends[3].service", "is required"],
    ],
  },
  {
    name: "backends: mapping where a list is expected",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - backends: { service: orders-v1 }
    `,
    want: [[7, 7, "spec.rules[0].backends", "must be a list"]],
  },
  {
    name: "path: two kinds, none, bad regex, relative prefix; lower-case method",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - matches:
              - path: { exact: /a, prefix: /b }
              - path: {}
              - path: { regex: "(" }
              - path: { prefix: api }
              - method: get
    `,
    want: [
      [
        8,
        30,
        "spec.rules[0].matches[0].path.prefix",
        "only one of exact, prefix, regex may be set (exact is already)",
      ],
      [9, 11, "spec.rules[0].matches[1].path", "one of exact, prefix, regex is required"],
      [10, 19, "spec.rules[0].matches[2].path.regex", "is not a valid regular expression"],
      [11, 19, "spec.rules[0].matches[3].path.prefix", "must be a path starting with '/'"],
      [12, 11, "spec.rules[0].matches[4].method", "must be an upper-case HTTP method"],
    ],
  },
  {
    name: "header matches: bad name, missing value, two matchers, no matcher",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - matches:
              - headers:
                  - name: bad header
                    value: { exact: x }
                  - name: x-a
                  - name: x-b
                    value: { exact: x, prefix: y }
                  - name: x-c
                    value: {}
    `,
    want: [
      [9, 15, "spec.rules[0].matches[0].headers[0].name", "must be an HTTP header name"],
      [11, 15, "spec.rules[0].matches[0].headers[1].value", "is required"],
      [
        13,
        34,
        "spec.rules[0].matches[0].headers[2].value.prefix",
        "only one of exact, prefix, regex, present may be set (exact is already)",
      ],
      [
        15,
        15,
        "spec.rules[0].matches[0].headers[3].value",
        "one of exact, prefix, regex, present is required",
      ],
    ],
  },
  {
    name: "query match: empty name, bad regex",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - matches:
              - query:
                  - name: ""
                    value: { regex: "[" }
    `,
    want: [
      [9, 15, "spec.rules[0].matches[0].query[0].name", "is required"],
      [10, 24, "spec.rules[0].matches[0].query[0].value.regex", "is not a valid regular expression"],
    ],
  },
  {
    name: "header edits: bad key, value with a newline, duplicate remove, list for a mapping",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - headers:
              request:
                set: { "bad key": v, x-ok: "a\\nb" }
                remove: [x-a, x-a]
              response:
                add: [x-a]
    `,
    want: [
      [9, 18, "spec.rules[0].headers.request.set[bad key]", "key must be an HTTP header name"],
      [9, 32, "spec.rules[0].headers.request.set[x-ok]", "must not contain CR, LF or NUL"],
      [10, 25, "spec.rules[0].headers.request.remove[1]", 'duplicate value "x-a"'],
      [12, 11, "spec.rules[0].headers.response.add", "must be a mapping"],
    ],
  },
  {
    name: "fallback: status above 599, number as a header value",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - fallback: { status: 700, headers: { x-a: 1 } }
    `,
    want: [
      [7, 19, "spec.rules[0].fallback.status", "must be ≤ 599"],
      [7, 43, "spec.rules[0].fallback.headers[x-a]", 'must be a string; quote the value ("1")'],
    ],
  },
  {
    name: "hosts: bad name, duplicate, bad port",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        hosts: [bad_host, a.example.com, a.example.com, "a.example.com:99999"]
        rules: [ {} ]
    `,
    want: [
      [6, 11, "spec.hosts[0]", "must be a host name"],
      [6, 36, "spec.hosts[2]", 'duplicate value "a.example.com"'],
      [6, 51, "spec.hosts[3]", "has an invalid port"],
    ],
  },
  {
    name: "timeout: no unit, above 24h, below 1ms, negative",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - timeout: 2
          - timeout: 25h
          - timeout: 500us
          - timeout: -1s
    `,
    want: [
      [7, 7, "spec.rules[0].timeout", 'must be a duration like "250ms", "2s", "1m" or "24h"'],
      [8, 7, "spec.rules[1].timeout", "must be ≤ 24h"],
      [9, 7, "spec.rules[2].timeout", "must be ≥ 1ms"],
      [10, 7, "spec.rules[3].timeout", "must not be negative"],
    ],
  },
  {
    name: "rule name not a DNS label",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - name: API
    `,
    want: [[7, 7, "spec.rules[0].name", "must be a DNS label"]],
  },
  {
    name: "unknown fields in a rule and in retry",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - retries: { attempts: 1 }
            retry: { per_try_timeout: 1s }
    `,
    want: [
      [
        7,
        7,
        "spec.rules[0].retries",
        'unknown field "retries"; known fields: name, matches, backends, timeout, retry, fault, mirror, headers, fallback',
      ],
      [
        8,
        16,
        "spec.rules[0].retry.per_try_timeout",
        'unknown field "per_try_timeout"; did you mean "perTryTimeout"?',
      ],
    ],
  },
  {
    name: "matches: empty item, scalar for a list",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: HTTPRoute
      metadata: { name: orders, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
        rules:
          - matches: [ ~ ]
          - matches: /api
    `,
    want: [
      [7, 18, "spec.rules[0].matches[0]", "must not be empty"],
      [8, 7, "spec.rules[1].matches", "must be a list"],
    ],
  },
]);

runTable("RateLimitPolicy: invalid documents", [
  {
    name: "neither local nor global",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RateLimitPolicy
      metadata: { name: limits, namespace: shop }
      spec:
        targetRef: { kind: Service, name: orders }
    `,
    want: [[4, 1, "spec", "at least one of local, global must be set"]],
  },
  {
    name: "local requestsPerSecond 0",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RateLimitPolicy
      metadata: { name: limits, namespace: shop }
      spec:
        local:
          requestsPerSecond: 0
    `,
    want: [[6, 5, "spec.local.requestsPerSecond", "must be > 0"]],
  },
  {
    name: "local: negative rate, negative burst, string for a bool",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RateLimitPolicy
      metadata: { name: limits, namespace: shop }
      spec:
        local:
          requestsPerSecond: -1
          burst: -1
          perIdentity: "true"
    `,
    want: [
      [6, 5, "spec.local.requestsPerSecond", "must be > 0"],
      [7, 5, "spec.local.burst", "must be ≥ 0"],
      [8, 5, "spec.local.perIdentity", "must be true or false"],
    ],
  },
  {
    name: "local: rate and burst above 1000000",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RateLimitPolicy
      metadata: { name: limits, namespace: shop }
      spec:
        local:
          requestsPerSecond: 2000000
          burst: 1000001
    `,
    want: [
      [6, 5, "spec.local.requestsPerSecond", "must be ≤ 1000000"],
      [7, 5, "spec.local.burst", "must be ≤ 1000000"],
    ],
  },
  {
    name: "local: missing rate (at local); a word for a number",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RateLimitPolicy
      metadata: { name: limits, namespace: shop }
      spec:
        local:
          burst: 5
        global:
          descriptors: [ { key: api_key, from: { header: x-api-key } } ]
          limit: { requests: fast, per: second }
    `,
    want: [
      [5, 3, "spec.local.requestsPerSecond", "is required"],
      [9, 14, "spec.global.limit.requests", "must be a whole number"],
    ],
  },
  {
    name: "local that fails to decode is not also reported as missing",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RateLimitPolicy
      metadata: { name: limits, namespace: shop }
      spec:
        local: 100
    `,
    want: [[5, 3, "spec.local", "must be a mapping"]],
  },
  {
    name: "global without limit",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RateLimitPolicy
      metadata: { name: limits, namespace: shop }
      spec:
        global:
          descriptors: [ { key: api_key, from: { header: x-api-key } } ]
    `,
    want: [[5, 3, "spec.global.limit", "is required"]],
  },
  {
    name: "global with no descriptors",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RateLimitPolicy
      metadata: { name: limits, namespace: shop }
      spec:
        global:
          descriptors: []
          limit: { requests: 1, per: second }
    `,
    want: [[6, 5, "spec.global.descriptors", "must have at least 1 item"]],
  },
  {
    name: "limit: negative requests, unknown unit lists the tokens",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RateLimitPolicy
      metadata: { name: limits, namespace: shop }
      spec:
        global:
          descriptors: [ { key: api_key, from: { header: x-api-key } } ]
          limit: { requests: -5, per: day }
    `,
    want: [
      [7, 14, "spec.global.limit.requests", "must be ≥ 0"],
      [7, 28, "spec.global.limit.per", 'unknown value "day"; expected one of second, minute, hour'],
    ],
  },
  {
    name: "limit without per (at limit)",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RateLimitPolicy
      metadata: { name: limits, namespace: shop }
      spec:
        global:
          descriptors: [ { key: api_key, from: { header: x-api-key } } ]
          limit: { requests: 5 }
    `,
    want: [[7, 5, "spec.global.limit.per", "is required"]],
  },
  {
    name: "descriptors: bad key, two sources, no source, empty source, empty literal",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RateLimitPolicy
      metadata: { name: limits, namespace: shop }
      spec:
        global:
          descriptors:
            - key: API_KEY
              from: { header: x-api-key, identity: true }
            - key: caller
            - key: client
              from: {}
            - key: all
              from: { literal: "" }
          limit: { requests: 5, per: second }
    `,
    want: [
      [
        7,
        9,
        "spec.global.descriptors[0].key",
        "must be lower-case letters, digits, '_' and '-' (at most 63)",
      ],
      [
        8,
        36,
        "spec.global.descriptors[0].from.identity",
        "only one of header, identity, remoteAddress, path, method, literal, queryParameter may be set (header is already)",
      ],
      [9, 9, "spec.global.descriptors[1].from", "is required"],
      [
        11,
        9,
        "spec.global.descriptors[2].from",
        "one of header, identity, remoteAddress, path, method, literal, queryParameter is required",
      ],
      [13, 17, "spec.global.descriptors[3].from.literal", "must be at least 1 character"],
    ],
  },
  {
    name: "unknown onRedisFailure lists the tokens; override without value",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RateLimitPolicy
      metadata: { name: limits, namespace: shop }
      spec:
        global:
          descriptors: [ { key: api_key, from: { header: x-api-key } } ]
          limit: { requests: 5, per: second }
          onRedisFailure: fail-open
          overrides:
            - key: api_key
              limit: { requests: 1, per: second }
    `,
    want: [
      [
        8,
        5,
        "spec.global.onRedisFailure",
        'unknown value "fail-open"; expected one of allow, deny, local-fallback',
      ],
      [10, 9, "spec.global.overrides[0].value", "is required"],
    ],
  },
]);

runTable("PeerAuthentication: invalid documents", [
  {
    name: "lower-case mode lists the tokens",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: strict, namespace: shop }
      spec:
        mtls: { mode: strict }
    `,
    want: [[5, 11, "spec.mtls.mode", 'unknown value "strict"; expected one of STRICT, PERMISSIVE']],
  },
  {
    name: "number for an enum",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: strict, namespace: shop }
      spec:
        mtls: { mode: 1 }
    `,
    want: [[5, 11, "spec.mtls.mode", "unknown value 1; expected one of STRICT, PERMISSIVE"]],
  },
  {
    name: "mtls without mode (at mtls)",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: strict, namespace: shop }
      spec:
        mtls: {}
    `,
    want: [[5, 3, "spec.mtls.mode", "is required"]],
  },
  {
    name: "portLevelMtls: key 0, key above 65535, non-numeric key, scalar value",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: strict, namespace: shop }
      spec:
        portLevelMtls:
          0: { mode: STRICT }
          70000: { mode: STRICT }
          http: { mode: STRICT }
          8080: STRICT
    `,
    want: [
      [6, 5, "spec.portLevelMtls[0]", "key must be ≥ 1"],
      [7, 5, "spec.portLevelMtls[70000]", "key must be ≤ 65535"],
      [8, 5, "spec.portLevelMtls[http]", "keys must be whole numbers"],
      [9, 5, "spec.portLevelMtls[8080]", "must be a mapping"],
    ],
  },
  {
    name: "portLevelMtls: list where a mapping is expected",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: strict, namespace: shop }
      spec:
        portLevelMtls: [ { mode: STRICT } ]
    `,
    want: [[5, 3, "spec.portLevelMtls", "must be a mapping"]],
  },
  {
    name: "targetRef: upper-case name, port 0",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: strict, namespace: shop }
      spec:
        targetRef: { kind: Service, name: Orders, port: 0 }
        mtls: { mode: STRICT }
    `,
    want: [
      [5, 31, "spec.targetRef.name", "must be a DNS label"],
      [5, 45, "spec.targetRef.port", "must be ≥ 1"],
    ],
  },
]);

runTable("AuthorizationPolicy: invalid documents", [
  {
    name: "missing action (at spec)",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: AuthorizationPolicy
      metadata: { name: authz, namespace: shop }
      spec:
        rules: []
    `,
    want: [[4, 1, "spec.action", "is required"]],
  },
  {
    name: "lower-case action lists the tokens",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: AuthorizationPolicy
      metadata: { name: authz, namespace: shop }
      spec:
        action: allow
    `,
    want: [[5, 3, "spec.action", 'unknown value "allow"; expected one of ALLOW, DENY']],
  },
  {
    name: "principals: no scheme, inner star, duplicate, upper-case trust domain",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: AuthorizationPolicy
      metadata: { name: authz, namespace: shop }
      spec:
        action: ALLOW
        rules:
          - from:
              - source:
                  principals:
                    - cluster.local/ns/shop/sa/web
                    - "spiffe://cluster.local/ns/*/sa/web"
                    - spiffe://cluster.local/ns/shop/sa/web
                    - spiffe://cluster.local/ns/shop/sa/web
                    - spiffe://Cluster.Local/ns/shop/sa/web
    `,
    want: [
      [10, 17, "spec.rules[0].from[0].source.principals[0]", "must start with spiffe://"],
      [
        11,
        17,
        "spec.rules[0].from[0].source.principals[1]",
        "'*' is allowed only alone, at the start or at the end",
      ],
      [
        13,
        17,
        "spec.rules[0].from[0].source.principals[3]",
        'duplicate value "spiffe://cluster.local/ns/shop/sa/web"',
      ],
      [14, 17, "spec.rules[0].from[0].source.principals[4]", "trust domain must be lower-case"],
    ],
  },
  {
    name: "ipBlocks: prefix too long, bad address, bad v6 prefix; bad namespace; from without source",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: AuthorizationPolicy
      metadata: { name: authz, namespace: shop }
      spec:
        action: DENY
        rules:
          - from:
              - source:
                  ipBlocks: [10.0.0.0/33, 10.0.0.300, "::1/129"]
                  namespaces: [Shop]
              - {}
    `,
    want: [
      [9, 24, "spec.rules[0].from[0].source.ipBlocks[0]", "must have a prefix length of 0-32"],
      [9, 37, "spec.rules[0].from[0].source.ipBlocks[1]", "must be an IP address or CIDR block"],
      [9, 49, "spec.rules[0].from[0].source.ipBlocks[2]", "must have a prefix length of 0-128"],
      [10, 26, "spec.rules[0].from[0].source.namespaces[0]", "must be a DNS label"],
      [11, 11, "spec.rules[0].from[1].source", "is required"],
    ],
  },
  {
    name: "when: header and claim, no values, no key, empty claim",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: AuthorizationPolicy
      metadata: { name: authz, namespace: shop }
      spec:
        action: DENY
        rules:
          - when:
              - { header: x-tenant, claim: sub, values: [a] }
              - { header: x-tenant }
              - { values: [a] }
              - { claim: "", values: [a] }
    `,
    want: [
      [8, 31, "spec.rules[0].when[0].claim", "only one of header, claim may be set (header is already)"],
      [9, 11, "spec.rules[0].when[1]", "at least one of values, notValues must be set"],
      [10, 11, "spec.rules[0].when[2]", "one of header, claim is required"],
      [11, 13, "spec.rules[0].when[3].claim", "must be at least 1 character"],
    ],
  },
  {
    name: "to: bad paths, port 0, word for a port, lower-case method, to without operation",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: AuthorizationPolicy
      metadata: { name: authz, namespace: shop }
      spec:
        action: ALLOW
        rules:
          - to:
              - operation:
                  paths: ["api/*", "/a/*/b"]
                  ports: [0, http]
                  methods: [get]
              - {}
    `,
    want: [
      [
        9,
        21,
        "spec.rules[0].to[0].operation.paths[0]",
        "must be a path starting with '/', optionally with one",
      ],
      [
        9,
        30,
        "spec.rules[0].to[0].operation.paths[1]",
        "must be a path starting with '/', optionally with one",
      ],
      [10, 21, "spec.rules[0].to[0].operation.ports[0]", "must be ≥ 1"],
      [10, 24, "spec.rules[0].to[0].operation.ports[1]", "must be a whole number"],
      [11, 23, "spec.rules[0].to[0].operation.methods[0]", "must be an upper-case HTTP method"],
      [12, 11, "spec.rules[0].to[1].operation", "is required"],
    ],
  },
  {
    name: "rules: mapping where a list is expected",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: AuthorizationPolicy
      metadata: { name: authz, namespace: shop }
      spec:
        action: ALLOW
        rules: { from: [] }
    `,
    want: [[6, 3, "spec.rules", "must be a list"]],
  },
]);

runTable("RequestAuthentication: invalid documents", [
  {
    name: "empty jwtRules",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RequestAuthentication
      metadata: { name: jwt, namespace: shop }
      spec:
        jwtRules: []
    `,
    want: [[5, 3, "spec.jwtRules", "must have at least 1 item"]],
  },
  {
    name: "jwks and jwksUri both, and neither (at the rule)",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RequestAuthentication
      metadata: { name: jwt, namespace: shop }
      spec:
        jwtRules:
          - issuer: https://issuer.example.com
            jwks: '{"keys":[]}'
            jwksUri: https://issuer.example.com/jwks.json
          - issuer: https://other.example.com
    `,
    want: [
      [6, 7, "spec.jwtRules[0]", "exactly one of jwks, jwksUri must be set"],
      [9, 7, "spec.jwtRules[1]", "exactly one of jwks, jwksUri must be set"],
    ],
  },
  {
    name: "jwksUri: not a URL, not http(s); missing issuer",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RequestAuthentication
      metadata: { name: jwt, namespace: shop }
      spec:
        jwtRules:
          - issuer: a
            jwksUri: not a url
          - issuer: b
            jwksUri: ftp://b.example.com/jwks
          - jwksUri: https://c.example.com/jwks
    `,
    want: [
      [7, 7, "spec.jwtRules[0].jwksUri", "must be an absolute http or https URL"],
      [9, 7, "spec.jwtRules[1].jwksUri", "must be an http or https URL"],
      [10, 7, "spec.jwtRules[2].issuer", "is required"],
    ],
  },
  {
    name: "string for a list, header without name, bad header name, string for a bool",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RequestAuthentication
      metadata: { name: jwt, namespace: shop }
      spec:
        jwtRules:
          - issuer: a
            jwksUri: https://a.example.com/jwks
            audiences: orders
            fromHeaders:
              - prefix: "Bearer "
              - name: bad name
            forwardOriginalToken: "yes"
    `,
    want: [
      [8, 7, "spec.jwtRules[0].audiences", "must be a list"],
      [10, 11, "spec.jwtRules[0].fromHeaders[0].name", "is required"],
      [11, 11, "spec.jwtRules[0].fromHeaders[1].name", "must be an HTTP header name"],
      [12, 7, "spec.jwtRules[0].forwardOriginalToken", "must be true or false"],
    ],
  },
  {
    name: "number where a string is expected",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RequestAuthentication
      metadata: { name: jwt, namespace: shop }
      spec:
        jwtRules:
          - issuer: 42
            jwksUri: https://a.example.com/jwks
    `,
    want: [[6, 7, "spec.jwtRules[0].issuer", 'must be a string; quote the value ("42")']],
  },
  {
    name: "a jwksUri that fails to decode is not also reported as missing",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: RequestAuthentication
      metadata: { name: jwt, namespace: shop }
      spec:
        jwtRules:
          - issuer: a
            jwksUri: 42
    `,
    want: [[7, 7, "spec.jwtRules[0].jwksUri", 'must be a string; quote the value ("42")']],
  },
]);

runTable("Telemetry: invalid documents", [
  {
    name: "sampling above 100, string for a number, number for a bool",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Telemetry
      metadata: { name: telemetry, namespace: shop }
      spec:
        tracing:
          samplingPercentage: 101
        accessLog:
          samplingPercentage: "10%"
          enabled: 1
    `,
    want: [
      [6, 5, "spec.tracing.samplingPercentage", "must be ≤ 100"],
      [8, 5, "spec.accessLog.samplingPercentage", "must be a number"],
      [9, 5, "spec.accessLog.enabled", "must be true or false"],
    ],
  },
  {
    name: "customTags: bad key, two sources, no source, header without name, literal without value",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Telemetry
      metadata: { name: telemetry, namespace: shop }
      spec:
        tracing:
          customTags:
            "bad key!": { literal: { value: x } }
            both:
              header: { name: x-tenant }
              literal: { value: x }
            none: {}
            hdr: { header: { defaultValue: x } }
            lit: { literal: {} }
    `,
    want: [
      [7, 7, "spec.tracing.customTags[bad key!]", "key must be a label key"],
      [
        10,
        9,
        "spec.tracing.customTags[both].literal",
        "only one of header, literal may be set (header is already)",
      ],
      [11, 7, "spec.tracing.customTags[none]", "one of header, literal is required"],
      [12, 14, "spec.tracing.customTags[hdr].header.name", "is required"],
      [13, 14, "spec.tracing.customTags[lit].literal.value", "is required"],
    ],
  },
  {
    name: "accessLog fields: unknown name lists the known ones, duplicate",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Telemetry
      metadata: { name: telemetry, namespace: shop }
      spec:
        accessLog:
          fields: [method, status, method]
    `,
    want: [
      [
        6,
        22,
        "spec.accessLog.fields[1]",
        "must be one of start_time, method, path, authority, protocol, response_code, grpc_status, reason, duration_ms, bytes_received, bytes_sent, upstream_host, upstream_cluster, request_id, trace_id, source_identity, user_agent, x_forwarded_for, attempts",
      ],
      [6, 30, "spec.accessLog.fields[2]", 'duplicate value "method"'],
    ],
  },
  {
    name: "scalar where a mapping is expected; list where a number is expected",
    yaml: y`
      apiVersion: trellis.dev/v1
      kind: Telemetry
      metadata: { name: telemetry, namespace: shop }
      spec:
        accessLog: true
        tracing:
          samplingPercentage: [10]
    `,
    want: [
      [5, 3, "spec.accessLog", "must be a mapping"],
      [7, 5, "spec.tracing.samplingPercentage", "must be a number, not a list"],
    ],
  },
]);

// ---------------------------------------------------------------------------------------------
// 3. Every error of every document, at once

describe("multi-document files", () => {
  it("reports the errors of documents 1 and 3 together, sorted by position", () => {
    const text = y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: first, namespace: shop }
      spec: { mtls: { mode: strict } }
      ---
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: second, namespace: shop }
      spec: { mtls: { mode: STRICT } }
      ---
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: Third, namespace: shop }
      spec: { mtls: { mode: PERMISSIVE }, portLevelMtls: { 0: { mode: STRICT } } }
    `;
    const r = parsePolicies(text, FILE);
    assert.deepEqual(r.diagnostics.map(formatDiagnostic), [
      'shop/policy.yaml:4:17 spec.mtls.mode: unknown value "strict"; expected one of STRICT, PERMISSIVE',
      "shop/policy.yaml:13:13 metadata.name: must be a lower-case DNS name (letters, digits, '-' and '.')",
      "shop/policy.yaml:14:54 spec.portLevelMtls[0]: key must be ≥ 1",
    ]);
    assert.equal(r.documents, 3);
    assert.deepEqual(
      r.policies.map((p) => [p.message.metadata?.name, p.index, p.line]),
      [["second", 1, 6]],
    );
  });

  it("sorts decode errors and rule violations of one document by position", () => {
    // metadata after spec; spec.action (a rule violation) is found after the decode errors.
    const text = y`
      apiVersion: trellis.dev/v1
      kind: AuthorizationPolicy
      spec:
        rules:
          - to: [ { operation: { methods: [get] } } ]
      metadata: { name: Authz }
    `;
    expectDiagnostics(text, [
      [3, 1, "spec.action", "is required"],
      [5, 38, "spec.rules[0].to[0].operation.methods[0]", "must be an upper-case HTTP method"],
      [6, 13, "metadata.name", "must be a lower-case DNS name"],
    ]);
  });

  it("returns only the valid document, with a non-empty diagnostics list", () => {
    const text = y`
      apiVersion: trellis.dev/v1
      kind: Telemetry
      metadata: { name: valid, namespace: shop }
      spec: { tracing: { samplingPercentage: 10 } }
      ---
      apiVersion: trellis.dev/v1
      kind: Telemetry
      metadata: { name: invalid, namespace: shop }
      spec: { tracing: { samplingPercentage: 200 } }
    `;
    const r = parsePolicies(text, FILE);
    assert.deepEqual(r.diagnostics.map(formatDiagnostic), [
      "shop/policy.yaml:9:20 spec.tracing.samplingPercentage: must be ≤ 100",
    ]);
    assert.equal(r.documents, 2);
    assert.deepEqual(
      r.policies.map((p) => [p.info.kind, p.message.metadata?.name, p.index, p.line]),
      [["Telemetry", "valid", 0, 1]],
    );
  });

  it("a YAML syntax error in one document does not hide the others", () => {
    const text = y`
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: a, namespace: shop }
      spec: { mtls: { mode: STRICT } }
      ---
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: b, namespace: shop
      ---
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: c, namespace: shop }
      spec: { mtls: { mode: STRICT } }
    `;
    const r = parsePolicies(text, FILE);
    assert.deepEqual(
      r.diagnostics.map((d) => [d.line, d.col, d.path]),
      [[9, 1, ""]],
    );
    assert.equal(r.documents, 3);
    assert.deepEqual(
      r.policies.map((p) => p.message.metadata?.name),
      ["a", "c"],
    );
  });

  it("positions a missing field of a later document at that document's start", () => {
    const text = y`
      apiVersion: trellis.dev/v1
      kind: Telemetry
      metadata: { name: a, namespace: shop }
      spec: { accessLog: { enabled: true } }
      ---
      # the second document has no kind
      apiVersion: trellis.dev/v1
      metadata: { name: b, namespace: shop }
      spec: { accessLog: { enabled: true } }
    `;
    const r = parsePolicies(text, FILE);
    assert.deepEqual(r.diagnostics.map(formatDiagnostic), ["shop/policy.yaml:7:1 kind: is required"]);
    assert.equal(r.policies.length, 1);
  });

  it("does not count empty documents and comments", () => {
    const text = y`
      ---
      # nothing here
      ---
      apiVersion: trellis.dev/v1
      kind: PeerAuthentication
      metadata: { name: a, namespace: shop }
      spec: { mtls: { mode: STRICT } }
      ---
    `;
    const r = parsePolicies(text, FILE);
    assert.deepEqual(r.diagnostics, []);
    assert.equal(r.documents, 1);
    assert.deepEqual(
      r.policies.map((p) => [p.index, p.line]),
      [[1, 4]],
    );
    assert.deepEqual(parsePolicies("", FILE), { policies: [], diagnostics: [], documents: 0 });
  });
});
