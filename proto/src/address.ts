/**
 * `host:port` addresses as flags and config give them: `127.0.0.1:15010`, `[::1]:15010`,
 * `localhost:0`. Port 0 means "the OS picks".
 */
import { ErrorCode, TrellisError } from "./errors.js";

export interface HostPort {
  host: string;
  port: number;
}

/** Parses `host:port`; throws CONFIG naming `what` when malformed. */
export function parseHostPort(text: string, what = "address"): HostPort {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  const port = m ? Number(m[2]) : Number.NaN;
  if (m === null || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new TrellisError(
      ErrorCode.CONFIG,
      `${what} must be host:port (e.g. 127.0.0.1:15010), got ${JSON.stringify(text)}`,
    );
  }
  return { host: m[1] as string, port };
}

/** Formats host and port, bracketing IPv6 hosts. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
