/**
 * What the model says about one service: whether it exists, its registrations, and its ports with
 * their protocols and app ports. Shared by the route, cluster, endpoint and inbound compilers so
 * they agree on every port.
 */
import { create } from "@bufbuild/protobuf";
import type { Service, ServicePort } from "@trellis/proto/gen/trellis/v1/service_pb";
import { Protocol, ServicePortSchema } from "@trellis/proto/gen/trellis/v1/service_pb";
import type { Workload } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { SPIFFE_SCHEME } from "@trellis/proto/spiffe";
import type { MeshModel } from "../model/types.js";
import { objectKey } from "../model/types.js";
import type { PolicyIndex, TypedPolicy } from "./policy-index.js";

/** The kind name of the Service policy. */
const SERVICE_KIND = "Service";

/**
 * True when `<service>.<namespace>` exists: it has at least one live registration or a `Service`
 * policy (which makes it exist with no endpoints).
 */
export function serviceExists(model: MeshModel, namespace: string, service: string): boolean {
  const key = objectKey(namespace, service);
  if ((model.workloads.get(key)?.size ?? 0) > 0) return true;
  return model.policies.get(SERVICE_KIND)?.has(key) ?? false;
}

/** One service as the builder sees it. Immutable. */
export interface ServiceView {
  readonly service: string;
  readonly namespace: string;
  readonly exists: boolean;
  /** Its `Service` policy, if any. */
  readonly policy: TypedPolicy<Service> | undefined;
  /** Live registrations, sorted by proxyId. */
  readonly registrations: readonly Workload[];
  /**
   * Its ports, sorted by number: the Service policy's when it declares any, else the union of the
   * registered app ports. `protocol` is filled in from the registrations when the policy leaves it
   * unset (name likewise for registered ports).
   */
  readonly ports: readonly ServicePort[];
  /** The app port that traffic to service port `port` is delivered to (targetPort, default same). */
  appPort(port: number): number;
  /** The protocol of service port `port`, also for a port not in `ports` (from registrations). */
  protocolOf(port: number): Protocol;
  /** True when `protocolOf(port)` came from the Service policy rather than a registration. */
  protocolFromPolicy(port: number): boolean;
}

/** Describes `<service>.<namespace>` from the model. Pure; callers memoize per build. */
export function describeService(
  model: MeshModel,
  index: PolicyIndex,
  namespace: string,
  service: string,
): ServiceView {
  const policy = index.get("Service", namespace, service);
  const registrations = [...(model.workloads.get(objectKey(namespace, service))?.values() ?? [])].sort(
    (a, b) => (a.proxyId < b.proxyId ? -1 : a.proxyId > b.proxyId ? 1 : 0),
  );
  const declared = policy?.message.spec?.ports ?? [];

  // First registered protocol and name per app port, in proxyId order (deterministic when
  // registrations disagree).
  const registered = new Map<number, { protocol: Protocol; name: string }>();
  for (const w of registrations) {
    for (const p of w.ports) {
      const seen = registered.get(p.port);
      if (seen === undefined) registered.set(p.port, { protocol: p.protocol, name: p.name });
      else {
        if (seen.protocol === Protocol.UNSPECIFIED) seen.protocol = p.protocol;
        if (seen.name === "") seen.name = p.name;
      }
    }
  }

  const declaredByPort = new Map(declared.map((p) => [p.port, p]));
  const appPort = (port: number): number => declaredByPort.get(port)?.targetPort ?? port;
  const protocolFromPolicy = (port: number): boolean =>
    (declaredByPort.get(port)?.protocol ?? Protocol.UNSPECIFIED) !== Protocol.UNSPECIFIED;
  const protocolOf = (port: number): Protocol => {
    const d = declaredByPort.get(port);
    if (d !== undefined && d.protocol !== Protocol.UNSPECIFIED) return d.protocol;
    return registered.get(appPort(port))?.protocol ?? Protocol.UNSPECIFIED;
  };

  let ports: ServicePort[];
  if (declared.length > 0) {
    ports = [...declaredByPort.values()].map((d) => {
      const p = create(ServicePortSchema, { name: d.name, port: d.port, protocol: protocolOf(d.port) });
      if (d.targetPort !== undefined) p.targetPort = d.targetPort;
      return p;
    });
  } else {
    ports = [...registered].map(([port, r]) =>
      create(ServicePortSchema, { name: r.name, port, protocol: r.protocol }),
    );
  }
  ports.sort((a, b) => a.port - b.port);

  return {
    service,
    namespace,
    exists: registrations.length > 0 || policy !== undefined,
    policy,
    registrations,
    ports,
    appPort,
    protocolOf,
    protocolFromPolicy,
  };
}

/**
 * The SPIFFE id of a registration: the one the control plane recorded (`identity`), else derived
 * from its namespace and service account in `trustDomain`; "" when it has neither.
 */
export function workloadIdentity(w: Workload, trustDomain: string): string {
  if (w.identity !== "") return w.identity;
  if (w.serviceAccount === "" || w.namespace === "") return "";
  return `${SPIFFE_SCHEME}${trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`;
}
