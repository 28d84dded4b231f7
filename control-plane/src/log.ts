/**
 * Structured JSON logs (pino) for the long-running programs. One line per event, to stderr, so
 * stdout stays free for command output.
 */
import { pino } from "pino";

export type Logger = pino.Logger;

/** A logger named `name` at `level` (default info, or TRELLIS_LOG_LEVEL). */
export function createLogger(name: string, level?: string): Logger {
  return pino(
    { name, level: level ?? process.env.TRELLIS_LOG_LEVEL ?? "info", base: { pid: process.pid } },
    pino.destination(2),
  );
}
