/**
 * Request-path normalisation: what a route matches and what the backend receives are the same
 * path, and ambiguous paths are refused (400) instead of guessed at.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isNormalPath, normalizePath } from "@trellis/sidecar/routing/path";

describe("normalizePath", () => {
  // raw request-target → [normalised path, query kept verbatim]
  const normalised: Array<[raw: string, path: string, query: string]> = [
    ["/", "/", ""],
    ["/api", "/api", ""],
    ["/api/v1/users/", "/api/v1/users/", ""],
    // RFC 3986 §5.2.4 dot-segments
    ["/a/../b", "/b", ""],
    ["/a/./b/", "/a/b/", ""],
    ["/a/b/..", "/a/", ""],
    ["/a/.", "/a/", ""],
    ["/.", "/", ""],
    ["/..", "/", ""],
    ["/../../x", "/x", ""],
    ["/a/b/../../../c", "/c", ""],
    // not dot-segments: ordinary names that contain dots
    ["/a/..b/.c/...", "/a/..b/.c/...", ""],
    ["/.well-known/acme", "/.well-known/acme", ""],
    // duplicate slashes merged, trailing slash kept
    ["//b", "/b", ""],
    ["/a///b//", "/a/b/", ""],
    ["//", "/", ""],
    // empty segments count in dot removal, then slashes merge (Envoy: normalize_path + merge_slashes)
    ["/a//../b", "/a/b", ""],
    // RFC 3986 §6.2.2.2: unreserved escapes decoded; §6.2.2.1: other escapes upper-cased
    ["/%61pi", "/api", ""],
    ["/%7euser", "/~user", ""],
    ["/%41%5a%30%2D%5F%2e", "/AZ0-_.", ""],
    ["/caf%c3%a9", "/caf%C3%A9", ""],
    ["/a%20b", "/a%20b", ""],
    ["/a%25b", "/a%25b", ""],
    ["/a%3fb", "/a%3Fb", ""],
    // decoding happens before dot removal: encoded dot-segments cannot smuggle a traversal
    ["/%2e%2e/etc/passwd", "/etc/passwd", ""],
    ["/static/%2E%2E/admin", "/admin", ""],
    ["/a/%2e/b", "/a/b", ""],
    // the query is split at the first "?" and kept verbatim, escapes and slashes included
    ["/a?x=1&y=%2F", "/a", "x=1&y=%2F"],
    ["/a/../b?q=/../%2f", "/b", "q=/../%2f"],
    ["/a?b?c", "/a", "b?c"],
    ["/?", "/", ""],
    ["/search?q=a+b&empty=", "/search", "q=a+b&empty="],
  ];
  for (const [raw, path, query] of normalised) {
    it(`${JSON.stringify(raw)} → ${JSON.stringify(path)}`, () => {
      assert.deepEqual(normalizePath(raw), { path, query });
    });
  }

  it("is idempotent: a normalised path normalises to itself, on the fast path", () => {
    for (const [raw] of normalised) {
      const once = normalizePath(raw);
      assert.ok("path" in once, raw);
      assert.deepEqual(normalizePath(once.path), { path: once.path, query: "" }, raw);
      // Decoded unreserved characters never leave a "%", "//" or dot-segment behind.
      assert.ok(isNormalPath(once.path) || once.path.includes("%"), raw);
    }
  });

  // raw request-target → the refusal reason (pattern)
  const refused: Array<[raw: string, reason: RegExp]> = [
    ["", /must start with '\/'/],
    ["api/x", /must start with '\/'/],
    ["*", /must start with '\/'/],
    ["http://orders.shop/a", /must start with '\/'/],
    ["?a=1", /must start with '\/'/],
    ["/a\\b", /backslash/],
    ["/a%5cb", /encoded backslash/],
    ["/a%5Cb", /encoded backslash/],
    ["/a%2fb", /encoded slash/],
    ["/a%2Fb", /encoded slash/],
    ["/..%2f..%2fetc", /encoded slash/],
    ["/a%00", /encoded NUL/],
    ["/a\u0000b", /NUL/],
    ["/a\tb", /control character/],
    ["/a\r\nHost: evil", /control character/],
    ["/a\u007fb", /control character/],
    ["/a b", /space/],
    ["/a%", /malformed percent-encoding/],
    ["/a%2", /malformed percent-encoding/],
    ["/a%zz", /malformed percent-encoding/],
    ["/a%2?x", /malformed percent-encoding/],
    ["/a#frag", /fragment/],
    ["/a?x#frag", /fragment/],
    ["/a?x=\r\nX-Injected: 1", /query contains a control character/],
    ["/a?x=1 HTTP/1.1", /query contains a control character or space/],
  ];
  for (const [raw, reason] of refused) {
    it(`refuses ${JSON.stringify(raw)}`, () => {
      const result = normalizePath(raw);
      assert.ok("error" in result, `expected a refusal, got ${JSON.stringify(result)}`);
      assert.match(result.error, reason);
    });
  }
});

describe("normalizePath fast path", () => {
  // JavaScript cannot observe string identity, so the test asserts the fast-path predicate that
  // normalizePath uses to return its input untouched, and that the value is unchanged.
  const alreadyNormal = ["/", "/api", "/api/v1/users/42", "/a/", "/a/..b/.c", "/.well-known/x", "/caf\u00e9"];
  for (const raw of alreadyNormal) {
    it(`${JSON.stringify(raw)} takes the fast path and comes back as is`, () => {
      assert.equal(isNormalPath(raw), true);
      const result = normalizePath(raw);
      assert.ok("path" in result);
      assert.equal(result.path, raw);
      assert.equal(result.query, "");
    });
  }

  it("with a query, only the path part is examined and returned", () => {
    const raw = "/api/items?filter=a/../b&x=%2F";
    assert.equal(isNormalPath(raw, raw.indexOf("?")), true);
    assert.deepEqual(normalizePath(raw), { path: "/api/items", query: "filter=a/../b&x=%2F" });
  });

  const needsWork = ["//a", "/a//b", "/a/./b", "/a/../b", "/a/.", "/a/..", "/%61", "/a%C3%A9"];
  for (const raw of needsWork) {
    it(`${JSON.stringify(raw)} does not take the fast path`, () => {
      assert.equal(isNormalPath(raw), false);
    });
  }
});
