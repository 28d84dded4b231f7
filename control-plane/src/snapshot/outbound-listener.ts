/**
 * The "outbound" listener: settings for traffic from the app that do not depend on the destination —
 * what happens to destinations outside the mesh, and the caller-side telemetry.
 */
import { create } from "@bufbuild/protobuf";
import type { Listener, PolicyRef } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { ListenerSchema, OutboundListenerSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import type { TelemetrySpec } from "@trellis/proto/gen/trellis/v1/telemetry_pb";
import { OutboundTrafficPolicy } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { MESH_NAMESPACE } from "@trellis/proto/kinds";
import { OUTBOUND_LISTENER } from "@trellis/proto/resource-types";
import type { BuildContext } from "./context.js";
import { sortedRefs } from "./policy-index.js";

/**
 * Compiles the proxy's outbound listener.
 *  1. outbound_traffic_policy: among the TrafficPolicies without targetRef in the proxy's
 *     namespace, oldest first, the first that sets it; else likewise in `trellis-system`; else
 *     ALLOW_ANY. (A namespace default that only sets balancing does not hide the mesh's setting.)
 *  2. telemetry: the oldest Telemetry without targetRef in the proxy's namespace, else the oldest in
 *     `trellis-system`, else none.
 */
export function compileOutboundListener(ctx: BuildContext): Listener {
  const namespaces =
    ctx.proxy.namespace === MESH_NAMESPACE ? [MESH_NAMESPACE] : [ctx.proxy.namespace, MESH_NAMESPACE];
  const refs: PolicyRef[] = [];

  let outbound = OutboundTrafficPolicy.ALLOW_ANY;
  search: for (const ns of namespaces) {
    for (const p of ctx.index.inNamespace("TrafficPolicy", ns)) {
      const spec = p.message.spec;
      if (spec === undefined || spec.targetRef !== undefined) continue;
      if (spec.outboundTrafficPolicy !== OutboundTrafficPolicy.UNSPECIFIED) {
        outbound = spec.outboundTrafficPolicy;
        refs.push(p.ref);
        break search;
      }
    }
  }

  let telemetry: TelemetrySpec | undefined;
  search: for (const ns of namespaces) {
    for (const p of ctx.index.inNamespace("Telemetry", ns)) {
      const spec = p.message.spec;
      if (spec === undefined || spec.targetRef !== undefined) continue;
      telemetry = spec;
      refs.push(p.ref);
      break search;
    }
  }

  return create(ListenerSchema, {
    name: OUTBOUND_LISTENER,
    kind: {
      case: "outbound",
      value: create(OutboundListenerSchema, {
        outboundTrafficPolicy: outbound,
        ...(telemetry !== undefined ? { telemetry } : {}),
      }),
    },
    policies: sortedRefs(refs),
  });
}
