/**
 * Request metrics (INTERFACES.md "Metrics"): `trellis_requests_total`,
 * `trellis_request_duration_seconds`, `trellis_request_bytes`, `trellis_response_bytes`, all with
 * labels direction, source_service, source_namespace, destination_service, destination_namespace,
 * response_code, grpc_status, reason.
 *
 * Build per target, call per request: `RequestMetrics.series(...)` returns one RequestSeries per
 * target (memoised, so a new snapshot that asks again continues the same counters); the data path
 * keeps it on its route / cluster object. `record()` then touches only numbers:
 *  1. the outcome (code, grpc status, reason) of the previous request is reused when it matches —
 *     the common case, a run of 200s, costs three comparisons;
 *  2. otherwise the outcome is found in a Map under a numeric key computed from the three values
 *     (no string is built), and created only the first time that outcome is seen;
 *  3. the count, three bucket counters (a linear scan of fixed bounds) and three sums are bumped.
 * Label text is rendered once, when a series or an outcome is created; the exposition is written
 * at scrape time.
 */
import {
  Buckets,
  type MetricCollector,
  renderLabelPairs,
  writeHeader,
  writeHistogram,
  writeSample,
} from "./exposition.js";
import { type Direction, OUTCOME_LABEL_NAMES, TARGET_LABEL_NAMES } from "./labels.js";

/** Latency bounds, seconds: 0.5 ms to 60 s. */
export const DURATION_BUCKETS = new Buckets([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
]);

/** Body size bounds, bytes: 0 (no body) then ×4 from 64 B to 16 MiB. */
export const BYTES_BUCKETS = new Buckets([
  0, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
]);

/** Distinct `reason` values a RequestMetrics keeps apart; later new ones are counted as "other". */
export const MAX_REASONS = 256;

const REQUESTS = "trellis_requests_total";
const DURATION = "trellis_request_duration_seconds";
const REQUEST_BYTES = "trellis_request_bytes";
const RESPONSE_BYTES = "trellis_response_bytes";

/** The four families, each written whole (HELP, TYPE, every target's samples) before the next. */
export type RequestFamily = "requests" | "duration" | "requestBytes" | "responseBytes";

const FAMILIES: readonly [RequestFamily, string, string, "counter" | "histogram"][] = [
  ["requests", REQUESTS, "Requests completed, by target and outcome.", "counter"],
  ["duration", DURATION, "Time from request start to response end, seconds.", "histogram"],
  ["requestBytes", REQUEST_BYTES, "Request body size, bytes.", "histogram"],
  ["responseBytes", RESPONSE_BYTES, "Response body size, bytes.", "histogram"],
];

/** `n`, or 0 when negative, NaN or infinite (one NaN or Infinity would poison a sum forever). */
function nonNegative(n: number): number {
  return n >= 0 && n < Number.POSITIVE_INFINITY ? n : 0;
}

/** The numbers of one (target, code, grpc status, reason) label set. */
class Outcome {
  count = 0;
  durationSum = 0;
  requestBytesSum = 0;
  responseBytesSum = 0;
  readonly duration = new Float64Array(DURATION_BUCKETS.bounds.length + 1);
  readonly requestBytes = new Float64Array(BYTES_BUCKETS.bounds.length + 1);
  readonly responseBytes = new Float64Array(BYTES_BUCKETS.bounds.length + 1);

  constructor(
    readonly code: number,
    readonly grpc: number,
    readonly reason: string,
    /** All eight label pairs, rendered. */
    readonly labels: string,
  ) {}
}

// Reason strings → small integers, so an outcome key is arithmetic on numbers. Bounded: a bug that
// passes free text as a reason must not grow memory or series without limit.
class ReasonIndex {
  // "" (not a local reply) and "other" (the overflow bucket) always exist.
  private readonly index = new Map<string, number>([
    ["", 0],
    ["other", 1],
  ]);

  /** The reason's number, or that of "other" once MAX_REASONS distinct reasons are known. */
  of(reason: string): number {
    let i = this.index.get(reason);
    if (i === undefined) {
      if (this.index.size >= MAX_REASONS) return 1;
      i = this.index.size;
      this.index.set(reason, i);
    }
    return i;
  }

  /** The label value a reason is exported under ("other" past the cap). */
  label(reason: string): string {
    return this.index.has(reason) ? reason : "other";
  }
}

/**
 * The request series of one target (direction, source and destination service / namespace).
 * Owned by RequestMetrics; the data path holds it for as long as its route or cluster lives.
 */
export class RequestSeries {
  private readonly outcomes = new Map<number, Outcome>();
  private last: Outcome | undefined;

  /** @param targetLabels the five target label pairs, rendered. */
  constructor(
    readonly targetLabels: string,
    private readonly reasons: ReasonIndex,
  ) {}

  /**
   * Records one finished request.
   * @param status HTTP status sent to the caller (0 when none was: the caller went away); 0-999.
   * @param grpcStatus grpc-status for gRPC (0-16), undefined for plain HTTP.
   * @param reason the `x-trellis-error` reason when the proxy answered itself, else "".
   * @param seconds time from the request's start to the response's end.
   * @param requestBytes / responseBytes body bytes received from the caller / sent back to it.
   * Out-of-range numbers are clamped (negative, NaN or infinite → 0; a status beyond 0-999 → 0, a grpc status
   * beyond 0-99 → 2 UNKNOWN) so a bad value can neither throw nor poison a sum.
   */
  record(
    status: number,
    grpcStatus: number | undefined,
    reason: string,
    seconds: number,
    requestBytes: number,
    responseBytes: number,
  ): void {
    const code = status >= 0 && status <= 999 ? status | 0 : 0;
    const grpc = grpcStatus === undefined ? -1 : grpcStatus >= 0 && grpcStatus <= 99 ? grpcStatus | 0 : 2;
    let o = this.last;
    if (o === undefined || o.code !== code || o.grpc !== grpc || o.reason !== reason) {
      o = this.outcome(code, grpc, reason);
      this.last = o;
    }
    const s = nonNegative(seconds);
    const req = nonNegative(requestBytes);
    const res = nonNegative(responseBytes);
    o.count++;
    o.durationSum += s;
    o.requestBytesSum += req;
    o.responseBytesSum += res;
    const d = DURATION_BUCKETS.indexOf(s);
    o.duration[d] = (o.duration[d] as number) + 1;
    const q = BYTES_BUCKETS.indexOf(req);
    o.requestBytes[q] = (o.requestBytes[q] as number) + 1;
    const r = BYTES_BUCKETS.indexOf(res);
    o.responseBytes[r] = (o.responseBytes[r] as number) + 1;
  }

  /** Label sets (outcomes) seen so far. */
  get outcomeCount(): number {
    return this.outcomes.size;
  }

  /** Appends this target's samples of one family (its header is written by RequestMetrics). */
  writeFamily(out: string[], family: RequestFamily): void {
    for (const o of this.outcomes.values()) {
      switch (family) {
        case "requests":
          writeSample(out, REQUESTS, o.labels, o.count);
          break;
        case "duration":
          writeHistogram(out, DURATION, o.labels, DURATION_BUCKETS, o.duration, o.durationSum);
          break;
        case "requestBytes":
          writeHistogram(out, REQUEST_BYTES, o.labels, BYTES_BUCKETS, o.requestBytes, o.requestBytesSum);
          break;
        case "responseBytes":
          writeHistogram(out, RESPONSE_BYTES, o.labels, BYTES_BUCKETS, o.responseBytes, o.responseBytesSum);
          break;
      }
    }
  }

  private outcome(code: number, grpc: number, reason: string): Outcome {
    const key = (this.reasons.of(reason) * 1000 + code) * 101 + (grpc + 1);
    let o = this.outcomes.get(key);
    if (o === undefined) {
      const reasonLabel = this.reasons.label(reason);
      const outcomeLabels = renderLabelPairs(OUTCOME_LABEL_NAMES, [
        String(code),
        grpc < 0 ? "" : String(grpc),
        reasonLabel,
      ]);
      o = new Outcome(code, grpc, reasonLabel, `${this.targetLabels},${outcomeLabels}`);
      this.outcomes.set(key, o);
    }
    return o;
  }
}

/** All request series of one sidecar, and their exposition. */
export class RequestMetrics implements MetricCollector {
  readonly names = [REQUESTS, DURATION, REQUEST_BYTES, RESPONSE_BYTES] as const;
  private readonly targets = new Map<string, RequestSeries>();
  private readonly reasons = new ReasonIndex();

  /**
   * The series of one target, created on first call and the same object afterwards. Call it when
   * a route / cluster is built, not per request. Service names should be bounded (use a fixed name
   * such as "passthrough" for traffic leaving the mesh, never a raw host name).
   */
  series(
    direction: Direction,
    sourceService: string,
    sourceNamespace: string,
    destinationService: string,
    destinationNamespace: string,
  ): RequestSeries {
    const values = [direction, sourceService, sourceNamespace, destinationService, destinationNamespace];
    const key = values.join("\u0001");
    let s = this.targets.get(key);
    if (s === undefined) {
      s = new RequestSeries(renderLabelPairs(TARGET_LABEL_NAMES, values), this.reasons);
      this.targets.set(key, s);
    }
    return s;
  }

  render(out: string[]): void {
    for (const [family, name, help, type] of FAMILIES) {
      writeHeader(out, name, help, type);
      for (const s of this.targets.values()) s.writeFamily(out, family);
    }
  }

  /** Label sets across all targets (each is one series in each of the four families). */
  seriesCount(): number {
    let n = 0;
    for (const s of this.targets.values()) n += s.outcomeCount;
    return n;
  }

  /** Targets created so far. */
  get targetCount(): number {
    return this.targets.size;
  }
}
