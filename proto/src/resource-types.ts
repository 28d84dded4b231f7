/**
 * The proxy-facing resource types of the discovery stream: type URLs, schemas, the order in which
 * the control plane sends them, and resource naming. Shared by the control plane and the sidecar's
 * discovery client so both sides agree on names.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import {
  ClusterLoadAssignmentSchema,
  ClusterSchema,
  ListenerSchema,
  RouteConfigSchema,
  SecretSchema,
} from "../gen/trellis/v1/resources_pb.js";

const PREFIX = "type.googleapis.com/";

export const TypeUrl = {
  LISTENER: `${PREFIX}${ListenerSchema.typeName}`,
  ROUTE: `${PREFIX}${RouteConfigSchema.typeName}`,
  CLUSTER: `${PREFIX}${ClusterSchema.typeName}`,
  ENDPOINTS: `${PREFIX}${ClusterLoadAssignmentSchema.typeName}`,
  SECRET: `${PREFIX}${SecretSchema.typeName}`,
} as const;

export type TypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

/** The schema of each type. */
export const RESOURCE_SCHEMAS: ReadonlyMap<string, DescMessage> = new Map<string, DescMessage>([
  [TypeUrl.LISTENER, ListenerSchema],
  [TypeUrl.ROUTE, RouteConfigSchema],
  [TypeUrl.CLUSTER, ClusterSchema],
  [TypeUrl.ENDPOINTS, ClusterLoadAssignmentSchema],
  [TypeUrl.SECRET, SecretSchema],
]);

/**
 * Order of additions and updates within one push: what is referenced comes before what refers to
 * it (clusters and endpoints before the routes that name them). Removals go in the reverse order,
 * after all additions, so a proxy never holds a route to a cluster it lacks.
 */
export const UPSERT_ORDER: readonly TypeUrl[] = [
  TypeUrl.SECRET,
  TypeUrl.CLUSTER,
  TypeUrl.ENDPOINTS,
  TypeUrl.LISTENER,
  TypeUrl.ROUTE,
];
export const REMOVAL_ORDER: readonly TypeUrl[] = [...UPSERT_ORDER].reverse();

/** Short names used by `trellis proxy-config PROXY <type>`. */
export const SHORT_TYPE_NAMES: ReadonlyMap<string, TypeUrl> = new Map<string, TypeUrl>([
  ["listeners", TypeUrl.LISTENER],
  ["routes", TypeUrl.ROUTE],
  ["clusters", TypeUrl.CLUSTER],
  ["endpoints", TypeUrl.ENDPOINTS],
  ["secrets", TypeUrl.SECRET],
]);

/** Subscribing to this name means "every resource of the type meant for me". */
export const WILDCARD = "*";

/** Listener names. */
export const INBOUND_LISTENER = "inbound";
export const OUTBOUND_LISTENER = "outbound";

/** The RouteConfig name of a destination service: `<service>.<namespace>`. */
export function routeName(service: string, namespace: string): string {
  return `${service}.${namespace}`;
}

/** The Cluster (and ClusterLoadAssignment) name of a service port: `<service>.<namespace>:<port>`. */
export function clusterName(service: string, namespace: string, port: number): string {
  return `${service}.${namespace}:${port}`;
}

/** Splits a RouteConfig name; undefined when malformed. */
export function parseRouteName(name: string): { service: string; namespace: string } | undefined {
  const dot = name.indexOf(".");
  if (dot <= 0 || dot === name.length - 1 || name.indexOf(".", dot + 1) >= 0) return undefined;
  return { service: name.slice(0, dot), namespace: name.slice(dot + 1) };
}

/** Splits a Cluster name; undefined when malformed. */
export function parseClusterName(
  name: string,
): { service: string; namespace: string; port: number } | undefined {
  const colon = name.lastIndexOf(":");
  if (colon < 0) return undefined;
  const route = parseRouteName(name.slice(0, colon));
  const port = Number(name.slice(colon + 1));
  if (route === undefined || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { ...route, port };
}
