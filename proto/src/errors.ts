/**
 * One error class for all of Trellis, with a stable machine-readable code.
 *
 * Codes are part of the contract for logs and tests: never rename one, add new ones instead.
 * `TrellisError.from(unknown)` normalises anything thrown (Node system errors, gRPC status errors,
 * strings) so callers never have to guess what they caught.
 */
export const ErrorCode = {
  /** Input failed validation (policy, flags, YAML). */
  INVALID_ARGUMENT: "TRELLIS_ERR_INVALID_ARGUMENT",
  /** A named thing does not exist. */
  NOT_FOUND: "TRELLIS_ERR_NOT_FOUND",
  /** Compare-and-swap lost: the resource changed since it was read. */
  CONFLICT: "TRELLIS_ERR_CONFLICT",
  /** The caller presented no credential or a bad one. */
  UNAUTHENTICATED: "TRELLIS_ERR_UNAUTHENTICATED",
  /** The caller is known but may not do this. */
  PERMISSION_DENIED: "TRELLIS_ERR_PERMISSION_DENIED",
  /** A dependency (etcd, redis, control plane) could not be reached in time. */
  UNAVAILABLE: "TRELLIS_ERR_UNAVAILABLE",
  /** A deadline passed. */
  TIMEOUT: "TRELLIS_ERR_TIMEOUT",
  /** Configuration or bootstrap is unusable (bad flag, unreadable file). Startup fails fast. */
  CONFIG: "TRELLIS_ERR_CONFIG",
  /** A peer broke a protocol rule. */
  PROTOCOL: "TRELLIS_ERR_PROTOCOL",
  /** The operation was cancelled (shutdown, client went away). */
  CANCELLED: "TRELLIS_ERR_CANCELLED",
  /** A bug: an invariant did not hold. */
  INTERNAL: "TRELLIS_ERR_INTERNAL",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const knownCodes = new Set<string>(Object.values(ErrorCode));

export class TrellisError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TrellisError";
    this.code = code;
  }

  /**
   * Normalise anything thrown into a TrellisError. A TrellisError is returned as is; Node system
   * errors map by their `code` (ECONNREFUSED → UNAVAILABLE, ETIMEDOUT → TIMEOUT, ENOENT → NOT_FOUND,
   * EACCES → PERMISSION_DENIED, ABORT_ERR → CANCELLED); anything else becomes INTERNAL with the
   * original kept as `cause`.
   */
  static from(err: unknown, fallback: ErrorCode = ErrorCode.INTERNAL): TrellisError {
    if (err instanceof TrellisError) return err;
    if (err instanceof Error) {
      const sys = (err as { code?: unknown }).code;
      if (typeof sys === "string" && knownCodes.has(sys)) {
        return new TrellisError(sys as ErrorCode, err.message, { cause: err });
      }
      return new TrellisError(systemCode(sys) ?? fallback, err.message, { cause: err });
    }
    return new TrellisError(fallback, typeof err === "string" ? err : String(err), { cause: err });
  }
}

function systemCode(code: unknown): ErrorCode | undefined {
  switch (code) {
    case "ECONNREFUSED":
    case "ECONNRESET":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "EPIPE":
      return ErrorCode.UNAVAILABLE;
    case "ETIMEDOUT":
      return ErrorCode.TIMEOUT;
    case "ENOENT":
      return ErrorCode.NOT_FOUND;
    case "EACCES":
    case "EPERM":
      return ErrorCode.PERMISSION_DENIED;
    case "ABORT_ERR":
      return ErrorCode.CANCELLED;
    default:
      return undefined;
  }
}

/** True when `err` is a TrellisError with the given code. */
export function hasCode(err: unknown, code: ErrorCode): boolean {
  return err instanceof TrellisError && err.code === code;
}
