/**
 * Compiling a RouteConfig into a route table: what the sidecar accepts, every reason it NACKs a
 * RouteConfig (all at once, with field paths and the route they came from), per-port rule buckets,
 * and finding a table by the request's authority.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { HTTPRouteRuleSchema } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import { type CompiledRouteRuleSchema, RouteConfigSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { Protocol } from "@trellis/proto/gen/trellis/v1/service_pb";
import { normalizeAuthority } from "@trellis/sidecar/routing/host";
import type { RouteTable } from "@trellis/sidecar/routing/route-table";
import {
  compileRouteConfig,
  PathMatchKind,
  RouteIndex,
  rulesForPort,
  servicePortFor,
} from "@trellis/sidecar/routing/route-table";

type RuleInit = MessageInitShape<typeof HTTPRouteRuleSchema>;
type CompiledRuleInit = MessageInitShape<typeof CompiledRouteRuleSchema>;

const ORIGIN = { kind: "HTTPRoute", namespace: "shop", name: "orders", generation: 3n };

/** A CompiledRouteRule as the control plane sends it: rule, clusters, origin, port. */
function compiled(
  port: number,
  rule: RuleInit,
  clusters: Array<[string, number]> = [["orders.shop:8080", 1]],
) {
  return {
    rule,
    clusters: clusters.map(([cluster, weight]) => ({ cluster, weight })),
    origin: ORIGIN,
    port,
  } satisfies CompiledRuleInit;
}

/** The implicit catch-all the control plane appends per port (no origin). */
function catchAll(port: number): CompiledRuleInit {
  return { rule: {}, clusters: [{ cluster: `orders.shop:${port}`, weight: 1 }], port };
}

interface RouteConfigExtra {
  name?: string;
  service?: string;
  namespace?: string;
  domains?: string[];
  ports?: Array<{ port: number; protocol: Protocol }>;
}

function routeConfig(rules: CompiledRuleInit[], extra: RouteConfigExtra = {}) {
  return create(RouteConfigSchema, {
    name: "orders.shop",
    service: "orders",
    namespace: "shop",
    domains: [
      "orders.shop",
      "orders.shop:8080",
      "orders.shop.svc.cluster.local",
      "orders.shop.svc.cluster.local:8080",
    ],
    ports: [{ port: 8080, protocol: Protocol.HTTP }],
    rules,
    ...extra,
  });
}

function compileOk(rc: ReturnType<typeof routeConfig>): RouteTable {
  const result = compileRouteConfig(rc);
  assert.ok(
    "table" in result,
    `expected a table, got ${JSON.stringify("errors" in result ? result.errors : "")}`,
  );
  return result.table;
}

function compileErrors(rc: ReturnType<typeof routeConfig>): readonly string[] {
  const result = compileRouteConfig(rc);
  assert.ok("errors" in result, "expected errors");
  return result.errors;
}

describe("compileRouteConfig: accepted", () => {
  it("keeps identity, domains, ports and every rule with its origin and weights", () => {
    const rc = routeConfig([
      compiled(8080, { name: "api", matches: [{ path: { kind: { case: "prefix", value: "/api" } } }] }, [
        ["orders-v1.shop:8080", 90],
        ["orders-v2.shop:8080", 10],
      ]),
      catchAll(8080),
    ]);
    const table = compileOk(rc);
    assert.equal(table.name, "orders.shop");
    assert.equal(table.service, "orders");
    assert.equal(table.namespace, "shop");
    assert.deepEqual(table.domains, rc.domains);
    assert.equal(table.defaultPort, 8080);
    assert.equal(table.source, rc);
    assert.equal(table.rules.length, 2);
    const [api, fallback] = table.rules;
    assert.ok(api !== undefined && fallback !== undefined);
    assert.equal(api.name, "api");
    assert.equal(api.index, 0);
    assert.equal(api.rule, rc.rules[0]?.rule, "later layers read timeout/retry/… from the original rule");
    assert.equal(api.origin?.name, "orders");
    assert.deepEqual(api.clusters, ["orders-v1.shop:8080", "orders-v2.shop:8080"]);
    assert.deepEqual(api.cumulative, [90, 100]);
    assert.equal(api.totalWeight, 100);
    assert.equal(fallback.origin, undefined);
    assert.equal(fallback.sole, "orders.shop:8080");
    assert.deepEqual(table.rulesByPort.get(8080), table.rules);
  });

  it("normalises path values the way request paths are normalised", () => {
    const table = compileOk(
      routeConfig([
        compiled(8080, {
          matches: [
            { path: { kind: { case: "exact", value: "/a/./b//c" } } },
            { path: { kind: { case: "prefix", value: "/%61pi/" } } },
            { path: { kind: { case: "prefix", value: "/" } } },
            { path: { kind: { case: "regex", value: "/v[0-9]+" } } },
          ],
        }),
      ]),
    );
    const paths = table.rules[0]?.matchers.map((m) => [m.path?.kind, m.path?.value]);
    assert.deepEqual(paths, [
      [PathMatchKind.EXACT, "/a/b/c"],
      [PathMatchKind.PREFIX, "/api"],
      [PathMatchKind.ANY, "/"],
      [PathMatchKind.REGEX, "/v[0-9]+"],
    ]);
  });

  it("lower-cases header names and keeps query names as written", () => {
    const table = compileOk(
      routeConfig([
        compiled(8080, {
          matches: [
            {
              headers: [{ name: "X-Canary", value: { kind: { case: "exact", value: "Yes" } } }],
              query: [{ name: "Debug", value: { kind: { case: "present", value: true } } }],
            },
          ],
        }),
      ]),
    );
    const m = table.rules[0]?.matchers[0];
    assert.equal(m?.headers[0]?.name, "x-canary");
    assert.equal(m?.headers[0]?.match.value, "Yes");
    assert.equal(m?.query[0]?.name, "Debug");
  });

  it("buckets rules per port in config order, with port-0 rules on every port", () => {
    const table = compileOk(
      routeConfig(
        [
          compiled(0, { name: "everywhere-first" }),
          compiled(8080, { name: "a" }),
          catchAll(8080),
          compiled(9090, { name: "b" }),
          compiled(0, { name: "everywhere-last" }),
          catchAll(9090),
        ],
        {
          ports: [
            { port: 8080, protocol: Protocol.HTTP },
            { port: 9090, protocol: Protocol.GRPC },
          ],
        },
      ),
    );
    const names = (port: number) => rulesForPort(table, port).map((r) => r.name || `catch-${r.port}`);
    assert.deepEqual(names(8080), ["everywhere-first", "a", "catch-8080", "everywhere-last"]);
    assert.deepEqual(names(9090), ["everywhere-first", "b", "everywhere-last", "catch-9090"]);
    assert.deepEqual(
      names(7070),
      ["everywhere-first", "everywhere-last"],
      "an unlisted port gets only port-0 rules",
    );
    assert.equal(table.defaultPort, undefined, "two HTTP ports: a request naming no port is ambiguous");
  });

  it("picks the only HTTP port as the default, and maps a request's port to the service port", () => {
    const table = compileOk(
      routeConfig([catchAll(8080), catchAll(5432)], {
        ports: [
          { port: 8080, protocol: Protocol.HTTP },
          { port: 5432, protocol: Protocol.TCP },
        ],
      }),
    );
    assert.equal(table.defaultPort, 8080);
    // [request port (after normalizeAuthority), scheme default] → service port
    const cases: Array<[number, number, number | undefined]> = [
      [8080, 80, 8080],
      [80, 80, 8080], // no port named: the only HTTP port
      [5432, 80, 5432],
      [9999, 80, undefined],
      [443, 443, 8080],
    ];
    for (const [port, schemeDefault, expected] of cases) {
      assert.equal(servicePortFor(table, port, schemeDefault), expected, `port ${port}`);
    }
  });
});

describe("compileRouteConfig: rejected (the NACK's reasons)", () => {
  const badRegex = { path: { kind: { case: "regex", value: "/(unclosed" } } } as const;
  // [what is wrong, the RouteConfig, error patterns that must all appear]
  const cases: Array<[string, ReturnType<typeof routeConfig>, RegExp[]]> = [
    [
      "a path regex that does not compile",
      routeConfig([compiled(8080, { matches: [badRegex] })]),
      [
        /^rules\[0\]\.rule\.matches\[0\]\.path\.regex: invalid regular expression "\/\(unclosed": .+ \[HTTPRoute shop\/orders\]$/,
      ],
    ],
    [
      "a header regex that does not compile (u flag: a lone brace is an error)",
      routeConfig([
        compiled(8080, {
          matches: [{ headers: [{ name: "x-v", value: { kind: { case: "regex", value: "a{" } } }] }],
        }),
      ]),
      [/^rules\[0\]\.rule\.matches\[0\]\.headers\[0\]\.value\.regex: invalid regular expression/],
    ],
    [
      "a query regex that does not compile",
      routeConfig([
        compiled(8080, {
          matches: [{ query: [{ name: "q", value: { kind: { case: "regex", value: "[" } } }] }],
        }),
      ]),
      [/^rules\[0\]\.rule\.matches\[0\]\.query\[0\]\.value\.regex: invalid regular expression/],
    ],
    [
      "weights summing to 0",
      routeConfig([
        compiled(8080, {}, [
          ["orders-v1.shop:8080", 0],
          ["orders-v2.shop:8080", 0],
        ]),
      ]),
      [/^rules\[0\]\.clusters: the weights sum to 0/],
    ],
    [
      "a rule with no clusters",
      routeConfig([compiled(8080, {}, [])]),
      [/^rules\[0\]\.clusters: a rule needs at least one cluster/],
    ],
    [
      "an empty cluster name",
      routeConfig([compiled(8080, {}, [["", 1]])]),
      [/^rules\[0\]\.clusters\[0\]\.cluster: must name a cluster/],
    ],
    [
      "a path match with no (or an unknown) kind",
      routeConfig([compiled(8080, { matches: [{ path: {} }] })]),
      [/^rules\[0\]\.rule\.matches\[0\]\.path: unknown or missing path match kind/],
    ],
    [
      "a header match with no value matcher",
      routeConfig([compiled(8080, { matches: [{ headers: [{ name: "x-a" }] }] })]),
      [/^rules\[0\]\.rule\.matches\[0\]\.headers\[0\]\.value: unknown or missing match kind/],
    ],
    [
      "a header match without a name, and a query match without a name",
      routeConfig([
        compiled(8080, {
          matches: [
            {
              headers: [{ name: "", value: { kind: { case: "exact", value: "x" } } }],
              query: [{ name: "", value: { kind: { case: "exact", value: "x" } } }],
            },
          ],
        }),
      ]),
      [/headers\[0\]\.name: must be set/, /query\[0\]\.name: must be set/],
    ],
    [
      "present: false",
      routeConfig([
        compiled(8080, {
          matches: [{ headers: [{ name: "x-a", value: { kind: { case: "present", value: false } } }] }],
        }),
      ]),
      [/headers\[0\]\.value\.present: must be true/],
    ],
    [
      "a path that normalisation refuses (it could never match)",
      routeConfig([compiled(8080, { matches: [{ path: { kind: { case: "prefix", value: "/a%2Fb" } } }] })]),
      [/path\.prefix: "\/a%2Fb" can never match: path contains an encoded slash/],
    ],
    [
      "a path value with a query",
      routeConfig([compiled(8080, { matches: [{ path: { kind: { case: "exact", value: "/a?b=1" } } }] })]),
      [/path\.exact: "\/a\?b=1" must not contain '\?'/],
    ],
    [
      "header edits that would break framing or carry CR/LF",
      routeConfig([
        compiled(8080, {
          headers: {
            request: { set: { "Content-Length": "0", "x-ok": "a\r\nb" }, remove: ["host"] },
            response: { add: { "bad name": "x" } },
          },
        }),
      ]),
      [
        /rules\[0\]\.rule\.headers\.request\.set\.Content-Length: content-length is a hop-by-hop or framing header/,
        /rules\[0\]\.rule\.headers\.request\.set\.x-ok: value must not contain CR, LF or NUL/,
        /rules\[0\]\.rule\.headers\.request\.remove\[0\]: cannot remove host/,
        /rules\[0\]\.rule\.headers\.response\.add\.bad name: not a valid header name/,
      ],
    ],
    [
      "a rule without its HTTPRouteRule",
      routeConfig([{ clusters: [{ cluster: "orders.shop:8080", weight: 1 }], port: 8080 }]),
      [/^rules\[0\]\.rule: must be set$/],
    ],
    [
      "a port out of range",
      routeConfig([compiled(70000, {})]),
      [/^rules\[0\]\.port: 70000 is not a port number/],
    ],
    [
      "a domain that is not a host name",
      routeConfig([catchAll(8080)], { domains: ["orders.shop", "bad host", "x:99999"] }),
      [/^domains\[1\]: "bad host" is not a host name/, /^domains\[2\]: "x:99999"/],
    ],
    [
      "no service or namespace",
      routeConfig([catchAll(8080)], { service: "", namespace: "" }),
      [/^service: must be set$/, /^namespace: must be set$/],
    ],
  ];
  for (const [what, rc, patterns] of cases) {
    it(`NACKs ${what}`, () => {
      const errors = compileErrors(rc);
      for (const p of patterns) {
        assert.ok(
          errors.some((e) => p.test(e)),
          `no error matches ${p}; got:\n${errors.join("\n")}`,
        );
      }
    });
  }

  it("reports every problem of every rule at once, each attributed to its route", () => {
    const errors = compileErrors(
      routeConfig([
        compiled(8080, { matches: [badRegex] }),
        catchAll(8080),
        compiled(8080, {}, [["orders.shop:8080", 0]]),
      ]),
    );
    assert.equal(errors.length, 2, errors.join("\n"));
    assert.match(errors[0] ?? "", /^rules\[0\]\..*\[HTTPRoute shop\/orders\]$/);
    assert.match(errors[1] ?? "", /^rules\[2\]\.clusters: the weights sum to 0.*\[HTTPRoute shop\/orders\]$/);
  });
});

describe("RouteIndex", () => {
  function table(service: string, namespace: string, domains: string[], ports = [8080]): RouteTable {
    return compileOk(
      routeConfig(
        ports.map((p) => catchAll(p)),
        {
          name: `${service}.${namespace}`,
          service,
          namespace,
          domains,
          ports: ports.map((port) => ({ port, protocol: Protocol.HTTP })),
        },
      ),
    );
  }

  const orders = table("orders", "shop", [
    "orders",
    "orders:8080",
    "orders.shop",
    "orders.shop:8080",
    "orders.shop.svc.cluster.local",
    "orders.shop.svc.cluster.local:8080",
    "api.example.com",
  ]);
  const web = table(
    "web",
    "front",
    ["web.front", "web.front:80", "*.example.com", "*.internal.example.com:8443"],
    [80],
  );
  const admin = table("admin", "ops", ["admin.ops", "admin.internal.example.com:8443"], [8443]);
  const index = new RouteIndex([orders, web, admin]);

  // [Host header] → table name (via normalizeAuthority with http's default port 80)
  const lookups: Array<[string, string | undefined]> = [
    ["orders.shop", "orders.shop"],
    ["orders.shop:8080", "orders.shop"],
    ["ORDERS.Shop.:8080", "orders.shop"],
    ["orders.shop:80", "orders.shop"], // explicit default port = no port
    ["orders.shop:9090", undefined], // a port the domains do not list
    ["orders", "orders.shop"],
    ["orders.shop.svc.cluster.local:8080", "orders.shop"],
    ["orders.shop.svc", "orders.shop"], // alias added for serviceNameForHost's search-path form
    ["orders.shop.svc:8080", "orders.shop"],
    ["web.front.svc", "web.front"],
    ["api.example.com", "orders.shop"], // exact beats the wildcard
    ["www.example.com", "web.front"], // wildcard
    ["a.b.example.com", "web.front"], // wildcard, several labels
    ["example.com", undefined], // a wildcard needs one more label
    ["www.example.com:8080", undefined],
    ["x.internal.example.com:8443", "web.front"], // longest wildcard suffix with its port
    ["admin.internal.example.com:8443", "admin.ops"], // exact beats the wildcard
    ["payments.shop", undefined],
  ];
  for (const [hostHeader, expected] of lookups) {
    it(`${JSON.stringify(hostHeader)} → ${expected ?? "no table"}`, () => {
      const authority = normalizeAuthority(hostHeader, 80);
      assert.ok(authority !== undefined);
      assert.equal(index.lookup(authority.host, authority.port)?.name, expected);
    });
  }

  it("looks up by RouteConfig name, and counts tables", () => {
    assert.equal(index.get("admin.ops"), admin);
    assert.equal(index.get("nope.ops"), undefined);
    assert.equal(index.size, 3);
    assert.deepEqual(index.conflicts, []);
  });

  it("uses the scheme's default port for domains without a port", () => {
    const https = new RouteIndex([orders], 443);
    assert.equal(https.lookup("orders.shop", 443)?.name, "orders.shop");
    assert.equal(https.lookup("orders.shop", 80), undefined);
    assert.equal(https.lookup("orders.shop")?.name, "orders.shop");
  });

  it("resolves a domain claimed twice deterministically and reports it", () => {
    const a = table("a", "x", ["shared.example.com", "a.x"]);
    const b = table("b", "x", ["shared.example.com", "b.x"]);
    for (const order of [
      [a, b],
      [b, a],
    ]) {
      const idx = new RouteIndex(order);
      assert.equal(idx.lookup("shared.example.com")?.name, "a.x");
      assert.equal(idx.conflicts.length, 1);
      assert.match(idx.conflicts[0] ?? "", /shared\.example\.com:80 of b\.x is already a\.x's/);
    }
  });
});
