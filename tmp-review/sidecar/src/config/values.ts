/**
 * Parsers for the sidecar's setting values (ports, durations, sizes, lists). Each takes the text a
 * user typed and returns the typed value, or throws a SettingProblem whose message completes the
 * sentence "<flag> …" — flags.ts prefixes the flag (and env) name, so every message names it.
 */
import { isIP } from "node:net";
import { parseHostPort } from "@trellis/proto/address";
import { parseByteSize } from "@trellis/proto/byte-size";
import { parseDurationNanos } from "@trellis/proto/duration";
import { formatProblem } from "@trellis/proto/formats";
import { Format } from "@trellis/proto/gen/trellis/v1/options_pb";

/**
 * A value that cannot be used. `message` completes "<flag> …", e.g. "must be a port number 0-65535,
 * got "x"". Internal to config/: flags.ts turns it into one TrellisError CONFIG.
 */
export class SettingProblem extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SettingProblem";
  }
}

/** The protocols an app port may declare (`--app-port 8080/grpc`); `http` when none is given. */
export type AppProtocol = "http" | "http2" | "grpc" | "tcp";

const APP_PROTOCOLS: readonly AppProtocol[] = ["http", "http2", "grpc", "tcp"];

/** One app port as the sidecar was told; the port is 1-65535. */
export interface AppPort {
  port: number;
  protocol: AppProtocol;
}

/** Where this instance runs. `zone` and `subzone` are "" when not given (as in the proto). */
export interface Locality {
  region: string;
  zone: string;
  subzone: string;
}

const q = (text: string): string => JSON.stringify(text);

/** A comma-separated list with blanks trimmed and empty items dropped ("a, b,,c" → [a, b, c]). */
export function splitList(text: string): string[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** A listening port: 0-65535, 0 meaning "the OS picks". */
export function parsePort(text: string): number {
  const t = text.trim();
  const n = /^\d{1,5}$/.test(t) ? Number(t) : Number.NaN;
  if (!(n >= 0 && n <= 65535)) throw new SettingProblem(`must be a port number 0-65535, got ${q(text)}`);
  return n;
}

/** A duration string ("250ms", "2s", "1m") in milliseconds (fractions kept); 0 only when `allowZero`. */
export function parseDurationMs(text: string, allowZero: boolean): number {
  const nanos = parseDurationNanos(text);
  const bad = nanos === undefined || nanos < 0n || (!allowZero && nanos === 0n);
  if (bad) {
    const what = allowZero ? "a duration ≥ 0" : "a positive duration";
    throw new SettingProblem(`must be ${what} like 250ms, 2s or 1m, got ${q(text)}`);
  }
  return Number(nanos) / 1e6;
}

/** A whole number within [min, max]. */
export function parseInteger(text: string, min: number, max: number): number {
  const t = text.trim();
  const n = /^\d+$/.test(t) ? Number(t) : Number.NaN;
  if (!(Number.isSafeInteger(n) && n >= min && n <= max))
    throw new SettingProblem(`must be a whole number ${min}-${max}, got ${q(text)}`);
  return n;
}

/** A byte size ("60KiB", "65536", "1MB") within [min, max] bytes. */
export function parseSize(text: string, min: number, max: number): number {
  const n = parseByteSize(text);
  if (n === undefined || n < min || n > max)
    throw new SettingProblem(`must be a size from ${min} to ${max} bytes (e.g. 60KiB), got ${q(text)}`);
  return n;
}

/** One of `choices`, exactly as listed. */
export function parseChoice<T extends string>(text: string, choices: readonly T[]): T {
  const t = text.trim();
  const hit = choices.find((c) => c === t);
  if (hit === undefined) throw new SettingProblem(`must be one of ${choices.join(", ")}, got ${q(text)}`);
  return hit;
}

/** A string in one of the proto's well-known formats (DNS label, IP, …). */
export function parseFormatted(text: string, format: Format): string {
  const t = text.trim();
  if (t.length === 0) throw new SettingProblem("must not be empty");
  const problem = formatProblem(format, t);
  if (problem !== undefined) throw new SettingProblem(`${problem}, got ${q(text)}`);
  return t;
}

/** An IP address (v4 or v6) — the address other sidecars reach this one at. */
export function parseIp(text: string): string {
  const t = text.trim();
  if (isIP(t) === 0) throw new SettingProblem(`must be an IP address (e.g. 10.0.0.7), got ${q(text)}`);
  return t;
}

/**
 * Comma-separated `host:port` destinations (port 1-65535), normalised through parseHostPort;
 * at least one.
 */
export function parseHostPortList(text: string): string[] {
  const items = splitList(text);
  if (items.length === 0) throw new SettingProblem("must list at least one host:port");
  return items.map((item) => {
    let hp: { host: string; port: number };
    try {
      hp = parseHostPort(item);
    } catch {
      throw new SettingProblem(`must be comma-separated host:port (e.g. 10.0.0.5:15010), got ${q(item)}`);
    }
    if (hp.port === 0) throw new SettingProblem(`needs a port 1-65535 in ${q(item)}`);
    return item;
  });
}

// Kubernetes label values: empty, or 1-63 of [A-Za-z0-9_.-] starting and ending alphanumeric.
const LABEL_VALUE = /^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$/;

/** `k=v,k2=v2` labels (Kubernetes key and value syntax); duplicate keys are refused. */
export function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const item of splitList(text)) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new SettingProblem(`must be k=v pairs separated by commas, got ${q(item)}`);
    const key = item.slice(0, eq).trim();
    const value = item.slice(eq + 1).trim();
    const keyProblem = formatProblem(Format.LABEL_KEY, key);
    if (keyProblem !== undefined) throw new SettingProblem(`key ${q(key)} ${keyProblem}`);
    if (!LABEL_VALUE.test(value))
      throw new SettingProblem(`value of ${q(key)} must be at most 63 of [A-Za-z0-9_.-], got ${q(value)}`);
    if (Object.hasOwn(labels, key)) throw new SettingProblem(`has the key ${q(key)} twice`);
    labels[key] = value;
  }
  return labels;
}

const LOCALITY_PART = /^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/;

/** `region`, `region/zone` or `region/zone/subzone`. */
export function parseLocality(text: string): Locality {
  const parts = text.trim().split("/");
  if (parts.length > 3 || !parts.every((p) => LOCALITY_PART.test(p)))
    throw new SettingProblem(
      `must be region/zone[/subzone] (letters, digits, '-', '_', '.'), e.g. us-east-1/us-east-1a, got ${q(text)}`,
    );
  return { region: parts[0] ?? "", zone: parts[1] ?? "", subzone: parts[2] ?? "" };
}

/** `8080,9090/grpc`: ports 1-65535, each at most once, protocol http (default), http2, grpc or tcp. */
export function parseAppPorts(text: string): AppPort[] {
  const ports: AppPort[] = [];
  for (const item of splitList(text)) {
    const m = /^(\d{1,5})(?:\/([A-Za-z0-9]+))?$/.exec(item);
    const port = m === null ? Number.NaN : Number(m[1]);
    if (m === null || !(port >= 1 && port <= 65535))
      throw new SettingProblem(
        `must be comma-separated ports like 8080 or 8080/grpc (1-65535), got ${q(item)}`,
      );
    const protoText = (m[2] ?? "http").toLowerCase();
    const protocol = APP_PROTOCOLS.find((p) => p === protoText);
    if (protocol === undefined)
      throw new SettingProblem(
        `has protocol ${q(m[2] ?? "")} in ${q(item)}; use one of ${APP_PROTOCOLS.join(", ")}`,
      );
    if (ports.some((p) => p.port === port)) throw new SettingProblem(`lists port ${port} twice`);
    ports.push({ port, protocol });
  }
  return ports;
}

/** An absolute http(s) URL (the OTLP/HTTP collector endpoint). */
export function parseHttpUrl(text: string): string {
  const t = text.trim();
  let url: URL;
  try {
    url = new URL(t);
  } catch {
    throw new SettingProblem(`must be an absolute http or https URL, got ${q(text)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new SettingProblem(`must be an http or https URL, got ${q(text)}`);
  return t;
}
