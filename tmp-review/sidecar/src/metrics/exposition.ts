/**
 * Prometheus text exposition format 0.0.4, written by hand at scrape time
 * (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format).
 *
 * The sidecar keeps its numbers in plain fields and arrays and renders them here only when
 * scraped: prom-client's per-observation cost (~2.8 µs for the four request series, ENVIRONMENT.md)
 * would be 8% of a hop's budget. Rules kept here: one `# HELP` and one `# TYPE` per family, all of
 * a family's samples together, label values escaped, histogram buckets cumulative and ending in +Inf.
 */

/** Content type of the exposition (what /metrics answers with): text format 0.0.4. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** The metric types this module writes. */
export type MetricType = "counter" | "gauge" | "histogram";

/** One or more metric families rendered together (a collector may own several names). */
export interface MetricCollector {
  /** The family names this collector writes (checked unique across a registry). */
  readonly names: readonly string[];
  /** Appends complete families (HELP, TYPE, samples) to `out`, each chunk ending in "\n". */
  render(out: string[]): void;
  /** Number of sample series (label sets) currently held; histograms count once per label set. */
  seriesCount(): number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Throws (a programming error) when `name` is not a valid metric name. */
export function checkMetricName(name: string): void {
  if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
}

/** Throws (a programming error) when a label name is invalid or reserved (`__` prefix, `le`). */
export function checkLabelNames(names: readonly string[]): void {
  for (const n of names) {
    if (!LABEL_NAME.test(n) || n.startsWith("__") || n === "le")
      throw new Error(`invalid label name ${JSON.stringify(n)}`);
  }
}

/** A label value escaped for the text format: `\` → `\\`, `"` → `\"`, newline → `\n`. */
export function escapeLabelValue(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/[\\"\n]/g, escapeChar) : value;
}

function escapeChar(c: string): string {
  return c === "\n" ? "\\n" : `\\${c}`;
}

/** HELP text escaped: `\` → `\\`, newline → `\n` (quotes stay as they are in HELP). */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** `a="x",b="y"` (no braces) for names and values in the same order. */
export function renderLabelPairs(names: readonly string[], values: readonly string[]): string {
  let s = "";
  for (let i = 0; i < names.length; i++) {
    if (i > 0) s += ",";
    s += `${names[i]}="${escapeLabelValue(values[i] ?? "")}"`;
  }
  return s;
}

/** A sample value: integers and floats as JavaScript prints them, `+Inf`, `-Inf`, `NaN`. */
export function formatValue(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Number.POSITIVE_INFINITY) return "+Inf";
  if (n === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(n);
}

/** Appends the `# HELP` and `# TYPE` lines of one family. */
export function writeHeader(out: string[], name: string, help: string, type: MetricType): void {
  out.push(`# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`);
}

/** Appends one sample line; `labels` is a rendered pair list ("" for none). */
export function writeSample(out: string[], name: string, labels: string, value: number): void {
  out.push(
    labels.length === 0 ? `${name} ${formatValue(value)}\n` : `${name}{${labels}} ${formatValue(value)}\n`,
  );
}

/**
 * Appends one histogram series: cumulative `_bucket` lines for each bound and `+Inf`, then `_sum`
 * and `_count`. `counts[i]` holds the observations in (bounds[i-1], bounds[i]];
 * `counts[bounds.length]` those above the last bound.
 */
export function writeHistogram(
  out: string[],
  name: string,
  labels: string,
  buckets: Buckets,
  counts: ArrayLike<number>,
  sum: number,
): void {
  // Pieces are pushed separately and joined once at the end of the scrape, so no per-line string
  // is built and thrown away (the label text is shared by all of a series' lines).
  const { bounds, lePieces } = buckets;
  const prefix = labels.length === 0 ? `${name}_bucket{` : `${name}_bucket{${labels},`;
  let cumulative = 0;
  for (let i = 0; i < bounds.length; i++) {
    cumulative += counts[i] ?? 0;
    out.push(prefix, lePieces[i] as string, String(cumulative), "\n");
  }
  cumulative += counts[bounds.length] ?? 0;
  const braces = labels.length === 0 ? " " : `{${labels}} `;
  const total = String(cumulative);
  out.push(prefix, 'le="+Inf"} ', total, "\n", name, "_sum", braces, formatValue(sum), "\n");
  out.push(name, "_count", braces, total, "\n");
}

/**
 * Fixed histogram buckets: the upper bounds, their `le` texts, and the bucket index of a value
 * (first bound ≥ value; bounds.length for above all). Linear scan: with ≤ 16 bounds and small
 * values in the common case it beats a binary search.
 */
export class Buckets {
  readonly bounds: readonly number[];
  readonly leLabels: readonly string[];
  /** `le="<bound>"} ` per bound, ready to follow a series' labels. */
  readonly lePieces: readonly string[];

  /** `bounds` strictly increasing and finite (+Inf is implicit). */
  constructor(bounds: readonly number[]) {
    for (let i = 0; i < bounds.length; i++) {
      const b = bounds[i] as number;
      if (!Number.isFinite(b) || (i > 0 && b <= (bounds[i - 1] as number)))
        throw new Error("histogram bounds must be finite and strictly increasing");
    }
    this.bounds = bounds;
    this.leLabels = bounds.map(formatValue);
    this.lePieces = this.leLabels.map((le) => `le="${le}"} `);
  }

  /** The index in a counts array (length bounds.length + 1) that `value` falls in. */
  indexOf(value: number): number {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > (b[i] as number)) i++;
    return i;
  }
}
