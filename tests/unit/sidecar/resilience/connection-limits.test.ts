/**
 * Connection limits (circuit breaking per cluster): immediate permits, the FIFO queue, overflow,
 * idempotent release, cancellation, saturation transitions, reconfiguration, retries, connections.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { ConnectionLimitsSchema } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import type { ConnectionLimitKind } from "@trellis/sidecar/metrics/labels";
import {
  type Admission,
  ConnectionLimiter,
  type ConnectionLimitsConfig,
  connectionLimitsConfig,
  DEFAULT_CONNECTION_LIMITS,
  type RequestPermit,
} from "@trellis/sidecar/resilience/connection-limits";

function limits(overrides: Partial<ConnectionLimitsConfig>): ConnectionLimitsConfig {
  return { ...DEFAULT_CONNECTION_LIMITS, ...overrides };
}

/** A limiter that records every saturation event as "limit:1" / "limit:0". */
function recorded(config: Partial<ConnectionLimitsConfig>) {
  const events: string[] = [];
  const limiter = new ConnectionLimiter(limits(config), (limit: ConnectionLimitKind, saturated: boolean) =>
    events.push(`${limit}:${saturated ? 1 : 0}`),
  );
  return { limiter, events };
}

function immediate(a: Admission | undefined): RequestPermit {
  assert.ok(a !== undefined, "overflowed");
  assert.ok(a.permit !== undefined, "queued instead of admitted");
  assert.equal(a.wait, undefined);
  return a.permit;
}

interface Queued {
  readonly wait: Promise<RequestPermit | undefined>;
  readonly cancel: () => void;
}

function queued(a: Admission | undefined): Queued {
  assert.ok(a !== undefined, "overflowed");
  assert.equal(a.permit, undefined, "admitted instead of queued");
  assert.ok(a.wait !== undefined && a.cancel !== undefined);
  return { wait: a.wait, cancel: a.cancel };
}

/** Whether `p` has settled, after letting pending reactions run. */
async function settled<T>(p: Promise<T>): Promise<{ done: boolean; value?: T }> {
  const marker = Symbol("pending");
  const r = await Promise.race([
    p,
    new Promise<typeof marker>((resolve) => setImmediate(() => resolve(marker))),
  ]);
  return r === marker ? { done: false } : { done: true, value: r as T };
}

/** The permit `w` was granted; fails (rather than hangs) when it is still queued or was cancelled. */
async function grant(w: Queued): Promise<RequestPermit> {
  const r = await settled(w.wait);
  assert.ok(r.done, "still queued");
  assert.ok(r.value !== undefined, "cancelled");
  return r.value;
}

describe("connectionLimitsConfig", () => {
  const cases: {
    name: string;
    spec: MessageInitShape<typeof ConnectionLimitsSchema> | undefined;
    want: ConnectionLimitsConfig;
  }[] = [
    {
      name: "no block: 1024/1024/1024, retries unlimited",
      spec: undefined,
      want: {
        maxConnections: 1024,
        maxPendingRequests: 1024,
        maxRequests: 1024,
        maxRetries: Number.POSITIVE_INFINITY,
      },
    },
    { name: "an empty block: the defaults", spec: {}, want: DEFAULT_CONNECTION_LIMITS },
    {
      name: "every field set",
      spec: { maxConnections: 4, maxPendingRequests: 0, maxRequests: 8, maxRetries: 2 },
      want: { maxConnections: 4, maxPendingRequests: 0, maxRequests: 8, maxRetries: 2 },
    },
    {
      name: "maxRetries 0 is kept (no retries); connection and request limits below 1 become 1",
      spec: { maxConnections: 0, maxRequests: 0, maxRetries: 0 },
      want: { ...DEFAULT_CONNECTION_LIMITS, maxConnections: 1, maxRequests: 1, maxRetries: 0 },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const spec = c.spec === undefined ? undefined : create(ConnectionLimitsSchema, c.spec);
      assert.deepEqual(connectionLimitsConfig(spec), c.want);
    });
  }
});

describe("ConnectionLimiter requests", () => {
  it("admits up to maxRequests at once, then queues up to maxPendingRequests, then overflows", () => {
    const limiter = new ConnectionLimiter(limits({ maxRequests: 2, maxPendingRequests: 2 }));
    immediate(limiter.admit());
    immediate(limiter.admit());
    assert.equal(limiter.active, 2);
    queued(limiter.admit());
    queued(limiter.admit());
    assert.equal(limiter.pending, 2);
    assert.equal(limiter.admit(), undefined);
    assert.equal(limiter.active, 2);
    assert.equal(limiter.pending, 2);
  });

  it("with maxPendingRequests 0 overflows as soon as maxRequests is full", () => {
    const limiter = new ConnectionLimiter(limits({ maxRequests: 1, maxPendingRequests: 0 }));
    const p = immediate(limiter.admit());
    assert.equal(limiter.admit(), undefined);
    p.release();
    immediate(limiter.admit());
  });

  it("grants freed slots to the queue first come, first served", async () => {
    const limiter = new ConnectionLimiter(limits({ maxRequests: 1, maxPendingRequests: 10 }));
    const first = immediate(limiter.admit());
    const waiters = [queued(limiter.admit()), queued(limiter.admit()), queued(limiter.admit())];
    const order: number[] = [];
    waiters.forEach((w, i) => void w.wait.then(() => order.push(i)));
    assert.equal((await settled(waiters[0]!.wait)).done, false);

    first.release();
    assert.equal(limiter.active, 1, "the slot went straight to the head of the queue");
    assert.equal(limiter.pending, 2);
    const granted = await grant(waiters[0]!);
    assert.equal((await settled(waiters[1]!.wait)).done, false, "only one slot freed");

    granted.release();
    (await grant(waiters[1]!)).release();
    (await grant(waiters[2]!)).release();
    assert.deepEqual(order, [0, 1, 2]);
    assert.equal(limiter.active, 0);
    assert.equal(limiter.pending, 0);
  });

  it("a newcomer does not take a slot already handed to a waiter", async () => {
    const limiter = new ConnectionLimiter(limits({ maxRequests: 1 }));
    const first = immediate(limiter.admit());
    const w = queued(limiter.admit());
    first.release();
    queued(limiter.admit()); // the slot is w's now
    await grant(w);
  });

  it("release is idempotent per grant", async () => {
    const limiter = new ConnectionLimiter(limits({ maxRequests: 2 }));
    const a = immediate(limiter.admit());
    immediate(limiter.admit());
    const w1 = queued(limiter.admit());
    const w2 = queued(limiter.admit());
    a.release();
    a.release();
    a.release();
    assert.equal(limiter.active, 2);
    assert.equal(limiter.pending, 1, "one release grants one waiter");
    const p1 = await grant(w1);
    assert.equal((await settled(w2.wait)).done, false);
    p1.release();
    p1.release();
    assert.equal(limiter.pending, 0);
    assert.equal(limiter.active, 2);
  });

  it("cancel leaves the queue: wait resolves undefined and the next waiter gets the slot", async () => {
    const limiter = new ConnectionLimiter(limits({ maxRequests: 1, maxPendingRequests: 2 }));
    const first = immediate(limiter.admit());
    const w1 = queued(limiter.admit());
    const w2 = queued(limiter.admit());
    assert.equal(limiter.admit(), undefined);
    w1.cancel();
    w1.cancel();
    assert.equal(limiter.pending, 1);
    assert.deepEqual(await settled(w1.wait), { done: true, value: undefined });
    queued(limiter.admit()); // its place in the queue is free again
    first.release();
    await grant(w2);
    assert.equal(limiter.active, 1);
  });

  it("cancel after the grant releases the slot, so a timed-out waiter leaks nothing", async () => {
    const limiter = new ConnectionLimiter(limits({ maxRequests: 1 }));
    const first = immediate(limiter.admit());
    const w1 = queued(limiter.admit());
    const w2 = queued(limiter.admit());
    first.release(); // granted to w1 …
    w1.cancel(); // … whose route timeout fires before it runs
    assert.equal(limiter.active, 1, "the slot went on to w2");
    assert.equal(limiter.pending, 0);
    const p2 = await grant(w2);
    const stale = await settled(w1.wait);
    stale.value?.release(); // already released by cancel: no effect
    assert.equal(limiter.active, 1);
    p2.release();
    assert.equal(limiter.active, 0);
  });

  it("reports each saturation transition exactly once", () => {
    const { limiter, events } = recorded({ maxRequests: 2, maxPendingRequests: 1 });
    const a = immediate(limiter.admit());
    assert.deepEqual(events, []);
    const b = immediate(limiter.admit());
    assert.deepEqual(events, ["requests:1"]);
    const w = queued(limiter.admit());
    assert.deepEqual(events, ["requests:1", "pending:1"]);
    assert.equal(limiter.admit(), undefined);
    assert.equal(limiter.admit(), undefined);
    assert.deepEqual(events, ["requests:1", "pending:1"], "overflow is not a transition");
    a.release(); // the slot goes to the waiter: requests stays full
    assert.deepEqual(events, ["requests:1", "pending:1", "pending:0"]);
    b.release();
    assert.deepEqual(events, ["requests:1", "pending:1", "pending:0", "requests:0"]);
    b.release();
    w.cancel(); // releases its granted slot
    assert.equal(limiter.active, 0);
    assert.deepEqual(events, ["requests:1", "pending:1", "pending:0", "requests:0"]);
  });

  it("never reports a limit of 0 as saturated", () => {
    const { limiter, events } = recorded({ maxRequests: 1, maxPendingRequests: 0, maxRetries: 0 });
    const p = immediate(limiter.admit());
    assert.equal(limiter.admit(), undefined);
    assert.equal(limiter.admitRetry(), undefined);
    p.release();
    assert.deepEqual(events, ["requests:1", "requests:0"]);
  });

  it("reconfigure keeps counts; raising maxRequests admits queued requests in order", async () => {
    const { limiter, events } = recorded({ maxRequests: 1, maxPendingRequests: 3 });
    const first = immediate(limiter.admit());
    const ws = [queued(limiter.admit()), queued(limiter.admit()), queued(limiter.admit())];
    assert.deepEqual(events, ["requests:1", "pending:1"]);
    limiter.reconfigure(limits({ maxRequests: 3, maxPendingRequests: 3 }));
    assert.equal(limiter.active, 3);
    assert.equal(limiter.pending, 1);
    await grant(ws[0]!);
    await grant(ws[1]!);
    assert.equal((await settled(ws[2]!.wait)).done, false);
    assert.deepEqual(events, ["requests:1", "pending:1", "pending:0"], "3 of 3 in flight is still full");

    // Lowering the limits cuts nothing in flight; new requests see the lower limits.
    limiter.reconfigure(limits({ maxRequests: 1, maxPendingRequests: 1 }));
    assert.equal(limiter.active, 3);
    assert.equal(limiter.pending, 1);
    assert.equal(limiter.admit(), undefined);
    assert.deepEqual(events, ["requests:1", "pending:1", "pending:0", "pending:1"]);
    first.release();
    assert.equal(limiter.active, 2);
    assert.equal(limiter.pending, 1, "2 in flight is over the new limit of 1: the waiter keeps waiting");
  });
});

describe("ConnectionLimiter retries and connections", () => {
  it("limits retries in flight to maxRetries, with an idempotent release", () => {
    const { limiter, events } = recorded({ maxRetries: 2 });
    const a = limiter.admitRetry();
    const b = limiter.admitRetry();
    assert.ok(a !== undefined && b !== undefined);
    assert.equal(limiter.admitRetry(), undefined);
    assert.equal(limiter.activeRetries, 2);
    assert.equal(limiter.active, 0, "a retry slot is not a request slot");
    a.release();
    a.release();
    assert.equal(limiter.activeRetries, 1);
    assert.ok(limiter.admitRetry() !== undefined);
    assert.equal(limiter.admitRetry(), undefined);
    assert.deepEqual(events, ["retries:1", "retries:0", "retries:1"]);
  });

  it("does not limit retries by default", () => {
    const { limiter, events } = recorded({});
    for (let i = 0; i < 5_000; i++) assert.ok(limiter.admitRetry() !== undefined);
    assert.equal(limiter.activeRetries, 5_000);
    assert.deepEqual(events, []);
  });

  it("counts connections up to maxConnections", () => {
    const { limiter, events } = recorded({ maxConnections: 2 });
    assert.equal(limiter.tryOpenConnection(), true);
    assert.equal(limiter.tryOpenConnection(), true);
    assert.equal(limiter.tryOpenConnection(), false);
    assert.equal(limiter.connections, 2);
    limiter.closeConnection();
    assert.equal(limiter.tryOpenConnection(), true);
    limiter.closeConnection();
    limiter.closeConnection();
    limiter.closeConnection(); // one too many: stays at 0
    assert.equal(limiter.connections, 0);
    assert.deepEqual(events, ["connections:1", "connections:0", "connections:1", "connections:0"]);
  });
});
