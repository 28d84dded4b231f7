/**
 * The retry policy of one route rule, compiled once per snapshot (build per target) into a plan
 * the outbound retry layer consults per attempt (call per request). Pure: no I/O, no clock, no
 * randomness of its own — the caller passes the wall clock and a `Random`.
 *
 * What this module decides: whether an attempt's outcome is retriable under the rule's `retryOn`,
 * how long to back off, what a `Retry-After` asks for, and which methods are idempotent. What it
 * does not: the attempt count, the safety of replaying a request (body buffered, nothing sent to
 * the caller yet), and the retry budget — the retry layer combines those.
 *
 * Source of the token semantics: Envoy's `x-envoy-retry-on` (5xx, gateway-error, reset,
 * connect-failure, refused-stream, retriable-status-codes) and `x-envoy-retry-grpc-on`.
 */

import { durationMs } from "@trellis/proto/duration";
import type { RetryPolicy } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import { RetryOn } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import type { Random } from "./random.js";

/**
 * How an attempt failed without a response:
 * - `connect-failure`: no connection to the endpoint (refused, unreachable, TLS handshake failed,
 *   connect timeout). Nothing reached the upstream app.
 * - `refused-stream`: the upstream refused the stream before processing it (HTTP/2 REFUSED_STREAM,
 *   or GOAWAY with a last-stream-id below ours). Nothing reached the upstream app.
 * - `reset`: the stream or connection was reset after the request was (at least partly) sent and
 *   before a response head arrived. The upstream may have acted on it.
 * - `per-try-timeout`: the plan's `perTryTimeoutMs` elapsed before a response head arrived.
 */
export type AttemptFailure = "connect-failure" | "refused-stream" | "reset" | "per-try-timeout";

/**
 * How one attempt ended, as the retry layer sees it: a failure without a response, or a response
 * head. `grpcStatus` is the response's `grpc-status` (from headers, or trailers when the caller
 * waited for them), undefined for non-gRPC responses or when absent; `retryAfter` is the raw
 * `Retry-After` header value, if any.
 */
export type AttemptOutcome =
  | { kind: "failure"; failure: AttemptFailure }
  | { kind: "response"; status: number; grpcStatus: number | undefined; retryAfter: string | undefined };

/**
 * A compiled retry policy. Immutable (frozen), shared by every request the rule serves.
 */
export interface RetryPlan {
  /** False for the default plan of a rule without a retry policy. */
  readonly explicit: boolean;
  /** Retries after the first try, an integer ≥ 0 (0: never retried). */
  readonly attempts: number;
  /** Deadline of one attempt in ms (> 0), or undefined: only the route timeout applies. */
  readonly perTryTimeoutMs: number | undefined;
  /** First backoff cap in ms, > 0 (default 25). */
  readonly backoffBaseMs: number;
  /** Cap on any one backoff in ms, ≥ `backoffBaseMs` (default 250). */
  readonly backoffMaxMs: number;
  /** Replay non-idempotent methods too (POST, PATCH, …) when the request reached the upstream. */
  readonly retryNonIdempotent: boolean;
  /** Largest request body (bytes) kept for replay; a larger body is streamed and not replayed once sent. */
  readonly maxBufferedBody: number;
  /** The effective retry conditions, in the order given (the proto default when the policy lists none). For config_dump. */
  readonly retryOn: readonly RetryOn[];
  /** The statuses of `retriable-status-codes`, as configured. For config_dump. */
  readonly retriableStatusCodes: readonly number[];
  /** Precomputed for `retriable`: one bit per `AttemptFailure` (see FAILURE_BIT). */
  readonly failureMask: number;
  /** Precomputed for `retriable`: every HTTP status that is retriable (5xx, gateway-error and listed codes expanded). */
  readonly retriableStatuses: ReadonlySet<number>;
  /** Precomputed for `retriable`: bit `1 << code` set for every retriable gRPC status code (0–16). */
  readonly grpcMask: number;
}

/** Default first backoff, ms (the proto's documented default). */
export const DEFAULT_BACKOFF_BASE_MS = 25;
/** Default backoff cap, ms (the proto's documented default). */
export const DEFAULT_BACKOFF_MAX_MS = 250;
/** Default `maxBufferedBody` of an explicit policy, bytes (64 KiB). */
export const DEFAULT_MAX_BUFFERED_BODY = 65_536;

/**
 * What an explicit policy with an empty `retryOn` retries (proto `RetryPolicy.retry_on` comment):
 * the failures that cannot have been processed, gateway errors, and gRPC UNAVAILABLE.
 */
const DEFAULT_RETRY_ON: readonly RetryOn[] = Object.freeze([
  RetryOn.RETRY_ON_CONNECT_FAILURE,
  RetryOn.RETRY_ON_REFUSED_STREAM,
  RetryOn.RETRY_ON_GATEWAY_ERROR,
  RetryOn.RETRY_ON_UNAVAILABLE,
]);

const CONNECT_FAILURE = 1;
const REFUSED_STREAM = 2;
const RESET = 4;
const PER_TRY_TIMEOUT = 8;

/** The `failureMask` bit of a failure. A switch, not a lookup table, so `retriable` stays monomorphic. */
function failureBit(failure: AttemptFailure): number {
  switch (failure) {
    case "connect-failure":
      return CONNECT_FAILURE;
    case "refused-stream":
      return REFUSED_STREAM;
    case "reset":
      return RESET;
    case "per-try-timeout":
      return PER_TRY_TIMEOUT;
  }
}

/** gRPC status codes (grpc/doc/statuscodes.md) that the gRPC tokens name. */
const GRPC_CANCELLED = 1;
const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_RESOURCE_EXHAUSTED = 8;
const GRPC_INTERNAL = 13;
const GRPC_UNAVAILABLE = 14;

/**
 * Builds the plan for one route rule. `undefined` (no `retry` on the rule) gives DEFAULT_RETRY_PLAN.
 * The spec is assumed validated (proto field rules); out-of-range values are still made safe here
 * rather than trusted: a negative or fractional `attempts` is floored at 0, a non-positive duration
 * is ignored, unknown `retryOn` values are skipped.
 *
 * Steps:
 *  1. retryOn: the listed known tokens, or DEFAULT_RETRY_ON when none are listed.
 *  2. Each token adds its failures, HTTP statuses and gRPC codes to the three precomputed sets.
 *     - 5xx also covers connect-failure, refused-stream, reset and per-try-timeout: in Envoy a reset
 *       of any kind (a refused stream included) counts as a 5xx, since the caller would get one.
 *     - gateway-error covers per-try-timeout (the caller would get a 504) and connect-failure,
 *       refused-stream and reset (the caller would get a 502).
 *     - deadline-exceeded covers per-try-timeout: the gRPC caller would get DEADLINE_EXCEEDED.
 *  3. Backoff: base default 25ms; max default 250ms, raised to base when below it (an unset max
 *     with a base above 250ms must not silently shrink every backoff under the base).
 */
export function compileRetryPlan(spec: RetryPolicy | undefined): RetryPlan {
  if (spec === undefined) return DEFAULT_RETRY_PLAN;
  const listed = spec.retryOn.filter((token) => token in RetryOn && token !== RetryOn.RETRY_ON_UNSPECIFIED);
  const retryOn = listed.length > 0 ? listed : DEFAULT_RETRY_ON;
  const base = positiveOr(durationMs(spec.backoff?.base), DEFAULT_BACKOFF_BASE_MS);
  const max = positiveOr(durationMs(spec.backoff?.max), DEFAULT_BACKOFF_MAX_MS);
  const attempts = Number.isFinite(spec.attempts) ? Math.max(0, Math.floor(spec.attempts)) : 0;
  const maxBufferedBody = spec.maxBufferedBody ?? DEFAULT_MAX_BUFFERED_BODY;
  return buildPlan({
    explicit: true,
    attempts,
    perTryTimeoutMs: positiveOr(durationMs(spec.perTryTimeout), undefined),
    backoffBaseMs: base,
    backoffMaxMs: Math.max(base, max),
    retryNonIdempotent: spec.retryNonIdempotent,
    maxBufferedBody: Math.max(0, maxBufferedBody),
    retryOn,
    retriableStatusCodes: spec.retriableStatusCodes,
  });
}

function positiveOr<T extends number | undefined>(value: number | undefined, fallback: T): number | T {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}

type PlanInput = Omit<RetryPlan, "failureMask" | "retriableStatuses" | "grpcMask">;

/** Step 2 of compileRetryPlan: expands the tokens into the sets `retriable` reads. */
function buildPlan(input: PlanInput): RetryPlan {
  let failureMask = 0;
  let grpcMask = 0;
  const statuses = new Set<number>();
  const addRange = (from: number, to: number): void => {
    for (let s = from; s <= to; s++) statuses.add(s);
  };
  for (const token of input.retryOn) {
    switch (token) {
      case RetryOn.RETRY_ON_CONNECT_FAILURE:
        failureMask |= CONNECT_FAILURE;
        break;
      case RetryOn.RETRY_ON_REFUSED_STREAM:
        failureMask |= REFUSED_STREAM;
        break;
      case RetryOn.RETRY_ON_RESET:
        failureMask |= RESET;
        break;
      case RetryOn.RETRY_ON_5XX:
        failureMask |= CONNECT_FAILURE | REFUSED_STREAM | RESET | PER_TRY_TIMEOUT;
        addRange(500, 599);
        break;
      case RetryOn.RETRY_ON_GATEWAY_ERROR:
        // A connect failure, refused stream or reset reaches the caller as a 502 (a gateway
        // error), so it is retried like one — Envoy's gateway-error does the same for resets.
        failureMask |= PER_TRY_TIMEOUT | CONNECT_FAILURE | REFUSED_STREAM | RESET;
        addRange(502, 504);
        break;
      case RetryOn.RETRY_ON_RETRIABLE_STATUS_CODES:
        for (const code of input.retriableStatusCodes) statuses.add(code);
        break;
      case RetryOn.RETRY_ON_CANCELLED:
        grpcMask |= 1 << GRPC_CANCELLED;
        break;
      case RetryOn.RETRY_ON_DEADLINE_EXCEEDED:
        failureMask |= PER_TRY_TIMEOUT;
        grpcMask |= 1 << GRPC_DEADLINE_EXCEEDED;
        break;
      case RetryOn.RETRY_ON_INTERNAL:
        grpcMask |= 1 << GRPC_INTERNAL;
        break;
      case RetryOn.RETRY_ON_RESOURCE_EXHAUSTED:
        grpcMask |= 1 << GRPC_RESOURCE_EXHAUSTED;
        break;
      case RetryOn.RETRY_ON_UNAVAILABLE:
        grpcMask |= 1 << GRPC_UNAVAILABLE;
        break;
      case RetryOn.RETRY_ON_UNSPECIFIED:
        break;
    }
  }
  return Object.freeze({
    ...input,
    retryOn: Object.freeze([...input.retryOn]),
    retriableStatusCodes: Object.freeze([...input.retriableStatusCodes]),
    failureMask,
    retriableStatuses: statuses,
    grpcMask,
  });
}

/**
 * The plan of a rule without a retry policy: one retry, and only of attempts that never reached the
 * upstream app (connect-failure, refused-stream) — replaying those is always safe, so no body is
 * buffered for it (maxBufferedBody 0) and the method does not matter.
 */
export const DEFAULT_RETRY_PLAN: RetryPlan = buildPlan({
  explicit: false,
  attempts: 1,
  perTryTimeoutMs: undefined,
  backoffBaseMs: DEFAULT_BACKOFF_BASE_MS,
  backoffMaxMs: DEFAULT_BACKOFF_MAX_MS,
  retryNonIdempotent: false,
  maxBufferedBody: 0,
  retryOn: [RetryOn.RETRY_ON_CONNECT_FAILURE, RetryOn.RETRY_ON_REFUSED_STREAM],
  retriableStatusCodes: [],
});

/**
 * True when `outcome` is retriable under the plan's retryOn. Ignores the attempt count, replay
 * safety and the budget (the caller's job). A response is retriable when its HTTP status is in the
 * plan's statuses or its `grpcStatus` is one of the plan's gRPC codes; any other response (2xx,
 * 3xx, 4xx not listed) is final. Allocation-free: runs once per attempt.
 */
export function retriable(plan: RetryPlan, outcome: AttemptOutcome): boolean {
  if (outcome.kind === "failure") return (plan.failureMask & failureBit(outcome.failure)) !== 0;
  if (plan.retriableStatuses.has(outcome.status)) return true;
  const grpc = outcome.grpcStatus;
  // The checks matter: `>>>` truncates its count and takes it mod 32, so 33 would read bit 1
  // (CANCELLED) and -18 or 14.5 bit 14 (UNAVAILABLE).
  return (
    grpc !== undefined &&
    Number.isInteger(grpc) &&
    grpc >= 0 &&
    grpc < 32 &&
    ((plan.grpcMask >>> grpc) & 1) === 1
  );
}

/**
 * True when the attempt failed before the upstream app could see the request (connect-failure,
 * refused-stream): replaying it is safe whatever the method and however much body was streamed.
 */
export function nothingReachedUpstream(outcome: AttemptOutcome): boolean {
  return (
    outcome.kind === "failure" &&
    (outcome.failure === "connect-failure" || outcome.failure === "refused-stream")
  );
}

/**
 * The pause before retry number `retry` (1 = the first retry), ms: full-jitter exponential backoff,
 * `random() × min(backoffMaxMs, backoffBaseMs × 2^(retry−1))`, in [0, cap). Full jitter rather than
 * a fixed ladder: callers that failed together (an endpoint died under them) would otherwise retry
 * in lockstep and hit the next endpoint as one wave. `retry` below 1 is treated as 1.
 */
export function backoffMs(plan: RetryPlan, retry: number, random: Random): number {
  const exponent = retry > 1 ? retry - 1 : 0;
  // 2 ** large is Infinity, and min() then picks the cap: no overflow check needed.
  const cap = Math.min(plan.backoffMaxMs, plan.backoffBaseMs * 2 ** exponent);
  return random() * cap;
}

const DELTA_SECONDS = /^\d+$/;
const DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)";
const LONG_DAY = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)";
const MONTH = "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
const TIME = "(\\d{2}):(\\d{2}):(\\d{2})";
/** IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7, the form senders must use). */
const IMF_FIXDATE = new RegExp(`^${DAY}, (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`);
/** Obsolete RFC 850 form: `Sunday, 06-Nov-94 08:49:37 GMT` (recipients must still accept it). */
const RFC850_DATE = new RegExp(`^${LONG_DAY}, (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`);
/** Obsolete asctime form: `Sun Nov  6 08:49:37 1994` (recipients must still accept it). */
const ASCTIME_DATE = new RegExp(`^${DAY} ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`);
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * The delay a `Retry-After` value asks for, ms (RFC 9110 §10.2.3): delta-seconds (1*DIGIT, so no
 * sign and no fraction) × 1000, or an HTTP-date minus `nowWallMs` (ms since the Unix epoch),
 * clamped at 0 for a date in the past. Undefined when absent or malformed — a malformed value is
 * ignored, as the RFC lets a recipient do, rather than read leniently: Date.parse accepts strings
 * like "1" or "x 2024" as dates and would turn garbage into a long pause. Capped at
 * Number.MAX_SAFE_INTEGER.
 */
export function retryAfterMs(value: string | undefined, nowWallMs: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (DELTA_SECONDS.test(text)) return Math.min(Number(text) * 1000, Number.MAX_SAFE_INTEGER);
  const dateMs = httpDateMs(text, nowWallMs);
  if (dateMs === undefined) return undefined;
  return Math.max(0, dateMs - nowWallMs);
}

/** An HTTP-date in any of its three forms (RFC 9110 §5.6.7) as ms since the epoch, or undefined. */
function httpDateMs(text: string, nowWallMs: number): number | undefined {
  let m = IMF_FIXDATE.exec(text);
  if (m !== null) return utcMs(Number(m[3]), m[2], m[1], m[4], m[5], m[6]);
  m = RFC850_DATE.exec(text);
  if (m !== null) {
    // Two-digit year: the RFC says a year that looks more than 50 years in the future is the most
    // recent past year with those last two digits.
    const nowYear = new Date(nowWallMs).getUTCFullYear();
    let year = Math.floor(nowYear / 100) * 100 + Number(m[3]);
    if (year > nowYear + 50) year -= 100;
    return utcMs(year, m[2], m[1], m[4], m[5], m[6]);
  }
  m = ASCTIME_DATE.exec(text);
  if (m !== null) return utcMs(Number(m[6]), m[1], m[2]?.trim(), m[3], m[4], m[5]);
  return undefined;
}

/** Date.UTC of validated fields, or undefined for an impossible date (31 Feb, 25:00). */
function utcMs(
  year: number,
  monthName: string | undefined,
  dayText: string | undefined,
  hourText: string | undefined,
  minuteText: string | undefined,
  secondText: string | undefined,
): number | undefined {
  const month = MONTHS.indexOf(monthName ?? "");
  const day = Number(dayText);
  const hour = Number(hourText);
  const minute = Number(minuteText);
  const second = Number(secondText);
  // Second 60 is a leap second (RFC 9110 §5.6.7 allows it); Date.UTC rolls it into the next minute.
  if (month < 0 || !(day >= 1) || hour > 23 || minute > 59 || second > 60) return undefined;
  const ms = Date.UTC(year, month, day, hour, minute, second);
  // Date.UTC rolls 31 Feb into March: reject a day the month does not have.
  if (new Date(Date.UTC(year, month, day)).getUTCDate() !== day) return undefined;
  return ms;
}

/**
 * RFC 9110 §9.2.2 idempotent methods: GET, HEAD, OPTIONS, TRACE, PUT, DELETE. Case-sensitive, as
 * method names are (§9.1): "get" is an extension method, not GET.
 */
export function isIdempotent(method: string): boolean {
  switch (method) {
    case "GET":
    case "HEAD":
    case "OPTIONS":
    case "TRACE":
    case "PUT":
    case "DELETE":
      return true;
    default:
      return false;
  }
}
