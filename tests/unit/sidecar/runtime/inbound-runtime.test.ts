// The inbound listener through the RuntimeBuilder: each port gets its most specific policy's local
// limiter; rebuilds (a new listener version, or any other update) keep bucket state; a changed
// limit rescales; a listener carrying `global` is NACKed `unsupported` and the last good one stays.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import {
  GlobalRateLimitSchema,
  LocalRateLimitSchema,
  RateLimitPolicySpecSchema,
  RateLimitUnit,
} from "@trellis/proto/gen/trellis/v1/rate_limit_policy_pb";
import {
  ClusterSchema,
  InboundListenerSchema,
  type InboundPort,
  InboundPortSchema,
  type Listener,
  ListenerSchema,
  ScopedRateLimitSchema,
} from "@trellis/proto/gen/trellis/v1/resources_pb";
import { Protocol } from "@trellis/proto/gen/trellis/v1/service_pb";
import { INBOUND_LISTENER, TypeUrl } from "@trellis/proto/resource-types";
import type { LocalRateLimiter } from "@trellis/sidecar/resilience/local-rate-limit";
import { RuntimeBuilder } from "@trellis/sidecar/runtime/runtime-config";
import { SUPPORTED_KINDS } from "@trellis/sidecar/runtime/supported";

interface PortSpec {
  port: number;
  policy?: string;
  local?: { requestsPerSecond: number; burst?: number; perIdentity?: boolean };
  global?: boolean;
}

function port(p: PortSpec): InboundPort {
  const out = create(InboundPortSchema, { port: p.port, protocol: Protocol.HTTP });
  if (p.policy === undefined) return out;
  const spec = create(RateLimitPolicySpecSchema);
  if (p.local !== undefined) spec.local = create(LocalRateLimitSchema, p.local);
  if (p.global === true)
    spec.global = create(GlobalRateLimitSchema, {
      descriptors: [{ key: "all", from: { source: { case: "literal", value: "x" } } }],
      limit: { requests: 10, per: RateLimitUnit.SECOND },
    });
  out.rateLimit = create(ScopedRateLimitSchema, {
    policy: { kind: "RateLimitPolicy", namespace: "shop", name: p.policy, generation: 1n },
    spec,
  });
  return out;
}

function listener(ports: PortSpec[]): Listener {
  return create(ListenerSchema, {
    name: INBOUND_LISTENER,
    kind: {
      case: "inbound",
      value: create(InboundListenerSchema, { service: "orders", namespace: "shop", ports: ports.map(port) }),
    },
  });
}

function setup() {
  let t = 0;
  const clock = { now: () => t, advance: (ms: number) => (t += ms) };
  const builder = new RuntimeBuilder({ now: clock.now, random: () => 0.5 });
  let version = 0;
  const push = (l: Listener) =>
    builder.apply(
      TypeUrl.LISTENER,
      [{ name: INBOUND_LISTENER, version: String(++version), message: l }],
      [],
      [],
    );
  const limiter = (port: number): LocalRateLimiter | undefined =>
    builder.build().inbound?.ports.get(port)?.localLimit;
  return { builder, clock, push, limiter };
}

function drain(l: LocalRateLimiter | undefined): number {
  assert.ok(l, "the port has a limiter");
  let n = 0;
  while (l.take(undefined) === undefined) n++;
  return n;
}

describe("inbound runtime: local rate limits", () => {
  it("declares RateLimitPolicy as supported", () => {
    assert.ok(SUPPORTED_KINDS.includes("RateLimitPolicy"));
  });

  it("gives each port its policy's limiter; a port without a policy has none", () => {
    const { push, limiter } = setup();
    assert.deepEqual(
      push(
        listener([
          { port: 8080, policy: "limits", local: { requestsPerSecond: 1, burst: 3 } },
          { port: 9090 },
        ]),
      ),
      [],
    );
    const l = limiter(8080);
    assert.equal(l?.name, "shop/limits");
    assert.equal(drain(l), 3);
    assert.equal(limiter(9090), undefined);
  });

  it("a new listener version with the same limit keeps the bucket; other updates too", () => {
    const { builder, push, limiter } = setup();
    push(listener([{ port: 8080, policy: "limits", local: { requestsPerSecond: 1, burst: 3 } }]));
    const l = limiter(8080);
    assert.equal(drain(l), 3);
    // Same policy, another listener version (e.g. another port's policy changed).
    push(
      listener([
        { port: 8080, policy: "limits", local: { requestsPerSecond: 1, burst: 3 } },
        { port: 9090, policy: "other", local: { requestsPerSecond: 5 } },
      ]),
    );
    assert.equal(limiter(8080), l);
    assert.equal(drain(limiter(8080)), 0, "still drained after the listener update");
    // An unrelated update (a cluster) rebuilds the runtime: still the same bucket.
    builder.apply(
      TypeUrl.CLUSTER,
      [{ name: "cart.shop:80", version: "1", message: create(ClusterSchema, { name: "cart.shop:80" }) }],
      [],
      [],
    );
    assert.equal(drain(limiter(8080)), 0, "still drained after an unrelated rebuild");
  });

  it("a changed limit rescales the bucket instead of refilling it", () => {
    const { clock, push, limiter } = setup();
    push(listener([{ port: 8080, policy: "limits", local: { requestsPerSecond: 1, burst: 4 } }]));
    const l = limiter(8080);
    assert.ok(l);
    assert.equal(l.take(undefined), undefined);
    assert.equal(l.take(undefined), undefined); // 2 of 4 left
    push(listener([{ port: 8080, policy: "limits", local: { requestsPerSecond: 1, burst: 8 } }]));
    assert.equal(limiter(8080), l);
    assert.equal(drain(l), 4, "half full stays half full: 4 of 8");
    clock.advance(1000);
    assert.equal(drain(l), 1, "the rate carries on");
  });

  it("a port whose policy went away loses its limiter; one that comes back starts full", () => {
    const { push, limiter } = setup();
    push(listener([{ port: 8080, policy: "limits", local: { requestsPerSecond: 1, burst: 2 } }]));
    const old = limiter(8080);
    assert.equal(drain(old), 2);
    push(listener([{ port: 8080 }]));
    assert.equal(limiter(8080), undefined);
    push(listener([{ port: 8080, policy: "limits", local: { requestsPerSecond: 1, burst: 2 } }]));
    assert.notEqual(limiter(8080), old);
    assert.equal(drain(limiter(8080)), 2);
  });

  it("NACKs a listener whose rate limit has `global`, naming the policy; the last good one stays", () => {
    const { push, limiter } = setup();
    push(listener([{ port: 8080, policy: "limits", local: { requestsPerSecond: 1, burst: 2 } }]));
    const l = limiter(8080);
    assert.equal(drain(l), 2);
    const rejected = push(
      listener([
        { port: 8080, policy: "limits", local: { requestsPerSecond: 1, burst: 2 } },
        { port: 9090, policy: "shared", local: { requestsPerSecond: 1 }, global: true },
      ]),
    );
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]?.name, INBOUND_LISTENER);
    assert.match(rejected[0]?.message ?? "", /^unsupported: inbound\.ports\[1\]\.rateLimit\.spec\.global/);
    assert.match(rejected[0]?.message ?? "", /RateLimitPolicy shop\/shared/);
    assert.equal(limiter(8080), l, "the last good listener, with its limiter and state");
    assert.equal(drain(limiter(8080)), 0);
    assert.equal(limiter(9090), undefined);
  });
});
