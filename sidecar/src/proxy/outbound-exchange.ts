/**
 * One outbound request to a mesh cluster, from admission to the last byte: the `timeout → retry
 * (budgeted) → connection limits → balancer → outlier detection → endpoint` part of the outbound
 * stack (DESIGN.md §4). One object per request holds the state machine, so the per-request work
 * is a handful of fields rather than a closure per event.
 *
 * Steps:
 *  1. The request counts toward the cluster's retry budget; it asks the cluster's connection
 *     limiter for a slot — granted, queued (up to maxPendingRequests, FIFO, bounded by the route
 *     deadline), or refused: `overflow` (or the route's fallback).
 *  2. The route deadline starts: the route timeout, or the caller's `grpc-timeout` if smaller; it
 *     covers queueing, every attempt and every backoff. On expiry: 504 `upstream_timeout` (gRPC:
 *     DEADLINE_EXCEEDED), or a reset if the response had started.
 *  3. Attempt: an endpoint from the balancer (another one than those already tried, where one
 *     exists), one HTTP/2 stream on the mesh transport with the remaining deadline as
 *     `grpc-timeout` for gRPC, the per-try timeout armed. The request body streams to the attempt
 *     and, while it fits in maxBufferedBody, is also kept for replay.
 *  4. The outcome (a response status and gRPC status, a connect failure, a refused stream, a
 *     reset, a per-try timeout) feeds outlier detection, then the retry decision: retried only when
 *     retryOn covers it, attempts remain, the request is safe to replay — nothing reached the
 *     upstream, or the method is idempotent (or retryNonIdempotent) and the body was buffered
 *     whole — the deadline leaves room (a Retry-After past the deadline is not waited for), the
 *     cluster's maxRetries has room, and the retry budget allows it (else
 *     trellis_retry_budget_exhausted_total, and the caller gets the upstream's answer, or 503
 *     `retry_budget_exhausted` when there is none).
 *  5. A retry waits the backoff (full jitter, or the upstream's Retry-After on 429/503), then goes
 *     to step 3. Nothing is ever retried once a response byte went to the caller: a gRPC 200 whose
 *     status may come in trailers is held until its first body byte or its trailers.
 *  6. The response streams to the caller; the request is recorded exactly once, however it ends.
 */
import type * as http from "node:http";
import * as http2 from "node:http2";
import type { EndpointState } from "../balancer/endpoint-state.js";
import type { RequestPermit } from "../resilience/connection-limits.js";
import type { EndpointResult } from "../resilience/outlier-detector.js";
import type { Random } from "../resilience/random.js";
import {
  type AttemptFailure,
  type AttemptOutcome,
  backoffMs,
  isIdempotent,
  nothingReachedUpstream,
  retriable,
  retryAfterMs,
} from "../resilience/retry-policy.js";
import { applyResponseEdits } from "../routing/header-edits.js";
import type { CompiledRule, RouteTable } from "../routing/route-table.js";
import type { ClusterRuntime } from "../runtime/runtime-config.js";
import {
  callerGone,
  type DownstreamRequest,
  type DownstreamResponse,
  endsStream,
  forwardableResponseRaw,
  respondHeadersOnly,
  writeHead,
} from "./app-client.js";
import { first, type HeaderMap } from "./headers.js";
import type { OutboundRecord, ProxyHooks } from "./hooks.js";
import { APP_PORT_HEADER } from "./inbound.js";
import { type LocalReason, REASON_STATUS, sendLocalReply } from "./local-reply.js";
import { cancelStream, type MeshTransport } from "./mesh-transport.js";
import type { MirrorCopy } from "./mirror.js";
import { splice } from "./splice.js";
import { classifyUpstreamError } from "./upstream-error.js";

/** What every exchange of one outbound listener shares. */
export interface ExchangeEnv {
  readonly transport: MeshTransport;
  readonly hooks: ProxyHooks;
  /** Backoff jitter. */
  readonly random: Random;
  /** Monotonic clock, ms. */
  readonly now: () => number;
  /** Wall clock, ms since the epoch (Retry-After dates). */
  readonly wallNow: () => number;
}

/** Where the request goes, as routing decided. */
export interface ExchangeTarget {
  readonly table: RouteTable;
  readonly rule: CompiledRule;
  readonly cluster: ClusterRuntime;
  /** The RING_HASH key of this request (a retry goes to the key's next endpoint). */
  readonly hashKey: string | undefined;
}

enum Phase {
  Idle = 0,
  Queued = 1,
  Attempting = 2,
  Backoff = 3,
  /** Response headers went to the caller: no retry from here on. */
  Committed = 4,
  Done = 5,
}

/** The largest grpc-timeout value (8 digits, RFC-less gRPC over HTTP/2 spec). */
const GRPC_TIMEOUT_UNITS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000001,
};

/** `grpc-timeout` ("<1–8 digits><H|M|S|m|u|n>") in ms; undefined when absent or malformed. */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined || value.length < 2 || value.length > 9) return undefined;
  const unit = GRPC_TIMEOUT_UNITS[value[value.length - 1] as string];
  const digits = value.slice(0, -1);
  if (unit === undefined || !/^\d+$/.test(digits)) return undefined;
  return Number(digits) * unit;
}

const NO_PICK = {};

/** Longest wait a retry may take (a Retry-After beyond it is not waited for), ms. */
export const MAX_RETRY_AFTER_MS = 300_000;

/**
 * A `grpc-timeout` value for `ms` (rounded up, at least 1 ms): the finest unit whose value fits the
 * 8 digits gRPC allows (milliseconds up to ~27.8 hours, then seconds, minutes, hours).
 */
export function formatGrpcTimeout(ms: number): string {
  const v = Math.max(1, Math.ceil(ms));
  if (v < 100_000_000) return `${v}m`;
  const s = Math.ceil(v / 1000);
  if (s < 100_000_000) return `${s}S`;
  const m = Math.ceil(s / 60);
  if (m < 100_000_000) return `${m}M`;
  return `${Math.min(99_999_999, Math.ceil(m / 60))}H`;
}

const EMPTY_SET: ReadonlySet<string> = new Set();

export class OutboundExchange {
  private phase = Phase.Idle;
  /** Number of the current attempt: 0 is the first try. */
  private attempt = 0;
  private stream: http2.ClientHttp2Stream | undefined;
  private endpoint: EndpointState | undefined;
  private attemptStarted = 0;
  /** An attempt is open: its endpoint's onStart ran and onFinish has not. */
  private attemptOpen = false;
  private tried: Set<string> | undefined;
  private permit: RequestPermit | undefined;
  private retryPermit: RequestPermit | undefined;
  private cancelQueue: (() => void) | undefined;
  private routeTimer: NodeJS.Timeout | undefined;
  private tryTimer: NodeJS.Timeout | undefined;
  private backoffTimer: NodeJS.Timeout | undefined;
  /** Absolute deadline on env.now (Infinity: none). */
  private readonly deadline: number;
  private readonly method: string;
  private readonly hasBody: boolean;
  private bodyEnded = false;
  /** onBodyData and onBodyEnd listen to the request (from the first attempt on). */
  private bodyAttached = false;
  /** Body chunks kept for replay; undefined once the body outgrew maxBufferedBody. */
  private chunks: Buffer[] | undefined;
  private buffered = 0;
  private waitingDrain = false;
  /** A 100 Continue went to the caller. */
  private continued = false;
  /** The caller went away: what follows is recorded without blaming the upstream. */
  private gone = false;
  private grpcStatus: number | undefined;
  private bytes = 0;
  /** A gRPC 200 held back until its first body byte or trailers (see step 5). */
  private held: { status: number; raw: string[] } | undefined;
  private readonly dst: OutboundRecord;
  private lastFailure: { reason: LocalReason; message: string } = {
    reason: "no_healthy_upstream",
    message: "no attempt was made",
  };

  constructor(
    private readonly env: ExchangeEnv,
    private readonly req: DownstreamRequest,
    private readonly res: DownstreamResponse,
    private readonly t: ExchangeTarget,
    private readonly authority: string,
    private readonly path: string,
    private readonly headers: HeaderMap,
    private readonly started: number,
    private readonly grpc: boolean,
    hasBody: boolean,
    private readonly mirror: MirrorCopy | undefined,
  ) {
    this.method = req.method ?? "GET";
    this.hasBody = hasBody;
    this.dst = { destinationService: t.table.service, destinationNamespace: t.table.namespace };
    let budgetMs = t.rule.policy.timeoutMs ?? Number.POSITIVE_INFINITY;
    if (grpc) {
      const g = parseGrpcTimeout(first(headers["grpc-timeout"]));
      if (g !== undefined && g < budgetMs) budgetMs = g;
      delete headers["grpc-timeout"];
    }
    // From the exchange's start: a fault delay or the on-demand subscription wait before it is not
    // part of the route timeout (the order is fault → … → timeout → retry).
    this.deadline = env.now() + budgetMs;
    if (hasBody && t.rule.policy.retry.maxBufferedBody > 0) this.chunks = [];
  }

  /** Step 1: admission. */
  start(): void {
    if (callerGone(this.req, this.res)) {
      // Gone during a wait before the exchange (subscription, fault delay): nothing to send.
      this.mirror?.cancel();
      this.phase = Phase.Done;
      this.env.hooks.outbound(this.dst, 0, "", this.started, 0, undefined);
      return;
    }
    const c = this.t.cluster.resilience;
    c.budget.onRequest();
    this.res.once("close", this.onCallerClose);
    // An HTTP/2 caller that resets its stream mid-body: 'aborted' comes before the body's 'end',
    // which must then not be passed on as a complete body.
    this.req.once("aborted", this.onCallerClose);
    const remaining = this.deadline - this.env.now();
    if (remaining !== Number.POSITIVE_INFINITY) {
      if (remaining <= 0) {
        this.timeout();
        return;
      }
      this.routeTimer = setTimeout(this.timeout, remaining);
    }
    const admission = c.limiter.admit();
    if (admission === undefined) {
      this.noEndpoint("overflow", `${this.t.cluster.name} is at its connection limits`);
      return;
    }
    if (admission.permit !== undefined) {
      this.permit = admission.permit;
      this.firstAttempt();
      return;
    }
    this.phase = Phase.Queued;
    this.cancelQueue = admission.cancel;
    void admission.wait?.then((permit) => {
      this.cancelQueue = undefined;
      if (permit === undefined) return;
      if (this.phase !== Phase.Queued) {
        permit.release();
        return;
      }
      this.permit = permit;
      this.firstAttempt();
    });
  }

  private firstAttempt(): void {
    const t = this.t;
    const endpoint = t.cluster.balancer.pick(t.hashKey === undefined ? NO_PICK : { hashKey: t.hashKey });
    if (endpoint === undefined) {
      this.noEndpoint("no_healthy_upstream", `${t.cluster.name} has no usable endpoint`);
      return;
    }
    if (this.hasBody) this.attachBody();
    this.send(endpoint);
  }

  private attachBody(): void {
    if (this.bodyAttached) return;
    this.bodyAttached = true;
    this.req.on("data", this.onBodyData);
    this.req.once("end", this.onBodyEnd);
  }

  /** No endpoint can serve (none usable, limits full): the route's fallback, else a local reply. */
  private noEndpoint(reason: LocalReason, message: string): void {
    const fb = this.t.rule.policy.fallback;
    if (fb !== undefined) {
      const status = sendLocalReply(this.res, this.grpc, "fallback", message, fb);
      this.grpcStatus = this.grpc ? fb.grpcStatus : undefined;
      this.finish(status, "fallback", true);
      return;
    }
    this.localReply(reason, message);
  }

  private localReply(reason: LocalReason, message: string): void {
    const status = sendLocalReply(this.res, this.grpc, reason, message);
    if (this.grpc) this.grpcStatus = REASON_STATUS[reason].grpc;
    this.finish(status, reason, false);
  }

  /** Step 3: one attempt on `endpoint`. */
  private send(endpoint: EndpointState): void {
    const t = this.t;
    const data = endpoint.data;
    const h: http2.OutgoingHttpHeaders = {
      ...this.headers,
      [APP_PORT_HEADER]: String(data.appPort || t.cluster.port),
      ":method": this.method,
      ":path": this.path,
      ":authority": this.authority,
      ":scheme": "http",
    };
    const now = this.env.now();
    if (this.grpc && this.deadline !== Number.POSITIVE_INFINITY)
      h["grpc-timeout"] = formatGrpcTimeout(this.deadline - now);
    const endStream = !this.hasBody || (this.bodyEnded && this.chunks !== undefined && this.buffered === 0);
    const stream = this.env.transport.request(
      { address: data.address, port: data.port },
      h,
      endStream,
      t.cluster.streamOptions,
    );
    if (stream === undefined) {
      this.noEndpoint("overflow", `${t.cluster.name} is at its connection limit`);
      return;
    }
    this.phase = Phase.Attempting;
    this.stream = stream;
    this.endpoint = endpoint;
    this.attemptStarted = now;
    this.attemptOpen = true;
    endpoint.onStart();
    if (t.cluster.balancer.panicking) this.env.hooks.panic(t.cluster.name);
    stream.on("response", this.onResponse);
    stream.on("error", this.onStreamError);
    stream.once("close", this.onStreamClose);
    // Until one 100 Continue went to the caller, every attempt may be the one that sends it.
    if (!this.continued) stream.on("continue", this.onContinue);
    const perTry = t.rule.policy.retry.perTryTimeoutMs;
    if (perTry !== undefined) this.tryTimer = setTimeout(this.onTryTimeout, perTry);
    if (!this.hasBody || endStream) return;
    // Replay what was buffered, then the live body continues into this stream (onBodyData).
    if (this.chunks !== undefined) for (const c of this.chunks) stream.write(c);
    if (this.bodyEnded) stream.end();
    else if (this.req.isPaused() && !this.waitingDrain) this.req.resume();
  }

  private readonly onContinue = (): void => {
    if (this.continued) return;
    this.continued = true;
    (this.res as http.ServerResponse).writeContinue?.();
  };

  private readonly onBodyData = (chunk: Buffer): void => {
    if (this.chunks !== undefined) {
      if (this.buffered + chunk.length <= this.t.rule.policy.retry.maxBufferedBody) {
        this.chunks.push(chunk);
        this.buffered += chunk.length;
      } else {
        // Too big to replay: from now on this request cannot be retried once sent.
        this.chunks = undefined;
        this.buffered = 0;
      }
    }
    this.mirror?.write(chunk);
    const s = this.stream;
    // Answered before the body ended (a local reply, a per-try timeout, an early upstream answer):
    // the rest is read and dropped. Pausing here, as between attempts, stalled the body after one
    // more chunk — the mirror's copy never got its end and hung open until the mirror's timeout.
    if (this.phase === Phase.Done) return;
    if (this.phase !== Phase.Attempting && this.phase !== Phase.Committed) {
      // Between attempts (backoff, queue): hold the body; what is buffered is replayed.
      this.req.pause();
      return;
    }
    if (s === undefined || s.destroyed || !s.writable) return; // an upstream done with the body: drop
    if (!s.write(chunk)) {
      this.req.pause();
      this.waitingDrain = true;
      s.once("drain", this.onDrain);
      s.once("close", this.onDrain);
    }
  };

  private readonly onDrain = (): void => {
    if (!this.waitingDrain) return;
    this.waitingDrain = false;
    if (this.phase === Phase.Attempting || this.phase === Phase.Committed || this.phase === Phase.Done)
      this.req.resume();
  };

  private readonly onBodyEnd = (): void => {
    this.bodyEnded = true;
    this.mirror?.end();
    const s = this.stream;
    if ((this.phase === Phase.Attempting || this.phase === Phase.Committed) && s !== undefined && s.writable)
      s.end();
  };

  private readonly onResponse = (
    headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader,
    flags: number,
    raw: string[],
  ): void => {
    const stream = this.stream;
    if (this.phase !== Phase.Attempting || stream === undefined) return;
    const status = Number(headers[":status"] ?? 502);
    const gs = headers["grpc-status"];
    const grpcStatus = gs === undefined ? undefined : Number(gs);
    const ended = endsStream(flags);
    const outcome: AttemptOutcome = {
      kind: "response",
      status,
      grpcStatus,
      retryAfter: status === 429 || status === 503 ? first(headers["retry-after"]) : undefined,
    };
    this.reportOutlier(
      status >= 500 ? (status >= 502 && status <= 504 ? "gateway-error" : "server-error") : "success",
    );
    if (retriable(this.t.rule.policy.retry, outcome) && this.retryIfAllowed(outcome, false)) return;
    if (
      this.grpc &&
      !ended &&
      status === 200 &&
      grpcStatus === undefined &&
      this.t.rule.policy.grpcTrailerRetry &&
      this.attempt < this.t.rule.policy.retry.attempts
    ) {
      // Step 5: the status may come in the trailers; nothing goes to the caller before it is known.
      // The response has started: the per-try timeout (which bounds the wait for headers) is over.
      this.clearTryTimer();
      this.held = { status, raw };
      stream.on("data", this.onHeldData);
      stream.once("trailers", this.onHeldTrailers);
      return;
    }
    if (this.grpc && grpcStatus !== undefined) this.grpcStatus = grpcStatus;
    this.commit(stream, status, raw, ended, undefined);
  };

  private readonly onHeldData = (chunk: Buffer): void => {
    const stream = this.stream;
    const held = this.held;
    if (stream === undefined || held === undefined) return;
    this.detachHeld(stream);
    this.commit(stream, held.status, held.raw, false, chunk);
  };

  private readonly onHeldTrailers = (
    trailers: http2.IncomingHttpHeaders,
    _flags: number,
    raw: string[],
  ): void => {
    const stream = this.stream;
    const held = this.held;
    if (stream === undefined || held === undefined) return;
    this.detachHeld(stream);
    const gs = trailers["grpc-status"];
    const grpcStatus = gs === undefined ? undefined : Number(gs);
    const outcome: AttemptOutcome = { kind: "response", status: 200, grpcStatus, retryAfter: undefined };
    if (retriable(this.t.rule.policy.retry, outcome) && this.retryIfAllowed(outcome, false)) return;
    // Headers then trailers, no message: forwarded as such.
    this.grpcStatus = grpcStatus;
    this.phase = Phase.Committed;
    this.clearTryTimer();
    const out = forwardableResponseRaw(held.raw);
    applyResponseEdits(out, this.t.rule.headerEdits);
    writeHead(this.res, held.status, out);
    this.res.addTrailers(forwardableResponseRaw(raw));
    this.res.end();
    stream.resume();
    this.finish(held.status, "", true);
  };

  private detachHeld(stream: http2.ClientHttp2Stream): void {
    this.held = undefined;
    stream.off("data", this.onHeldData);
    stream.off("trailers", this.onHeldTrailers);
  }

  /** Step 6: the response goes to the caller (`firstChunk`: a body byte already read, see step 5). */
  private commit(
    stream: http2.ClientHttp2Stream,
    status: number,
    raw: string[],
    ended: boolean,
    firstChunk: Buffer | undefined,
  ): void {
    this.phase = Phase.Committed;
    this.clearTryTimer();
    stream.off("close", this.onStreamClose);
    const out = forwardableResponseRaw(raw);
    applyResponseEdits(out, this.t.rule.headerEdits);
    try {
      if (ended) {
        respondHeadersOnly(this.res, status, out);
        stream.resume();
        this.finish(status, "", status < 500);
        return;
      }
      writeHead(this.res, status, out);
    } catch (err) {
      // A head the caller's protocol cannot carry (e.g. a status Node refuses): a definite 502,
      // never an exception out of an event handler.
      this.phase = Phase.Attempting;
      this.abandonAttempt();
      this.localReply("upstream_protocol_error", `unforwardable response head: ${String(err)}`);
      return;
    }
    if (firstChunk !== undefined) {
      this.bytes += firstChunk.length;
      (this.res as http.ServerResponse).write(firstChunk);
    }
    stream.on("data", this.countBytes);
    stream.on("trailers", this.onTrailers);
    splice(stream, this.res, (err) => {
      // A caller that went away is not the upstream's failure.
      const failed = err !== undefined && !this.gone;
      this.finish(status, failed ? "upstream_reset" : "", !failed && status < 500);
    });
  }

  private readonly countBytes = (c: Buffer): void => {
    this.bytes += c.length;
  };

  private readonly onTrailers = (
    trailers: http2.IncomingHttpHeaders,
    _flags: number,
    raw: string[],
  ): void => {
    if (this.grpc && trailers["grpc-status"] !== undefined) this.grpcStatus = Number(trailers["grpc-status"]);
    this.res.addTrailers(forwardableResponseRaw(raw));
  };

  private readonly onStreamError = (err: Error): void => {
    const stream = this.stream;
    if (stream === undefined) return;
    if (this.phase === Phase.Committed) {
      // With an error, so an HTTP/2 caller gets RST_STREAM(INTERNAL_ERROR), not a clean end.
      this.res.destroy(err);
      if (!this.gone) this.reportOutlier("gateway-error");
      this.finish(0, this.gone ? "" : "upstream_reset", this.gone);
      return;
    }
    if (this.phase !== Phase.Attempting) return;
    // Not `stream.session?.connecting`: a destroyed stream has no session any more, which read as
    // "never connected" and made a reset after the request went out a retriable connect failure
    // (a POST executed twice). A stream with an id had its HEADERS submitted.
    const f = classifyUpstreamError(err, stream.id !== undefined);
    const failure: AttemptFailure = f.connectFailure
      ? "connect-failure"
      : f.refusedStream
        ? "refused-stream"
        : "reset";
    this.reportOutlier("gateway-error");
    this.lastFailure = { reason: f.reason, message: f.message };
    this.failed({ kind: "failure", failure });
  };

  /**
   * The stream closed without an 'error': a peer that went away or reset with CANCEL / NO_ERROR
   * before its answer (Node reports those as a plain end), or a held gRPC response that ended.
   */
  private readonly onStreamClose = (): void => {
    const stream = this.stream;
    if (stream === undefined || this.phase !== Phase.Attempting) return;
    const held = this.held;
    if (held !== undefined && stream.rstCode === http2.constants.NGHTTP2_NO_ERROR) {
      // Headers, then a clean end without trailers or body: forwarded as it came.
      this.detachHeld(stream);
      this.commit(stream, held.status, held.raw, true, undefined);
      return;
    }
    const failure: AttemptFailure =
      stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM
        ? "refused-stream"
        : stream.id === undefined
          ? "connect-failure"
          : "reset";
    this.reportOutlier("gateway-error");
    this.lastFailure =
      failure === "connect-failure"
        ? { reason: "upstream_connect_failure", message: "the connection closed before the request was sent" }
        : {
            reason: "upstream_reset",
            message: `the peer closed the stream (code ${stream.rstCode}) before answering`,
          };
    this.failed({ kind: "failure", failure });
  };

  private readonly onTryTimeout = (): void => {
    this.tryTimer = undefined;
    if (this.phase !== Phase.Attempting) return;
    this.reportOutlier("gateway-error");
    const ms = this.t.rule.policy.retry.perTryTimeoutMs;
    this.lastFailure = {
      reason: "upstream_timeout",
      message: `no response within the per-try timeout (${ms} ms)`,
    };
    this.failed({ kind: "failure", failure: "per-try-timeout" });
  };

  /** An attempt failed without a response to forward: retry, or answer with the failure. */
  private failed(outcome: AttemptOutcome): void {
    if (retriable(this.t.rule.policy.retry, outcome) && this.retryIfAllowed(outcome, true)) return;
    if (this.phase === Phase.Done) return;
    this.abandonAttempt();
    this.localReply(this.lastFailure.reason, this.lastFailure.message);
  }

  /**
   * Step 4: retries `outcome` when safe and allowed (true: the attempt was abandoned and a retry
   * is scheduled). When the budget says no, a failure without a response is answered
   * `retry_budget_exhausted` here (true is returned, as the exchange is settled).
   */
  private retryIfAllowed(outcome: AttemptOutcome, noResponse: boolean): boolean {
    const plan = this.t.rule.policy.retry;
    if (this.attempt >= plan.attempts) return false;
    if (this.hasBody && this.chunks === undefined) return false;
    if (
      !nothingReachedUpstream(outcome) &&
      !plan.retryNonIdempotent &&
      !isIdempotent(this.method) &&
      !this.grpcStatusRetry(outcome)
    )
      return false;
    const now = this.env.now();
    let delay: number | undefined;
    if (outcome.kind === "response" && outcome.retryAfter !== undefined) {
      delay = retryAfterMs(outcome.retryAfter, this.env.wallNow());
      // Not waited for when it would outlast the route deadline: the caller gets the answer now.
      if (delay !== undefined && now + delay >= this.deadline) return false;
    }
    delay ??= backoffMs(plan, this.attempt + 1, this.env.random);
    // A retry that would start after the deadline only turns the upstream's answer into a 504;
    // one asking to wait longer than MAX_RETRY_AFTER_MS holds the request's slots for nothing.
    if (now + delay >= this.deadline || delay > MAX_RETRY_AFTER_MS) return false;
    const c = this.t.cluster;
    const retryPermit = c.resilience.limiter.admitRetry();
    if (retryPermit === undefined) return false;
    if (!c.resilience.budget.tryRetry()) {
      retryPermit.release();
      this.env.hooks.retryBudgetExhausted(c.name);
      if (!noResponse) return false;
      this.abandonAttempt();
      this.localReply(
        "retry_budget_exhausted",
        `${this.lastFailure.reason} (${this.lastFailure.message}); the retry budget of ${c.name} is spent`,
      );
      return true;
    }
    this.abandonAttempt();
    this.retryPermit = retryPermit;
    this.attempt++;
    this.phase = Phase.Backoff;
    this.env.hooks.retry(c.name);
    if (this.hasBody && !this.bodyEnded) this.req.pause();
    this.backoffTimer = setTimeout(this.nextAttempt, delay);
    return true;
  }

  /**
   * A gRPC call (always a POST) answered with a gRPC status that retryOn lists: listing a status
   * code is the service owner's statement that a call failing with it may be retried — gRPC's own
   * retry design (A6) puts that decision in the same hands. HTTP statuses and resets of gRPC calls
   * still need retryNonIdempotent.
   */
  private grpcStatusRetry(outcome: AttemptOutcome): boolean {
    return (
      this.grpc && outcome.kind === "response" && outcome.status === 200 && outcome.grpcStatus !== undefined
    );
  }

  private readonly nextAttempt = (): void => {
    this.backoffTimer = undefined;
    if (this.phase !== Phase.Backoff) return;
    if (this.hasBody && this.chunks === undefined) {
      // The body outgrew the replay buffer during the backoff: it cannot be sent whole again.
      this.localReply(this.lastFailure.reason, this.lastFailure.message);
      return;
    }
    const t = this.t;
    const last = this.endpoint;
    let tried = this.tried;
    if (last !== undefined) {
      if (tried === undefined) {
        tried = new Set();
        this.tried = tried;
      }
      tried.add(last.key);
    }
    const exclude: ReadonlySet<string> = tried ?? EMPTY_SET;
    const endpoint = t.cluster.balancer.pick(
      t.hashKey === undefined ? { exclude } : { exclude, hashKey: t.hashKey },
    );
    if (endpoint === undefined) {
      this.localReply(this.lastFailure.reason, this.lastFailure.message);
      return;
    }
    this.send(endpoint);
  };

  /** Ends the current attempt (its stream cancelled unless it ended) and its endpoint bracket. */
  private abandonAttempt(): void {
    this.clearTryTimer();
    const s = this.stream;
    if (s !== undefined) {
      s.off("response", this.onResponse);
      s.off("error", this.onStreamError);
      s.off("continue", this.onContinue);
      s.off("close", this.onStreamClose);
      if (this.held !== undefined) this.detachHeld(s);
      s.on("error", ignore);
      cancelStream(s);
    }
    this.closeAttempt(false);
  }

  private closeAttempt(ok: boolean): void {
    if (!this.attemptOpen) return;
    this.attemptOpen = false;
    this.endpoint?.onFinish(this.env.now() - this.attemptStarted, ok);
    this.releaseRetryPermit();
  }

  private releaseRetryPermit(): void {
    if (this.retryPermit !== undefined) {
      this.retryPermit.release();
      this.retryPermit = undefined;
    }
  }

  private reportOutlier(result: EndpointResult): void {
    const e = this.endpoint;
    if (e === undefined) return;
    const c = this.t.cluster;
    if (c.resilience.outlier.report(e, result, c.balancer.endpoints)) this.env.hooks.outlierEjection(c.name);
  }

  private clearTryTimer(): void {
    if (this.tryTimer !== undefined) {
      clearTimeout(this.tryTimer);
      this.tryTimer = undefined;
    }
  }

  /** Step 2's expiry. */
  private readonly timeout = (): void => {
    this.routeTimer = undefined;
    const phase = this.phase;
    if (phase === Phase.Done) return;
    const ms = Math.round(this.deadline - this.started);
    if (phase === Phase.Attempting) this.reportOutlier("gateway-error");
    if (phase === Phase.Committed) {
      if (this.stream !== undefined) cancelStream(this.stream);
      this.res.destroy(new Error(`no complete response within ${ms} ms`));
      this.finish(0, "upstream_timeout", false);
      return;
    }
    this.abandonAttempt();
    this.localReply("upstream_timeout", `no response within ${ms} ms`);
  };

  /** The caller went away (HTTP/1 socket closed, HTTP/2 RST_STREAM): everything upstream is cancelled. */
  private readonly onCallerClose = (): void => {
    if (this.phase === Phase.Done) return;
    this.gone = true;
    this.mirror?.cancel();
    if (this.phase === Phase.Committed) {
      // splice sees the closed response and reports; the upstream stream is cancelled with it.
      if (this.stream !== undefined) cancelStream(this.stream);
      return;
    }
    this.abandonAttempt();
    this.finish(0, "", false);
  };

  /** Records the request once; releases everything it held. */
  private finish(status: number, reason: string, ok: boolean): void {
    if (this.phase === Phase.Done) return;
    const wasQueued = this.phase === Phase.Queued;
    this.phase = Phase.Done;
    if (this.routeTimer !== undefined) clearTimeout(this.routeTimer);
    if (this.backoffTimer !== undefined) clearTimeout(this.backoffTimer);
    this.clearTryTimer();
    if (wasQueued) this.cancelQueue?.();
    this.closeAttempt(ok);
    this.releaseRetryPermit();
    this.permit?.release();
    this.permit = undefined;
    this.chunks = undefined;
    if (this.hasBody && this.req.isPaused()) this.req.resume(); // read and drop the rest
    // Answered before the first attempt (overflow, no endpoint, timeout or caller gone while
    // queued): nothing read the body yet, and the mirror's copy, sent with the headers, would wait
    // for it until the mirror's timeout, then reach the mirror cut short. Read it now, for the copy.
    if (this.hasBody && this.mirror !== undefined) this.attachBody();
    if (this.grpc && this.grpcStatus === undefined && reason !== "")
      this.grpcStatus = REASON_STATUS[reason as LocalReason]?.grpc;
    this.env.hooks.outbound(this.dst, status, reason, this.started, this.bytes, this.grpcStatus);
  }
}

function ignore(): void {}
