import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import {
  DEFAULT_TRUST_DOMAIN,
  formatWorkloadId,
  matchPrincipal,
  parseWorkloadId,
  principalPatternProblem,
  spiffeIdProblem,
  trustDomainProblem,
} from "@trellis/proto/spiffe";

const longTd = "a".repeat(256);
const longId = `spiffe://td/${"a/".repeat(1024)}a`; // 2061 bytes

describe("spiffeIdProblem", () => {
  const valid = [
    "spiffe://cluster.local/ns/default/sa/frontend",
    "spiffe://example.org",
    "spiffe://my_td-1.example/Ns/A.b-c_d/x",
    "spiffe://td/a/..b/c.",
    `spiffe://${"a".repeat(255)}/x`,
    `spiffe://td/${"a".repeat(2048 - "spiffe://td/".length)}`,
  ];
  for (const id of valid) {
    it(`accepts ${id.length > 80 ? `${id.slice(0, 40)}… (${id.length} bytes)` : id}`, () => {
      assert.equal(spiffeIdProblem(id), undefined);
    });
  }

  const invalid: Array<[string, RegExp]> = [
    ["", /^must start with spiffe:\/\/$/],
    ["http://cluster.local/ns/a/sa/b", /^must start with spiffe:\/\/$/],
    ["cluster.local/ns/a/sa/b", /^must start with spiffe:\/\/$/],
    ["SPIFFE://cluster.local/ns/a", /^scheme must be lower-case/],
    ["spiffe:/cluster.local/ns/a", /^must start with spiffe:\/\/$/],
    ["spiffe://", /^trust domain must not be empty$/],
    ["spiffe:///ns/a", /^trust domain must not be empty$/],
    ["spiffe://Cluster.Local/ns/a", /^trust domain must be lower-case/],
    ["spiffe://cluster.local:8443/ns/a", /^trust domain must not contain a port$/],
    ["spiffe://user@cluster.local/ns/a", /^trust domain must not contain userinfo/],
    ["spiffe://clus%74er/ns/a", /^trust domain has invalid character '%'/],
    [`spiffe://${longTd}/ns/a`, /^trust domain must be at most 255 characters \(got 256\)$/],
    ["spiffe://td/ns/a/", /^trailing slash is not allowed$/],
    ["spiffe://td/", /^trailing slash is not allowed$/],
    ["spiffe://td//a", /^path segments must not be empty$/],
    ["spiffe://td/ns/../sa/b", /^path segment '\.\.' is not allowed$/],
    ["spiffe://td/./a", /^path segment '\.' is not allowed$/],
    ["spiffe://td/ns/a b", /^path segment 'a b' has invalid character ' ' \(space\)/],
    ["spiffe://td/ns/a%20b", /^path segment 'a%20b' has invalid character '%'/],
    ["spiffe://td/ns/é", /^path segment 'é' has invalid character 'é'/],
    ["spiffe://td/ns/a?x=1", /^query is not allowed$/],
    ["spiffe://td/ns/a#frag", /^fragment is not allowed$/],
    [longId, /^must be at most 2048 bytes \(got 2061\)$/],
  ];
  for (const [id, pattern] of invalid) {
    it(`rejects ${JSON.stringify(id.length > 60 ? `${id.slice(0, 40)}…` : id)} with ${pattern}`, () => {
      const problem = spiffeIdProblem(id);
      assert.ok(problem !== undefined, "expected a problem");
      assert.match(problem, pattern);
    });
  }
});

describe("trustDomainProblem", () => {
  it("accepts the default and typical names", () => {
    assert.equal(trustDomainProblem(DEFAULT_TRUST_DOMAIN), undefined);
    assert.equal(trustDomainProblem("prod_eu-1.example.com"), undefined);
  });
  it("names what is wrong", () => {
    assert.equal(trustDomainProblem(""), "trust domain must not be empty");
    assert.equal(trustDomainProblem("td:80"), "trust domain must not contain a port");
    assert.match(trustDomainProblem("TD") ?? "", /lower-case/);
    assert.match(trustDomainProblem("a/b") ?? "", /invalid character '\/'/);
  });
});

describe("principalPatternProblem", () => {
  const valid = [
    "*",
    "spiffe://cluster.local/ns/default/sa/frontend",
    "spiffe://cluster.local/ns/prod/*",
    "spiffe://cluster.local/ns/prod/sa/web-*",
    "spiffe://cluster.local/*",
    "spiffe://cluster.*",
    "spiffe://*",
    "*/sa/frontend",
    "*/ns/prod/sa/frontend",
    "*-frontend",
    "*.local/ns/a/sa/b",
  ];
  for (const p of valid) {
    it(`accepts ${p}`, () => assert.equal(principalPatternProblem(p), undefined));
  }

  const invalid: Array<[string, RegExp]> = [
    ["", /^must not be empty$/],
    ["**", /^only one '\*' is allowed$/],
    ["*/ns/*", /^only one '\*' is allowed$/],
    ["spiffe://td/ns/*/sa/a", /^'\*' is allowed only alone, at the start or at the end$/],
    ["frontend", /^must start with spiffe:\/\/$/],
    ["cluster.local/ns/*", /^must start with spiffe:\/\/$/],
    ["SPIFFE://td/*", /^scheme must be lower-case/],
    ["spiffe://TD/*", /^trust domain must be lower-case/],
    ["spiffe://td:80/*", /^trust domain must not contain a port$/],
    ["spiffe://td/../*", /^path segment '\.\.' is not allowed$/],
    ["spiffe://td//*", /^path segments must not be empty$/],
    ["spiffe://td/ns/a b*", /invalid character ' '/],
    ["*/sa/", /^trailing slash is not allowed$/],
    ["*/../sa/a", /^path segment '\.\.' is not allowed$/],
    ["*//sa", /^path segments must not be empty$/],
    ["*spiffe://td/ns/a", /must not contain a scheme/],
    ["*/sa/a?b", /^query is not allowed$/],
    ["spiffe://td/ns/a/", /^trailing slash is not allowed$/],
  ];
  for (const [p, pattern] of invalid) {
    it(`rejects ${JSON.stringify(p)} with ${pattern}`, () => {
      const problem = principalPatternProblem(p);
      assert.ok(problem !== undefined, "expected a problem");
      assert.match(problem, pattern);
    });
  }
});

describe("matchPrincipal", () => {
  const id = "spiffe://cluster.local/ns/prod/sa/frontend";
  const cases: Array<[string, string, boolean]> = [
    ["*", id, true],
    ["*", "", false],
    [id, id, true],
    [id, `${id}2`, false],
    ["spiffe://cluster.local/ns/prod/sa/Frontend", id, false],
    ["spiffe://cluster.local/ns/prod/*", id, true],
    ["spiffe://cluster.local/ns/prod/*", "spiffe://cluster.local/ns/production/sa/frontend", false],
    ["spiffe://cluster.local/ns/prod*", "spiffe://cluster.local/ns/production/sa/frontend", true],
    ["spiffe://other.domain/*", id, false],
    ["*/sa/frontend", id, true],
    ["*/sa/frontend", "spiffe://cluster.local/ns/prod/sa/frontend-v2", false],
    ["*/sa/frontend", "/sa/frontend", true],
    ["*-v2", "spiffe://cluster.local/ns/prod/sa/frontend-v2", true],
    ["*/ns/prod/sa/frontend", "sa/frontend", false],
  ];
  for (const [pattern, candidate, want] of cases) {
    it(`${pattern} ${want ? "matches" : "does not match"} ${JSON.stringify(candidate)}`, () => {
      assert.equal(matchPrincipal(pattern, candidate), want);
    });
  }
});

describe("workload ids", () => {
  it("round-trips format and parse", () => {
    const w = { trustDomain: DEFAULT_TRUST_DOMAIN, namespace: "prod", serviceAccount: "frontend" };
    const id = formatWorkloadId(w);
    assert.equal(id, "spiffe://cluster.local/ns/prod/sa/frontend");
    assert.deepEqual(parseWorkloadId(id), w);
  });

  it("parses only the ns/sa shape of a valid id", () => {
    assert.equal(parseWorkloadId("spiffe://td/ns/a/sa/b/extra"), undefined);
    assert.equal(parseWorkloadId("spiffe://td/sa/b/ns/a"), undefined);
    assert.equal(parseWorkloadId("spiffe://td"), undefined);
    assert.equal(parseWorkloadId("spiffe://td/ns/../sa/b"), undefined);
    assert.equal(parseWorkloadId("spiffe://TD/ns/a/sa/b"), undefined);
    assert.equal(parseWorkloadId("spiffe://td/ns/a/sa/b?x"), undefined);
    assert.deepEqual(parseWorkloadId("spiffe://td/ns/ns/sa/sa"), {
      trustDomain: "td",
      namespace: "ns",
      serviceAccount: "sa",
    });
  });

  it("refuses to format parts that would make an invalid or different id", () => {
    const bad: Array<[Parameters<typeof formatWorkloadId>[0], RegExp]> = [
      [{ trustDomain: "td", namespace: "a/sa/x", serviceAccount: "b" }, /namespace must not contain '\/'/],
      [{ trustDomain: "td", namespace: "", serviceAccount: "b" }, /namespace must not be empty/],
      [{ trustDomain: "td", namespace: "a", serviceAccount: "" }, /serviceAccount must not be empty/],
      [{ trustDomain: "td", namespace: "..", serviceAccount: "b" }, /path segment '\.\.' is not allowed/],
      [{ trustDomain: "Bad", namespace: "a", serviceAccount: "b" }, /trust domain must be lower-case/],
    ];
    for (const [w, pattern] of bad) {
      assert.throws(
        () => formatWorkloadId(w),
        (err: unknown) =>
          err instanceof TrellisError && err.code === ErrorCode.INVALID_ARGUMENT && pattern.test(err.message),
      );
    }
  });
});
