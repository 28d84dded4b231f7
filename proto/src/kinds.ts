/**
 * The policy kinds users write, and how each maps to its message and to the `Policy` oneof of the
 * admin API. Adding a kind: its .proto message, one entry here.
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import type { Policy } from "../gen/trellis/v1/admin_pb.js";
import { PolicySchema } from "../gen/trellis/v1/admin_pb.js";
import { AuthorizationPolicySchema } from "../gen/trellis/v1/authorization_policy_pb.js";
import type { Metadata, PolicyStatus } from "../gen/trellis/v1/common_pb.js";
import { HTTPRouteSchema } from "../gen/trellis/v1/http_route_pb.js";
import { PeerAuthenticationSchema } from "../gen/trellis/v1/peer_authentication_pb.js";
import { RateLimitPolicySchema } from "../gen/trellis/v1/rate_limit_policy_pb.js";
import { RequestAuthenticationSchema } from "../gen/trellis/v1/request_authentication_pb.js";
import { ServiceSchema } from "../gen/trellis/v1/service_pb.js";
import { TelemetrySchema } from "../gen/trellis/v1/telemetry_pb.js";
import { TrafficPolicySchema } from "../gen/trellis/v1/traffic_policy_pb.js";

/** The only apiVersion of policy documents today. */
export const API_VERSION = "trellis.dev/v1";

/** The namespace whose policies without targetRef apply mesh-wide. */
export const MESH_NAMESPACE = "trellis-system";

/** The namespace assumed when a document's metadata has none. */
export const DEFAULT_NAMESPACE = "default";

/** Every policy kind message has this shape. */
export interface PolicyMessage {
  metadata?: Metadata | undefined;
  spec?: unknown;
  status?: PolicyStatus | undefined;
}

export type PolicyCase = NonNullable<Policy["kind"]["case"]>;

export interface KindInfo {
  /** The kind as written in YAML (`kind: HTTPRoute`). */
  kind: string;
  schema: DescMessage;
  /** The `Policy.kind` oneof case carrying it. */
  policyCase: PolicyCase;
  /** Short names the CLI accepts (`trellis get routes`). */
  aliases: string[];
  /** True for kinds enforced by the target's inbound sidecars. */
  inbound: boolean;
}

export const KINDS: readonly KindInfo[] = [
  {
    kind: "Service",
    schema: ServiceSchema,
    policyCase: "service",
    aliases: ["services", "svc"],
    inbound: false,
  },
  {
    kind: "TrafficPolicy",
    schema: TrafficPolicySchema,
    policyCase: "trafficPolicy",
    aliases: ["trafficpolicies", "trafficpolicy", "tp"],
    inbound: false,
  },
  {
    kind: "HTTPRoute",
    schema: HTTPRouteSchema,
    policyCase: "httpRoute",
    aliases: ["httproutes", "httproute", "routes", "route"],
    inbound: false,
  },
  {
    kind: "RateLimitPolicy",
    schema: RateLimitPolicySchema,
    policyCase: "rateLimitPolicy",
    aliases: ["ratelimitpolicies", "ratelimitpolicy", "rlp"],
    inbound: true,
  },
  {
    kind: "PeerAuthentication",
    schema: PeerAuthenticationSchema,
    policyCase: "peerAuthentication",
    aliases: ["peerauthentications", "peerauthentication", "pa"],
    inbound: true,
  },
  {
    kind: "AuthorizationPolicy",
    schema: AuthorizationPolicySchema,
    policyCase: "authorizationPolicy",
    aliases: ["authorizationpolicies", "authorizationpolicy", "authz"],
    inbound: true,
  },
  {
    kind: "RequestAuthentication",
    schema: RequestAuthenticationSchema,
    policyCase: "requestAuthentication",
    aliases: ["requestauthentications", "requestauthentication", "ra"],
    inbound: true,
  },
  {
    kind: "Telemetry",
    schema: TelemetrySchema,
    policyCase: "telemetry",
    aliases: ["telemetries"],
    inbound: false,
  },
];

const byKind = new Map(KINDS.map((k) => [k.kind, k]));
const byName = new Map<string, KindInfo>();
for (const k of KINDS) {
  byName.set(k.kind.toLowerCase(), k);
  for (const a of k.aliases) byName.set(a, k);
}
const byCase = new Map(KINDS.map((k) => [k.policyCase, k]));

/** The kind exactly as written in YAML, or undefined. */
export function kindInfo(kind: string): KindInfo | undefined {
  return byKind.get(kind);
}

/** A kind by its name or a CLI alias, case-insensitive ("routes", "httproute", "HTTPRoute"). */
export function lookupKind(name: string): KindInfo | undefined {
  return byKind.get(name) ?? byName.get(name.toLowerCase());
}

/** Wraps a kind message in the admin API's `Policy` oneof. */
export function toPolicy(info: KindInfo, message: PolicyMessage): Policy {
  return create(PolicySchema, { kind: { case: info.policyCase, value: message } as Policy["kind"] });
}

/** Unwraps a `Policy` into its kind and message; undefined for an empty Policy. */
export function fromPolicy(policy: Policy): { info: KindInfo; message: PolicyMessage } | undefined {
  const c = policy.kind.case;
  if (c === undefined) return undefined;
  const info = byCase.get(c);
  if (info === undefined) return undefined;
  return { info, message: policy.kind.value as PolicyMessage };
}

/** The message shape of a kind's schema, for generic code. */
export type KindMessage<D extends DescMessage> = MessageShape<D> & PolicyMessage;
