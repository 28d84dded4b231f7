/**
 * Header hygiene at every hop: which headers are forwarded (hop-by-hop and Connection-named ones
 * never), which requests are refused before anything is proxied, and the headers the proxy adds
 * (x-forwarded-for, x-request-id).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  appendForwardedFor,
  checkRequestHeaders,
  ensureRequestId,
  forwardableFromObject,
  forwardableHeaders,
  forwardableResponseDistinct,
  forwardableResponseHeaders,
  type HeaderMap,
  headerTokens,
} from "@trellis/sidecar/proxy/headers";

describe("forwardableHeaders", () => {
  // [what, distinct headers in (lower-case name → values), keepUpgrade, expected out]
  const table: Array<[string, Record<string, string[]>, boolean, HeaderMap]> = [
    [
      "end-to-end headers pass, duplicates as arrays in order",
      { accept: ["a/b"], "x-dup": ["one", "two, three"], "set-cookie": ["a=1", "b=2"] },
      false,
      { accept: "a/b", "x-dup": ["one", "two, three"], "set-cookie": ["a=1", "b=2"] },
    ],
    [
      "every fixed hop-by-hop header is dropped",
      {
        connection: ["keep-alive"],
        "keep-alive": ["timeout=5"],
        "proxy-connection": ["keep-alive"],
        "transfer-encoding": ["chunked"],
        upgrade: ["h2c"],
        "http2-settings": ["AAMAAABkAARAAAAAAAIAAAAA"],
        "x-kept": ["yes"],
      },
      false,
      { "x-kept": "yes" },
    ],
    [
      "Connection: close, x-secret drops x-secret",
      { connection: ["close, x-secret"], "x-secret": ["s"], "x-kept": ["yes"] },
      false,
      { "x-kept": "yes" },
    ],
    [
      "Connection tokens: any case, spaces, empty elements, several Connection lines",
      {
        connection: [" , X-One ,,x-TWO", "x-three"],
        "x-one": ["1"],
        "x-two": ["2"],
        "x-three": ["3"],
        "x-four": ["4"],
      },
      false,
      { "x-four": "4" },
    ],
    ["TE: trailers is kept (gRPC needs it)", { te: ["trailers"] }, false, { te: "trailers" }],
    [
      "TE: trailers among other codings becomes just trailers",
      { te: ["deflate;q=0.5, Trailers"] },
      false,
      { te: "trailers" },
    ],
    ["TE without trailers is dropped", { te: ["gzip, deflate"] }, false, {}],
    ["TE: a token merely containing 'trailers' is not trailers", { te: ["x-trailers"] }, false, {}],
    ["Upgrade is kept when an upgrade happens", { upgrade: ["websocket"] }, true, { upgrade: "websocket" }],
    [
      "host is dropped (the next hop gets the authority)",
      { host: ["orders.shop"], a: ["1"] },
      false,
      { a: "1" },
    ],
    [
      "pseudo-headers are dropped",
      { ":method": ["GET"], ":path": ["/"], ":authority": ["x"], a: ["1"] },
      false,
      { a: "1" },
    ],
  ];
  for (const [what, input, keepUpgrade, expected] of table) {
    it(what, () => {
      assert.deepEqual(forwardableHeaders(input, keepUpgrade), expected);
    });
  }

  it("does not modify its input", () => {
    const input = { connection: ["x-a"], "x-a": ["1"], b: ["2"] };
    const copy = structuredClone(input);
    forwardableHeaders(input);
    assert.deepEqual(input, copy);
  });
});

describe("forwardableFromObject / forwardableResponseHeaders", () => {
  it("takes Node's header objects (arrays for repeated fields) and strips the same headers", () => {
    assert.deepEqual(
      forwardableFromObject({
        connection: "keep-alive, x-hop",
        "x-hop": "1",
        "set-cookie": ["a=1", "b=2"],
        "content-type": "text/plain",
        "transfer-encoding": "chunked",
      }),
      { "set-cookie": ["a=1", "b=2"], "content-type": "text/plain" },
    );
  });

  it("a response's TE (a request-only field) never goes downstream, trailers or not", () => {
    assert.deepEqual(forwardableResponseHeaders({ te: "trailers", "x-a": "1" }), { "x-a": "1" });
    assert.deepEqual(
      forwardableResponseDistinct({ te: ["trailers"], connection: ["x-b"], "x-b": ["2"] }),
      {},
    );
  });
});

describe("headerTokens", () => {
  const table: Array<[string[] | undefined, string[] | undefined]> = [
    [undefined, undefined],
    [[""], undefined],
    [[" , ,"], undefined],
    [["Close"], ["close"]],
    [
      ["keep-alive, Upgrade", "HTTP2-Settings"],
      ["keep-alive", "upgrade", "http2-settings"],
    ],
    [["trailers;q=1, deflate ; q=0.5"], ["trailers", "deflate"]],
  ];
  for (const [input, expected] of table) {
    it(`${JSON.stringify(input)} → ${JSON.stringify(expected)}`, () => {
      const got = headerTokens(input);
      assert.deepEqual(got === undefined ? undefined : [...got], expected);
    });
  }
});

describe("checkRequestHeaders", () => {
  const h11 = { httpVersionMajor: 1, httpVersionMinor: 1, method: "GET" };
  const h10 = { httpVersionMajor: 1, httpVersionMinor: 0, method: "GET" };
  const h2 = { httpVersionMajor: 2, httpVersionMinor: 0, method: "GET" };
  const connect = { httpVersionMajor: 1, httpVersionMinor: 1, method: "CONNECT" };
  const many = (n: number) => Array.from({ length: n }, (_, i) => [`x-h${i}`, "v"]).flat();
  // [what, raw header lines, request line, limit, expected status or undefined (accepted)]
  const table: Array<[string, string[], typeof h11, number, 400 | 431 | undefined]> = [
    ["a plain request", ["Host", "a", "Accept", "*/*"], h11, 100, undefined],
    ["exactly the header limit", ["Host", "a", ...many(99)], h11, 100, undefined],
    ["one over the header limit → 431", ["Host", "a", ...many(100)], h11, 100, 431],
    ["3,000 headers → 431", ["Host", "a", ...many(3000)], h11, 100, 431],
    [
      "HTTP/2 pseudo-headers do not count against the limit",
      [":method", "GET", ":path", "/", ":scheme", "http", ":authority", "a", ...many(100)],
      h2,
      100,
      undefined,
    ],
    ["HTTP/1.1 without Host → 400", ["Accept", "*/*"], h11, 100, 400],
    ["HTTP/1.0 without Host is allowed", ["Accept", "*/*"], h10, 100, undefined],
    ["CONNECT without Host is allowed (the target is the request-target)", [], connect, 100, undefined],
    ["HTTP/2 without Host is allowed (:authority)", [":authority", "a"], h2, 100, undefined],
    ["two Host headers → 400", ["Host", "a", "host", "b"], h11, 100, 400],
    ["two Host headers on CONNECT → 400", ["Host", "a", "HOST", "a"], connect, 100, 400],
    [
      "Connection naming a hop-by-hop field is fine",
      ["Host", "a", "Connection", "close, x-secret"],
      h11,
      100,
      undefined,
    ],
    ["Connection naming Content-Length → 400", ["Host", "a", "Connection", "Content-Length"], h11, 100, 400],
    [
      "Connection naming Transfer-Encoding → 400",
      ["Host", "a", "connection", "x, TRANSFER-ENCODING"],
      h11,
      100,
      400,
    ],
    [
      "Connection naming Host → 400",
      ["Host", "a", "Connection", "keep-alive", "Connection", "host"],
      h11,
      100,
      400,
    ],
    ["Connection naming Host over HTTP/2 → 400", [":authority", "a", "connection", "host"], h2, 100, 400],
    [
      "Transfer-Encoding: chunked is fine",
      ["Host", "a", "Transfer-Encoding", "Chunked"],
      h11,
      100,
      undefined,
    ],
    ["Transfer-Encoding: identity → 400", ["Host", "a", "Transfer-Encoding", "identity"], h11, 100, 400],
    [
      "Transfer-Encoding: gzip, chunked → 400",
      ["Host", "a", "Transfer-Encoding", "gzip, chunked"],
      h11,
      100,
      400,
    ],
    [
      "two Transfer-Encoding lines → 400",
      ["Host", "a", "Transfer-Encoding", "chunked", "Transfer-Encoding", "chunked"],
      h11,
      100,
      400,
    ],
  ];
  for (const [what, raw, line, limit, expected] of table) {
    it(what, () => {
      assert.equal(checkRequestHeaders(raw, line, limit)?.status, expected);
    });
  }

  it("says why, naming the limit or the field", () => {
    assert.match(checkRequestHeaders(["Host", "a", ...many(101)], h11, 100)?.message ?? "", /100/);
    assert.match(
      checkRequestHeaders(["Host", "a", "Connection", "content-length"], h11, 100)?.message ?? "",
      /content-length/,
    );
  });
});

describe("appendForwardedFor", () => {
  const table: Array<[string, HeaderMap, string | undefined, HeaderMap]> = [
    ["absent → the peer", {}, "127.0.0.1", { "x-forwarded-for": "127.0.0.1" }],
    [
      "present → the peer appended",
      { "x-forwarded-for": "203.0.113.9" },
      "10.0.0.2",
      { "x-forwarded-for": "203.0.113.9, 10.0.0.2" },
    ],
    [
      "several lines → joined, then appended",
      { "x-forwarded-for": ["203.0.113.9", "198.51.100.1"] },
      "10.0.0.2",
      { "x-forwarded-for": "203.0.113.9, 198.51.100.1, 10.0.0.2" },
    ],
    ["IPv4-mapped IPv6 peer → the IPv4 address", {}, "::ffff:10.1.2.3", { "x-forwarded-for": "10.1.2.3" }],
    ["IPv6 peer as is", {}, "::1", { "x-forwarded-for": "::1" }],
    ["unknown peer → unchanged", { "x-forwarded-for": "a" }, undefined, { "x-forwarded-for": "a" }],
  ];
  for (const [what, before, peer, expected] of table) {
    it(what, () => {
      const h = { ...before };
      appendForwardedFor(h, peer);
      assert.deepEqual(h, expected);
    });
  }
});

describe("ensureRequestId", () => {
  it("adds a unique id when absent and returns it", () => {
    const a: HeaderMap = {};
    const b: HeaderMap = {};
    const ida = ensureRequestId(a);
    const idb = ensureRequestId(b);
    assert.equal(a["x-request-id"], ida);
    assert.equal(b["x-request-id"], idb);
    assert.ok(ida.length > 0);
    assert.notEqual(ida, idb);
  });

  it("keeps one that is present (the first of several)", () => {
    const one: HeaderMap = { "x-request-id": "client-1" };
    assert.equal(ensureRequestId(one), "client-1");
    assert.deepEqual(one, { "x-request-id": "client-1" });
    const two: HeaderMap = { "x-request-id": ["first", "second"] };
    assert.equal(ensureRequestId(two), "first");
    assert.deepEqual(two, { "x-request-id": ["first", "second"] });
  });
});
