/**
 * Field paths in user-facing errors: `spec.rules[0].retry.attempts`, `spec.headers.request.set[x-id]`.
 * Segments are JSON field names (strings), list indexes (numbers) and map keys ({key}).
 */
export type PathSegment = string | number | { readonly key: string };
export type FieldPath = readonly PathSegment[];

/** Renders a path the way users read it in YAML. */
export function formatPath(path: FieldPath): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (typeof seg === "string") out += out.length === 0 ? seg : `.${seg}`;
    else out += `[${seg.key}]`;
  }
  return out;
}
