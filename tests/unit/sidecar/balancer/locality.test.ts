/**
 * Locality preference: traffic stays in the caller's zone while it has usable endpoints, then
 * fails over to the region, the configured failover regions, and anywhere — whichever policy runs
 * inside the tier.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type Endpoint, EndpointSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { LoadBalancerPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { HealthStatus, LocalitySchema } from "@trellis/proto/gen/trellis/v1/workload_pb";
import {
  type BalancerConfig,
  createBalancer,
  type LoadBalancer,
  reconcileEndpoints,
} from "@trellis/sidecar/balancer/balancer";
import {
  failoverOrder,
  LocalityBalancer,
  type LocalityConfig,
  localityTiers,
} from "@trellis/sidecar/balancer/locality";
import { testDeps } from "./fixtures.js";

function endpoint(n: number, where: string, init: MessageInitShape<typeof EndpointSchema> = {}): Endpoint {
  const [region = "", zone = "", subzone = ""] = where.split("/");
  return create(EndpointSchema, {
    address: `10.0.0.${n}`,
    port: 15006,
    appPort: 8080,
    proxyId: `orders-${n}`,
    identity: "spiffe://cluster.local/ns/shop/sa/orders",
    health: HealthStatus.HEALTHY,
    locality: create(LocalitySchema, { region, zone, subzone }),
    ...init,
  });
}

const key = (n: number): string => `10.0.0.${n}:15006`;

/** The caller runs in us-east/us-east-1a; us-east spills to eu-west before anything else. */
const LOCALITY: LocalityConfig = {
  caller: { region: "us-east", zone: "us-east-1a", subzone: "" },
  failover: [{ from: "us-east", to: "eu-west" }],
};

/** 1, 2 in the caller's zone; 3, 4 in its region; 5 in us-west; 6 in eu-west; 7 unknown. */
function cluster(): Endpoint[] {
  return [
    endpoint(5, "us-west/us-west-2a"),
    endpoint(3, "us-east/us-east-1b"),
    endpoint(1, "us-east/us-east-1a"),
    endpoint(6, "eu-west/eu-west-1a"),
    endpoint(7, ""),
    endpoint(2, "us-east/us-east-1a"),
    endpoint(4, "us-east/us-east-1c"),
  ];
}

/** The endpoint keys `lb` picks over `n` picks (each with its own hash key, for RING_HASH). */
function picked(lb: LoadBalancer, n = 1_000): Set<string> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const s = lb.pick({ hashKey: `user-${i}` });
    assert.ok(s, "a usable endpoint exists");
    seen.add(s.key);
  }
  return seen;
}

const sorted = (keys: Set<string>): string[] => [...keys].sort();
const POLICIES = [
  LoadBalancerPolicy.ROUND_ROBIN,
  LoadBalancerPolicy.LEAST_REQUEST,
  LoadBalancerPolicy.RING_HASH,
];

describe("localityTiers", () => {
  const states = reconcileEndpoints(cluster(), { now: () => 0 });
  const tierKeys = (config: LocalityConfig): string[][] =>
    localityTiers(states, config).map((t) => t.map((s) => s.key).sort());

  const cases: Array<[name: string, config: LocalityConfig, expected: number[][]]> = [
    ["zone, region, failover region, the rest", LOCALITY, [[1, 2], [3, 4], [6], [5, 7]]],
    [
      "no failover rules: zone, region, the rest",
      { caller: LOCALITY.caller },
      [
        [1, 2],
        [3, 4],
        [5, 6, 7],
      ],
    ],
    [
      "a caller with only a region",
      { caller: { region: "us-east", zone: "", subzone: "" } },
      [
        [1, 2, 3, 4],
        [5, 6, 7],
      ],
    ],
    [
      "a caller in a zone with no endpoints goes to its region first",
      { caller: { region: "us-west", zone: "us-west-2b", subzone: "" } },
      [[5], [1, 2, 3, 4, 6, 7]],
    ],
    [
      "a caller without a region: one tier",
      { caller: { region: "", zone: "", subzone: "" } },
      [[1, 2, 3, 4, 5, 6, 7]],
    ],
  ];
  for (const [name, config, expected] of cases) {
    it(name, () => {
      assert.deepEqual(
        tierKeys(config),
        expected.map((t) => t.map(key)),
      );
    });
  }

  it("prefers the caller's subzone within its zone", () => {
    const withSub = reconcileEndpoints([endpoint(1, "r/z/a"), endpoint(2, "r/z/b"), endpoint(3, "r/y/a")], {
      now: () => 0,
    });
    const tiers = localityTiers(withSub, { caller: { region: "r", zone: "z", subzone: "a" } });
    assert.deepEqual(
      tiers.map((t) => t.map((s) => s.key)),
      [[key(1)], [key(2)], [key(3)]],
    );
  });

  it("follows failover rules breadth first, each region once", () => {
    const rules = [
      { from: "us-west", to: "eu-west" },
      { from: "us-east", to: "us-west" },
      { from: "us-east", to: "us-central" },
      { from: "eu-west", to: "us-east" },
      { from: "us-central", to: "eu-west" },
      { from: "ap-south", to: "eu-west" },
    ];
    assert.deepEqual(failoverOrder("us-east", rules), ["us-west", "us-central", "eu-west"]);
    assert.deepEqual(failoverOrder("ap-south", rules), ["eu-west", "us-east", "us-west", "us-central"]);
  });
});

describe("locality preference", () => {
  for (const policy of POLICIES) {
    const config: BalancerConfig = { policy, locality: LOCALITY };

    it(`${LoadBalancerPolicy[policy]}: with local endpoints present, no traffic leaves the zone`, () => {
      const lb = createBalancer(config, cluster(), testDeps(3).deps);
      assert.ok(lb instanceof LocalityBalancer);
      assert.equal(lb.policy, policy);
      assert.deepEqual(sorted(picked(lb)), [key(1), key(2)], "both local endpoints serve, nothing else");
    });

    it(`${LoadBalancerPolicy[policy]}: fails over zone → region → failover region → anywhere as endpoints deregister`, () => {
      const { deps } = testDeps(5);
      const v1 = createBalancer(config, cluster(), deps);
      assert.deepEqual(sorted(picked(v1)), [key(1), key(2)]);
      const gone = (...ns: number[]): Endpoint[] =>
        cluster().filter((e) => !ns.some((n) => e.address === `10.0.0.${n}`));
      const v2 = createBalancer(config, gone(1, 2), deps, v1);
      assert.deepEqual(sorted(picked(v2)), [key(3), key(4)]);
      const v3 = createBalancer(config, gone(1, 2, 3, 4), deps, v2);
      assert.deepEqual(sorted(picked(v3)), [key(6)], "eu-west by the failover rule, before us-west");
      const v4 = createBalancer(config, gone(1, 2, 3, 4, 6), deps, v3);
      assert.deepEqual(sorted(picked(v4)), [key(5), key(7)]);
      const v5 = createBalancer(config, cluster(), deps, v4);
      assert.deepEqual(sorted(picked(v5)), [key(1), key(2)], "back home when the zone returns");
    });

    it(`${LoadBalancerPolicy[policy]}: fails over while local endpoints are ejected or unhealthy, and comes back`, () => {
      const { clock, deps } = testDeps(7);
      const lb = createBalancer(config, cluster(), deps);
      const byKey = (n: number) => lb.endpoints.find((s) => s.key === key(n))!;
      byKey(1).ejectedUntil = 1_000;
      assert.deepEqual(sorted(picked(lb)), [key(2)], "one local endpoint left: it takes everything");
      byKey(2).ejectedUntil = 2_000;
      assert.deepEqual(sorted(picked(lb)), [key(3), key(4)]);
      clock.t = 1_000;
      assert.deepEqual(sorted(picked(lb)), [key(1)]);
      const unhealthy = cluster().map((e) =>
        e.locality?.zone === "us-east-1a"
          ? create(EndpointSchema, { ...e, health: HealthStatus.UNHEALTHY })
          : e,
      );
      assert.deepEqual(sorted(picked(createBalancer(config, unhealthy, deps, lb))), [key(3), key(4)]);
    });
  }

  it("a retry stays in the zone while an untried local endpoint is usable, then leaves it", () => {
    const lb = createBalancer(
      { policy: LoadBalancerPolicy.ROUND_ROBIN, locality: LOCALITY },
      cluster(),
      testDeps().deps,
    );
    for (let i = 0; i < 50; i++) assert.equal(lb.pick({ exclude: new Set([key(1)]) })?.key, key(2));
    const localTried = new Set([key(1), key(2)]);
    for (let i = 0; i < 50; i++) assert.ok([key(3), key(4)].includes(lb.pick({ exclude: localTried })!.key));
    const everyone = new Set([1, 2, 3, 4, 5, 6, 7].map(key));
    assert.ok([key(1), key(2)].includes(lb.pick({ exclude: everyone })!.key), "all tried: a local repeat");
  });

  it("ring hash keeps each key on one endpoint within the tier", () => {
    const lb = createBalancer(
      { policy: LoadBalancerPolicy.RING_HASH, locality: LOCALITY },
      cluster(),
      testDeps().deps,
    );
    for (let i = 0; i < 200; i++) {
      const k = `user-${i}`;
      const first = lb.pick({ hashKey: k })!.key;
      assert.ok([key(1), key(2)].includes(first));
      assert.equal(lb.pick({ hashKey: k })!.key, first);
    }
  });

  it("in panic (whole cluster below minHealthPercent) spreads over every non-draining endpoint", () => {
    const sick = cluster().map((e) =>
      e.address === "10.0.0.1" ? e : create(EndpointSchema, { ...e, health: HealthStatus.UNHEALTHY }),
    );
    const lb = createBalancer(
      { policy: LoadBalancerPolicy.ROUND_ROBIN, locality: LOCALITY, minHealthPercent: 50 },
      sick,
      testDeps().deps,
    );
    assert.equal(picked(lb).size, 7);
    assert.ok(lb.panicking);
    // Without the threshold, the one healthy local endpoint takes everything.
    const strict = createBalancer(
      { policy: LoadBalancerPolicy.ROUND_ROBIN, locality: LOCALITY },
      sick,
      testDeps().deps,
    );
    assert.deepEqual(sorted(picked(strict)), [key(1)]);
    assert.ok(!strict.panicking);
  });

  it("is off for a caller without a region", () => {
    const lb = createBalancer(
      { policy: LoadBalancerPolicy.ROUND_ROBIN, locality: { caller: { region: "", zone: "", subzone: "" } } },
      cluster(),
      testDeps().deps,
    );
    assert.ok(!(lb instanceof LocalityBalancer));
    assert.equal(picked(lb).size, 7);
  });

  it("returns undefined when no endpoint is usable anywhere", () => {
    const none = cluster().map((e) => create(EndpointSchema, { ...e, health: HealthStatus.DRAINING }));
    const lb = createBalancer(
      { policy: LoadBalancerPolicy.LEAST_REQUEST, locality: LOCALITY },
      none,
      testDeps().deps,
    );
    assert.equal(lb.pick({}), undefined);
    assert.equal(lb.pick({ exclude: new Set([key(1)]) }), undefined);
  });
});
