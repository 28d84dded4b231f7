/**
 * The ClusterLoadAssignment of one cluster: the live registrations of its service that serve the
 * cluster's port, as endpoints the caller's proxy can reach.
 */
import { create } from "@bufbuild/protobuf";
import type { ClusterLoadAssignment, Endpoint } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { ClusterLoadAssignmentSchema, EndpointSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import type { BuildContext } from "./context.js";
import type { ClusterTarget } from "./route-config.js";
import { workloadIdentity } from "./services.js";

/** The sidecar inbound port assumed when a registration leaves it unset (INTERFACES.md, Ports). */
export const DEFAULT_INBOUND_PORT = 15006;

/**
 * Compiles the ClusterLoadAssignment of `target`.
 *  1. The app port: the Service policy's targetPort for the cluster's port, default the same number.
 *  2. One endpoint per registration that lists that app port, in proxyId order: its address and
 *     inbound port (15006 when unset), the app port, proxyId, identity, labels, locality, health
 *     (draining and unhealthy endpoints stay listed; the proxy acts on `health`), weight 1, and
 *     readySince = registeredAt.
 */
export function compileLoadAssignment(ctx: BuildContext, target: ClusterTarget): ClusterLoadAssignment {
  const view = ctx.service(target.namespace, target.service);
  const appPort = view.appPort(target.port);
  const endpoints: Endpoint[] = [];
  for (const w of view.registrations) {
    if (!w.ports.some((p) => p.port === appPort)) continue;
    endpoints.push(
      create(EndpointSchema, {
        address: w.address,
        port: w.inboundPort !== 0 ? w.inboundPort : DEFAULT_INBOUND_PORT,
        appPort,
        proxyId: w.proxyId,
        identity: workloadIdentity(w, ctx.options.trustDomain),
        labels: w.labels,
        ...(w.locality !== undefined ? { locality: w.locality } : {}),
        health: w.health,
        weight: 1,
        ...(w.registeredAt !== undefined ? { readySince: w.registeredAt } : {}),
      }),
    );
  }
  return create(ClusterLoadAssignmentSchema, { cluster: target.name, endpoints });
}
