/**
 * Retry policy: which attempt outcomes each retryOn token retries, the plan a route gets with and
 * without a policy, full-jitter backoff on a seeded source, Retry-After parsing, idempotent methods.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@trellis/proto/duration";
import { RetryOn, RetryPolicySchema } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import { mulberry32 } from "@trellis/sidecar/resilience/random";
import {
  type AttemptOutcome,
  backoffMs,
  compileRetryPlan,
  DEFAULT_RETRY_PLAN,
  isIdempotent,
  nothingReachedUpstream,
  type RetryPlan,
  retriable,
  retryAfterMs,
} from "@trellis/sidecar/resilience/retry-policy";

function policy(init: MessageInitShape<typeof RetryPolicySchema> = {}): RetryPlan {
  return compileRetryPlan(create(RetryPolicySchema, init));
}

function http(status: number): AttemptOutcome {
  return { kind: "response", status, grpcStatus: undefined, retryAfter: undefined };
}

/** A gRPC response: HTTP 200 with `grpc-status` (headers or trailers). */
function grpc(code: number): AttemptOutcome {
  return { kind: "response", status: 200, grpcStatus: code, retryAfter: undefined };
}

/** Every outcome the matrix tries, by label. */
const OUTCOMES: Record<string, AttemptOutcome> = {
  "connect-failure": { kind: "failure", failure: "connect-failure" },
  "refused-stream": { kind: "failure", failure: "refused-stream" },
  reset: { kind: "failure", failure: "reset" },
  "per-try-timeout": { kind: "failure", failure: "per-try-timeout" },
  "http 200": http(200),
  "http 204": http(204),
  "http 301": http(301),
  "http 400": http(400),
  "http 404": http(404),
  "http 409": http(409),
  "http 429": http(429),
  "http 499": http(499),
  "http 500": http(500),
  "http 501": http(501),
  "http 502": http(502),
  "http 503": http(503),
  "http 504": http(504),
  "http 599": http(599),
  "grpc 0 OK": grpc(0),
  "grpc 1 CANCELLED": grpc(1),
  "grpc 2 UNKNOWN": grpc(2),
  "grpc 4 DEADLINE_EXCEEDED": grpc(4),
  "grpc 8 RESOURCE_EXHAUSTED": grpc(8),
  "grpc 13 INTERNAL": grpc(13),
  "grpc 14 UNAVAILABLE": grpc(14),
  "grpc 16 UNAUTHENTICATED": grpc(16),
  // `>>>` takes its count mod 32 (and truncates it): 33 must not read as 1 (CANCELLED), nor 46, -18
  // or 14.5 as 14 (UNAVAILABLE).
  "grpc 33 (out of range)": grpc(33),
  "grpc 46 (out of range)": grpc(46),
  "grpc -18 (negative)": grpc(-18),
  "grpc 14.5 (not an integer)": grpc(14.5),
};

/** Asserts the plan retries exactly `expected` among OUTCOMES. */
function assertRetries(plan: RetryPlan, expected: readonly string[]): void {
  const unknown = expected.filter((label) => !(label in OUTCOMES));
  assert.deepEqual(unknown, [], "test table names an outcome that does not exist");
  const actual = Object.entries(OUTCOMES)
    .filter(([, outcome]) => retriable(plan, outcome))
    .map(([label]) => label);
  assert.deepEqual(actual.sort(), [...expected].sort());
}

const FIVE_XX = ["http 500", "http 501", "http 502", "http 503", "http 504", "http 599"];

describe("retriable: one retryOn token at a time", () => {
  const table: { token: RetryOn; name: string; codes?: number[]; retries: string[] }[] = [
    { token: RetryOn.RETRY_ON_CONNECT_FAILURE, name: "connect-failure", retries: ["connect-failure"] },
    { token: RetryOn.RETRY_ON_REFUSED_STREAM, name: "refused-stream", retries: ["refused-stream"] },
    { token: RetryOn.RETRY_ON_RESET, name: "reset", retries: ["reset"] },
    {
      token: RetryOn.RETRY_ON_5XX,
      name: "5xx",
      retries: ["connect-failure", "refused-stream", "reset", "per-try-timeout", ...FIVE_XX],
    },
    {
      token: RetryOn.RETRY_ON_GATEWAY_ERROR,
      name: "gateway-error",
      retries: [
        "connect-failure",
        "refused-stream",
        "reset",
        "per-try-timeout",
        "http 502",
        "http 503",
        "http 504",
      ],
    },
    {
      token: RetryOn.RETRY_ON_RETRIABLE_STATUS_CODES,
      name: "retriable-status-codes",
      codes: [409, 429],
      retries: ["http 409", "http 429"],
    },
    { token: RetryOn.RETRY_ON_CANCELLED, name: "cancelled", retries: ["grpc 1 CANCELLED"] },
    {
      token: RetryOn.RETRY_ON_DEADLINE_EXCEEDED,
      name: "deadline-exceeded",
      retries: ["per-try-timeout", "grpc 4 DEADLINE_EXCEEDED"],
    },
    { token: RetryOn.RETRY_ON_INTERNAL, name: "internal", retries: ["grpc 13 INTERNAL"] },
    {
      token: RetryOn.RETRY_ON_RESOURCE_EXHAUSTED,
      name: "resource-exhausted",
      retries: ["grpc 8 RESOURCE_EXHAUSTED"],
    },
    { token: RetryOn.RETRY_ON_UNAVAILABLE, name: "unavailable", retries: ["grpc 14 UNAVAILABLE"] },
  ];

  it("covers every RetryOn value", () => {
    const all = Object.values(RetryOn).filter(
      (v): v is RetryOn => typeof v === "number" && v !== RetryOn.RETRY_ON_UNSPECIFIED,
    );
    assert.deepEqual(table.map((row) => row.token).sort(), all.sort());
  });

  for (const row of table) {
    it(`${row.name} retries ${row.retries.join(", ")} and nothing else`, () => {
      assertRetries(
        policy({ attempts: 2, retryOn: [row.token], retriableStatusCodes: row.codes ?? [] }),
        row.retries,
      );
    });
  }
});

describe("retriable: combinations and defaults", () => {
  it("a rule without a retry policy retries only attempts that never reached the upstream", () => {
    assertRetries(DEFAULT_RETRY_PLAN, ["connect-failure", "refused-stream"]);
    assertRetries(compileRetryPlan(undefined), ["connect-failure", "refused-stream"]);
  });

  it("a policy with an empty retryOn uses connect-failure, refused-stream, gateway-error, unavailable", () => {
    assertRetries(policy({ attempts: 3 }), [
      "connect-failure",
      "refused-stream",
      "reset",
      "per-try-timeout",
      "http 502",
      "http 503",
      "http 504",
      "grpc 14 UNAVAILABLE",
    ]);
  });

  it("several tokens retry the union of what each retries", () => {
    assertRetries(
      policy({
        retryOn: [
          RetryOn.RETRY_ON_RESET,
          RetryOn.RETRY_ON_RETRIABLE_STATUS_CODES,
          RetryOn.RETRY_ON_UNAVAILABLE,
        ],
        retriableStatusCodes: [429],
      }),
      ["reset", "http 429", "grpc 14 UNAVAILABLE"],
    );
  });

  it("retriableStatusCodes without the retriable-status-codes token retries nothing extra", () => {
    assertRetries(policy({ retryOn: [RetryOn.RETRY_ON_RESET], retriableStatusCodes: [429, 503] }), ["reset"]);
  });

  it("a listed 2xx/4xx status is retried when the user asks for it", () => {
    const plan = policy({ retryOn: [RetryOn.RETRY_ON_RETRIABLE_STATUS_CODES], retriableStatusCodes: [404] });
    assert.equal(retriable(plan, http(404)), true);
    assert.equal(retriable(plan, http(405)), false);
  });

  it("an HTTP 5xx with grpc-status OK is still a 5xx; a 200 with grpc UNAVAILABLE is not one", () => {
    const fiveXx = policy({ retryOn: [RetryOn.RETRY_ON_5XX] });
    assert.equal(
      retriable(fiveXx, { kind: "response", status: 503, grpcStatus: 0, retryAfter: undefined }),
      true,
    );
    assert.equal(retriable(fiveXx, grpc(14)), false);
  });

  it("a 429 or 503 with Retry-After is decided by the status alone", () => {
    const plan = policy({ retryOn: [RetryOn.RETRY_ON_GATEWAY_ERROR] });
    assert.equal(
      retriable(plan, { kind: "response", status: 429, grpcStatus: undefined, retryAfter: "1" }),
      false,
    );
    assert.equal(
      retriable(plan, { kind: "response", status: 503, grpcStatus: undefined, retryAfter: "1" }),
      true,
    );
  });

  it("ignores RETRY_ON_UNSPECIFIED: a list of only that means the default", () => {
    const plan = policy({ retryOn: [RetryOn.RETRY_ON_UNSPECIFIED] });
    assert.deepEqual(plan.retryOn, [
      RetryOn.RETRY_ON_CONNECT_FAILURE,
      RetryOn.RETRY_ON_REFUSED_STREAM,
      RetryOn.RETRY_ON_GATEWAY_ERROR,
      RetryOn.RETRY_ON_UNAVAILABLE,
    ]);
  });
});

describe("compileRetryPlan", () => {
  it("gives the shared default plan for a rule without a policy", () => {
    assert.equal(compileRetryPlan(undefined), DEFAULT_RETRY_PLAN);
    assert.equal(DEFAULT_RETRY_PLAN.explicit, false);
    assert.equal(DEFAULT_RETRY_PLAN.attempts, 1);
    assert.equal(DEFAULT_RETRY_PLAN.perTryTimeoutMs, undefined);
    assert.equal(DEFAULT_RETRY_PLAN.maxBufferedBody, 0);
    assert.equal(DEFAULT_RETRY_PLAN.retryNonIdempotent, false);
    assert.equal(DEFAULT_RETRY_PLAN.backoffBaseMs, 25);
    assert.equal(DEFAULT_RETRY_PLAN.backoffMaxMs, 250);
    assert.ok(Object.isFrozen(DEFAULT_RETRY_PLAN));
  });

  const table: {
    name: string;
    spec: MessageInitShape<typeof RetryPolicySchema>;
    expect: Partial<Omit<RetryPlan, "retriableStatuses">>;
  }[] = [
    {
      name: "an empty policy: attempts 0 and the documented defaults",
      spec: {},
      expect: {
        explicit: true,
        attempts: 0,
        perTryTimeoutMs: undefined,
        backoffBaseMs: 25,
        backoffMaxMs: 250,
        retryNonIdempotent: false,
        maxBufferedBody: 65_536,
      },
    },
    {
      name: "every field set",
      spec: {
        attempts: 3,
        perTryTimeout: durationFromMs(500),
        retryOn: [RetryOn.RETRY_ON_CONNECT_FAILURE, RetryOn.RETRY_ON_5XX],
        backoff: { base: durationFromMs(10), max: durationFromMs(1_000) },
        retryNonIdempotent: true,
        maxBufferedBody: 1_024,
      },
      expect: {
        explicit: true,
        attempts: 3,
        perTryTimeoutMs: 500,
        backoffBaseMs: 10,
        backoffMaxMs: 1_000,
        retryNonIdempotent: true,
        maxBufferedBody: 1_024,
        retryOn: [RetryOn.RETRY_ON_CONNECT_FAILURE, RetryOn.RETRY_ON_5XX],
      },
    },
    {
      name: "maxBufferedBody 0 is kept (nothing buffered), not defaulted",
      spec: { maxBufferedBody: 0 },
      expect: { maxBufferedBody: 0 },
    },
    {
      name: "a base above the default max raises the max to the base",
      spec: { backoff: { base: durationFromMs(400) } },
      expect: { backoffBaseMs: 400, backoffMaxMs: 400 },
    },
    {
      name: "only a max: the base stays 25ms",
      spec: { backoff: { max: durationFromMs(2_000) } },
      expect: { backoffBaseMs: 25, backoffMaxMs: 2_000 },
    },
    {
      name: "a zero per-try timeout means none",
      spec: { perTryTimeout: durationFromMs(0) },
      expect: { perTryTimeoutMs: undefined },
    },
  ];
  for (const row of table) {
    it(row.name, () => {
      const plan = policy(row.spec);
      const picked = Object.fromEntries(Object.keys(row.expect).map((k) => [k, plan[k as keyof RetryPlan]]));
      assert.deepEqual(picked, row.expect);
      assert.ok(Object.isFrozen(plan));
    });
  }
});

describe("nothingReachedUpstream", () => {
  const table: [string, boolean][] = [
    ["connect-failure", true],
    ["refused-stream", true],
    ["reset", false],
    ["per-try-timeout", false],
    ["http 503", false],
    ["grpc 14 UNAVAILABLE", false],
  ];
  for (const [label, expected] of table) {
    it(`${label} → ${expected}`, () => assert.equal(nothingReachedUpstream(OUTCOMES[label]!), expected));
  }
});

describe("backoffMs", () => {
  const plan = policy({ backoff: { base: durationFromMs(25), max: durationFromMs(250) } });

  it("caps retry n at min(max, base × 2^(n−1))", () => {
    const justBelowOne = () => 1 - 2 ** -32;
    const caps = [1, 2, 3, 4, 5, 6, 10].map((n) => Math.round(backoffMs(plan, n, justBelowOne)));
    assert.deepEqual(caps, [25, 50, 100, 200, 250, 250, 250]);
  });

  it("scales the cap by the random draw: 0 → 0, 0.5 → half", () => {
    assert.equal(
      backoffMs(plan, 3, () => 0),
      0,
    );
    assert.equal(
      backoffMs(plan, 3, () => 0.5),
      50,
    );
  });

  it("treats retry 0 or below as the first retry, and a huge retry as the cap (no NaN)", () => {
    assert.equal(
      backoffMs(plan, 0, () => 0.5),
      12.5,
    );
    assert.equal(
      backoffMs(plan, -3, () => 0.5),
      12.5,
    );
    assert.equal(
      backoffMs(plan, 5_000, () => 0.5),
      125,
    );
  });

  it("spreads full jitter uniformly over [0, cap) with a seeded source", () => {
    const random = mulberry32(42);
    const draws = 20_000;
    const deciles = new Array<number>(10).fill(0);
    let min = Number.POSITIVE_INFINITY;
    let max = 0;
    let sum = 0;
    for (let i = 0; i < draws; i++) {
      const ms = backoffMs(plan, 3, random); // cap 100ms
      assert.ok(ms >= 0 && ms < 100, `backoff ${ms} outside [0, 100)`);
      deciles[Math.floor(ms / 10)]! += 1;
      min = Math.min(min, ms);
      max = Math.max(max, ms);
      sum += ms;
    }
    assert.ok(min < 1, `min ${min}: full jitter reaches down to 0`);
    assert.ok(max > 99, `max ${max}: full jitter reaches up to the cap`);
    assert.ok(Math.abs(sum / draws - 50) < 1.5, `mean ${sum / draws}`);
    for (const [i, n] of deciles.entries()) {
      assert.ok(Math.abs(n - draws / 10) < 200, `decile ${i} got ${n} of ${draws}`);
    }
  });

  it("is reproducible for one seed", () => {
    const a = mulberry32(7);
    const b = mulberry32(7);
    for (let n = 1; n <= 5; n++) assert.equal(backoffMs(plan, n, a), backoffMs(plan, n, b));
  });
});

describe("retryAfterMs", () => {
  const now = Date.UTC(2025, 5, 1, 12, 0, 0); // Sun, 01 Jun 2025 12:00:00 GMT
  const table: [string | undefined, number | undefined][] = [
    [undefined, undefined],
    ["120", 120_000],
    ["0", 0],
    ["007", 7_000],
    [" 5 ", 5_000],
    ["Sun, 01 Jun 2025 12:00:30 GMT", 30_000], // IMF-fixdate
    ["Sunday, 01-Jun-25 12:01:00 GMT", 60_000], // obsolete RFC 850
    ["Sun Jun  1 12:00:02 2025", 2_000], // obsolete asctime
    ["Sat, 31 May 2025 12:00:00 GMT", 0], // in the past
    ["Sun, 06 Nov 1994 08:49:37 GMT", 0],
    ["Sunday, 06-Nov-94 08:49:37 GMT", 0], // "94" is 1994, not 2094
    ["", undefined],
    ["soon", undefined],
    ["-5", undefined],
    ["1.5", undefined],
    ["+5", undefined],
    ["5s", undefined],
    ["Jun 1 2025 12:00:30", undefined], // Date.parse would take this as a date
    ["x 2026", undefined],
    ["Sun, 31 Feb 2025 12:00:00 GMT", undefined], // no such day
    ["Sun, 01 Jun 2025 24:00:00 GMT", undefined],
    ["sun, 01 jun 2025 12:00:30 gmt", undefined], // HTTP-date is case-sensitive
    ["Sun, 01 Jun 2025 12:00:30 UTC", undefined],
    ["2025-06-01T12:00:30Z", undefined], // ISO 8601 is not an HTTP-date
  ];
  for (const [value, expected] of table) {
    it(`${JSON.stringify(value)} → ${expected}`, () => assert.equal(retryAfterMs(value, now), expected));
  }

  it("caps an absurd delta at MAX_SAFE_INTEGER instead of Infinity", () => {
    assert.equal(retryAfterMs("9".repeat(400), now), Number.MAX_SAFE_INTEGER);
  });
});

describe("isIdempotent", () => {
  const table: [string, boolean][] = [
    ["GET", true],
    ["HEAD", true],
    ["OPTIONS", true],
    ["TRACE", true],
    ["PUT", true],
    ["DELETE", true],
    ["POST", false],
    ["PATCH", false],
    ["CONNECT", false],
    ["get", false],
    ["Put", false],
    ["", false],
  ];
  for (const [method, expected] of table) {
    it(`${JSON.stringify(method)} → ${expected}`, () => assert.equal(isIdempotent(method), expected));
  }
});
