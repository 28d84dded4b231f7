/**
 * Byte sizes as users may write them: a plain integer (bytes) or a number with a unit: B, KB, MB,
 * GB (powers of 1000) or KiB, MiB, GiB (powers of 1024). "64KiB" = 65536.
 */
const UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

const SIZE = /^(\d+(?:\.\d+)?)\s*([a-z]+)?$/i;

/** Bytes for a size string or number; undefined when malformed, negative or not a whole byte count. */
export function parseByteSize(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  const m = SIZE.exec(value.trim());
  if (!m) return undefined;
  const unit = m[2] === undefined ? 1 : UNITS[m[2].toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Number(m[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}
