// Local rate limits: the token bucket with an injected clock (exact counts), perIdentity keying
// with an LRU bound, rescaling on reconfigure, the header values, and the registry that keeps
// buckets across config rebuilds.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { rateLimitHeaders } from "@trellis/sidecar/proxy/local-reply";
import {
  type LocalLimits,
  LocalRateLimiter,
  LocalRateLimitRegistry,
  type RateLimitQuota,
} from "@trellis/sidecar/resilience/local-rate-limit";

/** A clock the test moves by hand, in ms. */
function manualClock(start = 0): { now: () => number; advance(ms: number): void; set(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
    set: (ms) => {
      t = ms;
    },
  };
}

function limits(requestsPerSecond: number, burst: number, perIdentity = false): LocalLimits {
  return { requestsPerSecond, burst, perIdentity };
}

/** How many of `n` takes are admitted at the current instant. */
function admitted(l: LocalRateLimiter, n: number, identity?: string): number {
  let ok = 0;
  for (let i = 0; i < n; i++) if (l.take(identity) === undefined) ok++;
  return ok;
}

describe("local rate limit: token bucket", () => {
  it("admits the burst at once, then the rate, in fractions of a token", () => {
    const clock = manualClock();
    const l = new LocalRateLimiter("shop/limits", limits(10, 5), clock.now);
    assert.equal(admitted(l, 8), 5, "a full bucket admits exactly `burst` at once");
    clock.advance(100); // one token at 10/s
    assert.equal(admitted(l, 3), 1);
    clock.advance(50); // half a token: not enough
    assert.equal(l.take(undefined) !== undefined, true, "half a token admits nothing");
    clock.advance(50); // the other half: a refused request took nothing
    assert.equal(admitted(l, 3), 1);
    clock.advance(60_000); // refill is capped at the capacity
    assert.equal(admitted(l, 100), 5);
  });

  it("burst 0 is a capacity of one token: requests spaced by 1/rate", () => {
    const clock = manualClock();
    const l = new LocalRateLimiter("shop/limits", limits(4, 0), clock.now);
    assert.equal(admitted(l, 3), 1);
    clock.advance(249);
    assert.equal(admitted(l, 1), 0);
    clock.advance(1);
    assert.equal(admitted(l, 3), 1);
  });

  // Paced at twice the limit for T = 10 s (requests at 0, 1/2r, …, T): exactly r × T + burst.
  const paced: { name: string; rps: number; burst: number }[] = [
    { name: "100/s, burst 20", rps: 100, burst: 20 },
    { name: "50/s, burst 10", rps: 50, burst: 10 },
    { name: "3/s, burst 2 (intervals not exact in binary)", rps: 3, burst: 2 },
    { name: "0.5/s, burst 0", rps: 0.5, burst: 0 },
  ];
  for (const c of paced) {
    it(`paced at 2× the limit for 10 s admits limit × T + burst: ${c.name}`, () => {
      const clock = manualClock();
      const l = new LocalRateLimiter("shop/limits", limits(c.rps, c.burst), clock.now);
      const T = 10;
      const requests = 2 * c.rps * T;
      let ok = 0;
      for (let k = 0; k <= requests; k++) {
        clock.set((k * 1000) / (2 * c.rps));
        if (l.take(undefined) === undefined) ok++;
      }
      assert.equal(ok, c.rps * T + Math.max(1, c.burst));
    });
  }

  it("a clock that goes back credits nothing and breaks nothing", () => {
    const clock = manualClock(10_000);
    const l = new LocalRateLimiter("shop/limits", limits(10, 2), clock.now);
    assert.equal(admitted(l, 2), 2);
    clock.set(5_000);
    assert.equal(admitted(l, 1), 0);
    clock.set(10_100);
    assert.equal(admitted(l, 2), 1, "100 ms after the last refill: one token");
  });
});

describe("local rate limit: quota and headers", () => {
  it("a refused request gets limit = capacity, remaining 0, reset to full and retry-after to one token", () => {
    const clock = manualClock();
    const l = new LocalRateLimiter("shop/limits", limits(2, 4), clock.now);
    assert.equal(admitted(l, 4), 4);
    assert.deepEqual(l.take(undefined), { limit: 4, remaining: 0, reset: 2, retryAfter: 1 });
    clock.advance(250); // 0.5 tokens: 3.5 missing → 1.75 s; 0.5 missing for one → 0.25 s
    assert.deepEqual(l.take(undefined), { limit: 4, remaining: 0, reset: 2, retryAfter: 1 });
  });

  it("slow rates give long waits, in whole seconds rounded up", () => {
    const clock = manualClock();
    const l = new LocalRateLimiter("shop/limits", limits(0.1, 0), clock.now);
    assert.equal(l.take(undefined), undefined);
    assert.deepEqual(l.take(undefined), { limit: 1, remaining: 0, reset: 10, retryAfter: 10 });
    clock.advance(4_000);
    assert.deepEqual(l.take(undefined), { limit: 1, remaining: 0, reset: 6, retryAfter: 6 });
    clock.advance(5_500); // 0.05 s left: still a whole second
    assert.deepEqual(l.take(undefined), { limit: 1, remaining: 0, reset: 1, retryAfter: 1 });
  });

  it("quota() reads without taking: full bucket, then after takes", () => {
    const clock = manualClock();
    const l = new LocalRateLimiter("shop/limits", limits(10, 20), clock.now);
    assert.deepEqual(l.quota(undefined), { limit: 20, remaining: 20, reset: 0, retryAfter: 0 });
    assert.equal(admitted(l, 15), 15);
    assert.deepEqual(l.quota(undefined), { limit: 20, remaining: 5, reset: 2, retryAfter: 0 });
    assert.deepEqual(
      l.quota(undefined),
      { limit: 20, remaining: 5, reset: 2, retryAfter: 0 },
      "took nothing",
    );
  });

  it("maps a quota to the four headers, as strings", () => {
    const q: RateLimitQuota = { limit: 20, remaining: 0, reset: 3, retryAfter: 1 };
    assert.deepEqual(rateLimitHeaders(q), {
      "ratelimit-limit": "20",
      "ratelimit-remaining": "0",
      "ratelimit-reset": "3",
      "retry-after": "1",
    });
  });
});

describe("local rate limit: perIdentity", () => {
  it("keys buckets by verified identity; callers without one share a bucket", () => {
    const clock = manualClock();
    const l = new LocalRateLimiter("shop/limits", limits(1, 2, true), clock.now);
    const alice = "spiffe://cluster.local/ns/shop/sa/alice";
    const bob = "spiffe://cluster.local/ns/shop/sa/bob";
    assert.equal(admitted(l, 5, alice), 2);
    assert.equal(admitted(l, 5, bob), 2, "alice's drained bucket is not bob's");
    assert.equal(admitted(l, 1, undefined), 1);
    assert.equal(admitted(l, 5, undefined), 1, "anonymous callers share one bucket");
    assert.equal(l.identityBuckets, 2, "the anonymous bucket is not an identity bucket");
    clock.advance(1000);
    assert.equal(admitted(l, 5, alice), 1);
  });

  it("without perIdentity, every caller shares the one bucket", () => {
    const l = new LocalRateLimiter("shop/limits", limits(1, 3), manualClock().now);
    assert.equal(admitted(l, 1, "spiffe://a") + admitted(l, 1, "spiffe://b") + admitted(l, 5), 3);
    assert.equal(l.identityBuckets, 0);
  });

  it("bounds identity buckets, evicting the least recently used", () => {
    const clock = manualClock();
    const l = new LocalRateLimiter("shop/limits", limits(0.001, 2, true), clock.now, { maxIdentities: 3 });
    for (const id of ["id-0", "id-1", "id-2"]) assert.equal(admitted(l, 3, id), 2);
    assert.equal(admitted(l, 1, "id-0"), 0, "id-0 used again: now the most recent");
    assert.equal(admitted(l, 1, "id-3"), 1, "a fourth identity evicts the least recently used, id-1");
    assert.equal(l.identityBuckets, 3);
    assert.equal(admitted(l, 1, "id-0"), 0, "id-0 kept its drained bucket");
    assert.equal(admitted(l, 1, "id-2"), 0, "id-2 kept its drained bucket");
    assert.equal(admitted(l, 1, "id-1"), 1, "id-1 was evicted: it starts again full");
    for (let i = 0; i < 10_000; i++) l.take(`flood-${i}`);
    assert.equal(l.identityBuckets, 3, "a flood of identities does not grow memory");
  });
});

describe("local rate limit: reconfigure rescales, never resets", () => {
  it("a larger burst keeps the fill fraction (half full stays half full)", () => {
    const l = new LocalRateLimiter("shop/limits", limits(10, 10), manualClock().now);
    assert.equal(admitted(l, 5), 5);
    l.reconfigure(limits(10, 20));
    assert.equal(admitted(l, 30), 10);
  });

  it("a smaller burst keeps the fill fraction (40% stays 40%)", () => {
    const l = new LocalRateLimiter("shop/limits", limits(10, 10), manualClock().now);
    assert.equal(admitted(l, 6), 6);
    l.reconfigure(limits(10, 5));
    assert.equal(admitted(l, 30), 2);
  });

  it("a drained bucket stays drained whatever the new limits", () => {
    const clock = manualClock();
    const l = new LocalRateLimiter("shop/limits", limits(10, 10), clock.now);
    assert.equal(admitted(l, 10), 10);
    l.reconfigure(limits(1000, 100));
    assert.equal(admitted(l, 1), 0);
    clock.advance(1); // the new rate applies from now: 1 token per ms
    assert.equal(admitted(l, 5), 1);
  });

  it("time before the change counts at the old rate", () => {
    const clock = manualClock();
    const l = new LocalRateLimiter("shop/limits", limits(10, 10), clock.now);
    assert.equal(admitted(l, 10), 10);
    clock.advance(500); // 5 tokens at 10/s
    l.reconfigure(limits(100, 10));
    assert.equal(admitted(l, 20), 5);
  });

  it("identity buckets are rescaled too; turning perIdentity off drops them", () => {
    const clock = manualClock();
    const l = new LocalRateLimiter("shop/limits", limits(0.001, 4, true), clock.now);
    assert.equal(admitted(l, 2, "spiffe://a"), 2);
    l.reconfigure(limits(0.001, 8, true));
    assert.equal(admitted(l, 10, "spiffe://a"), 4, "2 of 4 → 4 of 8");
    assert.equal(admitted(l, 10, "spiffe://b"), 8, "a new identity starts full");
    l.reconfigure(limits(0.001, 8, false));
    assert.equal(l.identityBuckets, 0);
    assert.equal(admitted(l, 10, "spiffe://a"), 8, "everyone now shares the (full) shared bucket");
  });
});

describe("local rate limit registry", () => {
  const spec = (policy: string, port: number, l: LocalLimits) => ({ policy, port, limits: l });

  it("keeps a limiter and its state across syncs that do not change it", () => {
    const clock = manualClock();
    const reg = new LocalRateLimitRegistry(clock.now);
    const [first] = reg.sync([spec("shop/limits", 8080, limits(1, 3))]);
    assert.ok(first);
    assert.equal(first.name, "shop/limits");
    assert.equal(admitted(first, 5), 3);
    const [again] = reg.sync([spec("shop/limits", 8080, limits(1, 3))]);
    assert.equal(again, first);
    assert.equal(admitted(again as LocalRateLimiter, 1), 0, "still drained");
  });

  it("reconfigures (rescales) a limiter whose limits changed", () => {
    const reg = new LocalRateLimitRegistry(manualClock().now);
    const [a] = reg.sync([spec("shop/limits", 8080, limits(1, 4))]);
    assert.equal(admitted(a as LocalRateLimiter, 2), 2);
    const [b] = reg.sync([spec("shop/limits", 8080, limits(1, 8))]);
    assert.equal(b, a);
    assert.deepEqual(b?.limits, limits(1, 8));
    assert.equal(admitted(b as LocalRateLimiter, 10), 4);
  });

  it("one limiter per (policy, port); drops those no longer asked for", () => {
    const reg = new LocalRateLimitRegistry(manualClock().now);
    const [p1, p2, other] = reg.sync([
      spec("shop/limits", 8080, limits(1, 1)),
      spec("shop/limits", 9090, limits(1, 1)),
      spec("shop/other", 7070, limits(1, 1)),
    ]);
    assert.equal(reg.size, 3);
    assert.notEqual(p1, p2, "a service-wide policy gives each port its own bucket");
    assert.equal(admitted(p1 as LocalRateLimiter, 2), 1);
    assert.equal(admitted(p2 as LocalRateLimiter, 2), 1);
    const [kept] = reg.sync([spec("shop/other", 7070, limits(1, 1))]);
    assert.equal(kept, other);
    assert.equal(reg.size, 1);
    const [back] = reg.sync([spec("shop/limits", 8080, limits(1, 1))]);
    assert.notEqual(back, p1, "a policy that went away and came back starts afresh");
    assert.equal(admitted(back as LocalRateLimiter, 2), 1);
    reg.sync([]);
    assert.equal(reg.size, 0);
  });
});
