/**
 * Merging per-replica rollouts (status/merge.ts) and the "Applied" condition built from them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { appliedCondition, mergeRollouts, parseStatusKey } from "@trellis/control-plane/status/merge";
import { statusKey } from "@trellis/control-plane/store/keys";
import type { ProxyRollout } from "@trellis/proto/gen/trellis/v1/common_pb";
import { ProxyRolloutSchema } from "@trellis/proto/gen/trellis/v1/common_pb";

function rollout(init: {
  applied?: number;
  rejected?: number;
  pending?: number;
  reasons?: [string, number, string[]][];
}): ProxyRollout {
  return create(ProxyRolloutSchema, {
    applied: init.applied ?? 0,
    rejected: init.rejected ?? 0,
    pending: init.pending ?? 0,
    reasons: (init.reasons ?? []).map(([reason, count, proxies]) => ({ reason, count, proxies })),
  });
}

describe("mergeRollouts", () => {
  it("sums counts and merges reasons by text, most common first", () => {
    const a = rollout({
      applied: 2,
      rejected: 2,
      pending: 1,
      reasons: [
        ["unsupported", 1, ["p1"]],
        ["bad regex", 1, ["p2"]],
      ],
    });
    const b = rollout({ applied: 5, rejected: 2, reasons: [["bad regex", 2, ["p3", "p4"]]] });
    const m = mergeRollouts([a, b]);
    assert.equal(m.applied, 7);
    assert.equal(m.rejected, 4);
    assert.equal(m.pending, 1);
    assert.deepEqual(
      m.reasons.map((r) => [r.reason, r.count, r.proxies]),
      [
        ["bad regex", 3, ["p2", "p3", "p4"]],
        ["unsupported", 1, ["p1"]],
      ],
    );
    assert.equal(a.reasons.length, 2, "inputs are not modified");
  });

  it("keeps at most 10 sample proxies per reason, but the full count", () => {
    const ids = (from: number) =>
      Array.from({ length: 8 }, (_, i) => `p${String(from + i).padStart(2, "0")}`);
    const m = mergeRollouts([
      rollout({ rejected: 8, reasons: [["x", 8, ids(0)]] }),
      rollout({ rejected: 8, reasons: [["x", 8, ids(8)]] }),
    ]);
    assert.equal(m.reasons[0]?.count, 16);
    assert.deepEqual(m.reasons[0]?.proxies, ids(0).concat(ids(8)).slice(0, 10));
  });

  it("of nothing is all zeros", () => {
    const m = mergeRollouts([]);
    assert.deepEqual([m.applied, m.rejected, m.pending, m.reasons.length], [0, 0, 0, 0]);
  });
});

describe("appliedCondition", () => {
  const cases: [string, ProxyRollout, string, string, RegExp][] = [
    ["all applied", rollout({ applied: 3 }), "True", "Applied", /applied by 3 proxies/],
    ["no proxies", rollout({}), "True", "NoProxies", /no connected proxy/],
    ["pending", rollout({ applied: 1, pending: 2 }), "False", "Pending", /2 of 3 proxies have not answered/],
    [
      "rejected",
      rollout({ applied: 1, rejected: 1, pending: 1, reasons: [["unsupported", 1, ["p"]]] }),
      "False",
      "Rejected",
      /1 of 3 proxies rejected it: unsupported \(1\)/,
    ],
  ];
  for (const [name, r, status, reason, message] of cases) {
    it(name, () => {
      const c = appliedCondition(r, 4n);
      assert.equal(c.type, "Applied");
      assert.equal(c.status, status);
      assert.equal(c.reason, reason);
      assert.match(c.message, message);
      assert.equal(c.observedGeneration, 4n);
    });
  }
});

describe("parseStatusKey", () => {
  it("splits what the recorder writes and refuses other shapes", () => {
    assert.deepEqual(parseStatusKey(statusKey("r1", "HTTPRoute", "shop", "orders")), {
      replica: "r1",
      kind: "HTTPRoute",
      namespace: "shop",
      name: "orders",
    });
    assert.equal(parseStatusKey("/trellis/v1/status/r1/HTTPRoute/shop"), undefined);
    assert.equal(parseStatusKey("/trellis/v1/policy/HTTPRoute/shop/orders"), undefined);
  });
});
