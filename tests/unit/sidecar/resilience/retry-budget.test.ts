/**
 * Retry budget: retries stay within percent of the requests plus a per-second floor over a sliding
 * window, on an injected monotonic clock — including the outage property the integration test
 * checks (every upstream failing, a steady request stream, every request wanting more retries).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@trellis/proto/duration";
import { RetryBudgetSchema } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import {
  RetryBudget,
  type RetryBudgetConfig,
  retryBudgetConfig,
} from "@trellis/sidecar/resilience/retry-budget";

/** A budget on a test clock that the test moves by hand. */
function budgetAt(config: RetryBudgetConfig): { budget: RetryBudget; clock: { ms: number } } {
  const clock = { ms: 1_000_000 }; // not 0: bucket boundaries must not depend on the epoch
  const budget = new RetryBudget(config, () => clock.ms);
  return { budget, clock };
}

/** How many of `n` retry requests the budget grants now. */
function grant(budget: RetryBudget, n: number): number {
  let granted = 0;
  for (let i = 0; i < n; i++) if (budget.tryRetry()) granted++;
  return granted;
}

function requests(budget: RetryBudget, n: number): void {
  for (let i = 0; i < n; i++) budget.onRequest();
}

const DEFAULTS: RetryBudgetConfig = { percent: 20, minRetriesPerSecond: 10, windowMs: 10_000 };

describe("retryBudgetConfig", () => {
  const table: {
    name: string;
    spec: Parameters<typeof create<typeof RetryBudgetSchema>>[1] | undefined;
    expect: RetryBudgetConfig;
  }[] = [
    { name: "no budget configured: 20% + 10/s over 10s", spec: undefined, expect: DEFAULTS },
    { name: "an empty budget: the same defaults", spec: {}, expect: DEFAULTS },
    {
      name: "every field set",
      spec: { percent: 5.5, minRetriesPerSecond: 3, window: durationFromMs(30_000) },
      expect: { percent: 5.5, minRetriesPerSecond: 3, windowMs: 30_000 },
    },
    {
      name: "explicit zeros are kept, not defaulted",
      spec: { percent: 0, minRetriesPerSecond: 0 },
      expect: { percent: 0, minRetriesPerSecond: 0, windowMs: 10_000 },
    },
    {
      name: "out-of-range values are clamped",
      spec: { percent: 250, window: durationFromMs(-5) },
      expect: { percent: 100, minRetriesPerSecond: 10, windowMs: 10_000 },
    },
  ];
  for (const row of table) {
    it(row.name, () => {
      const spec = row.spec === undefined ? undefined : create(RetryBudgetSchema, row.spec);
      assert.deepEqual(retryBudgetConfig(spec), row.expect);
    });
  }
});

/**
 * An outage: `rate` first tries per second for `seconds`, every attempt failing; each request
 * retries up to `wanted` times with backoffs of 25, 50, 100 … ms until the budget says no. Runs in
 * 1 ms steps; after the traffic stops, the retries still in backoff are played out. Returns the
 * totals and the largest excess over the bound, checked at every whole second.
 */
function outage(
  config: RetryBudgetConfig,
  rate: number,
  seconds: number,
  wanted: number,
): { requests: number; retries: number; denied: number; worstExcess: number; overAllowed: number } {
  let now = 0;
  const budget = new RetryBudget(config, () => now);
  const endMs = seconds * 1_000;
  const tailMs = 25 * 2 ** wanted + 1_000;
  /** due[t]: the retry numbers (1-based) that come out of backoff at ms t. */
  const due: number[][] = Array.from({ length: endMs + tailMs }, () => []);
  const gapMs = 1_000 / rate;
  let nextRequestMs = 0;
  let sent = 0;
  let retries = 0;
  let denied = 0;
  let worstExcess = Number.NEGATIVE_INFINITY;
  let overAllowed = 0;
  for (now = 0; now < endMs + tailMs; now++) {
    while (nextRequestMs <= now && nextRequestMs < endMs) {
      budget.onRequest();
      sent++;
      due[now + 25]!.push(1);
      nextRequestMs += gapMs;
    }
    for (const n of due[now]!) {
      if (!budget.tryRetry()) {
        denied++;
        continue;
      }
      retries++;
      if (n < wanted) due[now + 25 * 2 ** n]!.push(n + 1);
    }
    const snap = budget.snapshot();
    if (snap.retries > snap.allowed) overAllowed++;
    if ((now + 1) % 1_000 === 0) {
      const elapsedSeconds = Math.min(now + 1, endMs) / 1_000;
      const bound =
        (config.percent / 100) * sent +
        config.minRetriesPerSecond * (elapsedSeconds + config.windowMs / 1_000);
      worstExcess = Math.max(worstExcess, retries - bound);
    }
  }
  return { requests: sent, retries, denied, worstExcess, overAllowed };
}

describe("RetryBudget: outage property", () => {
  const table: { name: string; config: RetryBudgetConfig; rate: number; seconds: number; wanted: number }[] =
    [
      {
        name: "defaults, 50 req/s for 30 s, 3 retries wanted each",
        config: DEFAULTS,
        rate: 50,
        seconds: 30,
        wanted: 3,
      },
      {
        name: "10% + 5/s over 5 s, 200 req/s for 60 s, 2 retries wanted each",
        config: { percent: 10, minRetriesPerSecond: 5, windowMs: 5_000 },
        rate: 200,
        seconds: 60,
        wanted: 2,
      },
      {
        name: "defaults, 3 req/s for 40 s (the floor dominates)",
        config: DEFAULTS,
        rate: 3,
        seconds: 40,
        wanted: 3,
      },
    ];
  for (const row of table) {
    it(`${row.name}: retries ≤ percent × requests + min × (T + window)`, () => {
      const r = outage(row.config, row.rate, row.seconds, row.wanted);
      const { percent, minRetriesPerSecond, windowMs } = row.config;
      assert.equal(r.requests, row.rate * row.seconds);
      const bound = (percent / 100) * r.requests + minRetriesPerSecond * (row.seconds + windowMs / 1_000);
      assert.ok(r.retries <= bound, `${r.retries} retries > bound ${bound}`);
      assert.ok(r.worstExcess <= 0, `at some second the retries exceeded the bound by ${r.worstExcess}`);
      assert.equal(r.overAllowed, 0, "the window held more retries than it allowed");
      // Not too strict either: the budget lets through at least its steady share, and says no to the rest.
      const share = Math.min(
        r.requests * row.wanted,
        (percent / 100) * r.requests + minRetriesPerSecond * row.seconds,
      );
      assert.ok(r.retries >= share, `${r.retries} retries < steady share ${share}`);
      assert.equal(r.retries + r.denied <= r.requests * row.wanted, true);
    });
  }

  it("without a budget the same outage would triple the load (the test exercises the limit)", () => {
    const r = outage(DEFAULTS, 50, 30, 3);
    assert.ok(r.denied > r.requests / 2, `only ${r.denied} retries denied`);
  });
});

describe("RetryBudget: limits", () => {
  it("with zero traffic allows the floor, min × window seconds, and no more", () => {
    const { budget } = budgetAt(DEFAULTS);
    assert.equal(grant(budget, 150), 100);
    assert.deepEqual(budget.snapshot(), { requests: 0, retries: 100, allowed: 100 });
  });

  it("adds percent of the window's requests to the floor", () => {
    const { budget } = budgetAt(DEFAULTS);
    requests(budget, 1_000);
    assert.equal(grant(budget, 1_000), 200 + 100);
    assert.deepEqual(budget.snapshot(), { requests: 1_000, retries: 300, allowed: 300 });
  });

  it("counts a granted retry at once and a denied one not at all", () => {
    const { budget } = budgetAt({ percent: 0, minRetriesPerSecond: 1, windowMs: 2_000 });
    assert.equal(budget.tryRetry(), true);
    assert.equal(budget.snapshot().retries, 1);
    assert.equal(budget.tryRetry(), true);
    assert.equal(budget.tryRetry(), false);
    assert.equal(budget.snapshot().retries, 2);
  });

  it("percent 0 and min 0 allow no retry at all, whatever the traffic", () => {
    const { budget, clock } = budgetAt({ percent: 0, minRetriesPerSecond: 0, windowMs: 10_000 });
    for (let s = 0; s < 20; s++) {
      requests(budget, 1_000);
      assert.equal(grant(budget, 10), 0);
      clock.ms += 1_000;
    }
  });

  it("is exact where floating point is not: 20% of 5 requests is 1 retry", () => {
    const { budget } = budgetAt({ percent: 20, minRetriesPerSecond: 0, windowMs: 10_000 });
    requests(budget, 5);
    assert.equal(grant(budget, 5), 1);
  });
});

describe("RetryBudget: sliding window", () => {
  it("frees the floor one window after it was used, not before", () => {
    const { budget, clock } = budgetAt(DEFAULTS);
    assert.equal(grant(budget, 100), 100);
    clock.ms += 9_999;
    assert.equal(grant(budget, 1), 0, "still inside the window");
    clock.ms += 1;
    assert.equal(grant(budget, 150), 100, "the window moved past the retries");
  });

  it("slides bucket by bucket: retries expire one window after their own bucket", () => {
    const { budget, clock } = budgetAt(DEFAULTS);
    const start = clock.ms;
    assert.equal(grant(budget, 40), 40); // bucket 0
    clock.ms = start + 3_000;
    assert.equal(grant(budget, 60), 60); // bucket 3; the window is full
    assert.equal(grant(budget, 1), 0);
    clock.ms = start + 10_000; // bucket 0 out, bucket 3 still in
    assert.equal(grant(budget, 100), 40);
    clock.ms = start + 13_000; // bucket 3 out too
    assert.equal(grant(budget, 100), 60);
  });

  it("forgets requests after the window: their percent share goes with them", () => {
    const { budget, clock } = budgetAt({ percent: 50, minRetriesPerSecond: 0, windowMs: 10_000 });
    const start = clock.ms;
    requests(budget, 10);
    clock.ms = start + 5_000;
    requests(budget, 4);
    assert.equal(budget.snapshot().allowed, 7);
    clock.ms = start + 10_000;
    assert.deepEqual(budget.snapshot(), { requests: 4, retries: 0, allowed: 2 });
    assert.equal(grant(budget, 5), 2);
    clock.ms = start + 15_000; // the 4 requests expire; the 2 retries they paid for (at 10 s) stay
    assert.deepEqual(budget.snapshot(), { requests: 0, retries: 2, allowed: 0 });
    assert.equal(grant(budget, 1), 0);
  });

  it("starts clean after an idle gap of many windows", () => {
    const { budget, clock } = budgetAt(DEFAULTS);
    requests(budget, 500);
    grant(budget, 500);
    clock.ms += 6 * 3_600_000;
    assert.deepEqual(budget.snapshot(), { requests: 0, retries: 0, allowed: 100 });
    assert.equal(grant(budget, 150), 100);
  });

  it("does not expire anything when the clock goes back", () => {
    const { budget, clock } = budgetAt(DEFAULTS);
    assert.equal(grant(budget, 100), 100);
    clock.ms -= 60_000;
    assert.equal(grant(budget, 1), 0);
    assert.equal(budget.snapshot().retries, 100);
  });
});

describe("RetryBudget: reconfigure", () => {
  it("keeps the window's counts under new limits", () => {
    const { budget } = budgetAt({ percent: 20, minRetriesPerSecond: 0, windowMs: 10_000 });
    requests(budget, 100);
    assert.equal(grant(budget, 100), 20);
    budget.reconfigure({ percent: 50, minRetriesPerSecond: 0, windowMs: 10_000 });
    assert.deepEqual(budget.snapshot(), { requests: 100, retries: 20, allowed: 50 });
    assert.equal(grant(budget, 100), 30, "only the difference is new budget");
    budget.reconfigure({ percent: 10, minRetriesPerSecond: 0, windowMs: 10_000 });
    assert.equal(grant(budget, 1), 0, "lower limits do not forgive retries already made");
    assert.deepEqual(budget.snapshot(), { requests: 100, retries: 50, allowed: 10 });
  });

  it("a re-push of the same config in an outage hands out no fresh budget", () => {
    const { budget } = budgetAt(DEFAULTS);
    assert.equal(grant(budget, 200), 100);
    budget.reconfigure({ ...DEFAULTS });
    assert.equal(grant(budget, 200), 0);
  });

  it("a shorter window forgets the kept buckets sooner", () => {
    const { budget, clock } = budgetAt(DEFAULTS); // 1 s buckets
    assert.equal(grant(budget, 100), 100);
    budget.reconfigure({ percent: 20, minRetriesPerSecond: 10, windowMs: 2_000 }); // 200 ms buckets
    assert.equal(grant(budget, 1), 0, "the 100 retries still count");
    clock.ms += 2_000;
    assert.equal(grant(budget, 100), 20);
  });
});
