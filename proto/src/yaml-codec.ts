/**
 * The YAML codec: multi-document YAML ↔ typed policy messages, in the fixed mapping of INTERFACES.md
 * (lowerCamelCase JSON field names, short enum names or lower-case tokens, duration strings).
 *
 * Parsing never stops at the first problem: every error of every document is reported, each with
 * file, line, column and field path (`shop/route.yaml:14:9 spec.rules[0].retry.attempts: must be
 * ≥ 0`). Unknown fields are errors. Validation (validate.ts) runs on every document that decoded,
 * and its violations get the position of the field they name.
 *
 * Printing is canonical: block style, proto field order, unset fields omitted, no defaults added,
 * map keys sorted. parse(print(m)) equals m, and print is a fixed point.
 */
import type { DescEnum, DescField, DescMessage } from "@bufbuild/protobuf";
import { create, getOption, hasOption, isFieldSet, ScalarType } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { FeatureSet_FieldPresence as FieldPresence } from "@bufbuild/protobuf/wkt";
import type { Pair, Node as YamlNode } from "yaml";
import {
  Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseAllDocuments,
  Scalar,
  type YAMLMap,
} from "yaml";
import type { FieldRules } from "../gen/trellis/v1/options_pb.js";
import { field as fieldOption } from "../gen/trellis/v1/options_pb.js";
import { parseByteSize } from "./byte-size.js";
import { formatDuration, parseDuration } from "./duration.js";
import { enumFromToken, enumToken, enumTokens } from "./enum-tokens.js";
import type { FieldPath } from "./field-path.js";
import { formatPath } from "./field-path.js";
import type { KindInfo, PolicyMessage } from "./kinds.js";
import { API_VERSION, KINDS, kindInfo } from "./kinds.js";
import { formatTimestamp, parseTimestamp } from "./timestamp.js";
import { declaredRules, explicitScalarProblems, fieldValue, validate } from "./validate.js";

/** One problem in an input file, with its position (1-based line and column). */
export interface Diagnostic {
  file: string;
  line: number;
  col: number;
  /** Field path, e.g. `spec.rules[0].timeout`; empty for syntax errors. */
  path: string;
  message: string;
}

/** `file:line:col path: message`, the form every Trellis command prints. */
export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col} ${d.path ? `${d.path}: ` : ""}${d.message}`;
}

/** A policy document that decoded and validated cleanly. */
export interface ParsedPolicy {
  info: KindInfo;
  message: PolicyMessage;
  file: string;
  /** 0-based index of the document in its file. */
  index: number;
  /** Where the document starts. */
  line: number;
}

export interface ParseResult {
  policies: ParsedPolicy[];
  diagnostics: Diagnostic[];
  /** Documents found (empty documents excluded), valid or not. */
  documents: number;
}

interface Pos {
  line: number;
  col: number;
}

/**
 * Parses every document of `text` (named `file` in diagnostics) as a policy. Documents with errors
 * are left out of `policies`; callers that must be all-or-nothing check `diagnostics` first.
 */
export function parsePolicies(text: string, file: string): ParseResult {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  const result: ParseResult = { policies: [], diagnostics: [], documents: 0 };
  if ("empty" in docs) {
    for (const e of docs.errors) result.diagnostics.push(syntaxDiag(file, lc, e.pos[0], e.message));
    return result;
  }
  docs.forEach((doc, index) => {
    if (doc.errors.length > 0) {
      result.documents++;
      for (const e of doc.errors) result.diagnostics.push(syntaxDiag(file, lc, e.pos[0], e.message));
      return;
    }
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) return;
    result.documents++;
    const dec = new Decoder(file, lc, doc);
    const parsed = dec.document(doc.contents as YamlNode);
    if (parsed !== undefined) {
      for (const v of validate(parsed.info.schema, parsed.message as never)) dec.violation(v.path, v.message);
    }
    result.diagnostics.push(...dec.diagnostics);
    if (parsed !== undefined && dec.diagnostics.length === 0) {
      result.policies.push({
        info: parsed.info,
        message: parsed.message,
        file,
        index,
        line: dec.pos(doc.contents as YamlNode).line,
      });
    }
  });
  result.diagnostics.sort((a, b) => a.line - b.line || a.col - b.col);
  return result;
}

function syntaxDiag(file: string, lc: LineCounter, offset: number, message: string): Diagnostic {
  const p = lc.linePos(offset);
  return { file, line: p.line, col: p.col, path: "", message: message.split("\n")[0] ?? message };
}

type Msg = Record<string, unknown>;
type Doc = Document.Parsed;

const byteSizeCache = new WeakMap<DescField, boolean>();
function isByteSize(field: DescField): boolean {
  let b = byteSizeCache.get(field);
  if (b === undefined) {
    b = hasOption(field, fieldOption) && getOption(field, fieldOption).byteSize;
    byteSizeCache.set(field, b);
  }
  return b;
}

/** Walks one YAML document against a message schema, collecting diagnostics and field positions. */
class Decoder {
  readonly diagnostics: Diagnostic[] = [];
  private readonly positions = new Map<string, Pos>();
  /**
   * Paths whose value failed to decode. Validation findings at or under them are redundant, and so
   * are findings on their immediate parent message (its "one of / at least one" rules see the field
   * as unset only because its value was refused).
   */
  private readonly failed: string[] = [];
  private readonly failedParents = new Set<string>();
  private docPos: Pos = { line: 1, col: 1 };

  constructor(
    private readonly file: string,
    private readonly lc: LineCounter,
    private readonly doc: Doc,
  ) {}

  pos(node: YamlNode | undefined | null): Pos {
    const offset = node?.range?.[0];
    if (offset === undefined) return this.docPos;
    return this.lc.linePos(offset);
  }

  private error(at: Pos, path: FieldPath, message: string): void {
    const p = formatPath(path);
    this.failed.push(p);
    if (path.length > 0) this.failedParents.add(formatPath(path.slice(0, -1)));
    this.diagnostics.push({ file: this.file, line: at.line, col: at.col, path: p, message });
  }

  /** Reports a validator finding at the position of the deepest recorded prefix of its path. */
  violation(path: FieldPath, message: string): void {
    const p = formatPath(path);
    if (this.failedParents.has(p)) return;
    if (this.failed.some((f) => p === f || p.startsWith(`${f}.`) || p.startsWith(`${f}[`))) return;
    let at: Pos | undefined;
    for (let n = path.length; n >= 0 && at === undefined; n--)
      at = this.positions.get(formatPath(path.slice(0, n)));
    const pos = at ?? this.docPos;
    this.diagnostics.push({ file: this.file, line: pos.line, col: pos.col, path: p, message });
  }

  /** An alias whose anchor does not exist: an error, never a silently unset field. */
  private danglingAlias(raw: unknown, resolved: YamlNode | null, at: Pos, path: FieldPath): boolean {
    if (!isAlias(raw) || resolved !== null) return false;
    this.error(at, path, `alias *${raw.source} refers to no anchor`);
    return true;
  }

  private resolve(node: unknown): YamlNode | null {
    if (isAlias(node)) return (node.resolve(this.doc as never) as YamlNode | undefined) ?? null;
    return (node as YamlNode | null) ?? null;
  }

  document(root: YamlNode): { info: KindInfo; message: PolicyMessage } | undefined {
    this.docPos = this.pos(root);
    this.positions.set("", this.docPos);
    if (!isMap(root)) {
      this.error(
        this.pos(root),
        [],
        "a policy document must be a mapping with apiVersion, kind, metadata and spec",
      );
      return undefined;
    }
    let info: KindInfo | undefined;
    let sawApiVersion = false;
    for (const pair of root.items) {
      const key = keyText(pair);
      if (key === "apiVersion") {
        sawApiVersion = true;
        const v = this.resolve(pair.value);
        if (!isScalar(v) || v.value !== API_VERSION) {
          this.error(this.keyPos(pair), ["apiVersion"], `must be ${API_VERSION}`);
        }
      } else if (key === "kind") {
        const v = this.resolve(pair.value);
        info = isScalar(v) && typeof v.value === "string" ? kindInfo(v.value) : undefined;
        if (v === null || (isScalar(v) && v.value === null)) {
          this.error(this.keyPos(pair), ["kind"], "is required");
        } else if (info === undefined) {
          const got = isScalar(v) ? String(v.value) : "";
          this.error(
            this.keyPos(pair),
            ["kind"],
            `unknown kind ${JSON.stringify(got)}; expected one of ${KINDS.map((k) => k.kind).join(", ")}`,
          );
        }
      }
    }
    if (!sawApiVersion) this.error(this.docPos, ["apiVersion"], "is required");
    if (info === undefined) {
      if (!root.items.some((p) => keyText(p) === "kind")) this.error(this.docPos, ["kind"], "is required");
      return undefined;
    }
    const message = this.message(info.schema, root, [], new Set(["apiVersion", "kind"])) as PolicyMessage;
    return { info, message };
  }

  private keyPos(pair: Pair): Pos {
    return this.pos(pair.key as YamlNode);
  }

  /** Decodes a mapping into a new message of `desc`; `extraKeys` are envelope keys handled elsewhere. */
  message(desc: DescMessage, node: YAMLMap, path: FieldPath, extraKeys?: ReadonlySet<string>): Msg {
    const msg = create(desc) as Msg;
    const byJson = jsonIndex(desc);
    const oneofSetBy = new Map<string, string>();
    for (const pair of node.items) {
      const key = keyText(pair);
      if (key !== undefined && extraKeys?.has(key)) continue;
      const kpos = this.keyPos(pair);
      if (key === undefined) {
        this.error(kpos, path, "field names must be strings");
        continue;
      }
      const field = byJson.get(key);
      const fpath = [...path, key];
      if (field === undefined) {
        const suggestion = closestField(desc, key);
        this.error(kpos, fpath, unknownFieldMessage(desc, key, suggestion));
        // A misspelled field: "the intended field is missing" would only repeat this error.
        if (suggestion !== undefined) this.failed.push(formatPath([...path, suggestion.jsonName]));
        continue;
      }
      this.positions.set(formatPath(fpath), kpos);
      const value = this.resolve(pair.value);
      if (this.danglingAlias(pair.value, value, kpos, fpath)) continue;
      if (value === null || (isScalar(value) && value.value === null)) continue; // `key:` or `key: ~` = unset
      if (field.oneof !== undefined) {
        const prev = oneofSetBy.get(field.oneof.name);
        if (prev !== undefined) {
          this.error(
            kpos,
            fpath,
            `only one of ${field.oneof.fields.map((f) => f.jsonName).join(", ")} may be set (${prev} is already)`,
          );
          continue;
        }
        oneofSetBy.set(field.oneof.name, field.jsonName);
      }
      const decoded = this.fieldValue(field, value, fpath, kpos);
      if (decoded === undefined) continue;
      if (field.fieldKind === "scalar" && field.presence === FieldPresence.IMPLICIT && isZeroValue(decoded)) {
        // The message cannot tell a written zero from "unset": check the written value here.
        const problems = explicitScalarProblems(field, decoded);
        if (problems.length > 0) {
          for (const m of problems) this.error(kpos, fpath, m);
          continue;
        }
      }
      if (field.oneof !== undefined) msg[field.oneof.localName] = { case: field.localName, value: decoded };
      else msg[field.localName] = decoded;
    }
    return msg;
  }

  private fieldValue(field: DescField, node: YamlNode, path: FieldPath, at: Pos): unknown {
    switch (field.fieldKind) {
      case "scalar":
        return this.scalar(field.scalar, node, path, at, isByteSize(field), declaredRules(field));
      case "enum":
        return this.enumValue(field.enum, node, path, at);
      case "message":
        return this.messageValue(field.message, node, path, at);
      case "list": {
        if (!isSeq(node)) {
          this.error(at, path, "must be a list");
          return undefined;
        }
        const out: unknown[] = [];
        node.items.forEach((raw, i) => {
          const item = this.resolve(raw);
          const ipath = [...path, i];
          const ipos = item ? this.pos(item) : isAlias(raw) ? this.pos(raw as YamlNode) : at;
          this.positions.set(formatPath(ipath), ipos);
          if (this.danglingAlias(raw, item, ipos, ipath)) return;
          if (item === null || (isScalar(item) && item.value === null)) {
            this.error(ipos, ipath, "must not be empty");
            return;
          }
          let v: unknown;
          if (field.listKind === "scalar")
            v = this.scalar(field.scalar, item, ipath, ipos, isByteSize(field));
          else if (field.listKind === "enum") v = this.enumValue(field.enum, item, ipath, ipos);
          else v = this.messageValue(field.message, item, ipath, ipos);
          if (v !== undefined) out.push(v);
        });
        return out;
      }
      case "map": {
        if (!isMap(node)) {
          this.error(at, path, "must be a mapping");
          return undefined;
        }
        const out: Record<string, unknown> = {};
        for (const pair of node.items) {
          const k = this.resolve(pair.key);
          const kpos = this.pos(k);
          const keyVal = isScalar(k) ? k.value : undefined;
          const kpath = [...path, { key: String(keyVal) }];
          this.positions.set(formatPath(kpath), kpos);
          let key: string | undefined;
          if (field.mapKey === ScalarType.STRING) {
            if (typeof keyVal === "string") key = keyVal;
            else this.error(kpos, kpath, "keys must be strings");
          } else {
            const n =
              typeof keyVal === "number" ? keyVal : typeof keyVal === "string" ? Number(keyVal) : Number.NaN;
            if (Number.isInteger(n) && n >= 0) key = String(n);
            else this.error(kpos, kpath, "keys must be whole numbers");
          }
          if (key === undefined) continue;
          const valueNode = this.resolve(pair.value);
          if (this.danglingAlias(pair.value, valueNode, kpos, kpath)) continue;
          if (valueNode === null) {
            this.error(kpos, kpath, "must have a value");
            continue;
          }
          let v: unknown;
          if (field.mapKind === "scalar") v = this.scalar(field.scalar, valueNode, kpath, kpos, false);
          else if (field.mapKind === "enum") v = this.enumValue(field.enum, valueNode, kpath, kpos);
          else v = this.messageValue(field.message, valueNode, kpath, kpos);
          if (v !== undefined) out[key] = v;
        }
        return out;
      }
    }
  }

  private messageValue(desc: DescMessage, node: YamlNode, path: FieldPath, at: Pos): unknown {
    switch (desc.typeName) {
      case "google.protobuf.Duration": {
        const text = isScalar(node) ? node.value : undefined;
        const d = typeof text === "string" ? parseDuration(text) : undefined;
        if (d === undefined) {
          this.error(at, path, 'must be a duration like "250ms", "2s", "1m" or "24h"');
          return undefined;
        }
        return d;
      }
      case "google.protobuf.Timestamp": {
        const text = isScalar(node) ? node.value : undefined;
        const ts = typeof text === "string" ? parseTimestamp(text) : undefined;
        if (ts === undefined) {
          this.error(at, path, 'must be an RFC 3339 time like "2026-01-02T15:04:05Z"');
          return undefined;
        }
        return ts;
      }
    }
    if (!isMap(node)) {
      this.error(at, path, "must be a mapping");
      return undefined;
    }
    return this.message(desc, node, path);
  }

  private enumValue(desc: DescEnum, node: YamlNode, path: FieldPath, at: Pos): number | undefined {
    const text = isScalar(node) ? node.value : undefined;
    const n = typeof text === "string" ? enumFromToken(desc, text) : undefined;
    if (n === undefined) {
      const shown = isScalar(node) ? JSON.stringify(text) : "a non-scalar";
      this.error(at, path, `unknown value ${shown}; expected one of ${enumTokens(desc).join(", ")}`);
    }
    return n;
  }

  private scalar(
    type: ScalarType,
    node: YamlNode,
    path: FieldPath,
    at: Pos,
    byteSize: boolean,
    bounds?: FieldRules,
  ): unknown {
    if (!isScalar(node)) {
      this.error(at, path, `must be ${scalarNoun(type)}, not a ${isSeq(node) ? "list" : "mapping"}`);
      return undefined;
    }
    const v = node.value;
    const quotedNumber =
      typeof v === "string" && node.type !== Scalar.PLAIN && v.trim() !== "" && !Number.isNaN(Number(v));
    switch (type) {
      case ScalarType.STRING:
        if (typeof v === "string") return v;
        this.error(at, path, `must be a string; quote the value ("${String(node.source ?? v)}")`);
        return undefined;
      case ScalarType.BOOL:
        if (typeof v === "boolean") return v;
        this.error(at, path, "must be true or false");
        return undefined;
      case ScalarType.BYTES:
        if (typeof v === "string") return Buffer.from(v, "base64");
        this.error(at, path, "must be a base64 string");
        return undefined;
      case ScalarType.DOUBLE:
      case ScalarType.FLOAT:
        if (typeof v === "number" && Number.isFinite(v)) return v;
        this.error(at, path, "must be a number");
        return undefined;
      default:
        return this.integer(type, v, path, at, byteSize, quotedNumber, bounds);
    }
  }

  private integer(
    type: ScalarType,
    v: unknown,
    path: FieldPath,
    at: Pos,
    byteSize: boolean,
    quotedNumber: boolean,
    bounds: FieldRules | undefined,
  ): unknown {
    let n: number | bigint | undefined;
    if (typeof v === "number") n = v;
    else if (typeof v === "bigint") n = v;
    else if (typeof v === "string" && byteSize) {
      const b = parseByteSize(v);
      if (b === undefined) {
        this.error(at, path, 'must be a byte count or a size like "64KiB"');
        return undefined;
      }
      n = b;
    } else if (typeof v === "string" && quotedNumber && is64(type) && /^-?\d+$/.test(v.trim())) {
      n = BigInt(v.trim()); // int64 values may be quoted, as in proto JSON
    }
    if (n === undefined) {
      this.error(at, path, "must be a whole number");
      return undefined;
    }
    if (typeof n === "number" && !Number.isInteger(n)) {
      this.error(at, path, "must be a whole number");
      return undefined;
    }
    const big = BigInt(n);
    const [min, max] = intRange(type);
    // Out of the type's range: name the declared bound when there is one (port: -1 → "≥ 1").
    if (big < min) {
      const lower =
        bounds?.gt !== undefined
          ? `> ${bounds.gt}`
          : bounds?.min !== undefined
            ? `≥ ${bounds.min}`
            : `≥ ${min}`;
      this.error(at, path, `must be ${lower}`);
      return undefined;
    }
    if (big > max) {
      this.error(at, path, `must be ≤ ${bounds?.max ?? max}`);
      return undefined;
    }
    return is64(type) ? big : Number(big);
  }
}

function isZeroValue(v: unknown): boolean {
  return v === 0 || v === 0n || v === "" || v === false || (v instanceof Uint8Array && v.length === 0);
}

function is64(type: ScalarType): boolean {
  return (
    type === ScalarType.INT64 ||
    type === ScalarType.UINT64 ||
    type === ScalarType.SINT64 ||
    type === ScalarType.FIXED64 ||
    type === ScalarType.SFIXED64
  );
}

function intRange(type: ScalarType): [bigint, bigint] {
  switch (type) {
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return [0n, 0xffffffffn];
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return [-0x80000000n, 0x7fffffffn];
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return [0n, 0xffffffffffffffffn];
    default:
      return [-0x8000000000000000n, 0x7fffffffffffffffn];
  }
}

function scalarNoun(type: ScalarType): string {
  switch (type) {
    case ScalarType.STRING:
      return "a string";
    case ScalarType.BOOL:
      return "true or false";
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return "a number";
    default:
      return "a whole number";
  }
}

function keyText(pair: Pair): string | undefined {
  const k = pair.key;
  return isScalar(k) && typeof k.value === "string" ? k.value : undefined;
}

const jsonIndexCache = new WeakMap<DescMessage, Map<string, DescField>>();
function jsonIndex(desc: DescMessage): Map<string, DescField> {
  let m = jsonIndexCache.get(desc);
  if (m === undefined) {
    m = new Map(desc.fields.map((f) => [f.jsonName, f]));
    jsonIndexCache.set(desc, m);
  }
  return m;
}

function closestField(desc: DescMessage, key: string): DescField | undefined {
  const lower = key.toLowerCase().replace(/[_-]/g, "");
  let best: DescField | undefined;
  let bestDistance = 3; // suggest only close misspellings
  for (const f of desc.fields) {
    const d =
      f.jsonName.toLowerCase() === lower || f.name === key
        ? 0
        : editDistance(f.jsonName.toLowerCase(), lower);
    if (d < bestDistance) {
      best = f;
      bestDistance = d;
    }
  }
  return best;
}

function unknownFieldMessage(desc: DescMessage, key: string, suggestion: DescField | undefined): string {
  if (suggestion !== undefined)
    return `unknown field ${JSON.stringify(key)}; did you mean ${JSON.stringify(suggestion.jsonName)}?`;
  return `unknown field ${JSON.stringify(key)}; known fields: ${desc.fields.map((f) => f.jsonName).join(", ")}`;
}

/** Levenshtein distance, for "did you mean" hints on short field names. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
    }
    prev = cur;
  }
  return prev[b.length] as number;
}

// ---------------------------------------------------------------------------------------------
// Printing

/** The canonical YAML of one policy (without a leading `---`). */
export function printPolicy(info: KindInfo, message: PolicyMessage): string {
  const plain = new Map<unknown, unknown>([
    ["apiVersion", API_VERSION],
    ["kind", info.kind],
  ]);
  const body = toPlain(info.schema, message as Msg);
  for (const [k, v] of body) plain.set(k, v);
  return new Document(plain).toString({ lineWidth: 0, indentSeq: true });
}

/** Several policies as one multi-document YAML stream. */
export function printPolicies(items: readonly { info: KindInfo; message: PolicyMessage }[]): string {
  return items.map((p) => printPolicy(p.info, p.message)).join("---\n");
}

/** A message as an ordered Map in the YAML mapping (proto field order, unset omitted). */
export function toPlain(desc: DescMessage, msg: Msg): Map<unknown, unknown> {
  const out = new Map<unknown, unknown>();
  for (const field of desc.fields) {
    if (!isFieldSet(msg as never, field)) continue;
    const v = plainField(field, fieldValue(msg, field));
    if (v !== undefined) out.set(field.jsonName, v);
  }
  return out;
}

function plainField(field: DescField, value: unknown): unknown {
  switch (field.fieldKind) {
    case "scalar":
      return plainScalar(value);
    case "enum":
      return enumToken(field.enum, value as number) ?? value;
    case "message":
      return plainMessage(field.message, value as Msg);
    case "list":
      return (value as unknown[]).map((item) =>
        field.listKind === "scalar"
          ? plainScalar(item)
          : field.listKind === "enum"
            ? (enumToken(field.enum, item as number) ?? item)
            : plainMessage(field.message, item as Msg),
      );
    case "map": {
      const numeric = field.mapKey !== ScalarType.STRING && field.mapKey !== ScalarType.BOOL;
      const keys = Object.keys(value as Msg);
      keys.sort(numeric ? (a, b) => Number(a) - Number(b) : undefined);
      const out = new Map<unknown, unknown>();
      for (const k of keys) {
        const v = (value as Msg)[k];
        const pv =
          field.mapKind === "scalar"
            ? plainScalar(v)
            : field.mapKind === "enum"
              ? (enumToken(field.enum, v as number) ?? v)
              : plainMessage(field.message, v as Msg);
        out.set(numeric ? Number(k) : k, pv);
      }
      return out;
    }
  }
}

function plainScalar(v: unknown): unknown {
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString("base64");
  return v;
}

function plainMessage(desc: DescMessage, msg: Msg): unknown {
  if (desc.typeName === "google.protobuf.Duration") return formatDuration(msg as unknown as Duration);
  if (desc.typeName === "google.protobuf.Timestamp") return formatTimestamp(msg as unknown as Timestamp);
  return toPlain(desc, msg);
}
