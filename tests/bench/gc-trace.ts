/**
 * Reads V8's `--trace-gc` lines (one per collection, on stdout) into counts and pause times, to
 * tell GC cost and tail-latency pauses apart from the CPU profile's "(garbage collector)" share.
 *
 * Line format (V8 13, Node 24):
 *   [pid:0x…]  1234 ms: Scavenge 10.2 (12.3) -> 9.8 (13.3) MB, pooled: 0 MB, 1.23 / 0.00 ms  (…) allocation failure;
 *   [pid:0x…]  5678 ms: Mark-Compact 250.1 (270.2) -> 200.3 (275.2) MB, pooled: 0 MB, 85.20 / 0.00 ms  (…) …
 * The first number after the sizes is the main-thread pause in ms.
 */

/** Pauses of one kind of collection. */
export interface GcKind {
  count: number;
  totalMs: number;
  maxMs: number;
}

/** What the GC did during a window. */
export interface GcSummary {
  /** Young-generation collections (Scavenge, Minor Mark-Compact). */
  young: GcKind;
  /** Full collections (Mark-Compact, also "(reduce)"). */
  full: GcKind;
  /** Heap size (MB) after the last full collection of the window, if any. */
  heapAfterLastFullMB?: number;
}

const LINE =
  /ms: (Scavenge|Minor Mark-Compact|Mark-Compact(?: \(reduce\))?) [\d.]+ \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \/ [\d.]+ ms/;

/** Summarises every `--trace-gc` line of `text`. */
export function parseGcTrace(text: string): GcSummary {
  const young: GcKind = { count: 0, totalMs: 0, maxMs: 0 };
  const full: GcKind = { count: 0, totalMs: 0, maxMs: 0 };
  let heapAfterLastFullMB: number | undefined;
  for (const line of text.split("\n")) {
    const m = LINE.exec(line);
    if (m === null) continue;
    const pause = Number(m[3]);
    const k = m[1] === "Scavenge" || m[1] === "Minor Mark-Compact" ? young : full;
    k.count++;
    k.totalMs += pause;
    k.maxMs = Math.max(k.maxMs, pause);
    if (k === full) heapAfterLastFullMB = Number(m[2]);
  }
  const r = (g: GcKind): GcKind => ({
    count: g.count,
    totalMs: Math.round(g.totalMs * 10) / 10,
    maxMs: Math.round(g.maxMs * 10) / 10,
  });
  return {
    young: r(young),
    full: r(full),
    ...(heapAfterLastFullMB !== undefined && { heapAfterLastFullMB }),
  };
}
