/**
 * How `trellis dev` shows what is happening, in one of three forms:
 *
 *  - tty:   a table redrawn in place (ANSI: cursor up, clear line) every report interval, with
 *           each scenario's start and end announced on a line of its own above it;
 *  - plain: one line per report interval and one per scenario start and end, for logs and pipes
 *           (stdout is not a terminal);
 *  - json:  JSON lines (`--json`): first `processes` (every process with its pid and ports, and
 *           the scenarios planned), then `stats` per interval and `scenario` at each start and
 *           end, last `summary` (with `scenarios`: what each did). Nothing else is written to
 *           stdout.
 *
 * Progress and errors go to stderr in every form, so stdout stays parseable.
 */
import { DEMO_NAMESPACE } from "./demo-wire.js";
import { type ProcessInfo, type StoppedProcess, stoppedCleanly } from "./dev-mesh.js";
import type { ScenarioEvent, ScenarioResult } from "./scenario-runner.js";
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
  /** The scenarios planned, seconds from the start of the load (empty with --no-scenarios). */
  scenarios: { name: string; title: string; startS: number; endS: number }[];
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
  /** What each scenario that started did (empty with --no-scenarios). */
  scenarios: ScenarioResult[];
  stopped: StoppedProcess[];
  /** Every process exited on SIGTERM with status 0 and nothing died early. */
  clean: boolean;
}

export interface View {
  start(info: StartInfo): void;
  report(r: Report): void;
  /** A scenario started or ended. */
  scenario(e: ScenarioEvent): void;
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
      scenarios: info.scenarios,
    });
  }

  scenario(e: ScenarioEvent): void {
    const { result, ...rest } = e.event === "end" ? e : { ...e, result: undefined };
    this.line({
      type: "scenario",
      ...rest,
      elapsedS: round(e.elapsedS, 1),
      ...(result !== undefined ? { result: jsonScenario(result) } : {}),
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
      scenarios: s.scenarios.map(jsonScenario),
      stopped: s.stopped,
    });
  }

  close(): void {}
}

function jsonScenario(r: ScenarioResult) {
  return { ...r, callers: { ...r.callers, services: r.callers.services.map(jsonStats) } };
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
      .map(
        ([k, v]) => `${k} ${p.address !== undefined && p.address !== "127.0.0.1" ? `${p.address}:` : ""}${v}`,
      )
      .join(", ");
    lines.push(`  ${p.name.padEnd(18)} pid ${String(p.pid).padEnd(8)} ${ports}`);
  }
  const until = info.durationS > 0 ? `for ${info.durationS}s` : "until Ctrl-C";
  lines.push(
    "",
    `  load: ${info.rate} req/s to web (web → orders → inventory, orders → inventory is gRPC), ${until}`,
    info.scenarios.length > 0
      ? `  scenarios: ${info.scenarios.map((p) => `${p.title} at ${p.startS}s`).join(", ")} (policy: ${info.workDir}/policy.yaml)`
      : "  scenarios: none (--no-scenarios)",
    `  logs: ${info.logDir}`,
    `  CLI:  HOME=${info.home} npx trellis status`,
    "",
  );
  return lines;
}

function scenarioLine(e: ScenarioEvent): string {
  const what = e.event === "start" ? "scenario" : "scenario over";
  return `[${e.elapsedS.toFixed(0).padStart(4)}s] ${what}: ${e.title} — ${e.message}`;
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
  if (s.scenarios.length > 0) {
    lines.push("scenarios (counts from the sidecars' /metrics; callers as the table measures them):");
    for (const r of s.scenarios)
      lines.push(
        `  ${r.startS.toFixed(1)}–${r.endS.toFixed(1)}s ${r.title}${r.completed ? "" : " (cut short)"}: ${r.outcome}`,
      );
    lines.push("");
  }
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
  /** The table as last drawn, redrawn below an announcement. */
  private table: string[] = [];
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
    this.draw([], lines);
  }

  /** An announcement goes where the table was (it scrolls up with the output), the table below it. */
  scenario(e: ScenarioEvent): void {
    this.draw([scenarioLine(e)], this.table);
  }

  private draw(above: string[], table: string[]): void {
    let text = this.drawn > 0 ? `\x1b[${this.drawn}A\r` : "";
    // An announcement longer than the terminal is wide wraps onto the next row, which no EL 2 of
    // ours clears: erase everything below first (ED 0).
    if (above.length > 0) text += "\x1b[J";
    for (const l of [...above, ...table]) text += `\x1b[2K${l}\n`;
    this.out.write(text);
    this.table = table;
    this.drawn = table.length;
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

  scenario(e: ScenarioEvent): void {
    this.out.write(`${scenarioLine(e)}\n`);
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
