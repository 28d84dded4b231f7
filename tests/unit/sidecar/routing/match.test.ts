/**
 * Rule matching as a caller sees it: which backend rule a request lands on for paths (exact,
 * segment-aware prefix, anchored regex), methods, headers (exact, prefix, regex, present, invert,
 * multi-valued), query parameters, first-match-wins and per-port rules.
 */
import assert from "node:assert/strict";
import type { IncomingHttpHeaders } from "node:http";
import { describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { HTTPRouteMatchSchema } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import { type CompiledRouteRuleSchema, RouteConfigSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { Protocol } from "@trellis/proto/gen/trellis/v1/service_pb";
import { applyRequestEdits } from "@trellis/sidecar/routing/header-edits";
import { normalizeAuthority } from "@trellis/sidecar/routing/host";
import { matchRule, parseQuery } from "@trellis/sidecar/routing/match";
import { normalizePath } from "@trellis/sidecar/routing/path";
import { compileRouteConfig, RouteIndex, servicePortFor } from "@trellis/sidecar/routing/route-table";
import { pickCluster } from "@trellis/sidecar/routing/weighted";

type MatchInit = MessageInitShape<typeof HTTPRouteMatchSchema>;
type CompiledRuleInit = MessageInitShape<typeof CompiledRouteRuleSchema>;

const ORIGIN = { kind: "HTTPRoute", namespace: "shop", name: "orders" };

function rule(name: string, port: number, matches: MatchInit[]): CompiledRuleInit {
  return {
    rule: { name, matches },
    clusters: [{ cluster: `${name}.shop:${port}`, weight: 1 }],
    origin: ORIGIN,
    port,
  };
}

function catchAll(port: number): CompiledRuleInit {
  return { rule: { name: `catch-${port}` }, clusters: [{ cluster: `orders.shop:${port}`, weight: 1 }], port };
}

const path = {
  exact: (value: string): MatchInit["path"] => ({ kind: { case: "exact", value } }),
  prefix: (value: string): MatchInit["path"] => ({ kind: { case: "prefix", value } }),
  regex: (value: string): MatchInit["path"] => ({ kind: { case: "regex", value } }),
};
const str = {
  exact: (value: string) => ({ kind: { case: "exact" as const, value } }),
  prefix: (value: string) => ({ kind: { case: "prefix" as const, value } }),
  regex: (value: string) => ({ kind: { case: "regex" as const, value } }),
  present: () => ({ kind: { case: "present" as const, value: true } }),
};

// The rules in config order, as the control plane merges them; 9090 rules come after 8080's.
const rc = create(RouteConfigSchema, {
  name: "orders.shop",
  service: "orders",
  namespace: "shop",
  domains: ["orders.shop", "orders.shop:8080", "orders.shop:9090"],
  ports: [
    { port: 8080, protocol: Protocol.HTTP },
    { port: 9090, protocol: Protocol.HTTP },
  ],
  rules: [
    rule("exact-health", 8080, [{ path: path.exact("/healthz") }]),
    rule("api-get", 8080, [{ path: path.prefix("/api"), method: "GET" }]),
    rule("regex-v", 8080, [{ path: path.regex("/v[0-9]+/items") }]),
    rule("hdr-exact", 8080, [{ headers: [{ name: "x-env", value: str.exact("canary") }] }]),
    rule("hdr-prefix", 8080, [{ headers: [{ name: "X-User", value: str.prefix("admin-") }] }]),
    rule("hdr-regex", 8080, [{ headers: [{ name: "x-ver", value: str.regex("v[12]") }] }]),
    rule("hdr-present", 8080, [{ headers: [{ name: "x-debug", value: str.present() }] }]),
    rule("hdr-invert", 8080, [
      { path: path.exact("/invert"), headers: [{ name: "x-tier", value: str.exact("gold"), invert: true }] },
    ]),
    rule("hdr-absent", 8080, [
      { path: path.exact("/absent"), headers: [{ name: "x-tier", value: str.present(), invert: true }] },
    ]),
    rule("hdr-all", 8080, [
      {
        path: path.exact("/all"),
        headers: [
          { name: "x-a", value: str.exact("1") },
          { name: "x-b", value: str.exact("2") },
        ],
      },
    ]),
    rule("query-exact", 8080, [
      { path: path.prefix("/search"), query: [{ name: "q", value: str.exact("1") }] },
    ]),
    rule("query-regex", 8080, [
      { path: path.prefix("/list"), query: [{ name: "page", value: str.regex("[0-9]+") }] },
    ]),
    rule("query-present", 8080, [
      { path: path.prefix("/flags"), query: [{ name: "flag", value: str.present() }] },
    ]),
    rule("any-of", 8080, [{ path: path.exact("/one") }, { path: path.exact("/two") }]),
    rule("all-ports-post", 0, [{ path: path.prefix("/submit"), method: "POST" }]),
    catchAll(8080),
    rule("only-9090", 9090, [{ path: path.prefix("/api") }]),
    catchAll(9090),
  ],
});
const compiled = compileRouteConfig(rc);
assert.ok("table" in compiled, "errors" in compiled ? compiled.errors.join("\n") : "");
const table = compiled.table;

describe("matchRule", () => {
  // [port, method, request-target, headers] → name of the rule that wins (undefined: no_route)
  const cases: Array<
    [port: number, method: string, target: string, headers: IncomingHttpHeaders, expected: string | undefined]
  > = [
    // exact path
    [8080, "GET", "/healthz", {}, "exact-health"],
    [8080, "GET", "/healthz/", {}, "catch-8080"],
    [8080, "GET", "/healthz/x", {}, "catch-8080"],
    [8080, "GET", "/./healthz", {}, "exact-health"], // matched after normalisation
    // segment-aware prefix + method
    [8080, "GET", "/api", {}, "api-get"],
    [8080, "GET", "/api/", {}, "api-get"],
    [8080, "GET", "/api/orders/42", {}, "api-get"],
    [8080, "GET", "/apix", {}, "catch-8080"],
    [8080, "GET", "/ap", {}, "catch-8080"],
    [8080, "GET", "/%61pi/x", {}, "api-get"],
    [8080, "GET", "/x/../api", {}, "api-get"],
    [8080, "POST", "/api", {}, "catch-8080"],
    [8080, "get", "/api", {}, "catch-8080"], // methods are case-sensitive (RFC 9110 §9.1)
    // anchored regex on the whole path
    [8080, "GET", "/v2/items", {}, "regex-v"],
    [8080, "GET", "/v10/items", {}, "regex-v"],
    [8080, "GET", "/v2/items/extra", {}, "catch-8080"],
    [8080, "GET", "/x/v2/items", {}, "catch-8080"],
    [8080, "GET", "/v/items", {}, "catch-8080"],
    // header exact / prefix / regex / present
    [8080, "GET", "/", { "x-env": "canary" }, "hdr-exact"],
    [8080, "GET", "/", { "x-env": "canary2" }, "catch-8080"],
    [8080, "GET", "/", { "x-env": "Canary" }, "catch-8080"],
    [8080, "GET", "/", { "x-user": "admin-bob" }, "hdr-prefix"],
    [8080, "GET", "/", { "x-user": "bob-admin-" }, "catch-8080"],
    [8080, "GET", "/", { "x-ver": "v2" }, "hdr-regex"],
    [8080, "GET", "/", { "x-ver": "v12" }, "catch-8080"], // anchored
    [8080, "GET", "/", { "x-ver": "v3" }, "catch-8080"],
    [8080, "GET", "/", { "x-debug": "" }, "hdr-present"],
    [8080, "GET", "/", { "x-debug": "1" }, "hdr-present"],
    // multi-valued headers are matched as their ", "-joined value
    [8080, "GET", "/", { "x-user": ["admin-1", "bob"] }, "hdr-prefix"],
    [8080, "GET", "/", { "x-user": ["bob", "admin-1"] }, "catch-8080"],
    [8080, "GET", "/", { "x-ver": ["v1", "v2"] }, "catch-8080"],
    [8080, "GET", "/", { "x-env": ["canary"] }, "hdr-exact"],
    // invert
    [8080, "GET", "/invert", {}, "hdr-invert"],
    [8080, "GET", "/invert", { "x-tier": "silver" }, "hdr-invert"],
    [8080, "GET", "/invert", { "x-tier": "gold" }, "catch-8080"],
    [8080, "GET", "/absent", {}, "hdr-absent"],
    [8080, "GET", "/absent", { "x-tier": "" }, "catch-8080"],
    // every condition of a match must hold
    [8080, "GET", "/all", { "x-a": "1", "x-b": "2" }, "hdr-all"],
    [8080, "GET", "/all", { "x-a": "1" }, "catch-8080"],
    [8080, "GET", "/all", { "x-a": "1", "x-b": "3" }, "catch-8080"],
    // query exact / regex / present
    [8080, "GET", "/search?q=1", {}, "query-exact"],
    [8080, "GET", "/search?a=b&q=1&c", {}, "query-exact"],
    [8080, "GET", "/search?q=%31", {}, "query-exact"], // values are decoded
    [8080, "GET", "/search?q=1&q=2", {}, "query-exact"], // first value counts
    [8080, "GET", "/search?q=2&q=1", {}, "catch-8080"],
    [8080, "GET", "/search?q=2", {}, "catch-8080"],
    [8080, "GET", "/search", {}, "catch-8080"],
    [8080, "GET", "/search?Q=1", {}, "catch-8080"], // names are case-sensitive
    [8080, "GET", "/list?page=12", {}, "query-regex"],
    [8080, "GET", "/list?page=1a", {}, "catch-8080"],
    [8080, "GET", "/flags?flag", {}, "query-present"],
    [8080, "GET", "/flags?flag=", {}, "query-present"],
    [8080, "GET", "/flags?x=1&flag=on", {}, "query-present"],
    [8080, "GET", "/flags?flags=1", {}, "catch-8080"],
    // any match of a rule may match
    [8080, "GET", "/one", {}, "any-of"],
    [8080, "GET", "/two", {}, "any-of"],
    [8080, "GET", "/three", {}, "catch-8080"],
    // first matching rule wins: api-get comes before hdr-exact
    [8080, "GET", "/api", { "x-env": "canary" }, "api-get"],
    [8080, "GET", "/healthz", { "x-debug": "1" }, "exact-health"],
    // port-specific rules vs port-0 rules
    [8080, "POST", "/submit", {}, "all-ports-post"],
    [9090, "POST", "/submit", {}, "all-ports-post"],
    [9090, "GET", "/api", {}, "only-9090"],
    [9090, "GET", "/healthz", {}, "catch-9090"], // 8080's rules do not apply on 9090
    [9090, "GET", "/", { "x-env": "canary" }, "catch-9090"],
    [7070, "POST", "/submit", {}, "all-ports-post"], // a port the table does not list
    [7070, "GET", "/submit", {}, undefined],
  ];
  for (const [port, method, target, headers, expected] of cases) {
    it(`${port} ${method} ${target} ${JSON.stringify(headers)} → ${expected ?? "no route"}`, () => {
      const normalised = normalizePath(target);
      assert.ok("path" in normalised);
      const matched = matchRule(table, port, method, normalised.path, headers, normalised.query);
      assert.equal(matched?.name, expected);
    });
  }

  it("returns the compiled rule itself, with its clusters and the original rule", () => {
    const matched = matchRule(table, 8080, "GET", "/api/x", {}, "");
    assert.ok(matched !== undefined);
    assert.ok(table.rules.includes(matched));
    assert.equal(matched.rule, rc.rules[1]?.rule);
    assert.deepEqual(matched.clusters, ["api-get.shop:8080"]);
    assert.equal(matched.origin?.name, "orders");
  });

  it("a table with no rules on a port routes nothing there", () => {
    const empty = compileRouteConfig(
      create(RouteConfigSchema, { name: "a.b", service: "a", namespace: "b", ports: [{ port: 80 }] }),
    );
    assert.ok("table" in empty);
    assert.equal(matchRule(empty.table, 80, "GET", "/", {}, ""), undefined);
  });
});

describe("parseQuery", () => {
  // query (without "?") → parameters, first value of each name
  const cases: Array<[string, Array<[string, string]>]> = [
    ["", []],
    ["a=1", [["a", "1"]]],
    [
      "a=1&b=2&a=3",
      [
        ["a", "1"],
        ["b", "2"],
      ],
    ],
    [
      "flag&empty=&=x",
      [
        ["flag", ""],
        ["empty", ""],
        ["", "x"],
      ],
    ],
    ["a=b=c", [["a", "b=c"]]],
    [
      "q=a+b&%6E%61me=caf%C3%A9",
      [
        ["q", "a b"],
        ["name", "café"],
      ],
    ],
    [
      "a=%ZZ&&b=%E9",
      [
        ["a", "%ZZ"],
        ["b", "%E9"],
      ],
    ], // malformed escape / invalid UTF-8 kept as written
  ];
  for (const [query, expected] of cases) {
    it(JSON.stringify(query), () => {
      assert.deepEqual([...parseQuery(query)], expected);
    });
  }
});

describe("routing a request end to end", () => {
  it("normalises, finds the table, the port, the rule, a cluster, and edits the headers", () => {
    const weighted = compileRouteConfig(
      create(RouteConfigSchema, {
        name: "orders.shop",
        service: "orders",
        namespace: "shop",
        domains: ["orders.shop", "orders.shop:8080"],
        ports: [{ port: 8080, protocol: Protocol.HTTP }],
        rules: [
          {
            rule: {
              matches: [{ path: path.prefix("/api"), method: "GET" }],
              headers: { request: { set: { "X-Route": "api" }, remove: ["x-internal"] } },
            },
            clusters: [
              { cluster: "orders-v1.shop:8080", weight: 90 },
              { cluster: "orders-v2.shop:8080", weight: 10 },
            ],
            port: 8080,
          },
          catchAll(8080),
        ],
      }),
    );
    assert.ok("table" in weighted);
    const index = new RouteIndex([weighted.table]);

    const authority = normalizeAuthority("Orders.Shop", 80);
    assert.ok(authority !== undefined);
    const found = index.lookup(authority.host, authority.port);
    assert.ok(found !== undefined);
    const port = servicePortFor(found, authority.port, 80);
    assert.equal(port, 8080, "no port named: the service's only HTTP port");
    const target = normalizePath("//api/./v1/../orders?id=7");
    assert.ok("path" in target);
    assert.equal(target.path, "/api/orders", "the path that is matched is the path that is forwarded");
    const headers: Record<string, string | string[] | undefined> = { "x-internal": "1", accept: "*/*" };
    const matched = matchRule(found, port, "GET", target.path, headers, target.query);
    assert.ok(matched !== undefined);
    assert.equal(
      pickCluster(matched, () => 0.95),
      "orders-v2.shop:8080",
    );
    applyRequestEdits(headers, matched.headerEdits);
    assert.deepEqual(headers, { accept: "*/*", "x-route": "api" });
  });
});
