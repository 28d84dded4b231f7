/**
 * All of one sidecar's metrics under the INTERFACES.md names, and the scrape that renders them.
 *
 * Hot path: the data path gets its per-target objects once (`requestSeries`, `tcpSeries`, or a
 * cell from a family's `labels(...)`) when it builds a route / cluster / listener, and then only
 * adds to numbers. Nothing is rendered or allocated per request; the text is produced at scrape
 * time. prom-client is used only for its default process metrics (cpu, memory, event-loop lag,
 * GC), appended to the same scrape from its own registry.
 *
 * Ownership: one SidecarMetrics per sidecar process (tests may make several; each has its own
 * prom-client registry).
 */
import { collectDefaultMetrics, Registry } from "prom-client";
import type { MetricCollector } from "./exposition.js";
import {
  type ConfigUpdateResult,
  type ConnectionLimitKind,
  type Direction,
  LOCAL_REPLY_REASONS,
  type LocalReplyReason,
  type RateLimitDecision,
  type RateLimitScope,
} from "./labels.js";
import { RequestMetrics, type RequestSeries } from "./request-metrics.js";
import {
  type CounterCell,
  type CounterFamily,
  callbackGauge,
  counterFamily,
  type GaugeCell,
  type GaugeFamily,
  gaugeFamily,
} from "./simple-metrics.js";
import { TcpMetrics, type TcpSeries } from "./tcp-metrics.js";

export { METRICS_CONTENT_TYPE } from "./exposition.js";

/** Construction options; the defaults are what the sidecar runs with. */
export interface SidecarMetricsOptions {
  /** Wall clock, ms since the epoch (for trellis_config_age_seconds). Default Date.now. */
  now?: () => number;
  /** Include prom-client's default process metrics (default true). */
  processMetrics?: boolean;
  /** A prom-client registry whose metrics are appended to the scrape (default: a new, own one). */
  registry?: Registry;
}

const CONNECTION_LIMITS: readonly ConnectionLimitKind[] = ["connections", "pending", "requests", "retries"];

/** The sidecar's metrics. Fields are the families and cells the data path and control loop update. */
export class SidecarMetrics {
  /** prom-client registry holding the process metrics (and anything else registered there). */
  readonly registry: Registry;
  /** trellis_requests_total, trellis_request_duration_seconds, trellis_request_bytes, trellis_response_bytes. */
  readonly requests = new RequestMetrics();
  /** trellis_tcp_connections_{opened,closed}_total, trellis_tcp_{sent,received}_bytes_total. */
  readonly tcp = new TcpMetrics();

  /** trellis_retries_total: retry attempts made (not counting first tries). */
  readonly retries: CounterCell;
  /** trellis_retry_budget_exhausted_total: retries not made because the budget was spent. */
  readonly retryBudgetExhausted: CounterCell;
  /** trellis_connection_limit_saturated{cluster,limit}: 1 while that limit is full, else 0. */
  readonly connectionLimitSaturated: GaugeFamily<[cluster: string, limit: ConnectionLimitKind]>;
  /** trellis_outlier_ejections_total{cluster}: endpoints ejected by outlier detection. */
  readonly outlierEjections: CounterFamily<[cluster: string]>;
  /** trellis_endpoints_ejected{cluster}: endpoints currently ejected. */
  readonly endpointsEjected: GaugeFamily<[cluster: string]>;
  /**
   * trellis_lb_panic_total{cluster}: attempts balanced in panic mode (fewer than minHealthPercent
   * of the endpoints usable, so all of them were candidates). Our addition (docs/reference.md).
   */
  readonly lbPanic: CounterFamily<[cluster: string]>;
  /** Runs before each scrape, to bring gauges computed from live state up to date. */
  beforeScrape: (() => void) | undefined;
  /** trellis_ratelimit_decisions_total{policy,scope,decision}; policy is "<namespace>/<name>". */
  readonly ratelimitDecisions: CounterFamily<
    [policy: string, scope: RateLimitScope, decision: RateLimitDecision]
  >;
  /** trellis_ratelimit_backend_errors_total: Redis calls that failed or timed out. */
  readonly ratelimitBackendErrors: CounterCell;
  /** trellis_local_reply_total{reason}: responses the proxy made itself (every reason starts at 0). */
  readonly localReplies: CounterFamily<[reason: LocalReplyReason]>;
  /** trellis_xds_connected: 1 while the discovery stream is up, else 0. */
  readonly xdsConnected: GaugeCell;
  /** trellis_config_updates_total{type,result}: resources applied (ack) or rejected (nack), by type. */
  readonly configUpdates: CounterFamily<[type: string, result: ConfigUpdateResult]>;

  private readonly collectors: MetricCollector[] = [];
  private readonly now: () => number;
  private configAppliedAtMs: number | undefined;
  private certExpirySeconds: number | undefined;
  private readonly localReplyCells: Map<LocalReplyReason, CounterCell>;

  constructor(options: SidecarMetricsOptions = {}) {
    this.now = options.now ?? Date.now;
    this.registry = options.registry ?? new Registry();
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });

    const retries = this.add(counterFamily<[]>("trellis_retries_total", "Retry attempts made.", []));
    const budget = this.add(
      counterFamily<[]>(
        "trellis_retry_budget_exhausted_total",
        "Retries not attempted because the retry budget was spent.",
        [],
      ),
    );
    this.retries = retries.labels();
    this.retryBudgetExhausted = budget.labels();
    this.connectionLimitSaturated = this.add(
      gaugeFamily<[string, ConnectionLimitKind]>(
        "trellis_connection_limit_saturated",
        "1 while the cluster's connection limit of this kind is full.",
        ["cluster", "limit"],
      ),
    );
    this.outlierEjections = this.add(
      counterFamily<[string]>("trellis_outlier_ejections_total", "Endpoints ejected by outlier detection.", [
        "cluster",
      ]),
    );
    this.endpointsEjected = this.add(
      gaugeFamily<[string]>("trellis_endpoints_ejected", "Endpoints currently ejected.", ["cluster"]),
    );
    this.lbPanic = this.add(
      counterFamily<[string]>(
        "trellis_lb_panic_total",
        "Attempts balanced in panic mode (too few usable endpoints: all were candidates).",
        ["cluster"],
      ),
    );
    this.ratelimitDecisions = this.add(
      counterFamily<[string, RateLimitScope, RateLimitDecision]>(
        "trellis_ratelimit_decisions_total",
        "Rate-limit decisions, by policy, scope and outcome.",
        ["policy", "scope", "decision"],
      ),
    );
    const backendErrors = this.add(
      counterFamily<[]>(
        "trellis_ratelimit_backend_errors_total",
        "Calls to the rate-limit backend (Redis) that failed or timed out.",
        [],
      ),
    );
    this.ratelimitBackendErrors = backendErrors.labels();
    this.localReplies = this.add(
      counterFamily<[LocalReplyReason]>(
        "trellis_local_reply_total",
        "Responses the proxy made itself, by x-trellis-error reason.",
        ["reason"],
      ),
    );
    this.localReplyCells = new Map(LOCAL_REPLY_REASONS.map((r) => [r, this.localReplies.labels(r)]));
    const connected = this.add(
      gaugeFamily<[]>(
        "trellis_xds_connected",
        "1 while the discovery stream to the control plane is up.",
        [],
      ),
    );
    this.xdsConnected = connected.labels();
    this.add(
      callbackGauge(
        "trellis_config_age_seconds",
        "Seconds since config was last applied (absent before the first).",
        () =>
          this.configAppliedAtMs === undefined ? undefined : (this.now() - this.configAppliedAtMs) / 1000,
      ),
    );
    this.configUpdates = this.add(
      counterFamily<[string, ConfigUpdateResult]>(
        "trellis_config_updates_total",
        "Config resources applied (ack) or rejected (nack), by resource type.",
        ["type", "result"],
      ),
    );
    this.add(
      callbackGauge(
        "trellis_cert_expiry_timestamp_seconds",
        "Expiry of the workload certificate, seconds since the epoch (absent before the first).",
        () => this.certExpirySeconds,
      ),
    );
    this.add(this.requests);
    this.add(this.tcp);
  }

  /**
   * The request series of a target (memoised). Call when a route / cluster / inbound target is
   * built and keep the result; `record()` on it is the per-request cost.
   */
  requestSeries(
    direction: Direction,
    sourceService: string,
    sourceNamespace: string,
    destinationService: string,
    destinationNamespace: string,
  ): RequestSeries {
    return this.requests.series(
      direction,
      sourceService,
      sourceNamespace,
      destinationService,
      destinationNamespace,
    );
  }

  /** The TCP series of a target (memoised), for opaque TCP, CONNECT tunnels and passthrough. */
  tcpSeries(
    direction: Direction,
    sourceService: string,
    sourceNamespace: string,
    destinationService: string,
    destinationNamespace: string,
  ): TcpSeries {
    return this.tcp.series(
      direction,
      sourceService,
      sourceNamespace,
      destinationService,
      destinationNamespace,
    );
  }

  /** Counts one local reply (a Map lookup on a fixed key; no allocation). */
  localReply(reason: LocalReplyReason): void {
    (this.localReplyCells.get(reason) ?? this.localReplies.labels(reason)).inc();
  }

  /** Notes that config was applied now (or at `atMs`); trellis_config_age_seconds counts from it. */
  configApplied(atMs: number = this.now()): void {
    this.configAppliedAtMs = atMs;
  }

  /** Sets the certificate expiry (seconds since the epoch); undefined removes the sample. */
  setCertExpiry(epochSeconds: number | undefined): void {
    this.certExpirySeconds = epochSeconds;
  }

  /**
   * Drops the gauges of a cluster that left the snapshot (saturation flags and ejected count), so
   * they are not exported at their last value forever. Counters stay (they are history).
   */
  forgetCluster(cluster: string): void {
    for (const limit of CONNECTION_LIMITS) this.connectionLimitSaturated.remove(cluster, limit);
    this.endpointsEjected.remove(cluster);
  }

  /**
   * The whole exposition: the trellis_* families (each once, in a fixed order), then prom-client's
   * registry. Rejects only if a prom-client collector does.
   */
  async scrape(): Promise<string> {
    this.beforeScrape?.();
    const out: string[] = [];
    for (const c of this.collectors) c.render(out);
    // prom-client separates families with blank lines (allowed, but ours has none): drop them so
    // the whole scrape has one shape. Raw "\n\n" cannot occur inside HELP or label values (escaped).
    const processText = (await this.registry.metrics()).replace(/\n{2,}/g, "\n").replace(/^\n/, "");
    if (processText.length > 0) out.push(processText.endsWith("\n") ? processText : `${processText}\n`);
    return out.join("");
  }

  /** Label sets held by the trellis_* families (process metrics not included). */
  seriesCount(): number {
    let n = 0;
    for (const c of this.collectors) n += c.seriesCount();
    return n;
  }

  private add<C extends MetricCollector>(collector: C): C {
    for (const name of collector.names) {
      if (this.collectors.some((c) => c.names.includes(name)))
        throw new Error(`metric family ${name} registered twice`);
    }
    this.collectors.push(collector);
    return collector;
  }
}
