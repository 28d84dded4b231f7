/**
 * The ring hash's per-request key: what each `hashOn` source extracts from a request, and the
 * cookie the sidecar makes up when a `ttl` says it should.
 */
import assert from "node:assert/strict";
import type { IncomingHttpHeaders } from "node:http";
import { describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { HashOnSchema } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { compileHashKey, cookieValue, newHashCookie } from "@trellis/sidecar/balancer/hash-key";

interface Req {
  headers?: IncomingHttpHeaders;
  query?: string;
  ip?: string;
}

const hashOn = (init: MessageInitShape<typeof HashOnSchema>) => create(HashOnSchema, init);

describe("compileHashKey", () => {
  const cases: Array<
    [name: string, on: MessageInitShape<typeof HashOnSchema>, req: Req, key: string | undefined]
  > = [
    [
      "a header",
      { source: { case: "header", value: "X-User" } },
      { headers: { "x-user": "alice" } },
      "alice",
    ],
    ["a missing header", { source: { case: "header", value: "x-user" } }, { headers: {} }, undefined],
    [
      "an empty header",
      { source: { case: "header", value: "x-user" } },
      { headers: { "x-user": "" } },
      undefined,
    ],
    [
      "an array-valued header",
      { source: { case: "header", value: "x-user" } },
      { headers: { "x-user": ["a", "b"] } },
      "a",
    ],
    [
      "a cookie among others",
      { source: { case: "cookie", value: { name: "sid" } } },
      { headers: { cookie: "theme=dark; sid=abc123;  lang=en" } },
      "abc123",
    ],
    [
      "a quoted cookie",
      { source: { case: "cookie", value: { name: "sid" } } },
      { headers: { cookie: 'sid="q v"' } },
      "q v",
    ],
    [
      "no prefix match on cookie names",
      { source: { case: "cookie", value: { name: "sid" } } },
      { headers: { cookie: "xsid=1; sidx=2" } },
      undefined,
    ],
    ["no cookie header", { source: { case: "cookie", value: { name: "sid" } } }, { headers: {} }, undefined],
    ["the source IP", { source: { case: "sourceIp", value: true } }, { ip: "10.1.2.3" }, "10.1.2.3"],
    [
      "an IPv4-mapped source IP",
      { source: { case: "sourceIp", value: true } },
      { ip: "::ffff:10.1.2.3" },
      "10.1.2.3",
    ],
    ["an IPv6 source IP", { source: { case: "sourceIp", value: true } }, { ip: "fd00::7" }, "fd00::7"],
    [
      "a query parameter",
      { source: { case: "queryParameter", value: "user" } },
      { query: "a=1&user=bob&user=eve" },
      "bob",
    ],
    [
      "a raw encoded value",
      { source: { case: "queryParameter", value: "u" } },
      { query: "u=a%40b" },
      "a%40b",
    ],
    [
      "a flag parameter",
      { source: { case: "queryParameter", value: "user" } },
      { query: "user&x=1" },
      undefined,
    ],
    ["no query", { source: { case: "queryParameter", value: "user" } }, {}, undefined],
  ];
  for (const [name, on, req, expected] of cases) {
    it(`${name} → ${JSON.stringify(expected)}`, () => {
      const source = compileHashKey(hashOn(on));
      assert.ok(source);
      assert.equal(source.key(req.headers ?? {}, req.query, req.ip), expected);
    });
  }

  it("has no source without hashOn, or with sourceIp false", () => {
    assert.equal(compileHashKey(undefined), undefined);
    assert.equal(compileHashKey(hashOn({})), undefined);
    assert.equal(compileHashKey(hashOn({ source: { case: "sourceIp", value: false } })), undefined);
  });

  it("describes its source", () => {
    assert.equal(
      compileHashKey(hashOn({ source: { case: "header", value: "X-User" } }))?.description,
      "header:x-user",
    );
  });
});

describe("generated hash cookies", () => {
  it("asks for a cookie only when a ttl is set, with its path (default /) and Max-Age", () => {
    const plain = compileHashKey(hashOn({ source: { case: "cookie", value: { name: "sid" } } }));
    assert.equal(plain?.generatedCookie, undefined);
    const withTtl = compileHashKey(
      hashOn({ source: { case: "cookie", value: { name: "sid", ttl: { seconds: 3600n } } } }),
    );
    assert.deepEqual(withTtl?.generatedCookie, { name: "sid", path: "/", maxAgeSeconds: 3600 });
    const withPath = compileHashKey(
      hashOn({ source: { case: "cookie", value: { name: "sid", ttl: { seconds: 60n }, path: "/app" } } }),
    );
    assert.equal(withPath?.generatedCookie?.path, "/app");
  });

  it("makes a 64-bit hex value that the next request's key extraction returns", () => {
    const source = compileHashKey(
      hashOn({ source: { case: "cookie", value: { name: "sid", ttl: { seconds: 60n } } } }),
    )!;
    let r = 0;
    const random = () => [0.25, 0.75][r++ % 2]!;
    const made = newHashCookie(source.generatedCookie!, random);
    assert.equal(made.value, "40000000c0000000");
    assert.equal(made.setCookie, "sid=40000000c0000000; Path=/; Max-Age=60; HttpOnly");
    const echoed = made.setCookie.split(";")[0]!;
    assert.equal(source.key({ cookie: `other=1; ${echoed}` }, undefined, undefined), made.value);
    assert.equal(cookieValue(echoed, "sid"), made.value);
  });
});
