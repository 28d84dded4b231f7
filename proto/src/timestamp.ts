/**
 * RFC 3339 timestamps for google.protobuf.Timestamp, keeping nanoseconds (Date keeps only ms), so a
 * printed status or metadata time parses back to the same value.
 */
import { create } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";

const RFC3339 = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/;

/** Parses an RFC 3339 timestamp; undefined when malformed. */
export function parseTimestamp(text: string): Timestamp | undefined {
  const m = RFC3339.exec(text.trim());
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]}T${m[2]}${m[4]?.toUpperCase()}`);
  if (Number.isNaN(ms)) return undefined;
  const nanos = m[3] === undefined ? 0 : Number(m[3].padEnd(9, "0"));
  return create(TimestampSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos });
}

/** RFC 3339 in UTC with as many fraction digits as needed (0, 3, 6 or 9). */
export function formatTimestamp(ts: Timestamp): string {
  const base = new Date(Number(ts.seconds) * 1000).toISOString().slice(0, 19);
  if (ts.nanos === 0) return `${base}Z`;
  let frac = String(ts.nanos).padStart(9, "0");
  while (frac.endsWith("000")) frac = frac.slice(0, -3);
  return `${base}.${frac}Z`;
}

/** A Timestamp for a Date (millisecond precision). */
export function timestampFromDate(d: Date): Timestamp {
  const ms = d.getTime();
  return create(TimestampSchema, {
    seconds: BigInt(Math.floor(ms / 1000)),
    nanos: (((ms % 1000) + 1000) % 1000) * 1_000_000,
  });
}

/** Milliseconds since the epoch of a Timestamp. */
export function timestampMs(ts: Timestamp): number {
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000);
}
