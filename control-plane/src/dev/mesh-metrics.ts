/**
 * What the demo's sidecars counted, read from their own /metrics (stats port), the way Prometheus
 * would: the scenarios report these numbers, not what `trellis dev` believes it caused.
 *
 * A reading is every sidecar's counters of interest at one moment. The difference of two readings
 * is taken per sidecar and series (a sidecar that could not be read at either moment adds nothing:
 * a counter's absence is not a zero), then summed over the mesh.
 */
import * as http from "node:http";

/** Counters summed over the demo's sidecars (between two readings). */
export interface MeshCounts {
  /** trellis_retries_total. */
  retries: number;
  /** trellis_retry_budget_exhausted_total. */
  retryBudgetExhausted: number;
  /** trellis_outlier_ejections_total, all clusters. */
  ejections: number;
  /** trellis_outlier_ejections_total by `cluster` (non-zero only). */
  ejectionsByCluster: Record<string, number>;
  /** trellis_local_reply_total{reason="upstream_timeout"}: 504s (gRPC: DEADLINE_EXCEEDED) made by a sidecar. */
  upstreamTimeouts: number;
  /** trellis_ratelimit_decisions_total{decision="limited"}: requests refused 429 `rate_limited`. */
  rateLimited: number;
  /** trellis_local_reply_total by `reason` (non-zero only): every answer a sidecar made itself. */
  localReplies: Record<string, number>;
  /** Sidecars whose /metrics could be read both times (of `sidecarsTotal`). */
  sidecarsRead: number;
  sidecarsTotal: number;
}

/** One sidecar to read: its name and its stats port on 127.0.0.1. */
export interface MetricsSource {
  name: string;
  statsPort: number;
}

/** One reading: per sidecar, series key (`name{labels}`) → value; undefined when unreadable. */
export type Reading = Map<string, Map<string, number> | undefined>;

/** The metric families a reading keeps. */
const FAMILIES = new Set([
  "trellis_retries_total",
  "trellis_retry_budget_exhausted_total",
  "trellis_outlier_ejections_total",
  "trellis_local_reply_total",
  "trellis_ratelimit_decisions_total",
]);

const SCRAPE_TIMEOUT_MS = 1_000;

/** Reads every source's /metrics at once. */
export async function readMesh(sources: readonly MetricsSource[]): Promise<Reading> {
  const texts = await Promise.all(sources.map((s) => scrape(s.statsPort)));
  const reading: Reading = new Map();
  sources.forEach((s, i) => {
    const text = texts[i];
    reading.set(s.name, text === undefined ? undefined : parseSeries(text));
  });
  return reading;
}

/** The counts between two readings (see the file comment). */
export function countsBetween(before: Reading, after: Reading): MeshCounts {
  const out: MeshCounts = {
    retries: 0,
    retryBudgetExhausted: 0,
    ejections: 0,
    ejectionsByCluster: {},
    upstreamTimeouts: 0,
    rateLimited: 0,
    localReplies: {},
    sidecarsRead: 0,
    sidecarsTotal: after.size,
  };
  for (const [name, b] of before) {
    const a = after.get(name);
    if (a === undefined || b === undefined) continue;
    out.sidecarsRead++;
    for (const [key, value] of a) {
      // A counter that went down was reset (the process restarted): count from zero.
      const prior = b.get(key) ?? 0;
      const d = value >= prior ? value - prior : value;
      if (d === 0) continue;
      const { family, labels } = splitKey(key);
      switch (family) {
        case "trellis_retries_total":
          out.retries += d;
          break;
        case "trellis_retry_budget_exhausted_total":
          out.retryBudgetExhausted += d;
          break;
        case "trellis_outlier_ejections_total": {
          out.ejections += d;
          const cluster = labels.get("cluster") ?? "";
          out.ejectionsByCluster[cluster] = (out.ejectionsByCluster[cluster] ?? 0) + d;
          break;
        }
        case "trellis_local_reply_total": {
          const reason = labels.get("reason") ?? "";
          out.localReplies[reason] = (out.localReplies[reason] ?? 0) + d;
          if (reason === "upstream_timeout") out.upstreamTimeouts += d;
          break;
        }
        case "trellis_ratelimit_decisions_total":
          if (labels.get("decision") === "limited") out.rateLimited += d;
          break;
      }
    }
  }
  return out;
}

/**
 * GET http://127.0.0.1:<port>/metrics; undefined when it cannot be read (gone, slow, not 200).
 * node:http rather than fetch: the first fetch in a process loads undici, which delayed the first
 * scenario's start by half a second.
 */
function scrape(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get(
      { host: "127.0.0.1", port, path: "/metrics", agent: false, timeout: SCRAPE_TIMEOUT_MS },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          resolve(undefined);
          return;
        }
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        res.on("error", () => resolve(undefined));
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined)); // unreadable: see the file comment
  });
}

/**
 * The series of FAMILIES in Prometheus text exposition: `name{labels} value` lines, keyed by
 * everything before the value (the sidecar prints a series' labels in one fixed order).
 */
export function parseSeries(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.length === 0 || line.charCodeAt(0) === 35 /* # */) continue;
    const brace = line.indexOf("{");
    const space = line.indexOf(" ");
    const nameEnd = brace >= 0 && brace < space ? brace : space;
    if (nameEnd <= 0 || !FAMILIES.has(line.slice(0, nameEnd))) continue;
    const valueStart = brace >= 0 && brace < space ? line.lastIndexOf("}") + 1 : space;
    const value = Number(line.slice(valueStart).trim().split(" ")[0]);
    if (Number.isFinite(value)) out.set(line.slice(0, valueStart), value);
  }
  return out;
}

function splitKey(key: string): { family: string; labels: Map<string, string> } {
  const brace = key.indexOf("{");
  if (brace < 0) return { family: key, labels: new Map() };
  const labels = new Map<string, string>();
  for (const m of key.slice(brace).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
    labels.set(m[1] as string, m[2] as string);
  return { family: key.slice(0, brace), labels };
}
