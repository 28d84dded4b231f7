/**
 * TCP metrics (INTERFACES.md "Metrics"): `trellis_tcp_connections_opened_total`,
 * `trellis_tcp_connections_closed_total`, `trellis_tcp_sent_bytes_total`,
 * `trellis_tcp_received_bytes_total`.
 *
 * INTERFACES.md names no labels for them; they carry the request metrics' target labels (direction,
 * source_service, source_namespace, destination_service, destination_namespace), because a
 * connection count without its destination cannot say where passthrough or opaque TCP traffic
 * goes. Same shape as the request series: one TcpSeries per target, kept by the data path, whose
 * methods add to plain fields.
 */
import { type MetricCollector, renderLabelPairs, writeHeader, writeSample } from "./exposition.js";
import { type Direction, TARGET_LABEL_NAMES } from "./labels.js";

const OPENED = "trellis_tcp_connections_opened_total";
const CLOSED = "trellis_tcp_connections_closed_total";
const SENT = "trellis_tcp_sent_bytes_total";
const RECEIVED = "trellis_tcp_received_bytes_total";

/**
 * The TCP counters of one target. "Sent" and "received" are from the sidecar's side of the
 * connection it accepted: sent = bytes written back to the connecting peer (downstream),
 * received = bytes read from it. Add them as data flows (not only at close), so long-lived
 * connections show progress.
 */
export class TcpSeries {
  opened = 0;
  closed = 0;
  sentBytes = 0;
  receivedBytes = 0;

  /** @param targetLabels the five target label pairs, rendered. */
  constructor(readonly targetLabels: string) {}

  /** A connection to this target was established (or accepted, inbound). */
  connectionOpened(): void {
    this.opened++;
  }

  /** A connection counted by connectionOpened ended, for whatever reason. */
  connectionClosed(): void {
    this.closed++;
  }

  /** Adds bytes sent to the downstream peer; ignores n ≤ 0 and NaN. */
  addSent(n: number): void {
    if (n > 0) this.sentBytes += n;
  }

  /** Adds bytes received from the downstream peer; ignores n ≤ 0 and NaN. */
  addReceived(n: number): void {
    if (n > 0) this.receivedBytes += n;
  }
}

const FAMILIES: readonly [string, string, (s: TcpSeries) => number][] = [
  [OPENED, "TCP connections opened.", (s) => s.opened],
  [CLOSED, "TCP connections closed.", (s) => s.closed],
  [SENT, "Bytes sent to the downstream peer over TCP connections.", (s) => s.sentBytes],
  [RECEIVED, "Bytes received from the downstream peer over TCP connections.", (s) => s.receivedBytes],
];

/** All TCP series of one sidecar, and their exposition. */
export class TcpMetrics implements MetricCollector {
  readonly names = [OPENED, CLOSED, SENT, RECEIVED] as const;
  private readonly targets = new Map<string, TcpSeries>();

  /** The series of one target, created on first call and the same object afterwards. */
  series(
    direction: Direction,
    sourceService: string,
    sourceNamespace: string,
    destinationService: string,
    destinationNamespace: string,
  ): TcpSeries {
    const values = [direction, sourceService, sourceNamespace, destinationService, destinationNamespace];
    const key = values.join("\u0001");
    let s = this.targets.get(key);
    if (s === undefined) {
      s = new TcpSeries(renderLabelPairs(TARGET_LABEL_NAMES, values));
      this.targets.set(key, s);
    }
    return s;
  }

  render(out: string[]): void {
    for (const [name, help, read] of FAMILIES) {
      writeHeader(out, name, help, "counter");
      for (const s of this.targets.values()) writeSample(out, name, s.targetLabels, read(s));
    }
  }

  seriesCount(): number {
    return this.targets.size;
  }
}
