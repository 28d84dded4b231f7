/**
 * How `trellis dev` shows what is happening, in one of three forms:
 *
 *  - tty:   a table redrawn in place (ANSI: cursor up, clear line) every report interval;
 *  - plain: one line per report interval, for logs and pipes (stdout is not a terminal);
 *  - json:  JSON lines (`--json`): first `processes` (every process with its pid and ports), then
 *           `stats` per interval, last `summary`. Nothing else is written to stdout.
 *
 * Progress and errors go to stderr in every form, so stdout stays parseable.
 */
import { DEMO_NAMESPACE } from "./demo-wire.js";
import { type ProcessInfo, type StoppedProcess, stoppedCleanly } from "./dev-mesh.js";
import type { WindowStats } from "./service-stats.js";

export type ViewMode = "tty" | "plain" | "json";

/** What the first output describes. */
export interface StartInfo {
  processes: ProcessInfo[];
  workDir: string;
  home: string;
  logDir: string;
  /** Load: requests per second to web, and the run length in seconds (0 = until interrupted). */
  rate: number;
  durationS: number;
  /** Seconds each periodic report covers. */
  windowS: number;
}

/** One periodic report. */
export interface Report {
  elapsedS: number;
  windowS: number;
  services: WindowStats[];
}

/** The end of the run. */
export interface Summary {
  /** Seconds of load. */
  durationS: number;
  /** Why the run ended: its duration passed, a signal, or a process died. */
  reason: "duration" | "interrupted" | "process-exited";
  services: WindowStats[];
  stopped: StoppedProcess[];
  /** Every process exited on SIGTERM with status 0 and nothing died early. */
  clean: boolean;
}

export interface View {
  start(info: StartInfo): void;
  report(r: Report): void;
  summary(s: Summary): void;
  /** Leaves the terminal as it was (cursor shown), whatever happened. Idempotent. */
  close(): void;
}

/** A writable stream's essentials (process.stdout in production, a buffer in tests). */
export interface Out {
  write(text: string): unknown;
}

export function createView(mode: ViewMode, out: Out): View {
  if (mode === "json") return new JsonView(out);
  if (mode === "tty") return new TtyView(out);
  return new PlainView(out);
}

// ---------------------------------------------------------------------------------------------

class JsonView implements View {
  constructor(private readonly out: Out) {}

  private line(value: unknown): void {
    this.out.write(`${JSON.stringify(value)}\n`);
  }

  start(info: StartInfo): void {
    this.line({
      type: "processes",
      time: new Date().toISOString(),
      namespace: DEMO_NAMESPACE,
      load: { target: "web", rate: info.rate, durationS: info.durationS },
      workDir: info.workDir,
      home: info.home,
      logDir: info.logDir,
      processes: info.processes,
    });
  }

  report(r: Report): void {
    this.line({
      type: "stats",
      elapsedS: round(r.elapsedS, 1),
      windowS: round(r.windowS, 1),
      services: r.services.map(jsonStats),
    });
  }

  summary(s: Summary): void {
    this.line({
      type: "summary",
      durationS: round(s.durationS, 1),
      reason: s.reason,
      clean: s.clean,
      services: s.services.map(jsonStats),
      stopped: s.stopped,
    });
  }

  close(): void {}
}

function jsonStats(w: WindowStats) {
  return {
    service: w.service,
    requests: w.requests,
    ok: w.ok,
    rps: round(w.rps, 2),
    successRate: w.successRate === null ? null : round(w.successRate, 4),
    p50Ms: w.p50Ms === null ? null : round(w.p50Ms, 3),
    p99Ms: w.p99Ms === null ? null : round(w.p99Ms, 3),
  };
}

// ---------------------------------------------------------------------------------------------

const COLUMNS = ["SERVICE", "REQ/S", "SUCCESS", "P50", "P99", "REQUESTS"] as const;
const WIDTHS = [12, 9, 9, 10, 10, 9] as const;

function row(cells: readonly string[]): string {
  return cells
    .map((c, i) => (i === 0 ? c.padEnd(WIDTHS[i] ?? 10) : c.padStart(WIDTHS[i] ?? 10)))
    .join(" ")
    .trimEnd();
}

function statsRow(w: WindowStats): string {
  return row([w.service, w.rps.toFixed(1), pct(w.successRate), ms(w.p50Ms), ms(w.p99Ms), String(w.requests)]);
}

function header(info: StartInfo): string[] {
  const lines = ["trellis dev: a mesh on this machine", ""];
  for (const p of info.processes) {
    const ports = Object.entries(p.ports)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
    lines.push(`  ${p.name.padEnd(18)} pid ${String(p.pid).padEnd(8)} ${ports}`);
  }
  const until = info.durationS > 0 ? `for ${info.durationS}s` : "until Ctrl-C";
  lines.push(
    "",
    `  load: ${info.rate} req/s to web (web → orders → inventory, orders → inventory is gRPC), ${until}`,
    `  logs: ${info.logDir}`,
    `  CLI:  HOME=${info.home} npx trellis status`,
    "",
  );
  return lines;
}

function summaryLines(s: Summary): string[] {
  const why =
    s.reason === "duration" ? "" : s.reason === "interrupted" ? " (interrupted)" : " (a process exited)";
  const lines = [
    "",
    `summary: ${s.durationS.toFixed(1)}s of load${why}`,
    row([...COLUMNS]),
    ...s.services.map(statsRow),
    "",
  ];
  const bad = s.stopped.filter((p) => !stoppedCleanly(p));
  if (bad.length === 0) lines.push(`stopped ${s.stopped.length} processes cleanly`);
  for (const p of bad)
    lines.push(
      `  ${p.name} (pid ${p.pid}) ${p.forced ? "did not stop in time and was killed" : `exited with code ${p.code ?? "-"} signal ${p.signal ?? "-"}`}`,
    );
  return lines;
}

class TtyView implements View {
  private drawn = 0;
  private closed = false;
  private readonly restore = () => this.close();

  constructor(private readonly out: Out) {
    process.once("exit", this.restore);
  }

  start(info: StartInfo): void {
    this.out.write(`${header(info).join("\n")}\n\x1b[?25l`); // hide the cursor while redrawing
  }

  report(r: Report): void {
    const lines = [
      row([...COLUMNS]),
      ...r.services.map(statsRow),
      `  ${r.elapsedS.toFixed(0)}s elapsed; rates and latencies over the last ${r.windowS.toFixed(0)}s`,
    ];
    // Back to the first line of the previous drawing (cursor up N, column 0: CUU is understood by
    // every terminal, CPL is not), then rewrite each line cleared (EL 2).
    let text = this.drawn > 0 ? `\x1b[${this.drawn}A\r` : "";
    for (const l of lines) text += `\x1b[2K${l}\n`;
    this.out.write(text);
    this.drawn = lines.length;
  }

  summary(s: Summary): void {
    this.out.write(`${summaryLines(s).join("\n")}\n`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    process.off("exit", this.restore);
    this.out.write("\x1b[?25h");
  }
}

class PlainView implements View {
  constructor(private readonly out: Out) {}

  start(info: StartInfo): void {
    this.out.write(`${header(info).join("\n")}\n`);
  }

  report(r: Report): void {
    const parts = r.services.map(
      (w) => `${w.service} ${w.rps.toFixed(1)}/s ${pct(w.successRate)} p50 ${ms(w.p50Ms)} p99 ${ms(w.p99Ms)}`,
    );
    this.out.write(`[${r.elapsedS.toFixed(0).padStart(4)}s] ${parts.join(" | ")}\n`);
  }

  summary(s: Summary): void {
    this.out.write(`${summaryLines(s).join("\n")}\n`);
  }

  close(): void {}
}

function pct(rate: number | null): string {
  return rate === null ? "-" : `${(rate * 100).toFixed(rate === 1 ? 0 : 2)}%`;
}

function ms(value: number | null): string {
  if (value === null) return "-";
  return value < 10
    ? `${value.toFixed(2)}ms`
    : value < 1000
      ? `${value.toFixed(1)}ms`
      : `${(value / 1000).toFixed(2)}s`;
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
