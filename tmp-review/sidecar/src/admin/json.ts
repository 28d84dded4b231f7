/**
 * JSON for the admin documents. Config dumps hold protobuf-es values (int64 fields are bigint,
 * bytes are Uint8Array) and our own Maps and Sets, which JSON.stringify refuses or loses.
 */

/** Replacer: bigint → decimal string, Map → object (keys as strings), Set → array, bytes → base64. */
function replacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), v]));
  if (value instanceof Set) return [...value];
  if (value instanceof Uint8Array) return Buffer.from(value).toString("base64");
  return value;
}

/**
 * `value` as indented JSON text ending in a newline. Throws (TypeError) on cycles; callers answer
 * 500. `undefined` at the top becomes `null`.
 */
export function toJsonText(value: unknown, indent = 2): string {
  return `${JSON.stringify(value, replacer, indent) ?? "null"}\n`;
}
