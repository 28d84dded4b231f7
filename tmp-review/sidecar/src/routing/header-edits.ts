/**
 * A route rule's header edits (HTTPRoute `headers`), compiled once per snapshot into flat arrays of
 * lower-cased names and applied per request without allocation beyond the values they add.
 */
import type { HeaderEdits, HeaderOperations } from "@trellis/proto/gen/trellis/v1/http_route_pb";

/** A header map as Node gives it (lower-case names) or as the proxy builds it for the next hop. */
export type MutableHeaders = Record<string, string | string[] | undefined>;

/** One direction's edits, in application order: remove, then set, then add. */
export interface CompiledHeaderOperations {
  /** Lower-cased names to delete. */
  readonly remove: readonly string[];
  /** setNames[i] (lower-cased) is replaced by (or created with) setValues[i]. */
  readonly setNames: readonly string[];
  readonly setValues: readonly string[];
  /** addValues[i] is appended to addNames[i] (lower-cased), keeping the values already there. */
  readonly addNames: readonly string[];
  readonly addValues: readonly string[];
  /** True when there is nothing to do (the common case; lets callers skip the call). */
  readonly empty: boolean;
}

/** Both directions of a rule's edits. */
export interface CompiledHeaderEdits {
  /** Applied to the request sent to the backend. */
  readonly request: CompiledHeaderOperations;
  /** Applied to the response sent back to the caller. */
  readonly response: CompiledHeaderOperations;
}

const NO_OPERATIONS: CompiledHeaderOperations = Object.freeze({
  remove: [],
  setNames: [],
  setValues: [],
  addNames: [],
  addValues: [],
  empty: true,
});

/** The edits of a rule that has none; shared, immutable. */
export const NO_HEADER_EDITS: CompiledHeaderEdits = Object.freeze({
  request: NO_OPERATIONS,
  response: NO_OPERATIONS,
});

// RFC 9110 §5.1 field-name = token.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// RFC 9110 §5.5: CR, LF and NUL are never valid in a field value; Node's setHeader would throw
// ERR_INVALID_CHAR on every request instead of the config being rejected once.
const BAD_VALUE = /[\r\n\0]/;
/**
 * Headers that frame the message or belong to one connection (RFC 9110 §7.6.1, RFC 9112 §6,
 * RFC 9113 §8.2.2). Letting a route rewrite them would desynchronise the hop's framing
 * (request smuggling) or break the proxy's own connection handling, so such edits are refused.
 */
const PROTECTED = new Set([
  "connection",
  "content-length",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * Compiles a rule's HeaderEdits. Names are lower-cased. Problems are appended to `errors`, each
 * prefixed by `where` (the field path of the edits): a name that is not an HTTP token, a value
 * with CR/LF/NUL, a hop-by-hop or framing header, removing `host`, or one `set` name given twice
 * in different case. Returns NO_HEADER_EDITS when there is nothing to do.
 */
export function compileHeaderEdits(
  edits: HeaderEdits | undefined,
  where: string,
  errors: string[],
): CompiledHeaderEdits {
  if (edits === undefined) return NO_HEADER_EDITS;
  const request = compileOperations(edits.request, `${where}.request`, errors);
  const response = compileOperations(edits.response, `${where}.response`, errors);
  return request.empty && response.empty ? NO_HEADER_EDITS : { request, response };
}

function compileOperations(
  ops: HeaderOperations | undefined,
  where: string,
  errors: string[],
): CompiledHeaderOperations {
  if (ops === undefined) return NO_OPERATIONS;
  const remove = ops.remove.map((name, i) => {
    const lower = checkName(name, `${where}.remove[${i}]`, errors);
    if (lower === "host") errors.push(`${where}.remove[${i}]: cannot remove host`);
    return lower;
  });
  const setNames: string[] = [];
  const setValues: string[] = [];
  for (const [name, value] of Object.entries(ops.set)) {
    const lower = checkName(name, `${where}.set.${name}`, errors);
    checkValue(value, `${where}.set.${name}`, errors);
    if (setNames.includes(lower))
      errors.push(`${where}.set.${name}: header set twice (names are case-insensitive)`);
    setNames.push(lower);
    setValues.push(value);
  }
  const addNames: string[] = [];
  const addValues: string[] = [];
  for (const [name, value] of Object.entries(ops.add)) {
    addNames.push(checkName(name, `${where}.add.${name}`, errors));
    checkValue(value, `${where}.add.${name}`, errors);
    addValues.push(value);
  }
  const empty = remove.length === 0 && setNames.length === 0 && addNames.length === 0;
  return empty ? NO_OPERATIONS : { remove, setNames, setValues, addNames, addValues, empty };
}

function checkName(name: string, where: string, errors: string[]): string {
  const lower = name.toLowerCase();
  if (!TOKEN.test(name)) errors.push(`${where}: not a valid header name`);
  else if (PROTECTED.has(lower)) errors.push(`${where}: ${lower} is a hop-by-hop or framing header`);
  return lower;
}

function checkValue(value: string, where: string, errors: string[]): void {
  if (BAD_VALUE.test(value)) errors.push(`${where}: value must not contain CR, LF or NUL`);
}

/**
 * Applies one direction's edits to `headers` in place: remove, then set, then add (so `set` and
 * `add` of one name give both values, and `remove` never undoes a set). An added value joins the
 * existing ones as an array, which Node sends as separate field lines — correct for every header,
 * including set-cookie, which must never be comma-joined (RFC 6265 §3). Existing arrays are
 * copied, never mutated: they may be shared with the incoming message.
 */
export function applyHeaderOperations(headers: MutableHeaders, ops: CompiledHeaderOperations): void {
  if (ops.empty) return;
  const { remove, setNames, setValues, addNames, addValues } = ops;
  for (let i = 0; i < remove.length; i++) delete headers[remove[i] as string];
  for (let i = 0; i < setNames.length; i++) headers[setNames[i] as string] = setValues[i] as string;
  for (let i = 0; i < addNames.length; i++) {
    const name = addNames[i] as string;
    const value = addValues[i] as string;
    const existing = headers[name];
    if (existing === undefined) headers[name] = value;
    else if (typeof existing === "string") headers[name] = [existing, value];
    else headers[name] = [...existing, value];
  }
}

/** Applies a rule's request edits to the headers of the request sent to the backend. */
export function applyRequestEdits(headers: MutableHeaders, edits: CompiledHeaderEdits): void {
  applyHeaderOperations(headers, edits.request);
}

/** Applies a rule's response edits to the headers of the response sent to the caller. */
export function applyResponseEdits(headers: MutableHeaders, edits: CompiledHeaderEdits): void {
  applyHeaderOperations(headers, edits.response);
}
