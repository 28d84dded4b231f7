/**
 * The YAML spelling of enum values (INTERFACES.md): the value's `(trellis.v1.token)` option when it
 * has one ("5xx", "connect-failure", "second"), else the short upper-case name — the value name
 * without the enum's shared prefix (MTLS_MODE_STRICT → STRICT). The zero (UNSPECIFIED) value has no
 * token: it means "unset" and is never written.
 */
import type { DescEnum, DescEnumValue } from "@bufbuild/protobuf";
import { getOption } from "@bufbuild/protobuf";
import { token as tokenOption } from "../gen/trellis/v1/options_pb.js";

interface EnumTokens {
  byToken: Map<string, number>;
  byNumber: Map<number, string>;
  tokens: string[];
}

const cache = new WeakMap<DescEnum, EnumTokens>();

function tokensOf(desc: DescEnum): EnumTokens {
  let t = cache.get(desc);
  if (t !== undefined) return t;
  t = { byToken: new Map(), byNumber: new Map(), tokens: [] };
  for (const v of desc.values) {
    if (v.number === 0) continue;
    const tok = valueToken(desc, v);
    t.byToken.set(tok, v.number);
    t.byNumber.set(v.number, tok);
    t.tokens.push(tok);
  }
  cache.set(desc, t);
  return t;
}

function valueToken(desc: DescEnum, v: DescEnumValue): string {
  const explicit = getOption(v, tokenOption);
  if (explicit !== "") return explicit;
  const prefix = (desc.sharedPrefix ?? "").toUpperCase();
  return prefix && v.name.startsWith(prefix) ? v.name.slice(prefix.length) : v.name;
}

/** The enum number for a YAML token, or undefined when the token is not one of the enum's. */
export function enumFromToken(desc: DescEnum, token: string): number | undefined {
  return tokensOf(desc).byToken.get(token);
}

/** The YAML token of an enum number, or undefined for 0 (unset) and unknown numbers. */
export function enumToken(desc: DescEnum, value: number): string | undefined {
  return tokensOf(desc).byNumber.get(value);
}

/** Every valid token of the enum, in declaration order (for error messages and docs). */
export function enumTokens(desc: DescEnum): readonly string[] {
  return tokensOf(desc).tokens;
}
