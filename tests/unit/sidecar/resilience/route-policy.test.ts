// A route rule's resilience policy as compiled once per snapshot, and grpc-timeout parsing.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { HTTPRouteRuleSchema, RetryOn } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import { formatGrpcTimeout, parseGrpcTimeout } from "@trellis/sidecar/proxy/outbound-exchange";
import { compileRoutePolicy, DEFAULT_REPLAY_BUFFER } from "@trellis/sidecar/resilience/route-policy";

const ms = (n: number) => ({ seconds: BigInt(Math.floor(n / 1000)), nanos: (n % 1000) * 1_000_000 });

describe("compileRoutePolicy", () => {
  it("a rule without policy: no timeout, connect failures and refused streams retried once, 64 KiB replay", () => {
    const p = compileRoutePolicy(create(HTTPRouteRuleSchema, {}));
    assert.equal(p.timeoutMs, undefined);
    assert.equal(p.retry.explicit, false);
    assert.equal(p.retry.attempts, 1);
    assert.equal(p.retry.maxBufferedBody, DEFAULT_REPLAY_BUFFER);
    assert.equal(p.grpcTrailerRetry, false);
    assert.equal(p.fault, undefined);
    assert.equal(p.mirror, undefined);
    assert.equal(p.fallback, undefined);
  });

  it("compiles timeout, retry, fault, mirror and fallback with their defaults", () => {
    const p = compileRoutePolicy(
      create(HTTPRouteRuleSchema, {
        timeout: ms(2500),
        retry: { attempts: 3, retryOn: [RetryOn.RETRY_ON_UNAVAILABLE] },
        fault: { abort: { status: 503 } },
        mirror: { service: "shadow", namespace: "shop", port: 8080 },
        fallback: { body: "cached", headers: { "x-cache": "stale" } },
      }),
    );
    assert.equal(p.timeoutMs, 2500);
    assert.equal(p.retry.attempts, 3);
    assert.equal(p.grpcTrailerRetry, true, "unavailable may come in trailers");
    assert.deepEqual(p.fault, {
      delayMs: undefined,
      abort: { status: 503, grpcStatus: 14 },
      percentage: 100,
    });
    assert.deepEqual(p.mirror, {
      cluster: "shadow.shop:8080",
      service: "shadow",
      namespace: "shop",
      percentage: 100,
    });
    assert.deepEqual(p.fallback, {
      status: 200,
      grpcStatus: 0,
      headers: { "x-cache": "stale" },
      body: "cached",
    });
  });

  it("a fault's gRPC status is given or derived from its HTTP status; a fallback's from its status", () => {
    const p = compileRoutePolicy(
      create(HTTPRouteRuleSchema, {
        fault: { delay: ms(100), abort: { status: 429, grpcStatus: 8 }, percentage: 25 },
        fallback: { status: 503 },
      }),
    );
    assert.deepEqual(p.fault, { delayMs: 100, abort: { status: 429, grpcStatus: 8 }, percentage: 25 });
    assert.equal(p.fallback?.grpcStatus, 14);
  });

  it("a mirror the control plane could not resolve (no port) is not made", () => {
    const p = compileRoutePolicy(create(HTTPRouteRuleSchema, { mirror: { service: "shadow" } }));
    assert.equal(p.mirror, undefined);
  });
});

describe("parseGrpcTimeout", () => {
  const table: [string | undefined, number | undefined][] = [
    ["1S", 1000],
    ["250m", 250],
    ["2M", 120_000],
    ["1H", 3_600_000],
    ["1500u", 1.5],
    ["99999999n", 99.999999],
    ["0m", 0],
    [undefined, undefined],
    ["", undefined],
    ["m", undefined],
    ["10", undefined],
    ["10x", undefined],
    ["-1S", undefined],
    ["123456789S", undefined],
    ["1.5S", undefined],
  ];
  for (const [input, expected] of table) {
    it(`${JSON.stringify(input)} → ${expected}`, () => {
      const got = parseGrpcTimeout(input);
      if (expected === undefined || got === undefined) assert.equal(got, expected);
      else assert.ok(Math.abs(got - expected) < 1e-9, `${got}`);
    });
  }
});

describe("formatGrpcTimeout", () => {
  const table: [number, string][] = [
    [0, "1m"],
    [0.2, "1m"],
    [250, "250m"],
    [99_999_999, "99999999m"],
    [100_000_000, "100000S"],
    [48 * 3_600_000, "172800S"],
    [200_000_000_000, "3333334M"],
    [1e13, "2777778H"],
    [1e20, "99999999H"],
  ];
  for (const [ms, expected] of table) {
    it(`${ms} ms → ${expected} (at most 8 digits, never shorter than asked)`, () => {
      const got = formatGrpcTimeout(ms);
      assert.equal(got, expected);
      assert.ok(got.length <= 9);
      const back = parseGrpcTimeout(got);
      assert.ok(back !== undefined && (back >= ms || ms > 8.64e15));
    });
  }
});
