/**
 * Resource versions are content hashes, so two builds of the same content agree on the version
 * wherever and whenever they run (any replica, any restart) and an unchanged resource is never
 * re-sent.
 *
 * protobuf-es encodes a map field in the iteration order of its backing object, which is insertion
 * order: `{a, b}` and `{b, a}` would hash differently. Every message is therefore canonicalized
 * (map keys re-inserted in sorted order, recursively) before it is hashed or stored.
 */
import { createHash } from "node:crypto";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { clone, toBinary } from "@bufbuild/protobuf";

/** Hex characters of the SHA-256 digest kept as the version. */
export const VERSION_HEX_LENGTH = 16;

/**
 * A copy of `message` whose map fields (at any depth) have their keys inserted in sorted order.
 * The input is not modified.
 */
export function canonicalize<D extends DescMessage>(schema: D, message: MessageShape<D>): MessageShape<D> {
  const copy = clone(schema, message);
  sortMapsInPlace(schema, copy as unknown as Record<string, unknown>);
  return copy;
}

/**
 * The content version of `message`: the first 16 hex characters of the SHA-256 of its binary
 * encoding, after canonicalize. Deterministic across processes; equal messages (protobuf `equals`)
 * get equal versions regardless of map insertion order.
 */
export function resourceVersion<D extends DescMessage>(schema: D, message: MessageShape<D>): string {
  const bytes = toBinary(schema, canonicalize(schema, message));
  return createHash("sha256").update(bytes).digest("hex").slice(0, VERSION_HEX_LENGTH);
}

/** Walks a (freshly cloned, so ours to change) message and replaces every map by a sorted copy. */
function sortMapsInPlace(schema: DescMessage, message: Record<string, unknown>): void {
  for (const field of schema.fields) {
    let value: unknown;
    if (field.oneof !== undefined) {
      const oneof = message[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
      if (oneof?.case !== field.localName) continue;
      value = oneof.value;
    } else {
      value = message[field.localName];
    }
    if (value === undefined) continue;
    switch (field.fieldKind) {
      case "message":
        sortMapsInPlace(field.message, value as Record<string, unknown>);
        break;
      case "list":
        if (field.listKind === "message") {
          for (const item of value as Record<string, unknown>[]) sortMapsInPlace(field.message, item);
        }
        break;
      case "map": {
        const record = value as Record<string, unknown>;
        const sorted: Record<string, unknown> = {};
        for (const key of Object.keys(record).sort()) {
          const entry = record[key];
          if (field.mapKind === "message") sortMapsInPlace(field.message, entry as Record<string, unknown>);
          sorted[key] = entry;
        }
        // Maps are never inside a oneof (protobuf forbids it), so the field is a plain property.
        message[field.localName] = sorted;
        break;
      }
      default:
        break;
    }
  }
}
