/**
 * Outlier detection: thresholds, counter resets, ejection length and decay, the max-ejection-percent
 * cap, state carried across config updates, and the balancer's panic mode over ejected endpoints.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@trellis/proto/duration";
import { LoadBalancerPolicy, OutlierDetectionSchema } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { HealthStatus } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { type BalancerConfig, createBalancer, type LoadBalancer } from "@trellis/sidecar/balancer/balancer";
import type { EndpointState } from "@trellis/sidecar/balancer/endpoint-state";
import {
  DEFAULT_OUTLIER_CONFIG,
  type EndpointResult,
  type OutlierConfig,
  OutlierDetector,
  outlierConfig,
} from "@trellis/sidecar/resilience/outlier-detector";
import { endpoint, testDeps } from "../balancer/fixtures.js";

const RR: BalancerConfig = { policy: LoadBalancerPolicy.ROUND_ROBIN };

/** A round-robin balancer over endpoints 1..n, a detector with `config`, on one test clock. */
function setup(n: number, config: Partial<OutlierConfig> = {}, balancer: BalancerConfig = RR) {
  const { clock, deps } = testDeps();
  clock.t = 1_000;
  const endpoints = Array.from({ length: n }, (_, i) => endpoint(i + 1));
  const lb = createBalancer(balancer, endpoints, deps);
  const detector = new OutlierDetector({ ...DEFAULT_OUTLIER_CONFIG, ...config }, deps.now);
  return { clock, deps, lb, detector, endpoints };
}

function at(lb: LoadBalancer, i: number): EndpointState {
  const s = lb.endpoints[i];
  assert.ok(s, `no endpoint ${i}`);
  return s;
}

/** Reports `result` `times` times; returns the 1-based indexes of the reports that ejected. */
function reportMany(
  detector: OutlierDetector,
  state: EndpointState,
  result: EndpointResult,
  times: number,
  all: readonly EndpointState[],
): number[] {
  const ejected: number[] = [];
  for (let i = 1; i <= times; i++) if (detector.report(state, result, all)) ejected.push(i);
  return ejected;
}

/** The keys a balancer picks over `picks` picks. */
function picked(lb: LoadBalancer, picks = 30): Set<string> {
  const keys = new Set<string>();
  for (let i = 0; i < picks; i++) {
    const s = lb.pick({});
    if (s !== undefined) keys.add(s.key);
  }
  return keys;
}

describe("outlierConfig", () => {
  const cases: {
    name: string;
    spec: MessageInitShape<typeof OutlierDetectionSchema> | undefined;
    want: OutlierConfig;
  }[] = [
    { name: "no block: the pinned defaults", spec: undefined, want: DEFAULT_OUTLIER_CONFIG },
    {
      name: "an empty block: the pinned defaults",
      spec: {},
      want: {
        enabled: true,
        consecutive5xx: 0,
        consecutiveGatewayErrors: 5,
        intervalMs: 10_000,
        baseEjectionMs: 30_000,
        maxEjectionMs: 300_000,
        maxEjectionPercent: 50,
        minHealthPercent: 50,
      },
    },
    {
      name: "every field set",
      spec: {
        enabled: false,
        consecutive5xx: 3,
        consecutiveGatewayErrors: 2,
        interval: durationFromMs(500),
        baseEjectionTime: durationFromMs(1_500),
        maxEjectionTime: durationFromMs(60_000),
        maxEjectionPercent: 100,
        minHealthPercent: 0,
      },
      want: {
        enabled: false,
        consecutive5xx: 3,
        consecutiveGatewayErrors: 2,
        intervalMs: 500,
        baseEjectionMs: 1_500,
        maxEjectionMs: 60_000,
        maxEjectionPercent: 100,
        minHealthPercent: 0,
      },
    },
    {
      name: "a base above the default cap raises the cap; out-of-range percents are clamped",
      spec: { baseEjectionTime: durationFromMs(400_000), maxEjectionPercent: 150, minHealthPercent: -5 },
      want: {
        ...DEFAULT_OUTLIER_CONFIG,
        baseEjectionMs: 400_000,
        maxEjectionMs: 400_000,
        maxEjectionPercent: 100,
        minHealthPercent: 0,
      },
    },
    {
      name: "a zero interval takes the default",
      spec: { interval: durationFromMs(0) },
      want: DEFAULT_OUTLIER_CONFIG,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const spec = c.spec === undefined ? undefined : create(OutlierDetectionSchema, c.spec);
      assert.deepEqual(outlierConfig(spec), c.want);
    });
  }
});

describe("OutlierDetector", () => {
  it("ejects on exactly the 5th consecutive gateway error, for the base ejection time", () => {
    const { clock, lb, detector } = setup(3);
    const e = at(lb, 0);
    assert.deepEqual(reportMany(detector, e, "gateway-error", 4, lb.endpoints), []);
    assert.equal(e.ejectedUntil, 0);
    assert.equal(detector.ejectedCount(lb.endpoints), 0);
    assert.equal(detector.report(e, "gateway-error", lb.endpoints), true);
    assert.equal(e.ejectedUntil, clock.t + 30_000);
    assert.equal(detector.ejectedCount(lb.endpoints), 1);
    assert.equal(e.signals.outlier.timesEjected, 1);
    assert.ok(!picked(lb).has(e.key), "an ejected endpoint is not picked");
  });

  it("returns the endpoint when the ejection time has passed, without any call", () => {
    const { clock, lb, detector } = setup(3);
    const e = at(lb, 0);
    reportMany(detector, e, "gateway-error", 5, lb.endpoints);
    clock.t += 29_999;
    assert.equal(detector.ejectedCount(lb.endpoints), 1);
    assert.ok(!picked(lb).has(e.key));
    clock.t += 1;
    assert.equal(detector.ejectedCount(lb.endpoints), 0);
    assert.ok(picked(lb).has(e.key));
  });

  it("a success resets the run of errors", () => {
    const { lb, detector } = setup(3);
    const e = at(lb, 0);
    assert.deepEqual(reportMany(detector, e, "gateway-error", 4, lb.endpoints), []);
    detector.report(e, "success", lb.endpoints);
    assert.deepEqual(reportMany(detector, e, "gateway-error", 4, lb.endpoints), []);
    assert.equal(e.ejectedUntil, 0);
    assert.equal(detector.report(e, "gateway-error", lb.endpoints), true);
  });

  it("ignores other 5xx by default, and a non-gateway 5xx breaks a run of gateway errors", () => {
    const { lb, detector } = setup(3);
    const e = at(lb, 0);
    assert.deepEqual(reportMany(detector, e, "server-error", 100, lb.endpoints), []);
    reportMany(detector, e, "gateway-error", 4, lb.endpoints);
    detector.report(e, "server-error", lb.endpoints);
    assert.deepEqual(reportMany(detector, e, "gateway-error", 4, lb.endpoints), []);
    assert.equal(e.ejectedUntil, 0);
  });

  it("with consecutive5xx set, ejects on that many 5xx, gateway errors included", () => {
    const { lb, detector } = setup(3, { consecutive5xx: 3 });
    const a = at(lb, 0);
    assert.deepEqual(reportMany(detector, a, "server-error", 3, lb.endpoints), [3]);
    const b = at(lb, 1);
    reportMany(detector, b, "server-error", 2, lb.endpoints);
    assert.equal(detector.report(b, "gateway-error", lb.endpoints), true, "a 502 is a 5xx too");
  });

  it("lengthens each ejection by the base time (twice, three times…) up to the cap", () => {
    const { clock, lb, detector } = setup(3, {
      baseEjectionMs: 1_000,
      maxEjectionMs: 2_500,
      intervalMs: 60_000,
    });
    const e = at(lb, 0);
    const lengths: number[] = [];
    for (let i = 0; i < 4; i++) {
      reportMany(detector, e, "gateway-error", 5, lb.endpoints);
      lengths.push(e.ejectedUntil - clock.t);
      clock.t = e.ejectedUntil; // back, and failing again at once
    }
    assert.deepEqual(lengths, [1_000, 2_000, 2_500, 2_500]);
  });

  it("uses the default base and cap: 30s, 60s, … 300s", () => {
    const { clock, lb, detector } = setup(3);
    const e = at(lb, 0);
    const lengths: number[] = [];
    for (let i = 0; i < 11; i++) {
      reportMany(detector, e, "gateway-error", 5, lb.endpoints);
      lengths.push(e.ejectedUntil - clock.t);
      clock.t = e.ejectedUntil + 9_999; // under one interval un-ejected: no decay
    }
    assert.deepEqual(
      lengths,
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10].map((n) => n * 30_000),
    );
  });

  it("forgets one ejection per full interval spent un-ejected", () => {
    const { clock, lb, detector } = setup(3, {
      baseEjectionMs: 1_000,
      maxEjectionMs: 100_000,
      intervalMs: 10_000,
    });
    const e = at(lb, 0);
    const eject = () => {
      assert.deepEqual(reportMany(detector, e, "gateway-error", 5, lb.endpoints), [5]);
      return e.ejectedUntil - clock.t;
    };
    assert.equal(eject(), 1_000);
    clock.t = e.ejectedUntil;
    assert.equal(eject(), 2_000);
    clock.t = e.ejectedUntil;
    assert.equal(eject(), 3_000);
    // Back at the end of the third ejection; one full interval and a bit un-ejected: 3 → 2.
    clock.t = e.ejectedUntil + 15_000;
    assert.equal(eject(), 3_000, "2 remembered + this one");
    // Two full intervals (the half interval left over from before does not count twice): 3 → 1.
    clock.t = e.ejectedUntil + 20_000;
    assert.equal(eject(), 2_000);
    // Long enough to forget everything.
    clock.t = e.ejectedUntil + 1_000_000;
    assert.equal(eject(), 1_000);
  });

  it("decays across reports: partial intervals add up", () => {
    const { clock, lb, detector } = setup(3, { baseEjectionMs: 1_000, intervalMs: 10_000 });
    const e = at(lb, 0);
    reportMany(detector, e, "gateway-error", 5, lb.endpoints);
    clock.t = e.ejectedUntil;
    reportMany(detector, e, "gateway-error", 5, lb.endpoints);
    assert.equal(e.signals.outlier.timesEjected, 2);
    const back = e.ejectedUntil;
    clock.t = back + 6_000;
    detector.report(e, "success", lb.endpoints);
    assert.equal(e.signals.outlier.timesEjected, 2);
    clock.t = back + 12_000;
    detector.report(e, "success", lb.endpoints);
    assert.equal(e.signals.outlier.timesEjected, 1);
    clock.t = back + 19_999;
    detector.report(e, "success", lb.endpoints);
    assert.equal(e.signals.outlier.timesEjected, 1);
    clock.t = back + 20_000;
    detector.report(e, "success", lb.endpoints);
    assert.equal(e.signals.outlier.timesEjected, 0);
  });

  it("ignores results while ejected: the next ejection needs a full run after return", () => {
    const { clock, lb, detector } = setup(3);
    const e = at(lb, 0);
    reportMany(detector, e, "gateway-error", 5, lb.endpoints);
    // Requests in flight at the ejection fail while it is in force.
    assert.deepEqual(reportMany(detector, e, "gateway-error", 20, lb.endpoints), []);
    clock.t = e.ejectedUntil;
    assert.deepEqual(reportMany(detector, e, "gateway-error", 5, lb.endpoints), [5]);
  });

  it("caps ejections at maxEjectionPercent, checked before ejecting: 2 of 3 at 50%", () => {
    const { lb, detector } = setup(3);
    const ejected = lb.endpoints.map((e) => reportMany(detector, e, "gateway-error", 5, lb.endpoints));
    assert.deepEqual(ejected, [[5], [5], []], "0% and 33% are below 50%; 67% is not");
    assert.equal(detector.ejectedCount(lb.endpoints), 2);
    assert.equal(at(lb, 2).ejectedUntil, 0);
  });

  it("caps ejections at maxEjectionPercent: 5 of 10 at 50%, and the refused one is ejected once room frees", () => {
    const { clock, lb, detector } = setup(10, { baseEjectionMs: 1_000, intervalMs: 60_000 });
    const ejected = lb.endpoints.map((e) => reportMany(detector, e, "gateway-error", 5, lb.endpoints).length);
    assert.deepEqual(ejected, [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
    assert.equal(detector.ejectedCount(lb.endpoints), 5);
    clock.t += 1_000; // every ejection has expired
    assert.equal(detector.ejectedCount(lb.endpoints), 0);
    assert.deepEqual(reportMany(detector, at(lb, 5), "gateway-error", 5, lb.endpoints), [5]);
  });

  it("maxEjectionPercent 0 never ejects; 100 ejects every endpoint", () => {
    const none = setup(2, { maxEjectionPercent: 0 });
    for (const e of none.lb.endpoints) reportMany(none.detector, e, "gateway-error", 10, none.lb.endpoints);
    assert.equal(none.detector.ejectedCount(none.lb.endpoints), 0);
    const all = setup(2, { maxEjectionPercent: 100 });
    for (const e of all.lb.endpoints) reportMany(all.detector, e, "gateway-error", 5, all.lb.endpoints);
    assert.equal(all.detector.ejectedCount(all.lb.endpoints), 2);
  });

  it("keeps counters and ejections across a rebuilt balancer with an unrelated change", () => {
    const { deps, lb, detector, endpoints } = setup(3);
    const first = at(lb, 0);
    reportMany(detector, first, "gateway-error", 5, lb.endpoints);
    const until = first.ejectedUntil;
    assert.ok(until > 0);
    const second = at(lb, 1);
    reportMany(detector, second, "gateway-error", 3, lb.endpoints);
    // Next snapshot: endpoint 2's weight changes (a new state, same signals) and endpoint 4 joins.
    const next = [endpoints[0]!, endpoint(2, { weight: 7 }), endpoints[2]!, endpoint(4)];
    const lb2 = createBalancer(RR, next, deps, lb);
    assert.equal(at(lb2, 0).ejectedUntil, until);
    assert.ok(!picked(lb2).has(first.key));
    const second2 = at(lb2, 1);
    assert.notEqual(second2, second);
    // One request picked from the new snapshot fails, then one still in flight from the old
    // snapshot: 5 in a row, and the old state's report ejects the endpoint of the new snapshot.
    assert.equal(detector.report(second2, "gateway-error", lb2.endpoints), false);
    assert.equal(detector.report(second, "gateway-error", lb2.endpoints), true);
    assert.ok(second2.ejectedUntil > 0);
    assert.ok(!picked(lb2).has(second.key));
    assert.ok(!picked(lb).has(second.key), "the older balancer sees the ejection too");
  });

  it("keeps counters and ejections across reconfigure, and applies the new thresholds", () => {
    const { clock, lb, detector } = setup(3);
    const a = at(lb, 0);
    reportMany(detector, a, "gateway-error", 5, lb.endpoints);
    const b = at(lb, 1);
    reportMany(detector, b, "gateway-error", 2, lb.endpoints);
    detector.reconfigure({ ...DEFAULT_OUTLIER_CONFIG, consecutiveGatewayErrors: 3, baseEjectionMs: 5_000 });
    assert.ok(a.ejectedUntil > clock.t);
    assert.equal(detector.report(b, "gateway-error", lb.endpoints), true);
    assert.equal(b.ejectedUntil, clock.t + 5_000);
  });

  it("panic: with 2 of 3 ejected, a balancer with minHealthPercent 50 picks all three", () => {
    const config = outlierConfig(undefined);
    const { deps, lb, detector, endpoints } = setup(3, config, {
      ...RR,
      minHealthPercent: config.minHealthPercent,
    });
    reportMany(detector, at(lb, 0), "gateway-error", 5, lb.endpoints);
    reportMany(detector, at(lb, 1), "gateway-error", 5, lb.endpoints);
    assert.equal(detector.ejectedCount(lb.endpoints), 2);
    assert.equal(picked(lb).size, 3);
    assert.ok(lb.panicking);
    // A rebuilt balancer with the same threshold panics too; without a threshold, only one is left.
    const lb2 = createBalancer({ ...RR, minHealthPercent: 50 }, endpoints, deps, lb);
    assert.equal(picked(lb2).size, 3);
    assert.ok(lb2.panicking);
    const calm = createBalancer({ ...RR, minHealthPercent: 0 }, endpoints, deps, lb);
    assert.deepEqual([...picked(calm)], [at(lb, 2).key]);
    assert.ok(!calm.panicking);
  });

  it("disabled: never ejects, and leaves an ejection in force to expire", () => {
    const off = setup(3, { enabled: false });
    assert.deepEqual(reportMany(off.detector, at(off.lb, 0), "gateway-error", 50, off.lb.endpoints), []);
    assert.equal(off.detector.ejectedCount(off.lb.endpoints), 0);

    const { clock, lb, detector } = setup(3);
    const e = at(lb, 0);
    reportMany(detector, e, "gateway-error", 5, lb.endpoints);
    const until = e.ejectedUntil;
    detector.reconfigure({ ...DEFAULT_OUTLIER_CONFIG, enabled: false });
    clock.t = until;
    assert.deepEqual(reportMany(detector, e, "gateway-error", 50, lb.endpoints), []);
    assert.equal(e.ejectedUntil, until);
  });

  it("never ejects a draining or unhealthy endpoint", () => {
    const { clock, deps } = testDeps();
    const lb = createBalancer(
      RR,
      [
        endpoint(1, { health: HealthStatus.DRAINING }),
        endpoint(2, { health: HealthStatus.UNHEALTHY }),
        endpoint(3),
      ],
      deps,
    );
    const detector = new OutlierDetector({ ...DEFAULT_OUTLIER_CONFIG, maxEjectionPercent: 100 }, deps.now);
    assert.deepEqual(reportMany(detector, at(lb, 0), "gateway-error", 10, lb.endpoints), []);
    assert.deepEqual(reportMany(detector, at(lb, 1), "gateway-error", 10, lb.endpoints), []);
    assert.equal(detector.ejectedCount(lb.endpoints), 0);
    assert.deepEqual(reportMany(detector, at(lb, 2), "gateway-error", 5, lb.endpoints), [5]);
    assert.equal(at(lb, 2).ejectedUntil, clock.t + 30_000);
  });

  it("does not eject by the health of an old snapshot: the current one decides", () => {
    const { deps, lb, detector, endpoints } = setup(3);
    const old = at(lb, 0);
    const lb2 = createBalancer(
      RR,
      [endpoint(1, { health: HealthStatus.DRAINING }), endpoints[1]!, endpoints[2]!],
      deps,
      lb,
    );
    assert.deepEqual(reportMany(detector, old, "gateway-error", 5, lb2.endpoints), []);
    assert.equal(old.ejectedUntil, 0);
  });

  it("counts results for an endpoint not in the list, but does not eject it", () => {
    const { lb, detector } = setup(3);
    const e = at(lb, 0);
    const others = lb.endpoints.slice(1);
    assert.deepEqual(reportMany(detector, e, "gateway-error", 4, others), []);
    assert.equal(e.signals.outlier.consecutiveGatewayErrors, 4);
    assert.equal(detector.report(e, "gateway-error", others), false);
    assert.equal(e.ejectedUntil, 0);
    assert.equal(detector.ejectedCount(lb.endpoints), 0);
  });
});
