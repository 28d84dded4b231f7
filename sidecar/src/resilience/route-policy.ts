/**
 * A route rule's resilience policy compiled once per snapshot (build per target): the route
 * timeout, the retry plan, fault injection, mirroring and the fallback response — everything the
 * outbound exchange reads per request without parsing or allocating.
 */
import { durationMs } from "@trellis/proto/duration";
import type { HTTPRouteRule } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import { clusterName } from "@trellis/proto/resource-types";
import { grpcStatusForHttp } from "../proxy/local-reply.js";
import { compileRetryPlan, DEFAULT_RETRY_PLAN, type RetryPlan, retriable } from "./retry-policy.js";

/** Largest request body buffered for replay when the route has no retry policy (bytes). */
export const DEFAULT_REPLAY_BUFFER = 64 * 1024;

export interface CompiledFault {
  /** Held this long before forwarding (or aborting), ms; undefined: no delay. */
  readonly delayMs: number | undefined;
  /** Answered with this instead of forwarding; undefined: forwarded after the delay. */
  readonly abort: { readonly status: number; readonly grpcStatus: number } | undefined;
  /** Share of requests that get the fault, percent (default 100). */
  readonly percentage: number;
}

export interface CompiledMirror {
  /** The mirror's cluster (`<service>.<namespace>:<port>`); the control plane sends it with the route. */
  readonly cluster: string;
  readonly service: string;
  readonly namespace: string;
  /** Share of requests copied, percent (default 100). */
  readonly percentage: number;
}

/** Also the local-reply options of the fallback answer, as is (built once per route, not per request). */
export interface CompiledFallback {
  readonly status: number;
  /** gRPC callers get this status (trailers-only): 0 for a 2xx fallback, else the HTTP mapping. */
  readonly grpcStatus: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface RoutePolicy {
  /** The route timeout (covers every attempt and backoff), ms; undefined: none. */
  readonly timeoutMs: number | undefined;
  readonly retry: RetryPlan;
  /**
   * gRPC responses may be retried on a status that arrives in trailers: the exchange holds a
   * 200's headers back until the first body byte or the trailers (nothing reaches the caller
   * before the retry decision).
   */
  readonly grpcTrailerRetry: boolean;
  readonly fault: CompiledFault | undefined;
  readonly mirror: CompiledMirror | undefined;
  readonly fallback: CompiledFallback | undefined;
}

/** The plan of a route without a retry policy: connect failures and refused streams, once. */
const NO_POLICY_PLAN: RetryPlan = { ...DEFAULT_RETRY_PLAN, maxBufferedBody: DEFAULT_REPLAY_BUFFER };

const GRPC_RETRY_CODES = [1, 4, 8, 13, 14];

export function compileRoutePolicy(rule: HTTPRouteRule): RoutePolicy {
  const retry = rule.retry === undefined ? NO_POLICY_PLAN : compileRetryPlan(rule.retry);
  const grpcTrailerRetry =
    retry.attempts > 0 &&
    GRPC_RETRY_CODES.some((code) =>
      retriable(retry, { kind: "response", status: 200, grpcStatus: code, retryAfter: undefined }),
    );
  const timeout = durationMs(rule.timeout);
  return {
    timeoutMs: timeout !== undefined && timeout > 0 ? timeout : undefined,
    retry,
    grpcTrailerRetry,
    fault: compileFault(rule),
    mirror: compileMirror(rule),
    fallback: compileFallback(rule),
  };
}

function compileFault(rule: HTTPRouteRule): CompiledFault | undefined {
  const f = rule.fault;
  if (f === undefined) return undefined;
  const abort = f.abort;
  return {
    delayMs: durationMs(f.delay),
    abort:
      abort === undefined
        ? undefined
        : { status: abort.status, grpcStatus: abort.grpcStatus ?? grpcStatusForHttp(abort.status) },
    percentage: f.percentage ?? 100,
  };
}

function compileMirror(rule: HTTPRouteRule): CompiledMirror | undefined {
  const m = rule.mirror;
  // The control plane fills in the namespace and port; without a port it had no cluster to send.
  if (m === undefined || m.port === undefined || m.namespace === "") return undefined;
  return {
    cluster: clusterName(m.service, m.namespace, m.port),
    service: m.service,
    namespace: m.namespace,
    percentage: m.percentage ?? 100,
  };
}

function compileFallback(rule: HTTPRouteRule): CompiledFallback | undefined {
  const f = rule.fallback;
  if (f === undefined) return undefined;
  const status = f.status ?? 200;
  return {
    status,
    grpcStatus: status < 300 ? 0 : grpcStatusForHttp(status),
    headers: { ...f.headers },
    body: f.body,
  };
}
