/**
 * The "inbound" listener: what the proxy enforces on traffic to its own app, per app port —
 * mTLS mode, JWT rules, authorization, rate limit — and the service's telemetry settings.
 */
import { create } from "@bufbuild/protobuf";
import type { TargetRef } from "@trellis/proto/gen/trellis/v1/common_pb";
import { MtlsMode } from "@trellis/proto/gen/trellis/v1/peer_authentication_pb";
import type { InboundPort, Listener, PolicyRef } from "@trellis/proto/gen/trellis/v1/resources_pb";
import {
  InboundListenerSchema,
  InboundPortSchema,
  ListenerSchema,
  ScopedAuthorizationSchema,
  ScopedJwtRulesSchema,
  ScopedRateLimitSchema,
} from "@trellis/proto/gen/trellis/v1/resources_pb";
import { Protocol } from "@trellis/proto/gen/trellis/v1/service_pb";
import type { WorkloadPort } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { MESH_NAMESPACE } from "@trellis/proto/kinds";
import { INBOUND_LISTENER } from "@trellis/proto/resource-types";
import type { BuildContext } from "./context.js";
import type { KindMessages, TypedPolicy } from "./policy-index.js";
import { sortedRefs, targetNamespace } from "./policy-index.js";
import type { ServiceView } from "./services.js";

/** Policy kinds enforced by the target's inbound sidecars (plus Telemetry, scoped the same way). */
type InboundKind =
  | "PeerAuthentication"
  | "AuthorizationPolicy"
  | "RequestAuthentication"
  | "RateLimitPolicy"
  | "Telemetry";

/** Specificity, most specific first: port > service > namespace > mesh. */
const LEVELS = ["port", "service", "namespace", "mesh"] as const;
type Level = (typeof LEVELS)[number];

interface Candidate<M> {
  readonly policy: TypedPolicy<M>;
  readonly level: Level;
}

/** Compiles the proxy's inbound listener. */
export function compileInboundListener(ctx: BuildContext): Listener {
  const { proxy } = ctx;
  const own = ctx.service(proxy.namespace, proxy.service);
  const refs: PolicyRef[] = [];

  const byPort = new Map<number, WorkloadPort>();
  for (const p of proxy.ports) if (!byPort.has(p.port)) byPort.set(p.port, p);
  const ports: InboundPort[] = [...byPort.values()]
    .sort((a, b) => a.port - b.port)
    .map((wp) => compilePort(ctx, own, wp, refs));

  const telemetry = inboundCandidates(ctx, own, "Telemetry", undefined)[0];
  if (telemetry !== undefined) refs.push(telemetry.policy.ref);

  const policies = sortedRefs(refs);
  return create(ListenerSchema, {
    name: INBOUND_LISTENER,
    kind: {
      case: "inbound",
      value: create(InboundListenerSchema, {
        service: proxy.service,
        namespace: proxy.namespace,
        ports,
        ...(telemetry?.policy.message.spec !== undefined ? { telemetry: telemetry.policy.message.spec } : {}),
      }),
    },
    policies,
  });
}

/**
 * One InboundPort.
 *  1. protocol: the Service policy's declared protocol for a service port delivered to this app
 *     port, else the proxy's registered protocol.
 *  2. mtls_mode: the candidates PeerAuthentications (port, service, namespace, mesh level; oldest
 *     first within a level) are tried in order; the first that states a mode for this port decides —
 *     its `portLevelMtls[port]` over its `mtls`. One that states neither is skipped, so it inherits
 *     from the next level (as a PeerAuthentication with only other ports' overrides should).
 *     Nobody decides → PERMISSIVE.
 *  3. authorization and jwt: every applicable AuthorizationPolicy / RequestAuthentication, in
 *     candidate order (they are additive).
 *  4. rate_limit: the first candidate RateLimitPolicy (the most specific, oldest within its level).
 */
function compilePort(ctx: BuildContext, own: ServiceView, wp: WorkloadPort, refs: PolicyRef[]): InboundPort {
  const port = wp.port;
  let protocol = wp.protocol;
  for (const sp of own.policy?.message.spec?.ports ?? []) {
    if (own.appPort(sp.port) === port && sp.protocol !== Protocol.UNSPECIFIED) {
      protocol = sp.protocol;
      if (own.policy !== undefined) refs.push(own.policy.ref);
      break;
    }
  }

  let mtlsMode = MtlsMode.PERMISSIVE;
  for (const c of inboundCandidates(ctx, own, "PeerAuthentication", port)) {
    const spec = c.policy.message.spec;
    const mode = spec?.portLevelMtls[port]?.mode || spec?.mtls?.mode || MtlsMode.UNSPECIFIED;
    if (mode !== MtlsMode.UNSPECIFIED) {
      mtlsMode = mode;
      refs.push(c.policy.ref);
      break;
    }
  }

  const authorization = inboundCandidates(ctx, own, "AuthorizationPolicy", port).map((c) => {
    refs.push(c.policy.ref);
    return create(ScopedAuthorizationSchema, {
      policy: c.policy.ref,
      ...optionalSpec(c.policy.message.spec),
    });
  });
  const jwt = inboundCandidates(ctx, own, "RequestAuthentication", port).map((c) => {
    refs.push(c.policy.ref);
    return create(ScopedJwtRulesSchema, { policy: c.policy.ref, ...optionalSpec(c.policy.message.spec) });
  });
  const limit = inboundCandidates(ctx, own, "RateLimitPolicy", port)[0];
  if (limit !== undefined) refs.push(limit.policy.ref);

  return create(InboundPortSchema, {
    port,
    protocol,
    mtlsMode,
    authorization,
    jwt,
    ...(limit !== undefined
      ? {
          rateLimit: create(ScopedRateLimitSchema, {
            policy: limit.policy.ref,
            ...optionalSpec(limit.policy.message.spec),
          }),
        }
      : {}),
  });
}

/**
 * The policies of `kind` that apply to the proxy's service, most specific level first, oldest first
 * within a level (the index is already oldest first).
 *
 * `appPort` undefined asks for listener-wide policies (Telemetry): a port-narrowed one counts as
 * service level there. Only policies in the service's own namespace (or mesh-wide ones) apply: a
 * policy in another namespace naming this service is ignored, because inbound policy is the
 * producer's to set — letting any namespace add an ALLOW rule or a rate limit to another's service
 * would let one tenant open or throttle another.
 */
function inboundCandidates<K extends InboundKind>(
  ctx: BuildContext,
  own: ServiceView,
  kind: K,
  appPort: number | undefined,
): Candidate<KindMessages[K]>[] {
  const namespaces = own.namespace === MESH_NAMESPACE ? [own.namespace] : [own.namespace, MESH_NAMESPACE];
  const out: Candidate<KindMessages[K]>[] = [];
  for (const ns of namespaces) {
    for (const policy of ctx.index.inNamespace(kind, ns)) {
      const level = inboundLevel(own, ns, policy.message.spec?.targetRef, appPort);
      if (level !== undefined) out.push({ policy, level });
    }
  }
  // Stable sort: keeps oldest-first within a level.
  return out.sort((a, b) => LEVELS.indexOf(a.level) - LEVELS.indexOf(b.level));
}

/** Where a policy in `policyNs` with `ref` stands for the proxy's service on `appPort`. */
function inboundLevel(
  own: ServiceView,
  policyNs: string,
  ref: TargetRef | undefined,
  appPort: number | undefined,
): Level | undefined {
  if (ref === undefined) {
    if (policyNs === own.namespace) return "namespace";
    return policyNs === MESH_NAMESPACE ? "mesh" : undefined;
  }
  if (policyNs !== own.namespace || ref.name !== own.service) return undefined;
  if (targetNamespace(policyNs, ref) !== own.namespace) return undefined;
  if (ref.port === undefined) return "service";
  if (appPort === undefined) return "service";
  // targetRef.port names the service port; it also matches when it is the app port itself.
  return ref.port === appPort || own.appPort(ref.port) === appPort ? "port" : undefined;
}

/** `{spec}` when set, so exactOptionalPropertyTypes accepts it in `create` init objects. */
function optionalSpec<S>(spec: S | undefined): { spec: S } | Record<string, never> {
  return spec !== undefined ? { spec } : {};
}
