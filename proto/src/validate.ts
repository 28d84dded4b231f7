/**
 * The one validator: enforces the rules declared in the .proto files (options.proto) on any message,
 * by reflection. The CLI, the control plane and the sidecar all call it, so a policy accepted by
 * `trellis validate` is accepted everywhere, and the sidecar re-checks what it receives.
 *
 * It never throws on bad data: it returns every violation with its field path (bad config is data).
 */
import type { DescEnum, DescField, DescMessage, DescOneof, Message } from "@bufbuild/protobuf";
import { getOption, hasOption, isFieldSet, ScalarType } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
import type { FieldRules, MessageRules } from "../gen/trellis/v1/options_pb.js";
import {
  Format,
  field as fieldOption,
  message as messageOption,
  oneof as oneofOption,
} from "../gen/trellis/v1/options_pb.js";
import { durationNanos, parseDurationNanos } from "./duration.js";
import { enumToken } from "./enum-tokens.js";
import type { FieldPath } from "./field-path.js";
import { formatProblem } from "./formats.js";

/** One broken rule: where (JSON field path) and what, e.g. `spec.rules[0].timeout`, "must be ≥ 1ms". */
export interface Violation {
  path: FieldPath;
  message: string;
}

/** Validates `message` (of `schema`) against the declared rules; an empty list means valid. */
export function validate(schema: DescMessage, message: Message, basePath: FieldPath = []): Violation[] {
  const out: Violation[] = [];
  validateMessage(schema, message as Record<string, unknown>, basePath, out);
  return out;
}

type Msg = Record<string, unknown>;

const rulesCache = new WeakMap<DescField, FieldRules | null>();
function fieldRules(field: DescField): FieldRules | undefined {
  let r = rulesCache.get(field);
  if (r === undefined) {
    r = hasOption(field, fieldOption) ? getOption(field, fieldOption) : null;
    rulesCache.set(field, r);
  }
  return r ?? undefined;
}

const messageRulesCache = new WeakMap<DescMessage, MessageRules | null>();
function messageRules(desc: DescMessage): MessageRules | undefined {
  let r = messageRulesCache.get(desc);
  if (r === undefined) {
    r = hasOption(desc, messageOption) ? getOption(desc, messageOption) : null;
    messageRulesCache.set(desc, r);
  }
  return r ?? undefined;
}

function oneofRequired(oneof: DescOneof): boolean {
  return hasOption(oneof, oneofOption) && getOption(oneof, oneofOption).required;
}

/** The value of a field, whether a plain member or a oneof member. */
export function fieldValue(msg: Msg, field: DescField): unknown {
  if (field.oneof !== undefined) {
    const o = msg[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
    return o?.case === field.localName ? o.value : undefined;
  }
  return msg[field.localName];
}

function validateMessage(desc: DescMessage, msg: Msg, path: FieldPath, out: Violation[]): void {
  for (const field of desc.fields) {
    const rules = fieldRules(field);
    const fpath = [...path, field.jsonName];
    if (!isFieldSet(msg as never, field)) {
      if (rules?.required) out.push({ path: fpath, message: "is required" });
      else if ((field.fieldKind === "list" || field.fieldKind === "map") && (rules?.minItems ?? 0) > 0) {
        checkCount(0, rules, fpath, out);
      }
      continue;
    }
    const value = fieldValue(msg, field);
    switch (field.fieldKind) {
      case "scalar":
        checkScalar(field.scalar, value, rules, fpath, out);
        break;
      case "enum":
        checkEnum(field.enum, value as number, fpath, out);
        break;
      case "message":
        checkMessageValue(field.message, value as Msg, rules, fpath, out);
        break;
      case "list": {
        const items = value as unknown[];
        checkCount(items.length, rules, fpath, out);
        if (rules?.unique) {
          const show =
            field.listKind === "enum"
              ? (v: unknown) => JSON.stringify(enumToken(field.enum, v as number) ?? v)
              : (v: unknown) => JSON.stringify(v);
          checkUnique(items, fpath, out, show);
        }
        items.forEach((item, i) => {
          const ipath = [...fpath, i];
          if (field.listKind === "scalar") checkScalar(field.scalar, item, rules, ipath, out);
          else if (field.listKind === "enum") checkEnum(field.enum, item as number, ipath, out);
          else checkMessageValue(field.message, item as Msg, rules, ipath, out);
        });
        break;
      }
      case "map": {
        const entries = Object.entries(value as Msg);
        checkCount(entries.length, rules, fpath, out);
        for (const [k, v] of entries) {
          const kpath = [...fpath, { key: k }];
          if (rules?.keys !== undefined) checkMapKey(k, field.mapKey, rules, kpath, out);
          if (field.mapKind === "scalar") checkScalar(field.scalar, v, rules, kpath, out);
          else if (field.mapKind === "enum") checkEnum(field.enum, v as number, kpath, out);
          else checkMessageValue(field.message, v as Msg, rules, kpath, out);
        }
        break;
      }
    }
  }
  for (const oneof of desc.oneofs) {
    if (!oneofRequired(oneof)) continue;
    const o = msg[oneof.localName] as { case?: string } | undefined;
    if (o?.case === undefined) {
      out.push({ path, message: `one of ${oneof.fields.map((f) => f.jsonName).join(", ")} is required` });
    }
  }
  const mrules = messageRules(desc);
  if (mrules !== undefined) checkMessageRules(desc, msg, mrules, path, out);
}

function checkMessageValue(
  desc: DescMessage,
  value: Msg,
  rules: FieldRules | undefined,
  path: FieldPath,
  out: Violation[],
): void {
  if (desc.typeName === "google.protobuf.Duration") {
    checkDuration(value as unknown as Duration, rules, path, out);
    return;
  }
  if (desc.typeName.startsWith("google.protobuf.")) return;
  validateMessage(desc, value, path, out);
}

function checkDuration(d: Duration, rules: FieldRules | undefined, path: FieldPath, out: Violation[]): void {
  const nanos = durationNanos(d);
  if (nanos < 0n) {
    out.push({ path, message: "must not be negative" });
    return;
  }
  if (rules === undefined) return;
  if (rules.minDuration !== "") {
    const min = parseDurationNanos(rules.minDuration);
    if (min !== undefined && nanos < min) out.push({ path, message: `must be ≥ ${rules.minDuration}` });
  }
  if (rules.maxDuration !== "") {
    const max = parseDurationNanos(rules.maxDuration);
    if (max !== undefined && nanos > max) out.push({ path, message: `must be ≤ ${rules.maxDuration}` });
  }
}

function checkEnum(desc: DescEnum, value: number, path: FieldPath, out: Violation[]): void {
  if (value !== 0 && enumToken(desc, value) === undefined) {
    out.push({ path, message: `unknown value ${value}` });
  }
}

function checkCount(n: number, rules: FieldRules | undefined, path: FieldPath, out: Violation[]): void {
  if (rules === undefined) return;
  if (rules.minItems !== undefined && n < rules.minItems) {
    out.push({
      path,
      message: `must have at least ${rules.minItems} item${rules.minItems === 1 ? "" : "s"}`,
    });
  }
  if (rules.maxItems !== undefined && n > rules.maxItems) {
    out.push({ path, message: `must have at most ${rules.maxItems} items` });
  }
}

function checkUnique(
  items: unknown[],
  path: FieldPath,
  out: Violation[],
  show: (v: unknown) => string,
): void {
  const seen = new Set<unknown>();
  items.forEach((item, i) => {
    if (typeof item === "object") return;
    if (seen.has(item)) out.push({ path: [...path, i], message: `duplicate value ${show(item)}` });
    seen.add(item);
  });
}

/**
 * The rule problems of a scalar value the user wrote explicitly. The codec calls this for values
 * equal to the type's zero (`port: 0`), which the message alone cannot tell from "unset".
 */
export function explicitScalarProblems(field: DescField, value: unknown): string[] {
  const rules = fieldRules(field);
  if (rules === undefined || field.fieldKind !== "scalar") return [];
  // An empty string written for a required field reads best as the validator says it.
  if (typeof value === "string") return rules.required ? ["is required"] : [];
  const out: Violation[] = [];
  checkScalar(field.scalar, value, rules, [], out);
  if (out.length === 0 && rules.required) out.push({ path: [], message: "is required" });
  return out.map((v) => v.message);
}

/** The declared rules of a field, if any (for the codec's range messages). */
export function declaredRules(field: DescField): FieldRules | undefined {
  return fieldRules(field);
}

function checkMapKey(
  key: string,
  keyType: ScalarType,
  rules: FieldRules,
  path: FieldPath,
  out: Violation[],
): void {
  const kr = rules.keys;
  if (kr === undefined) return;
  if (keyType === ScalarType.STRING) {
    const p = formatProblem(kr.format, key);
    if (p !== undefined) out.push({ path, message: `key ${p}` });
    return;
  }
  const n = Number(key);
  if (kr.min !== undefined && n < kr.min) out.push({ path, message: `key must be ≥ ${kr.min}` });
  if (kr.max !== undefined && n > kr.max) out.push({ path, message: `key must be ≤ ${kr.max}` });
}

function checkScalar(
  type: ScalarType,
  value: unknown,
  rules: FieldRules | undefined,
  path: FieldPath,
  out: Violation[],
): void {
  if (rules === undefined) return;
  if (typeof value === "string") {
    checkString(value, rules, path, out);
    return;
  }
  if (type === ScalarType.BOOL || type === ScalarType.BYTES) return;
  const n = Number(value as number | bigint);
  if (rules.gt !== undefined && !(n > rules.gt)) out.push({ path, message: `must be > ${rules.gt}` });
  if (rules.min !== undefined && n < rules.min) out.push({ path, message: `must be ≥ ${rules.min}` });
  if (rules.max !== undefined && n > rules.max) out.push({ path, message: `must be ≤ ${rules.max}` });
  if (!Number.isFinite(n)) out.push({ path, message: "must be a finite number" });
}

const patternCache = new Map<string, RegExp>();
function anchored(pattern: string): RegExp {
  let re = patternCache.get(pattern);
  if (re === undefined) {
    re = new RegExp(`^(?:${pattern})$`, "u");
    patternCache.set(pattern, re);
  }
  return re;
}

function checkString(value: string, rules: FieldRules, path: FieldPath, out: Violation[]): void {
  const len = [...value].length;
  if (rules.minLen !== undefined && len < rules.minLen) {
    out.push({ path, message: `must be at least ${rules.minLen} character${rules.minLen === 1 ? "" : "s"}` });
  }
  if (rules.maxLen !== undefined && len > rules.maxLen) {
    out.push({ path, message: `must be at most ${rules.maxLen} characters` });
  }
  if (rules.pattern !== "" && !anchored(rules.pattern).test(value)) {
    out.push({ path, message: `must be ${rules.patternMessage || `like /${rules.pattern}/`}` });
  }
  if (rules.in.length > 0 && !rules.in.includes(value)) {
    out.push({ path, message: `must be one of ${rules.in.join(", ")}` });
  }
  if (rules.format !== Format.UNSPECIFIED) {
    const p = formatProblem(rules.format, value);
    if (p !== undefined) out.push({ path, message: p });
  }
}

function jsonNameOf(desc: DescMessage, protoName: string): string {
  return desc.fields.find((f) => f.name === protoName)?.jsonName ?? protoName;
}

function isSet(desc: DescMessage, msg: Msg, protoName: string): boolean {
  const f = desc.fields.find((x) => x.name === protoName);
  return f !== undefined && isFieldSet(msg as never, f);
}

function checkMessageRules(
  desc: DescMessage,
  msg: Msg,
  rules: MessageRules,
  path: FieldPath,
  out: Violation[],
): void {
  const names = (fields: string[]) => fields.map((f) => jsonNameOf(desc, f)).join(", ");
  for (const g of rules.exactlyOne) {
    const n = g.fields.filter((f) => isSet(desc, msg, f)).length;
    if (n !== 1) out.push({ path, message: `exactly one of ${names(g.fields)} must be set` });
  }
  for (const g of rules.atMostOne) {
    if (g.fields.filter((f) => isSet(desc, msg, f)).length > 1) {
      out.push({ path, message: `at most one of ${names(g.fields)} may be set` });
    }
  }
  for (const g of rules.atLeastOne) {
    if (!g.fields.some((f) => isSet(desc, msg, f))) {
      out.push({ path, message: `at least one of ${names(g.fields)} must be set` });
    }
  }
  for (const imp of rules.implies) {
    if (!isSet(desc, msg, imp.field)) continue;
    const f = desc.fields.find((x) => x.name === imp.field);
    if (imp.whenContains !== "" && f !== undefined && !containsToken(f, fieldValue(msg, f), imp.whenContains))
      continue;
    const missing = imp.requires.filter((r) => {
      if (!isSet(desc, msg, r)) return true;
      if (imp.equals === "") return false;
      const rf = desc.fields.find((x) => x.name === r);
      const v = rf === undefined ? undefined : fieldValue(msg, rf);
      const shown = rf?.fieldKind === "enum" ? enumToken(rf.enum, v as number) : v;
      return shown !== imp.equals;
    });
    if (missing.length > 0) {
      out.push({
        path: [...path, jsonNameOf(desc, imp.field)],
        message: imp.message || `${jsonNameOf(desc, imp.field)} requires ${names(missing)}`,
      });
    }
  }
  for (const ord of rules.ordered) {
    const lesser = desc.fields.find((x) => x.name === ord.lesser);
    const greater = desc.fields.find((x) => x.name === ord.greater);
    if (lesser === undefined || greater === undefined) continue;
    if (!isFieldSet(msg as never, lesser) || !isFieldSet(msg as never, greater)) continue;
    const a = comparable(fieldValue(msg, lesser));
    const b = comparable(fieldValue(msg, greater));
    if (a !== undefined && b !== undefined && a > b) {
      out.push({
        path: [...path, lesser.jsonName],
        message: `must not be greater than ${greater.jsonName}`,
      });
    }
  }
  for (const ex of rules.excludes) {
    if (!isSet(desc, msg, ex.ifSet)) continue;
    for (const forbidden of ex.forbids) {
      if (isSet(desc, msg, forbidden)) {
        out.push({
          path: [...path, jsonNameOf(desc, forbidden)],
          message: ex.message || `must not be set together with ${jsonNameOf(desc, ex.ifSet)}`,
        });
      }
    }
  }
}

function containsToken(field: DescField, value: unknown, token: string): boolean {
  if (field.fieldKind === "list" && field.listKind === "enum" && Array.isArray(value)) {
    return value.some((v) => enumToken(field.enum, v as number) === token);
  }
  if (field.fieldKind === "enum") return enumToken(field.enum, value as number) === token;
  return false;
}

function comparable(v: unknown): bigint | number | undefined {
  if (typeof v === "number" || typeof v === "bigint") return v;
  if (typeof v === "object" && v !== null && "seconds" in v && "nanos" in v)
    return durationNanos(v as Duration);
  return undefined;
}
