/**
 * Keeps the in-memory MeshModel in step with the store: lists policies and registrations once,
 * then watches both prefixes from the listed revision. Every batch of changes produces a new
 * immutable model and one `onChange` call saying what changed (policy kinds, services whose
 * endpoints changed), which the push scheduler debounces.
 *
 * A record that fails to decode (written by a newer version, or corrupt) is skipped with a warning;
 * it never takes the model down.
 */
import { fromBinary } from "@bufbuild/protobuf";
import type { Workload } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { WorkloadSchema } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { kindInfo } from "@trellis/proto/kinds";
import {
  POLICY_PREFIX,
  parsePolicyKey,
  parseRegistrationKey,
  REGISTRATION_PREFIX,
  ROOT,
} from "../store/keys.js";
import type { KeyValue, Store, WatchEvent, Watcher } from "../store/store.js";
import { decodePolicy } from "./policy-codec.js";
import type { MeshModel, ModelChange, ObjectKey, StoredPolicy } from "./types.js";
import { EMPTY_MODEL, objectKey } from "./types.js";

export interface ModelStoreOptions {
  onChange?: (model: MeshModel, change: ModelChange) => void;
  onWarning?: (message: string) => void;
}

type MutablePolicies = Map<string, Map<ObjectKey, StoredPolicy>>;
type MutableWorkloads = Map<ObjectKey, Map<string, Workload>>;

export class ModelStore {
  private current: MeshModel = EMPTY_MODEL;
  private watcher: Watcher | undefined;

  constructor(
    private readonly store: Store,
    private readonly options: ModelStoreOptions = {},
  ) {}

  /** The latest model. */
  get model(): MeshModel {
    return this.current;
  }

  /** Lists everything once, then follows changes. Resolves when the first model is built. */
  async start(): Promise<void> {
    const listed = await this.store.list(ROOT);
    const policies: MutablePolicies = new Map();
    const workloads: MutableWorkloads = new Map();
    for (const kv of listed.items) this.applyPut(kv, policies, workloads, undefined);
    this.current = { revision: listed.revision, policies, workloads };
    this.options.onChange?.(this.current, {
      endpoints: new Set(workloads.keys()),
      policyKinds: new Set(policies.keys()),
    });
    this.watcher = this.store.watch(
      ROOT,
      {
        fromRevision: listed.revision + 1,
        ...(this.options.onWarning ? { onWarning: this.options.onWarning } : {}),
      },
      (events) => this.apply(events),
    );
  }

  async stop(): Promise<void> {
    await this.watcher?.close();
    this.watcher = undefined;
  }

  private apply(events: WatchEvent[]): void {
    const change: ModelChange = { endpoints: new Set(), policyKinds: new Set() };
    // Copy-on-write of only the maps that change: the old model stays valid for readers.
    const policies = new Map(this.current.policies) as MutablePolicies;
    const workloads = new Map(this.current.workloads) as MutableWorkloads;
    const copied = new Set<unknown>();
    let revision = this.current.revision;
    for (const ev of events) {
      revision = Math.max(revision, ev.kv.modRevision);
      if (ev.type === "put") this.applyPut(ev.kv, policies, workloads, change, copied);
      else this.applyDelete(ev.kv.key, policies, workloads, change, copied);
    }
    if (change.endpoints.size === 0 && change.policyKinds.size === 0) {
      this.current = { ...this.current, revision };
      return;
    }
    this.current = { revision, policies, workloads };
    this.options.onChange?.(this.current, change);
  }

  private applyPut(
    kv: KeyValue,
    policies: MutablePolicies,
    workloads: MutableWorkloads,
    change: ModelChange | undefined,
    copied?: Set<unknown>,
  ): void {
    if (kv.key.startsWith(POLICY_PREFIX)) {
      const k = parsePolicyKey(kv.key);
      const info = k ? kindInfo(k.kind) : undefined;
      if (k === undefined || info === undefined) {
        this.warn(`ignoring unknown policy key ${kv.key}`);
        return;
      }
      let message: StoredPolicy["message"];
      try {
        message = decodePolicy(info, kv);
      } catch (err) {
        this.warn(`ignoring undecodable policy ${kv.key}: ${(err as Error).message}`);
        return;
      }
      const inner = writable(policies, k.kind, copied);
      inner.set(objectKey(k.namespace, k.name), {
        info,
        namespace: k.namespace,
        name: k.name,
        message,
        revision: kv.modRevision,
        createRevision: kv.createRevision,
      });
      change?.policyKinds.add(k.kind);
    } else if (kv.key.startsWith(REGISTRATION_PREFIX)) {
      const k = parseRegistrationKey(kv.key);
      if (k === undefined) {
        this.warn(`ignoring malformed registration key ${kv.key}`);
        return;
      }
      let w: Workload;
      try {
        w = fromBinary(WorkloadSchema, kv.value);
      } catch (err) {
        this.warn(`ignoring undecodable registration ${kv.key}: ${(err as Error).message}`);
        return;
      }
      const svc = objectKey(k.namespace, k.service);
      writable(workloads, svc, copied).set(k.proxyId, w);
      change?.endpoints.add(svc);
    }
  }

  private applyDelete(
    key: string,
    policies: MutablePolicies,
    workloads: MutableWorkloads,
    change: ModelChange,
    copied: Set<unknown>,
  ): void {
    const p = parsePolicyKey(key);
    if (p !== undefined) {
      if (!policies.get(p.kind)?.has(objectKey(p.namespace, p.name))) return;
      writable(policies, p.kind, copied).delete(objectKey(p.namespace, p.name));
      change.policyKinds.add(p.kind);
      return;
    }
    const r = parseRegistrationKey(key);
    if (r !== undefined) {
      const svc = objectKey(r.namespace, r.service);
      if (!workloads.get(svc)?.has(r.proxyId)) return;
      const inner = writable(workloads, svc, copied);
      inner.delete(r.proxyId);
      if (inner.size === 0) workloads.delete(svc);
      change.endpoints.add(svc);
    }
  }

  private warn(message: string): void {
    this.options.onWarning?.(message);
  }
}

/** The inner map for `key`, copied once per batch so the previous model is never mutated. */
function writable<V>(
  outer: Map<string, Map<string, V>>,
  key: string,
  copied: Set<unknown> | undefined,
): Map<string, V> {
  const existing = outer.get(key);
  if (existing !== undefined && (copied === undefined || copied.has(existing))) return existing;
  const fresh = new Map(existing ?? []);
  outer.set(key, fresh);
  copied?.add(fresh);
  return fresh;
}
