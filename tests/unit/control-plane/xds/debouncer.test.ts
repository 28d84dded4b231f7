// The push debouncer: a burst becomes one push; endpoint-only changes go out sooner; a steady
// stream of changes still pushes by the maximum delay.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ModelChange } from "@trellis/control-plane/model/types";
import { Debouncer } from "@trellis/control-plane/xds/debouncer";

const policy = (kind: string): ModelChange => ({ endpoints: new Set(), policyKinds: new Set([kind]) });
const endpoints = (svc: string): ModelChange => ({ endpoints: new Set([svc]), policyKinds: new Set() });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Debouncer", () => {
  it("merges a burst of changes into one push after the quiet window", async () => {
    const fired: ModelChange[] = [];
    const d = new Debouncer((c) => fired.push(c), { quietMs: 60, endpointQuietMs: 5, maxDelayMs: 2000 });
    d.notify(policy("HTTPRoute"));
    await sleep(20);
    d.notify(policy("TrafficPolicy"));
    d.notify(endpoints("shop/orders"));
    await sleep(20);
    assert.equal(fired.length, 0, "still inside the quiet window");
    await sleep(120);
    assert.equal(fired.length, 1);
    assert.deepEqual([...(fired[0]?.policyKinds ?? [])].sort(), ["HTTPRoute", "TrafficPolicy"]);
    assert.deepEqual([...(fired[0]?.endpoints ?? [])], ["shop/orders"]);
    d.stop();
  });

  it("fast-paths endpoint-only changes", async () => {
    const firedAt: number[] = [];
    const start = Date.now();
    const d = new Debouncer(() => firedAt.push(Date.now() - start), {
      quietMs: 500,
      endpointQuietMs: 10,
      maxDelayMs: 2000,
    });
    d.notify(endpoints("shop/orders"));
    await sleep(150);
    assert.equal(firedAt.length, 1);
    assert.ok((firedAt[0] ?? 0) < 150, `endpoint change pushed after ${firedAt[0]} ms`);
    d.stop();
  });

  it("never waits longer than the maximum delay under a steady stream of changes", async () => {
    const fired: number[] = [];
    const start = Date.now();
    const d = new Debouncer(() => fired.push(Date.now() - start), {
      quietMs: 50,
      endpointQuietMs: 5,
      maxDelayMs: 200,
    });
    const until = Date.now() + 400;
    while (Date.now() < until && fired.length === 0) {
      d.notify(policy("HTTPRoute"));
      await sleep(10);
    }
    assert.equal(fired.length, 1, "pushed while changes kept coming");
    assert.ok((fired[0] ?? 0) < 350, `first push after ${fired[0]} ms (max delay 200 ms)`);
    d.stop();
  });

  it("stop() drops what is pending", async () => {
    let fired = 0;
    const d = new Debouncer(() => fired++, { quietMs: 20 });
    d.notify(policy("HTTPRoute"));
    d.stop();
    await sleep(60);
    assert.equal(fired, 0);
  });
});
