/**
 * Plain-text tables and ages for the CLI's default output (`get`, `status`, `proxy-config`), in the
 * style of kubectl: upper-case headers, columns padded with three spaces, no trailing blanks.
 */

/** Rows of cells under `headers`, one line each, the header line first. Cells print as given. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("   ")
      .trimEnd();
  return [line(headers), ...rows.map(line)];
}

/**
 * A duration in ms as a short age: `45s`, `12m`, `5h`, `3d` (two units below 10 of the larger one:
 * `2m30s`, `3h20m`, `4d6h`, as kubectl prints). Negative or unknown ages print `-`.
 */
export function formatAge(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) return "-";
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 120) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 10) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (d < 10) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  return `${d}d`;
}
