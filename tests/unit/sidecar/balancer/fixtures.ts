// Shared fixtures for the balancer unit tests: a seeded PRNG, endpoints, and deps over a test clock.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type Endpoint, EndpointSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { HealthStatus } from "@trellis/proto/gen/trellis/v1/workload_pb";
import type { BalancerDeps } from "@trellis/sidecar/balancer/balancer";

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Endpoint n of service orders (10.0.0.n:15006, app port 8080, healthy), with overrides. */
export function endpoint(n: number, init: MessageInitShape<typeof EndpointSchema> = {}): Endpoint {
  return create(EndpointSchema, {
    address: `10.0.0.${n}`,
    port: 15006,
    appPort: 8080,
    proxyId: `orders-${n}`,
    identity: "spiffe://cluster.local/ns/shop/sa/orders",
    health: HealthStatus.HEALTHY,
    ...init,
  });
}

/** A test clock (ms) and deps over it. */
export function testDeps(seed = 1): { clock: { t: number }; deps: BalancerDeps } {
  const clock = { t: 0 };
  return { clock, deps: { now: () => clock.t, random: seeded(seed) } };
}
