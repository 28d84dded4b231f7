/**
 * The shapes the snapshot builder produces: one proxy's resources, the names it asked for that do
 * not exist, and which policies ended up in its config. A snapshot is immutable once built; the
 * discovery stream serves it whole or not at all (see consistency.ts).
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { isMessage } from "@bufbuild/protobuf";
import type {
  Cluster,
  ClusterLoadAssignment,
  Listener,
  PolicyRef,
  RouteConfig,
  Secret,
} from "@trellis/proto/gen/trellis/v1/resources_pb";
import type { Workload } from "@trellis/proto/gen/trellis/v1/workload_pb";
import type { TypeUrl } from "@trellis/proto/resource-types";
import { DEFAULT_TRUST_DOMAIN } from "@trellis/proto/spiffe";

/** Who the snapshot is for. */
export interface ProxyContext {
  /**
   * The proxy's own registration: its service, namespace and proxyId, app ports (one inbound port
   * each), locality, and `supportedKinds` (what it can enforce; see PolicyConcern.supported).
   */
  readonly workload: Workload;
}

/** Mesh-wide settings the builder needs. */
export interface BuildOptions {
  /** SPIFFE trust domain for identities a registration does not carry itself. */
  readonly trustDomain: string;
}

/** `trustDomain: "cluster.local"`. */
export const DEFAULT_BUILD_OPTIONS: BuildOptions = { trustDomain: DEFAULT_TRUST_DOMAIN };

/** Every message a BuiltResource can carry. */
export type ResourceMessage = Listener | RouteConfig | Cluster | ClusterLoadAssignment | Secret;

/** One resource of one type, ready to send. */
export interface BuiltResource {
  /** The resource name (unique within its type). */
  readonly name: string;
  /**
   * Content hash of `resource` (resourceVersion in version.ts): equal content ⇔ equal version, so
   * an unchanged rebuild is never re-sent.
   */
  readonly version: string;
  readonly typeUrl: TypeUrl;
  /** The message, with map fields in sorted key order. Never mutate it: it is hashed and shared. */
  readonly resource: ResourceMessage;
  /** The policies compiled into it (same as the message's own `policies` / rule origins). */
  readonly policies: readonly PolicyRef[];
}

/** A resource named by type and name. */
export interface ResourceId {
  readonly typeUrl: TypeUrl;
  readonly name: string;
}

/** One policy that this proxy's resources carry, for the policy's status (applied / rejected). */
export interface PolicyConcern {
  readonly ref: PolicyRef;
  /**
   * False when the proxy does not list the policy's kind in `supportedKinds`: its status must count
   * this proxy as rejected with reason `unsupported`, never as applied, even after an ACK.
   */
  readonly supported: boolean;
  /** Where it was compiled in: by type (in UPSERT_ORDER), then name. */
  readonly resources: readonly ResourceId[];
}

/** Everything one proxy should hold right now. Immutable. */
export interface ProxySnapshot {
  /**
   * By type URL, then by resource name. Listener, RouteConfig, Cluster and ClusterLoadAssignment
   * are always present (possibly empty); Secret is not built here and is absent.
   */
  readonly resources: ReadonlyMap<TypeUrl, ReadonlyMap<string, BuiltResource>>;
  /** Subscribed RouteConfig names whose service does not exist (sent as "does not exist"). */
  readonly notFound: ReadonlySet<string>;
  /** Every policy compiled into these resources, sorted by kind, namespace, name. */
  readonly concerns: readonly PolicyConcern[];
  /**
   * Problems found while building that make the snapshot unsafe to serve (an ambiguous backend
   * port); checkConsistency reports them with the structural checks.
   */
  readonly problems: readonly string[];
}

/** The type URL of a resource schema. */
export function typeUrlOf(schema: DescMessage): TypeUrl {
  return `type.googleapis.com/${schema.typeName}` as TypeUrl;
}

/**
 * The resource `name` of the type of `schema`, typed, or undefined when the snapshot has none (or
 * holds a message of another type under that name).
 */
export function getResource<D extends DescMessage>(
  snapshot: ProxySnapshot,
  schema: D,
  name: string,
): MessageShape<D> | undefined {
  const built = snapshot.resources.get(typeUrlOf(schema))?.get(name);
  if (built === undefined || !isMessage(built.resource, schema)) return undefined;
  return built.resource;
}
