/**
 * The control plane's in-memory model of the mesh: every stored policy and every live workload
 * registration, as decoded messages. The model is immutable: each change produces a new MeshModel
 * (structural sharing of the unchanged maps), so the snapshot builder is a pure function of
 * (model, proxy) and can run while the next change is being applied.
 */
import type { Workload } from "@trellis/proto/gen/trellis/v1/workload_pb";
import type { KindInfo, PolicyMessage } from "@trellis/proto/kinds";

/** A policy as stored, with the store revisions that give it its resourceVersion. */
export interface StoredPolicy {
  info: KindInfo;
  namespace: string;
  name: string;
  /** The decoded policy; metadata.resourceVersion and metadata.generation are filled in. */
  message: PolicyMessage;
  /** Store modRevision (the CAS version, shown as resourceVersion). */
  revision: number;
  /** Store createRevision: "oldest first" ordering when several policies merge. */
  createRevision: number;
}

/** `<namespace>/<name>`: the key of policies and services inside their maps. */
export type ObjectKey = string;

export function objectKey(namespace: string, name: string): ObjectKey {
  return `${namespace}/${name}`;
}

export interface MeshModel {
  /** Store revision the model reflects. */
  readonly revision: number;
  /** Policies by kind, then by `<namespace>/<name>`. */
  readonly policies: ReadonlyMap<string, ReadonlyMap<ObjectKey, StoredPolicy>>;
  /**
   * Live registrations by service (`<namespace>/<service>`), then by proxy id. A service with a
   * `Service` policy but no registrations exists with no endpoints; a service with neither does
   * not exist.
   */
  readonly workloads: ReadonlyMap<ObjectKey, ReadonlyMap<string, Workload>>;
}

/** An empty model (revision 0). */
export const EMPTY_MODEL: MeshModel = { revision: 0, policies: new Map(), workloads: new Map() };

/** What changed between two models, for debouncing and the endpoint fast path. */
export interface ModelChange {
  /** Services whose registrations changed (`<namespace>/<service>`). */
  endpoints: Set<ObjectKey>;
  /** Policy kinds that changed. */
  policyKinds: Set<string>;
}
