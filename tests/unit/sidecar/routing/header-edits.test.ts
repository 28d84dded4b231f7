/**
 * HTTPRoute header edits as the backend and the caller see them: remove, then set, then add, on
 * lower-cased names; and edits that would corrupt a message refused when compiled.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { HeaderEditsSchema, type HeaderOperationsSchema } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import type { MutableHeaders } from "@trellis/sidecar/routing/header-edits";
import {
  applyRequestEdits,
  applyResponseEdits,
  compileHeaderEdits,
  NO_HEADER_EDITS,
} from "@trellis/sidecar/routing/header-edits";

type Ops = MessageInitShape<typeof HeaderOperationsSchema>;

function compileOk(request: Ops | undefined, response?: Ops) {
  const errors: string[] = [];
  const init: MessageInitShape<typeof HeaderEditsSchema> = {};
  if (request !== undefined) init.request = request;
  if (response !== undefined) init.response = response;
  const edits = compileHeaderEdits(create(HeaderEditsSchema, init), "rules[0].rule.headers", errors);
  assert.deepEqual(errors, []);
  return edits;
}

describe("applyRequestEdits / applyResponseEdits", () => {
  // [operations, headers before, headers after]
  const cases: Array<[string, Ops, MutableHeaders, MutableHeaders]> = [
    ["set creates", { set: { "x-route": "api" } }, {}, { "x-route": "api" }],
    [
      "set replaces, names lower-cased",
      { set: { "X-Env": "prod" } },
      { "x-env": "dev" },
      { "x-env": "prod" },
    ],
    ["set replaces every value", { set: { "x-a": "1" } }, { "x-a": ["2", "3"] }, { "x-a": "1" }],
    ["add creates", { add: { "x-tag": "a" } }, {}, { "x-tag": "a" }],
    ["add appends to one value", { add: { "X-Tag": "b" } }, { "x-tag": "a" }, { "x-tag": ["a", "b"] }],
    [
      "add appends to several",
      { add: { "x-tag": "c" } },
      { "x-tag": ["a", "b"] },
      { "x-tag": ["a", "b", "c"] },
    ],
    ["remove deletes", { remove: ["X-Internal"] }, { "x-internal": "1", keep: "y" }, { keep: "y" }],
    ["remove of an absent header is harmless", { remove: ["x-none"] }, { keep: "y" }, { keep: "y" }],
    [
      "remove, then set, then add",
      { remove: ["x-a"], set: { "x-a": "set" }, add: { "x-a": "added" } },
      { "x-a": "old" },
      { "x-a": ["set", "added"] },
    ],
    [
      "set-cookie values stay separate field lines",
      { add: { "set-cookie": "b=2" } },
      { "set-cookie": ["a=1"] },
      { "set-cookie": ["a=1", "b=2"] },
    ],
  ];
  for (const [what, ops, before, after] of cases) {
    it(`request: ${what}`, () => {
      const headers = structuredClone(before);
      applyRequestEdits(headers, compileOk(ops));
      assert.deepEqual(headers, after);
    });
    it(`response: ${what}`, () => {
      const headers = structuredClone(before);
      applyResponseEdits(headers, compileOk(undefined, ops));
      assert.deepEqual(headers, after);
    });
  }

  it("request edits leave responses alone and the reverse", () => {
    const edits = compileOk({ set: { "x-req": "1" } }, { set: { "x-res": "1" } });
    const req: MutableHeaders = {};
    const res: MutableHeaders = {};
    applyRequestEdits(req, edits);
    applyResponseEdits(res, edits);
    assert.deepEqual(req, { "x-req": "1" });
    assert.deepEqual(res, { "x-res": "1" });
  });

  it("never mutates an array it appends to (it may belong to the incoming message)", () => {
    const incoming = ["a"];
    const headers: MutableHeaders = { "x-tag": incoming };
    applyRequestEdits(headers, compileOk({ add: { "x-tag": "b" } }));
    assert.deepEqual(incoming, ["a"]);
    assert.deepEqual(headers["x-tag"], ["a", "b"]);
  });

  it("a rule without edits shares the empty edits", () => {
    const errors: string[] = [];
    assert.equal(compileHeaderEdits(undefined, "h", errors), NO_HEADER_EDITS);
    assert.equal(compileHeaderEdits(create(HeaderEditsSchema, {}), "h", errors), NO_HEADER_EDITS);
    assert.equal(NO_HEADER_EDITS.request.empty, true);
    const headers: MutableHeaders = { a: "1" };
    applyRequestEdits(headers, NO_HEADER_EDITS);
    assert.deepEqual(headers, { a: "1" });
  });
});

describe("compileHeaderEdits errors", () => {
  const cases: Array<[string, Ops, RegExp]> = [
    ["a name that is not a token", { set: { "x a": "1" } }, /request\.set\.x a: not a valid header name/],
    ["a pseudo-header", { remove: [":path"] }, /request\.remove\[0\]: not a valid header name/],
    [
      "CR/LF in a value",
      { add: { "x-a": "1\r\nx-b: 2" } },
      /request\.add\.x-a: value must not contain CR, LF or NUL/,
    ],
    ["NUL in a value", { set: { "x-a": "1\u0000" } }, /request\.set\.x-a: value must not contain/],
    [
      "transfer-encoding",
      { set: { "Transfer-Encoding": "chunked" } },
      /transfer-encoding is a hop-by-hop or framing/,
    ],
    ["connection", { add: { connection: "close" } }, /connection is a hop-by-hop or framing/],
    ["removing host", { remove: ["Host"] }, /request\.remove\[0\]: cannot remove host/],
    ["one name set twice", { set: { "X-A": "1", "x-a": "2" } }, /request\.set\.x-a: header set twice/],
  ];
  for (const [what, ops, pattern] of cases) {
    it(`refuses ${what}`, () => {
      const errors: string[] = [];
      compileHeaderEdits(create(HeaderEditsSchema, { request: ops }), "rules[0].rule.headers", errors);
      assert.ok(
        errors.some((e) => pattern.test(e) && e.startsWith("rules[0].rule.headers.request.")),
        errors.join("\n"),
      );
    });
  }
});
