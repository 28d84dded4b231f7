/**
 * etcd failures as TrellisErrors, and which of them leave a write's outcome unknown.
 *
 * The etcd3 client turns gRPC errors of unary calls into its own classes (GRPCUnavailableError, …)
 * but hands stream errors over as plain Errors carrying the numeric gRPC `code`; both are handled.
 */
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import {
  ClientClosedError,
  EtcdLeaseInvalidError,
  GRPCCancelledError,
  GRPCDeadlineExceededError,
  GRPCInternalError,
  GRPCInvalidArgumentError,
  GRPCOutOfRangeError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
  GRPCUnknownError,
} from "etcd3";

/** gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
const GRPC_CANCELLED = 1;
const GRPC_UNKNOWN = 2;
const GRPC_INVALID_ARGUMENT = 3;
const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_NOT_FOUND = 5;
const GRPC_RESOURCE_EXHAUSTED = 8;
const GRPC_OUT_OF_RANGE = 11;
const GRPC_INTERNAL = 13;
const GRPC_UNAVAILABLE = 14;

/** Maps any etcd3 / gRPC failure to a TrellisError; `what` names the operation for the message. */
export function etcdError(err: unknown, what: string): TrellisError {
  if (err instanceof TrellisError) return err;
  const text = `etcd ${what}: ${err instanceof Error ? err.message : String(err)}`;
  return new TrellisError(codeOf(err), text, { cause: err });
}

function codeOf(err: unknown): ErrorCode {
  if (err instanceof EtcdLeaseInvalidError || grpcCode(err) === GRPC_NOT_FOUND) return ErrorCode.NOT_FOUND;
  if (err instanceof GRPCDeadlineExceededError || grpcCode(err) === GRPC_DEADLINE_EXCEEDED)
    return ErrorCode.TIMEOUT;
  if (isUnavailable(err)) return ErrorCode.UNAVAILABLE;
  if (err instanceof ClientClosedError) return ErrorCode.CANCELLED;
  if (err instanceof GRPCCancelledError || grpcCode(err) === GRPC_CANCELLED) return ErrorCode.CANCELLED;
  if (err instanceof GRPCInvalidArgumentError || grpcCode(err) === GRPC_INVALID_ARGUMENT)
    return ErrorCode.INVALID_ARGUMENT;
  if (err instanceof GRPCOutOfRangeError || grpcCode(err) === GRPC_OUT_OF_RANGE)
    return ErrorCode.INVALID_ARGUMENT;
  return ErrorCode.INTERNAL;
}

function isUnavailable(err: unknown): boolean {
  if (
    err instanceof GRPCUnavailableError ||
    err instanceof GRPCResourceExhastedError ||
    err instanceof GRPCInternalError ||
    err instanceof GRPCUnknownError
  ) {
    return true;
  }
  const code = grpcCode(err);
  return (
    code === GRPC_UNAVAILABLE ||
    code === GRPC_RESOURCE_EXHAUSTED ||
    code === GRPC_INTERNAL ||
    code === GRPC_UNKNOWN
  );
}

/**
 * True when the call may or may not have been applied: the request could have reached etcd before
 * the failure (timeout, connection dropped, "etcdserver: request timed out" or "leader changed",
 * which etcd returns when a proposal is lost in a leader change without knowing its fate).
 */
export function isAmbiguous(err: TrellisError): boolean {
  return err.code === ErrorCode.UNAVAILABLE || err.code === ErrorCode.TIMEOUT;
}

/**
 * True when the request certainly never left this process: grpc-js fails a call with
 * "No connection established" when the channel has no connection to send it on. Such failures are
 * safe to retry for every kind of write.
 */
export function wasNotSent(err: TrellisError): boolean {
  return err.code === ErrorCode.UNAVAILABLE && err.message.includes("No connection established");
}

function grpcCode(err: unknown): number | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "number") return code;
  // etcd3 rebuilds unary errors from the message, which starts with "<code> <NAME>:".
  const m = /^(?:\w+: )?(\d+) [A-Z_]+:/.exec(err.message);
  return m === null ? undefined : Number(m[1]);
}
