/**
 * What the data path reports, without knowing about metrics or logs: one call per finished request
 * (from which metrics and access logs are made, off the hot path's critical section) and errors.
 */
import type { InboundRuntime } from "./inbound.js";

export interface OutboundRecord {
  destinationService: string;
  destinationNamespace: string;
}

export interface ProxyHooks {
  /** An inbound request finished with `status` (reason "" when the app answered). */
  inbound(
    rt: InboundRuntime | undefined,
    status: number,
    reason: string,
    startedMs: number,
    responseBytes: number,
    /** The gRPC status, for gRPC requests (from trailers, trailers-only headers or the local reply). */
    grpcStatus?: number,
  ): void;
  /** An outbound request finished. */
  outbound(
    dst: OutboundRecord | undefined,
    status: number,
    reason: string,
    startedMs: number,
    responseBytes: number,
    /** The gRPC status, for gRPC requests (from trailers, trailers-only headers or the local reply). */
    grpcStatus?: number,
  ): void;
  /** A retry of a request to `cluster` was scheduled (trellis_retries_total). */
  retry(cluster: string): void;
  /** A retry to `cluster` was not made: its retry budget was spent. */
  retryBudgetExhausted(cluster: string): void;
  /** Outlier detection ejected an endpoint of `cluster`. */
  outlierEjection(cluster: string): void;
  /** An attempt to `cluster` was balanced in panic mode (too few usable endpoints). */
  panic(cluster: string): void;
  /** A bug or unexpected failure in the data path (logged; the request got a local reply). */
  error(where: string, err: unknown): void;
}

/** Hooks that do nothing (tests, benchmarks of the bare path). */
export const NO_HOOKS: ProxyHooks = {
  inbound: () => {},
  outbound: () => {},
  retry: () => {},
  retryBudgetExhausted: () => {},
  outlierEjection: () => {},
  panic: () => {},
  error: () => {},
};
