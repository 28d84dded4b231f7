/**
 * Duration strings as users write them everywhere in Trellis: "250ms", "2s", "1m", "24h", and
 * compounds like "1h30m" or fractions like "1.5s". Units: ns, us (or µs), ms, s, m, h.
 * The canonical print uses one unit, the largest that represents the value exactly.
 */

import { create } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { DurationSchema } from "@bufbuild/protobuf/wkt";

const NANOS_PER: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

const PART = /(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;

/**
 * Parses a duration string to nanoseconds. Returns undefined when the text is not a duration
 * (bare numbers without unit are refused: "10" is ambiguous). A leading "-" gives a negative value,
 * which callers reject where it makes no sense.
 */
export function parseDurationNanos(text: string): bigint | undefined {
  let s = text.trim();
  let sign = 1n;
  if (s.startsWith("-")) {
    sign = -1n;
    s = s.slice(1);
  } else if (s.startsWith("+")) {
    s = s.slice(1);
  }
  if (s === "0") return 0n;
  if (s.length === 0) return undefined;
  let total = 0n;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const start = PART.lastIndex;
    const m = PART.exec(s);
    if (!m || m.index !== start) return undefined;
    const num = m[1] as string;
    const unit = NANOS_PER[m[2] as string] as bigint;
    const [whole = "0", frac = ""] = num.split(".");
    let nanos = BigInt(whole || "0") * unit;
    if (frac.length > 0) {
      // Exact decimal fraction of the unit, truncated below one nanosecond.
      nanos += (BigInt(frac) * unit) / 10n ** BigInt(frac.length);
    }
    total += nanos;
  }
  return sign * total;
}

/** Parses a duration string into a google.protobuf.Duration, or undefined when malformed. */
export function parseDuration(text: string): Duration | undefined {
  const nanos = parseDurationNanos(text);
  return nanos === undefined ? undefined : durationFromNanos(nanos);
}

/** A google.protobuf.Duration from nanoseconds (seconds and nanos carry the same sign). */
export function durationFromNanos(total: bigint): Duration {
  const seconds = total / 1_000_000_000n;
  const nanos = Number(total % 1_000_000_000n);
  return create(DurationSchema, { seconds, nanos });
}

/** A google.protobuf.Duration from milliseconds. */
export function durationFromMs(ms: number): Duration {
  return durationFromNanos(BigInt(Math.round(ms * 1_000_000)));
}

/** Total nanoseconds of a Duration. */
export function durationNanos(d: Duration): bigint {
  return d.seconds * 1_000_000_000n + BigInt(d.nanos);
}

/** Milliseconds of a Duration (fractional below 1 ms), or `fallback` when the duration is unset. */
export function durationMs(d: Duration | undefined, fallback: number): number;
export function durationMs(d: Duration | undefined): number | undefined;
export function durationMs(d: Duration | undefined, fallback?: number): number | undefined {
  if (d === undefined) return fallback;
  return Number(d.seconds) * 1000 + d.nanos / 1_000_000;
}

const CANONICAL_UNITS: [string, bigint][] = [
  ["h", NANOS_PER.h as bigint],
  ["m", NANOS_PER.m as bigint],
  ["s", NANOS_PER.s as bigint],
  ["ms", NANOS_PER.ms as bigint],
  ["us", NANOS_PER.us as bigint],
  ["ns", 1n],
];

/** Canonical text of a duration in nanoseconds: one unit, the largest that divides it ("90s", "1500ms"). */
export function formatDurationNanos(total: bigint): string {
  if (total === 0n) return "0s";
  const sign = total < 0n ? "-" : "";
  const abs = total < 0n ? -total : total;
  for (const [unit, size] of CANONICAL_UNITS) {
    if (abs % size === 0n) return `${sign}${abs / size}${unit}`;
  }
  return `${sign}${abs}ns`;
}

/** Canonical text of a google.protobuf.Duration. */
export function formatDuration(d: Duration): string {
  return formatDurationNanos(durationNanos(d));
}
