/**
 * Conversions between etcd's wire shapes (the etcd3 client's, with int64s as decimal strings and
 * byte fields as Buffers) and the store's types.
 */
import type { IEvent, IKeyValue } from "etcd3";
import type { KeyValue, WatchEvent } from "./store.js";

/** etcd's "no lease". */
const NO_LEASE = "0";

/** The [key, range_end) pair that selects every key starting with `prefix` (etcd's prefix rule). */
export function prefixRange(prefix: string): { key: Buffer; range_end: Buffer } {
  const key = Buffer.from(prefix);
  if (key.length === 0) return { key: Buffer.from([0]), range_end: Buffer.from([0]) }; // every key
  const end = Buffer.from(key);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return { key, range_end: end.subarray(0, i + 1) };
    }
  }
  return { key, range_end: Buffer.from([0]) }; // all 0xff: to the end of the keyspace
}

/** A stored key. Values are copied out of gRPC's buffers so callers may keep them. */
export function fromEtcdKv(kv: IKeyValue): KeyValue {
  const out: KeyValue = {
    key: kv.key.toString("utf8"),
    value: new Uint8Array(kv.value),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
  };
  if (kv.lease !== undefined && kv.lease !== NO_LEASE && kv.lease !== "") out.lease = kv.lease;
  return out;
}

/** A watch event; for deletes etcd already sends the deletion revision and an empty value. */
export function fromEtcdEvent(ev: IEvent): WatchEvent {
  // proto-loader renders the enum as its proto name ("DELETE"); the typings say "Delete".
  return { type: String(ev.type).toUpperCase() === "DELETE" ? "delete" : "put", kv: fromEtcdKv(ev.kv) };
}

/** Lease ids on the wire: decimal int64 strings. Anything else is refused before it reaches etcd. */
export function isLeaseId(id: string): boolean {
  return /^[1-9]\d{0,18}$/.test(id) && BigInt(id) <= 0x7fffffffffffffffn;
}
