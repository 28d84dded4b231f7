import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, equals } from "@bufbuild/protobuf";
import { canonicalize, resourceVersion } from "@trellis/control-plane/snapshot/version";
import type { ClusterLoadAssignment, RouteConfig } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { ClusterLoadAssignmentSchema, RouteConfigSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";

function cla(labels: Record<string, string>): ClusterLoadAssignment {
  return create(ClusterLoadAssignmentSchema, {
    cluster: "orders.shop:8080",
    endpoints: [{ proxyId: "a", address: "10.0.0.1", port: 15006, labels }],
  });
}

function routeWithHeaders(set: Record<string, string>): RouteConfig {
  return create(RouteConfigSchema, {
    name: "orders.shop",
    rules: [{ rule: { headers: { request: { set } } }, port: 8080 }],
  });
}

describe("resourceVersion", () => {
  it("is the first 16 hex characters of the SHA-256 of the encoding", () => {
    // An empty message encodes to no bytes: SHA-256("") = e3b0c442 98fc1c14 …
    assert.equal(
      resourceVersion(ClusterLoadAssignmentSchema, create(ClusterLoadAssignmentSchema)),
      "e3b0c44298fc1c14",
    );
  });

  it("ignores map insertion order, in maps inside lists", () => {
    const a = cla({ app: "orders", version: "v1", "10": "x", "9": "y" });
    const b = cla({ "9": "y", version: "v1", app: "orders", "10": "x" });
    assert.equal(
      resourceVersion(ClusterLoadAssignmentSchema, a),
      resourceVersion(ClusterLoadAssignmentSchema, b),
    );
  });

  it("ignores map insertion order, in maps several messages deep", () => {
    const a = routeWithHeaders({ "x-a": "1", "x-b": "2", "x-c": "3" });
    const b = routeWithHeaders({ "x-c": "3", "x-a": "1", "x-b": "2" });
    assert.equal(resourceVersion(RouteConfigSchema, a), resourceVersion(RouteConfigSchema, b));
  });

  const changes: [string, ClusterLoadAssignment][] = [
    ["a label value", cla({ app: "orders", version: "v2" })],
    ["a label key", cla({ app: "orders", release: "v1" })],
    ["an extra label", cla({ app: "orders", version: "v1", zone: "a" })],
  ];
  for (const [what, changed] of changes) {
    it(`changes with ${what}`, () => {
      const base = resourceVersion(ClusterLoadAssignmentSchema, cla({ app: "orders", version: "v1" }));
      assert.notEqual(resourceVersion(ClusterLoadAssignmentSchema, changed), base);
    });
  }
});

describe("canonicalize", () => {
  it("returns an equal copy with sorted map keys and leaves the input alone", () => {
    const input = routeWithHeaders({ "x-b": "2", "x-a": "1" });
    const out = canonicalize(RouteConfigSchema, input);
    assert.ok(equals(RouteConfigSchema, out, input));
    assert.notEqual(out, input);
    assert.deepEqual(Object.keys(out.rules[0]?.rule?.headers?.request?.set ?? {}), ["x-a", "x-b"]);
    assert.deepEqual(Object.keys(input.rules[0]?.rule?.headers?.request?.set ?? {}), ["x-b", "x-a"]);
  });
});
