/**
 * Summarises a V8 CPU profile (the .cpuprofile JSON that `node --cpu-prof` writes, DevTools loads,
 * and the inspector's Profiler.stop returns) into what
 * the benchmark report needs: the top functions by self time, the top functions of our own code by
 * inclusive time, and the share of each part of the stack (our code, undici, Node's HTTP/1 and
 * HTTP/2, streams, GC, …).
 *
 * Self time of a node = the sum of the sampling intervals (`timeDeltas`) of the samples that hit
 * it. Inclusive time of a function = the sum over samples whose stack contains it (once per
 * sample, however often it recurses). `(idle)` is excluded from every percentage: they are shares
 * of the time the process was on the CPU.
 */
interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

/** A V8 CPU profile (Profiler.Profile of the DevTools protocol). */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** One function's share. */
export interface FunctionTime {
  /** `name (file:line)`, file relative to the repo or a `node:` module. */
  fn: string;
  /** Milliseconds. */
  ms: number;
  /** Percent of busy (non-idle) time. */
  pct: number;
}

/** What one profile says. */
export interface ProfileSummary {
  /** Profiled process, e.g. "sidecar api (inbound, HTTP/1.1 from the client)". */
  label: string;
  /** Busy (non-idle) milliseconds sampled. */
  busyMs: number;
  /** Idle milliseconds sampled. */
  idleMs: number;
  categories: FunctionTime[];
  topSelf: FunctionTime[];
  /** Our code (sidecar/, proto/) by inclusive time. */
  topOursInclusive: FunctionTime[];
  /**
   * The resilience layer's own modules (sidecar/src/resilience/, proxy/mirror.ts) by inclusive
   * time; the exchange that calls them (proxy/outbound-exchange.ts) is in topOursInclusive.
   * Absent in summaries written before it existed.
   */
  resilienceInclusive?: FunctionTime[];
}

/** A frame of the resilience layer's own modules (see ProfileSummary.resilienceInclusive). */
function isResilience(url: string): boolean {
  return url.includes("/sidecar/dist/resilience/") || url.endsWith("/sidecar/dist/proxy/mirror.js");
}

/** Shortens a script URL: repo paths relative to the repo, node: modules as they are. */
function shortUrl(url: string): string {
  const i = url.indexOf("/work/");
  let u = url.startsWith("file://") ? url.slice(7) : url;
  if (i >= 0) u = u.replace(/^.*?\/(sidecar|proto|control-plane|tests|node_modules)\//, "$1/");
  u = u.replace(/^node_modules\/(?:.*\/)?node_modules\//, "node_modules/");
  return u;
}

function frameKey(f: CallFrame): string {
  const name = f.functionName === "" ? "(anonymous)" : f.functionName;
  if (f.url === "") return name;
  return `${name} (${shortUrl(f.url)}:${f.lineNumber + 1})`;
}

/** The part of the stack a frame belongs to, by its script. */
function category(f: CallFrame): string {
  const u = f.url;
  if (f.functionName === "(garbage collector)") return "garbage collector";
  if (f.functionName === "(program)") return "(program): V8/native outside JS";
  if (u === "") return "native (builtins, C++ bindings)";
  if (isResilience(u)) return "trellis sidecar code: resilience/ and mirror";
  if (u.includes("/sidecar/dist/")) return "trellis sidecar code";
  if (u.includes("/proto/dist/")) return "trellis proto code";
  if (u.includes("node_modules/undici")) return "undici";
  if (u.includes("node_modules/pino") || u.includes("node_modules/sonic-boom")) return "pino (logging)";
  if (u.includes("node_modules/")) return "other npm packages";
  if (u.startsWith("node:internal/http2")) return "node:http2";
  if (/^node:(_http_|http$|internal\/http)/.test(u)) return "node:http (HTTP/1.1)";
  if (u.startsWith("node:internal/streams") || u === "node:stream") return "node streams";
  if (/^node:(net|internal\/stream_base_commons|internal\/net)/.test(u)) return "node:net";
  // Timers apart from the rest of the event loop: the route and per-try timeouts are timers.
  if (/^node:(internal\/)?timers/.test(u)) return "timers (setTimeout, clearTimeout, expiry)";
  if (/^node:internal\/(process\/task_queues|async_hooks)/.test(u)) return "event loop (ticks, promises)";
  if (u.startsWith("node:")) return "other node: internals";
  return "other";
}

/** Summarises `p`; `top` rows per table. */
export function summariseProfile(p: CpuProfile, label: string, top = 15): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<string, number>();
  const cats = new Map<string, number>();
  const incl = new Map<string, number>();
  const resilience = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] as number;
    const dt = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000; // ms until the next sample
    const node = byId.get(id);
    if (node === undefined) continue;
    if (node.callFrame.functionName === "(idle)") {
      idle += dt;
      continue;
    }
    busy += dt;
    const key = frameKey(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + dt);
    const cat = category(node.callFrame);
    cats.set(cat, (cats.get(cat) ?? 0) + dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = (byId.get(cur) as ProfileNode).callFrame;
      if (!f.url.includes("/sidecar/dist/") && !f.url.includes("/proto/dist/")) continue;
      const k = frameKey(f);
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + dt);
      if (isResilience(f.url)) resilience.set(k, (resilience.get(k) ?? 0) + dt);
    }
  }
  const rows = (m: Map<string, number>, n: number): FunctionTime[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([fn, ms]) => ({ fn, ms: round(ms), pct: round((100 * ms) / (busy || 1)) }));
  return {
    label,
    busyMs: round(busy),
    idleMs: round(idle),
    categories: rows(cats, 20),
    topSelf: rows(self, top),
    topOursInclusive: rows(incl, top),
    resilienceInclusive: rows(resilience, top),
  };
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

/** A node of a sampling heap profile (HeapProfiler.SamplingHeapProfileNode). */
interface HeapNode {
  callFrame: CallFrame;
  /** Bytes allocated by this frame itself and still sampled. */
  selfSize: number;
  children: HeapNode[];
}

/** A sampling heap profile (HeapProfiler.stopSampling). */
export interface HeapProfile {
  head: HeapNode;
}

/** Where a window's allocations came from. */
export interface AllocationSummary {
  /** Bytes allocated per completed request (sampled, so an estimate). */
  bytesPerRequest: number;
  /** Allocating functions, by share of all sampled bytes. */
  topSelf: FunctionTime[];
  /** Our functions by allocations made in them or anything they call. */
  topOursInclusive: FunctionTime[];
}

/**
 * Summarises a sampling heap profile taken with objects collected by minor and major GC included,
 * so it counts every allocation (garbage too), which is what drives young-generation GC. `ms` in
 * the rows is KiB here; `pct` the share of all sampled bytes.
 */
export function summariseAllocations(p: HeapProfile, requests: number, top = 12): AllocationSummary {
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  let total = 0;
  const walk = (n: HeapNode, ours: readonly string[]) => {
    const k = frameKey(n.callFrame);
    const isOurs = n.callFrame.url.includes("/sidecar/dist/") || n.callFrame.url.includes("/proto/dist/");
    const stack = isOurs && !ours.includes(k) ? [...ours, k] : ours;
    if (n.selfSize > 0) {
      total += n.selfSize;
      self.set(k, (self.get(k) ?? 0) + n.selfSize);
      for (const o of stack) incl.set(o, (incl.get(o) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, stack);
  };
  walk(p.head, []);
  const rows = (m: Map<string, number>): FunctionTime[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, bytes]) => ({ fn, ms: round(bytes / 1024), pct: round((100 * bytes) / (total || 1)) }));
  return {
    bytesPerRequest: requests > 0 ? Math.round(total / requests) : Number.NaN,
    topSelf: rows(self),
    topOursInclusive: rows(incl),
  };
}
