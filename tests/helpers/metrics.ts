/**
 * Reading a sidecar's Prometheus text in tests: one scrape, then sums over the series of a family
 * whose labels match — so a test asserts what an operator's dashboard would show.
 */
import type { SidecarProcess } from "./sidecar.js";

/** The admin port's /metrics text. */
export async function scrape(sc: Pick<SidecarProcess, "ports">): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${sc.ports.admin}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
  return r.text();
}

/** Parses `name{a="x",b="y"}` label text (values unescaped). */
function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text))
    out[m[1] as string] = (m[2] as string).replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
  return out;
}

/**
 * Sum of the samples of `name` (exact family member name, e.g. `trellis_retries_total`) whose labels
 * include every pair of `match`; 0 when none.
 */
export function metricSum(text: string, name: string, match: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    let value: string;
    if (rest.startsWith("{")) {
      const end = rest.lastIndexOf("}");
      labels = parseLabels(rest.slice(1, end));
      value = rest.slice(end + 1).trim();
    } else if (rest.startsWith(" ")) {
      value = rest.trim();
    } else continue;
    if (Object.entries(match).every(([k, v]) => labels[k] === v)) sum += Number(value.split(" ")[0]);
  }
  return sum;
}
