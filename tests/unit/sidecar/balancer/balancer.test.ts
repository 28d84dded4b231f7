/**
 * createBalancer: policy resolution, endpoint state carried across config updates, and panic mode.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type Endpoint, EndpointSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { LoadBalancerPolicy, LoadBalancerSchema } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { HealthStatus } from "@trellis/proto/gen/trellis/v1/workload_pb";
import {
  type BalancerConfig,
  balancerConfigFrom,
  createBalancer,
  effectivePolicy,
  type LoadBalancer,
} from "@trellis/sidecar/balancer/balancer";
import { testDeps } from "./fixtures.js";

function endpoint(n: number, init: MessageInitShape<typeof EndpointSchema> = {}): Endpoint {
  return create(EndpointSchema, {
    address: `10.0.0.${n}`,
    port: 15006,
    appPort: 8080,
    proxyId: `orders-${n}`,
    identity: "spiffe://cluster.local/ns/shop/sa/orders",
    health: HealthStatus.HEALTHY,
    labels: { app: "orders" },
    ...init,
  });
}

const LR = { policy: LoadBalancerPolicy.LEAST_REQUEST };
const RR = { policy: LoadBalancerPolicy.ROUND_ROBIN };

function byKey(lb: LoadBalancer, key: string) {
  const s = lb.endpoints.find((e) => e.key === key);
  assert.ok(s, `no endpoint ${key}`);
  return s;
}

describe("createBalancer: policy", () => {
  const cases: Array<[LoadBalancerPolicy, LoadBalancerPolicy]> = [
    [LoadBalancerPolicy.UNSPECIFIED, LoadBalancerPolicy.LEAST_REQUEST],
    [LoadBalancerPolicy.LEAST_REQUEST, LoadBalancerPolicy.LEAST_REQUEST],
    [LoadBalancerPolicy.ROUND_ROBIN, LoadBalancerPolicy.ROUND_ROBIN],
    [LoadBalancerPolicy.RING_HASH, LoadBalancerPolicy.RING_HASH],
    // An enum value newer than this sidecar: the cluster keeps serving with the default.
    [99 as LoadBalancerPolicy, LoadBalancerPolicy.LEAST_REQUEST],
  ];
  for (const [asked, used] of cases) {
    it(`${LoadBalancerPolicy[asked] ?? asked} runs ${LoadBalancerPolicy[used]}`, () => {
      assert.equal(effectivePolicy(asked), used);
      assert.equal(createBalancer({ policy: asked }, [endpoint(1)], testDeps().deps).policy, used);
    });
  }

  it("keeps the first of duplicate endpoints", () => {
    const lb = createBalancer(
      RR,
      [endpoint(1), endpoint(1, { proxyId: "other" }), endpoint(2)],
      testDeps().deps,
    );
    assert.deepEqual(
      lb.endpoints.map((e) => [e.key, e.data.proxyId]),
      [
        ["10.0.0.1:15006", "orders-1"],
        ["10.0.0.2:15006", "orders-2"],
      ],
    );
  });
});

describe("createBalancer: state across updates", () => {
  for (const config of [LR, RR]) {
    it(`${LoadBalancerPolicy[config.policy]}: adding an endpoint keeps the others' state objects and counters`, () => {
      const { deps } = testDeps();
      const v1 = createBalancer(config, [endpoint(1), endpoint(2), endpoint(3)], deps);
      const inFlight = v1.pick({})!;
      inFlight.onStart();
      inFlight.onStart();
      const v2 = createBalancer(config, [endpoint(1), endpoint(2), endpoint(3), endpoint(4)], deps, v1);
      assert.equal(v2.endpoints.length, 4);
      for (let i = 0; i < 3; i++) assert.equal(v2.endpoints[i], v1.endpoints[i], `endpoint ${i + 1}`);
      assert.equal(byKey(v2, inFlight.key).outstanding, 2);
      assert.equal(byKey(v2, "10.0.0.4:15006").outstanding, 0);
      // A request started under v1 finishes on the same object v2 balances with.
      inFlight.onFinish(3, true);
      assert.equal(byKey(v2, inFlight.key).outstanding, 1);
    });
  }

  it("a health change gives a new state but keeps in-flight count, latency and ejection", () => {
    const { clock, deps } = testDeps();
    const v1 = createBalancer(LR, [endpoint(1), endpoint(2)], deps);
    const old = byKey(v1, "10.0.0.1:15006");
    old.onStart();
    old.onFinish(80, true);
    old.onStart();
    old.ejectedUntil = 1_000;
    const v2 = createBalancer(LR, [endpoint(1, { health: HealthStatus.UNSPECIFIED }), endpoint(2)], deps, v1);
    const next = byKey(v2, "10.0.0.1:15006");
    assert.notEqual(next, old);
    assert.equal(next.data.health, HealthStatus.UNSPECIFIED);
    assert.equal(old.data.health, HealthStatus.HEALTHY, "the old snapshot keeps its view");
    assert.equal(next.outstanding, 1);
    assert.equal(next.latencyMs(clock.t), 80);
    assert.equal(next.ejectedUntil, 1_000, "a health flap does not clear an ejection");
    assert.equal(byKey(v2, "10.0.0.2:15006"), byKey(v1, "10.0.0.2:15006"));
  });

  it("a new instance at the same address starts from fresh signals", () => {
    const { deps } = testDeps();
    const v1 = createBalancer(LR, [endpoint(1)], deps);
    v1.endpoints[0]!.onStart();
    v1.endpoints[0]!.ejectedUntil = 1_000;
    const v2 = createBalancer(LR, [endpoint(1, { proxyId: "orders-1-restarted" })], deps, v1);
    assert.equal(v2.endpoints[0]!.outstanding, 0);
    assert.equal(v2.endpoints[0]!.ejectedUntil, 0);
    assert.ok(v2.pick({}));
  });

  it("a policy switch keeps the endpoint states", () => {
    const { deps } = testDeps();
    const v1 = createBalancer(LR, [endpoint(1), endpoint(2)], deps);
    v1.endpoints[0]!.onStart();
    const v2 = createBalancer(RR, [endpoint(1), endpoint(2)], deps, v1);
    assert.equal(v2.policy, LoadBalancerPolicy.ROUND_ROBIN);
    assert.deepEqual(v2.endpoints, v1.endpoints);
    assert.equal(v2.endpoints[0]!.outstanding, 1);
  });

  it("seeds a newcomer's latency from its peers", () => {
    const { clock, deps } = testDeps();
    const v1 = createBalancer(LR, [endpoint(1), endpoint(2)], deps);
    v1.endpoints[0]!.onFinish(200, true);
    v1.endpoints[1]!.onFinish(400, true);
    const v2 = createBalancer(LR, [endpoint(1), endpoint(2), endpoint(3)], deps, v1);
    assert.equal(byKey(v2, "10.0.0.3:15006").latencyMs(clock.t), 300);
  });

  it("an ejection made through a newer balancer is seen by the older one", () => {
    const { deps } = testDeps(3);
    const v1 = createBalancer(RR, [endpoint(1), endpoint(2)], deps);
    v1.pick({});
    const v2 = createBalancer(RR, [endpoint(1), endpoint(2), endpoint(3)], deps, v1);
    byKey(v2, "10.0.0.1:15006").ejectedUntil = 1_000;
    for (let i = 0; i < 10; i++) {
      assert.equal(v1.pick({})?.key, "10.0.0.2:15006");
      assert.notEqual(v2.pick({})?.key, "10.0.0.1:15006");
    }
  });
});

describe("createBalancer: panic mode", () => {
  const endpoints = (): Endpoint[] => [
    endpoint(1),
    endpoint(2, { health: HealthStatus.UNHEALTHY }),
    endpoint(3, { health: HealthStatus.UNHEALTHY }),
    endpoint(4, { health: HealthStatus.DRAINING }),
  ];

  for (const policy of [LoadBalancerPolicy.LEAST_REQUEST, LoadBalancerPolicy.ROUND_ROBIN]) {
    it(`${LoadBalancerPolicy[policy]}: below minHealthPercent, picks among all non-draining endpoints`, () => {
      const lb = createBalancer({ policy, minHealthPercent: 50 }, endpoints(), testDeps(21).deps);
      const seen = new Set<string>();
      for (let i = 0; i < 300; i++) seen.add(lb.pick({})!.key);
      assert.ok(lb.panicking);
      assert.deepEqual([...seen].sort(), ["10.0.0.1:15006", "10.0.0.2:15006", "10.0.0.3:15006"]);
    });

    it(`${LoadBalancerPolicy[policy]}: off by default — only usable endpoints, undefined when none`, () => {
      const lb = createBalancer({ policy }, endpoints(), testDeps(21).deps);
      for (let i = 0; i < 50; i++) assert.equal(lb.pick({})?.key, "10.0.0.1:15006");
      assert.ok(!lb.panicking);
      const none = createBalancer({ policy }, endpoints().slice(1), testDeps().deps);
      assert.equal(none.pick({}), undefined);
    });
  }

  it("leaves panic mode when ejections expire", () => {
    const { clock, deps } = testDeps(5);
    const lb = createBalancer(
      { policy: LoadBalancerPolicy.ROUND_ROBIN, minHealthPercent: 50 },
      [endpoint(1), endpoint(2), endpoint(3)],
      deps,
    );
    lb.endpoints[0]!.ejectedUntil = 100;
    lb.endpoints[1]!.ejectedUntil = 100;
    lb.pick({});
    assert.ok(lb.panicking, "1 of 3 usable is below 50%");
    clock.t = 100;
    lb.pick({});
    assert.ok(!lb.panicking);
  });
});

describe("balancerConfigFrom", () => {
  const caller = { region: "us-east", zone: "us-east-1a", subzone: "" };
  const cases: Array<
    [
      name: string,
      spec: MessageInitShape<typeof LoadBalancerSchema> | undefined,
      options: Parameters<typeof balancerConfigFrom>[1],
      expected: BalancerConfig,
    ]
  > = [
    [
      "no policy: the defaults",
      undefined,
      {},
      { policy: LoadBalancerPolicy.UNSPECIFIED, minHealthPercent: 0, minimumRingSize: 1024 },
    ],
    [
      "ring hash with its ring size and the panic threshold",
      { policy: LoadBalancerPolicy.RING_HASH, minimumRingSize: 4096 },
      { minHealthPercent: 50 },
      { policy: LoadBalancerPolicy.RING_HASH, minHealthPercent: 50, minimumRingSize: 4096 },
    ],
    [
      "locality with the caller's locality and failover rules",
      { locality: { failover: [{ from: "us-east", to: "eu-west" }] } },
      { callerLocality: caller },
      {
        policy: LoadBalancerPolicy.UNSPECIFIED,
        minHealthPercent: 0,
        minimumRingSize: 1024,
        locality: { caller, failover: [{ from: "us-east", to: "eu-west" }] },
      },
    ],
    [
      "locality disabled",
      { locality: { enabled: false } },
      { callerLocality: caller },
      { policy: LoadBalancerPolicy.UNSPECIFIED, minHealthPercent: 0, minimumRingSize: 1024 },
    ],
    [
      "locality without a caller locality: off",
      { locality: {} },
      {},
      { policy: LoadBalancerPolicy.UNSPECIFIED, minHealthPercent: 0, minimumRingSize: 1024 },
    ],
    [
      "slow start with its window in ms",
      { policy: LoadBalancerPolicy.ROUND_ROBIN, slowStart: { window: { seconds: 30n }, aggression: 2 } },
      {},
      {
        policy: LoadBalancerPolicy.ROUND_ROBIN,
        minHealthPercent: 0,
        minimumRingSize: 1024,
        slowStart: { windowMs: 30_000, aggression: 2 },
      },
    ],
    [
      "slow start without a window: off",
      { slowStart: { minWeightPercent: 5 } },
      {},
      { policy: LoadBalancerPolicy.UNSPECIFIED, minHealthPercent: 0, minimumRingSize: 1024 },
    ],
  ];
  for (const [name, spec, options, expected] of cases) {
    it(name, () => {
      const message = spec === undefined ? undefined : create(LoadBalancerSchema, spec);
      assert.deepEqual(balancerConfigFrom(message, options), expected);
    });
  }
});
