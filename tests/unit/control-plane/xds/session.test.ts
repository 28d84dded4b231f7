// The discovery session state machine, driven with hand-made snapshots: what a proxy is sent, in
// which order, and how ACKs, NACKs and stale nonces are recorded.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Message } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import type { SnapshotResource, SnapshotView } from "@trellis/control-plane/xds/session";
import { DiscoverySession } from "@trellis/control-plane/xds/session";
import { SyncState } from "@trellis/proto/gen/trellis/v1/admin_pb";
import type { DiscoverResponse, Resources } from "@trellis/proto/gen/trellis/v1/discovery_pb";
import { SubscriptionSchema } from "@trellis/proto/gen/trellis/v1/discovery_pb";
import {
  ClusterLoadAssignmentSchema,
  ClusterSchema,
  ListenerSchema,
  PolicyRefSchema,
  RouteConfigSchema,
} from "@trellis/proto/gen/trellis/v1/resources_pb";
import { WorkloadSchema } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { TypeUrl } from "@trellis/proto/resource-types";

const workload = create(WorkloadSchema, {
  proxyId: "p1",
  service: "web",
  namespace: "shop",
  address: "127.0.0.1",
});

function res(name: string, version: string, message: Message): SnapshotResource {
  return { name, version, resource: message };
}

interface Spec {
  listeners?: Record<string, string>;
  routes?: Record<string, string>;
  clusters?: Record<string, string>;
  notFound?: string[];
  concerns?: SnapshotView["concerns"];
}

function snapshot(spec: Spec): SnapshotView {
  const m = (entries: Record<string, string> | undefined, make: (n: string) => Message) =>
    new Map(Object.entries(entries ?? {}).map(([n, v]) => [n, res(n, v, make(n))]));
  return {
    resources: new Map([
      [TypeUrl.LISTENER, m(spec.listeners, (name) => create(ListenerSchema, { name }))],
      [TypeUrl.ROUTE, m(spec.routes, (name) => create(RouteConfigSchema, { name }))],
      [TypeUrl.CLUSTER, m(spec.clusters, (name) => create(ClusterSchema, { name }))],
      [TypeUrl.ENDPOINTS, m(spec.clusters, (cluster) => create(ClusterLoadAssignmentSchema, { cluster }))],
    ]),
    notFound: new Set(spec.notFound ?? []),
    concerns: spec.concerns ?? [],
  };
}

function sub(
  typeUrl: string,
  init: {
    subscribe?: string[];
    unsubscribe?: string[];
    nonce?: string;
    nack?: { name: string; message: string }[];
    nackAll?: string;
    initial?: Record<string, string>;
  },
) {
  return create(SubscriptionSchema, {
    typeUrl,
    subscribe: init.subscribe ?? [],
    unsubscribe: init.unsubscribe ?? [],
    responseNonce: init.nonce ?? "",
    initialResourceVersions: init.initial ?? {},
    ...(init.nack !== undefined || init.nackAll !== undefined
      ? { errorDetail: { message: init.nackAll ?? "rejected", resourceErrors: init.nack ?? [] } }
      : {}),
  });
}

function bodies(out: DiscoverResponse[]): Resources[] {
  return out.map((r) => {
    assert.equal(r.message.case, "resources");
    return r.message.value as Resources;
  });
}

function summary(out: DiscoverResponse[]): string[] {
  return bodies(out).map((r) => {
    const t = r.typeUrl.split(".").pop();
    const parts = [
      ...r.resources.map((x) => `+${x.name}@${x.version}`),
      ...r.removedResources.map((n) => `-${n}`),
      ...r.notFound.map((n) => `?${n}`),
    ];
    return `${t} ${parts.join(" ")}`.trim();
  });
}

function ackAll(s: DiscoverySession, out: DiscoverResponse[]): void {
  for (const r of bodies(out)) s.handleSubscription(sub(r.typeUrl, { nonce: r.nonce }));
}

describe("DiscoverySession", () => {
  it("answers a first subscription even when nothing exists, then sends only changes", () => {
    const s = new DiscoverySession(workload);
    assert.equal(s.handleSubscription(sub(TypeUrl.CLUSTER, { subscribe: ["*"] })).changed, true);
    let out = s.push(snapshot({}));
    assert.deepEqual(summary(out), ["Cluster"]);
    ackAll(s, out);
    out = s.push(snapshot({}));
    assert.deepEqual(summary(out), [], "an unchanged rebuild sends nothing");
    out = s.push(snapshot({ clusters: { "orders.shop:8080": "v1" } }));
    assert.deepEqual(summary(out), ["Cluster +orders.shop:8080@v1"]);
  });

  it("orders upserts by dependency and removals last, in reverse order", () => {
    const s = new DiscoverySession(workload);
    for (const t of [TypeUrl.LISTENER, TypeUrl.CLUSTER, TypeUrl.ENDPOINTS])
      s.handleSubscription(sub(t, { subscribe: ["*"] }));
    s.handleSubscription(sub(TypeUrl.ROUTE, { subscribe: ["orders.shop"] }));
    let out = s.push(
      snapshot({
        listeners: { inbound: "l1" },
        routes: { "orders.shop": "r1" },
        clusters: { "orders.shop:8080": "c1" },
      }),
    );
    assert.deepEqual(summary(out), [
      "Cluster +orders.shop:8080@c1",
      "ClusterLoadAssignment +orders.shop:8080@c1",
      "Listener +inbound@l1",
      "RouteConfig +orders.shop@r1",
    ]);
    ackAll(s, out);
    // The route moves from the old cluster to a new one: new cluster first, old one removed last.
    out = s.push(
      snapshot({
        listeners: { inbound: "l1" },
        routes: { "orders.shop": "r2" },
        clusters: { "orders-v2.shop:8080": "c2" },
      }),
    );
    assert.deepEqual(summary(out), [
      "Cluster +orders-v2.shop:8080@c2",
      "ClusterLoadAssignment +orders-v2.shop:8080@c2",
      "RouteConfig +orders.shop@r2",
      "ClusterLoadAssignment -orders.shop:8080",
      "Cluster -orders.shop:8080",
    ]);
  });

  it("ignores a request with a stale or unknown nonce entirely", () => {
    const s = new DiscoverySession(workload);
    s.handleSubscription(sub(TypeUrl.CLUSTER, { subscribe: ["*"] }));
    const first = bodies(s.push(snapshot({ clusters: { a: "1" } })));
    s.handleSubscription(sub(TypeUrl.CLUSTER, { nonce: first[0]?.nonce ?? "" }));
    // The same nonce again, and one never sent: both stale.
    assert.equal(s.handleSubscription(sub(TypeUrl.CLUSTER, { nonce: first[0]?.nonce ?? "" })).stale, true);
    const bogus = s.handleSubscription(
      sub(TypeUrl.CLUSTER, { nonce: "nope", nack: [{ name: "a", message: "x" }] }),
    );
    assert.equal(bogus.stale, true);
    const rec = s.record();
    assert.equal(
      rec.resources.find((r) => r.name === "a")?.state,
      SyncState.ACKED,
      "the stale NACK changed nothing",
    );
  });

  it("records a NACK per named resource, counts the rest applied, and resends only a new version", () => {
    const s = new DiscoverySession(workload);
    s.handleSubscription(sub(TypeUrl.CLUSTER, { subscribe: ["*"] }));
    const ref = (name: string) => create(PolicyRefSchema, { kind: "TrafficPolicy", namespace: "shop", name });
    const concerns = [
      { ref: ref("good"), supported: true, resources: [{ typeUrl: TypeUrl.CLUSTER, name: "a" }] },
      { ref: ref("bad"), supported: true, resources: [{ typeUrl: TypeUrl.CLUSTER, name: "b" }] },
      { ref: ref("new-kind"), supported: false, resources: [{ typeUrl: TypeUrl.CLUSTER, name: "a" }] },
    ];
    const out = bodies(s.push(snapshot({ clusters: { a: "1", b: "1" }, concerns })));
    const o = s.handleSubscription(
      sub(TypeUrl.CLUSTER, { nonce: out[0]?.nonce ?? "", nack: [{ name: "b", message: "bad port" }] }),
    );
    assert.equal(o.nack, true);
    const rec = s.record();
    assert.equal(rec.resources.find((r) => r.name === "a")?.state, SyncState.ACKED);
    const b = rec.resources.find((r) => r.name === "b");
    assert.equal(b?.state, SyncState.NACKED);
    assert.equal(b?.error, "bad port");
    const outcome = (name: string) => rec.policies.find((p) => p.policy?.name === name);
    assert.equal(outcome("good")?.state, SyncState.ACKED);
    assert.equal(outcome("bad")?.state, SyncState.NACKED);
    assert.equal(outcome("bad")?.reason, "bad port");
    assert.equal(outcome("new-kind")?.state, SyncState.NACKED);
    assert.equal(outcome("new-kind")?.reason, "unsupported");
    assert.deepEqual(
      summary(s.push(snapshot({ clusters: { a: "1", b: "1" }, concerns }))),
      [],
      "the NACKed version is not resent",
    );
    assert.deepEqual(summary(s.push(snapshot({ clusters: { a: "1", b: "2" }, concerns }))), ["Cluster +b@2"]);
  });

  it("a NACK without names rejects the whole response", () => {
    const s = new DiscoverySession(workload);
    s.handleSubscription(sub(TypeUrl.CLUSTER, { subscribe: ["*"] }));
    const out = bodies(s.push(snapshot({ clusters: { a: "1", b: "1" } })));
    s.handleSubscription(sub(TypeUrl.CLUSTER, { nonce: out[0]?.nonce ?? "", nackAll: "cannot parse" }));
    const states = s.record().resources.map((r) => [r.name, r.state, r.error]);
    assert.deepEqual(states, [
      ["a", SyncState.NACKED, "cannot parse"],
      ["b", SyncState.NACKED, "cannot parse"],
    ]);
  });

  it("answers a subscription to a missing name once with not_found, and sends it when it appears", () => {
    const s = new DiscoverySession(workload);
    s.handleSubscription(sub(TypeUrl.ROUTE, { subscribe: ["ghost.shop"] }));
    assert.deepEqual(summary(s.push(snapshot({ notFound: ["ghost.shop"] }))), ["RouteConfig ?ghost.shop"]);
    assert.deepEqual(summary(s.push(snapshot({ notFound: ["ghost.shop"] }))), []);
    assert.deepEqual(summary(s.push(snapshot({ routes: { "ghost.shop": "r1" } }))), [
      "RouteConfig +ghost.shop@r1",
    ]);
    // Gone again: a removal, not a second not_found.
    assert.deepEqual(summary(s.push(snapshot({ notFound: ["ghost.shop"] }))), ["RouteConfig -ghost.shop"]);
  });

  it("forgets unsubscribed names without a removal, and only sends names subscribed to", () => {
    const s = new DiscoverySession(workload);
    s.handleSubscription(sub(TypeUrl.ROUTE, { subscribe: ["a.shop", "b.shop"] }));
    const snap = snapshot({ routes: { "a.shop": "1", "b.shop": "1", "c.shop": "1" } });
    assert.deepEqual(summary(s.push(snap)), ["RouteConfig +a.shop@1 +b.shop@1"]);
    assert.equal(s.handleSubscription(sub(TypeUrl.ROUTE, { unsubscribe: ["b.shop"] })).changed, true);
    assert.deepEqual(summary(s.push(snap)), []);
    assert.deepEqual([...s.subscribedNames(TypeUrl.ROUTE)], ["a.shop"]);
  });

  it("after a reconnect, does not resend what the proxy declares it holds", () => {
    const s = new DiscoverySession(workload);
    s.handleSubscription(sub(TypeUrl.CLUSTER, { subscribe: ["*"], initial: { a: "1", b: "old" } }));
    assert.deepEqual(summary(s.push(snapshot({ clusters: { a: "1", b: "2" } }))), ["Cluster +b@2"]);
  });
});
