/**
 * Running `trellis dev` (the real binary) from a test: its JSON lines as they come, its sidecars'
 * metrics, and whether its processes and ports are gone afterwards.
 */
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { TRELLIS_BIN } from "../../helpers/control-plane.js";
import { type ManagedProcess, spawnManaged } from "../../helpers/processes.js";
import { makeTempDir } from "../../helpers/temp-dirs.js";

/** One process as the first `--json` line lists it. */
export interface ListedProcess {
  name: string;
  kind: "control-plane" | "app" | "sidecar";
  service?: string;
  replica?: number;
  /** Apps: the loopback address they bind. */
  address?: string;
  pid: number;
  ports: Record<string, number>;
}

export interface ServiceSummary {
  service: string;
  requests: number;
  ok: number;
  rps: number;
  successRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
}

/** A running `trellis dev --json`. */
export interface DevRun {
  proc: ManagedProcess;
  /** TMPDIR of the run (where its default work dir goes). */
  tmp: string;
  /** Every stdout line so far, parsed. */
  lines: Record<string, unknown>[];
  /** Resolves with the first line (the process list). */
  first: Promise<{ processes: ListedProcess[] }>;
  /** Resolves when stdout ends. */
  ended: Promise<void>;
}

/** Starts `trellis dev --json <args>` with its own HOME and TMPDIR. */
export function startDev(args: readonly string[]): DevRun {
  const tmp = makeTempDir("dev-tmp");
  const home = makeTempDir("dev-home");
  const proc = spawnManaged(process.execPath, [TRELLIS_BIN, "dev", "--json", ...args], {
    name: "trellis-dev",
    env: { ...process.env, HOME: home, TMPDIR: tmp },
    pipe: true,
    stopSignal: "SIGTERM",
    stopTimeoutMs: 30_000,
  });
  const lines: Record<string, unknown>[] = [];
  let gotFirst: (v: { processes: ListedProcess[] }) => void = () => {};
  const first = new Promise<{ processes: ListedProcess[] }>((resolve) => {
    gotFirst = resolve;
  });
  const rl = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
  rl.on("line", (line) => {
    const value = JSON.parse(line) as Record<string, unknown>;
    lines.push(value);
    if (lines.length === 1) gotFirst(value as unknown as { processes: ListedProcess[] });
  });
  const ended = new Promise<void>((resolve) => rl.once("close", resolve));
  return { proc, tmp, lines, first, ended };
}

/** Waits for the first line, failing with the log tail if `trellis dev` exits before it. */
export async function firstLine(run: DevRun, timeoutMs: number): Promise<{ processes: ListedProcess[] }> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    run.first,
    run.proc.exited.then(
      (e) => new Error(`trellis dev exited (${e.code}/${e.signal}) before its first line`),
    ),
    new Promise<Error>((resolve) => {
      timer = setTimeout(() => resolve(new Error(`no first line within ${timeoutMs} ms`)), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (result instanceof Error) throw new Error(`${result.message}\n${run.proc.logTail(60)}`);
  return result;
}

/** Sum of `trellis_requests_total` samples whose labels include every pair of `want`. */
export function requestsTotal(metrics: string, want: Record<string, string>): number {
  return metricSum(metrics, "trellis_requests_total", want);
}

/**
 * Sum of the samples of `family` whose labels match every entry of `want` (a value, or a pattern
 * the label's value must match); 0 when none.
 */
export function metricSum(
  metrics: string,
  family: string,
  want: Record<string, string | RegExp> = {},
): number {
  let sum = 0;
  for (const line of metrics.split("\n")) {
    if (!line.startsWith(`${family}{`) && !line.startsWith(`${family} `)) continue;
    if (line.startsWith(`${family} `)) {
      if (Object.keys(want).length === 0) sum += Number(line.slice(family.length + 1).trim());
      continue;
    }
    const close = line.lastIndexOf("}");
    const labels = new Map<string, string>();
    for (const m of line.slice(0, close).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels.set(m[1] as string, m[2] as string);
    if (
      Object.entries(want).every(([k, v]) =>
        typeof v === "string" ? labels.get(k) === v : v.test(labels.get(k) ?? ""),
      )
    )
      sum += Number(line.slice(close + 1).trim());
  }
  return sum;
}

/** GET http://127.0.0.1:<port>/metrics; "" when it cannot be read. */
export async function scrape(port: number): Promise<string> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) });
    return res.status === 200 ? await res.text() : "";
  } catch {
    return "";
  }
}

/**
 * Whether `pid` is a live process: it exists and is not a zombie (a zombie has released its ports
 * and merely waits to be reaped, which is up to whoever inherited it).
 */
export function alive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  // Field 3, after the parenthesised command name (which may itself contain spaces or parentheses).
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

/** Ports in LISTEN state on this machine (IPv4 and IPv6), from /proc/net/tcp{,6}. */
export function listeningPorts(): Set<number> {
  const ports = new Set<number>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      if (local === undefined || cols[3] !== "0A") continue;
      ports.add(Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16));
    }
  }
  return ports;
}

/** Every port the first line lists. */
export function listedPorts(processes: readonly ListedProcess[]): number[] {
  return processes.flatMap((p) => Object.values(p.ports));
}
