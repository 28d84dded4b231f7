/**
 * Typed, per-namespace, oldest-first views of the model's policies, built once per model and shared
 * by every proxy's build (the model is immutable, so the index can be cached by identity).
 */
import { create } from "@bufbuild/protobuf";
import type { AuthorizationPolicy } from "@trellis/proto/gen/trellis/v1/authorization_policy_pb";
import type { TargetRef } from "@trellis/proto/gen/trellis/v1/common_pb";
import type { HTTPRoute } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import type { PeerAuthentication } from "@trellis/proto/gen/trellis/v1/peer_authentication_pb";
import type { RateLimitPolicy } from "@trellis/proto/gen/trellis/v1/rate_limit_policy_pb";
import type { RequestAuthentication } from "@trellis/proto/gen/trellis/v1/request_authentication_pb";
import type { PolicyRef } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { PolicyRefSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import type { Service } from "@trellis/proto/gen/trellis/v1/service_pb";
import type { Telemetry } from "@trellis/proto/gen/trellis/v1/telemetry_pb";
import type { TrafficPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import type { MeshModel, ObjectKey, StoredPolicy } from "../model/types.js";
import { objectKey } from "../model/types.js";

/** The message type of each policy kind the builder reads. */
export interface KindMessages {
  Service: Service;
  TrafficPolicy: TrafficPolicy;
  HTTPRoute: HTTPRoute;
  RateLimitPolicy: RateLimitPolicy;
  PeerAuthentication: PeerAuthentication;
  AuthorizationPolicy: AuthorizationPolicy;
  RequestAuthentication: RequestAuthentication;
  Telemetry: Telemetry;
}

export type KindName = keyof KindMessages;

/** A stored policy with its message typed for its kind and its PolicyRef made once. */
export interface TypedPolicy<M> {
  readonly stored: StoredPolicy;
  readonly message: M;
  readonly ref: PolicyRef;
}

/** The PolicyRef of a stored policy: kind, namespace, name and the compiled metadata.generation. */
export function policyRef(p: StoredPolicy): PolicyRef {
  return create(PolicyRefSchema, {
    kind: p.info.kind,
    namespace: p.namespace,
    name: p.name,
    generation: p.message.metadata?.generation ?? 0n,
  });
}

/** `kind/namespace/name`: identity of a policy regardless of generation. */
export function refKey(ref: PolicyRef): string {
  return `${ref.kind}/${ref.namespace}/${ref.name}`;
}

/** Total order on refs (kind, namespace, name) used for every `policies` list. */
export function compareRefs(a: PolicyRef, b: PolicyRef): number {
  return cmp(a.kind, b.kind) || cmp(a.namespace, b.namespace) || cmp(a.name, b.name);
}

/** Sorted, deduplicated copy of `refs`. */
export function sortedRefs(refs: Iterable<PolicyRef>): PolicyRef[] {
  const byKey = new Map<string, PolicyRef>();
  for (const r of refs) byKey.set(refKey(r), r);
  return [...byKey.values()].sort(compareRefs);
}

/**
 * The namespace a targetRef points into: its own `namespace`, else the policy's. Undefined when the
 * ref targets something other than a Service (nothing else is targetable today).
 */
export function targetNamespace(policyNamespace: string, ref: TargetRef): string | undefined {
  if (ref.kind !== "Service") return undefined;
  return ref.namespace !== "" ? ref.namespace : policyNamespace;
}

/** Read-only lookups over one model's policies. */
export interface PolicyIndex {
  /** Policies of `kind` in `namespace`, oldest first (createRevision, then name). */
  inNamespace<K extends KindName>(kind: K, namespace: string): readonly TypedPolicy<KindMessages[K]>[];
  /** One policy by kind, namespace and name. */
  get<K extends KindName>(kind: K, namespace: string, name: string): TypedPolicy<KindMessages[K]> | undefined;
}

const cache = new WeakMap<MeshModel["policies"], PolicyIndex>();

/**
 * The index of `model`'s policies. Cached on the identity of `model.policies`: a model change that
 * touches only registrations reuses it.
 */
export function policyIndex(model: MeshModel): PolicyIndex {
  let index = cache.get(model.policies);
  if (index === undefined) {
    index = buildIndex(model.policies);
    cache.set(model.policies, index);
  }
  return index;
}

function buildIndex(policies: MeshModel["policies"]): PolicyIndex {
  // kind → namespace → policies oldest first; kind → objectKey → policy.
  const byNamespace = new Map<string, Map<string, TypedPolicy<unknown>[]>>();
  const byKey = new Map<string, ReadonlyMap<ObjectKey, TypedPolicy<unknown>>>();
  for (const [kind, stored] of policies) {
    const nsMap = new Map<string, TypedPolicy<unknown>[]>();
    const keyMap = new Map<ObjectKey, TypedPolicy<unknown>>();
    for (const p of stored.values()) {
      const typed: TypedPolicy<unknown> = { stored: p, message: p.message, ref: policyRef(p) };
      keyMap.set(objectKey(p.namespace, p.name), typed);
      let list = nsMap.get(p.namespace);
      if (list === undefined) {
        list = [];
        nsMap.set(p.namespace, list);
      }
      list.push(typed);
    }
    for (const list of nsMap.values()) list.sort(oldestFirst);
    byNamespace.set(kind, nsMap);
    byKey.set(kind, keyMap);
  }
  return {
    inNamespace<K extends KindName>(kind: K, namespace: string) {
      return (byNamespace.get(kind)?.get(namespace) ?? []) as readonly TypedPolicy<KindMessages[K]>[];
    },
    get<K extends KindName>(kind: K, namespace: string, name: string) {
      return byKey.get(kind)?.get(objectKey(namespace, name)) as TypedPolicy<KindMessages[K]> | undefined;
    },
  };
}

/** "Oldest first": store createRevision, then name so equal revisions still order the same way. */
function oldestFirst(a: TypedPolicy<unknown>, b: TypedPolicy<unknown>): number {
  return a.stored.createRevision - b.stored.createRevision || cmp(a.stored.name, b.stored.name);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
