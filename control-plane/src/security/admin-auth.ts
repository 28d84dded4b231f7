/**
 * The admin credential check for the control plane's admin API (the CLI's `apply`, `get`,
 * `token create`, …): `authorization: Bearer <admin token>` (RFC 6750 §2.1) in the gRPC metadata.
 *
 * Both failures are UNAUTHENTICATED — a missing credential and a wrong one alike. gRPC's
 * PERMISSION_DENIED means "we know who you are, and you may not"; a wrong token proves no identity,
 * so there is nobody to deny. Messages differ ("missing" vs "invalid") because that helps the user
 * and tells an attacker nothing they did not send.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";

/** Metadata key the token travels in (gRPC metadata keys are lower-case). */
export const AUTHORIZATION_METADATA_KEY = "authorization";

/** What grpc-js `metadata.get("authorization")` returns, or a single value, or nothing. */
export type AuthorizationValue = string | Uint8Array | readonly (string | Uint8Array)[] | undefined;

const BEARER = /^Bearer +(\S+) *$/i;

/** `Bearer <token>`: the header value the CLI sends. */
export function bearerAuthorization(token: string): string {
  return `Bearer ${token}`;
}

/**
 * Accepts the call when `authorization` is exactly one `Bearer <token>` value (scheme
 * case-insensitive) whose token equals `expected`. The comparison is constant-time: both sides are
 * hashed with SHA-256 first, so timingSafeEqual compares equal lengths and the expected token's
 * length does not leak either.
 *
 * Throws TrellisError UNAUTHENTICATED "missing admin token …" when there is no value, several
 * values, or not a Bearer credential; UNAUTHENTICATED "invalid admin token" when the token differs.
 * Fails closed with INTERNAL when `expected` is empty (a bootstrap bug must not open the API).
 */
export function checkAdminToken(expected: string, authorization: AuthorizationValue): void {
  if (expected.length === 0) throw new TrellisError(ErrorCode.INTERNAL, "admin token is not configured");
  const values = authorization === undefined ? [] : isList(authorization) ? authorization : [authorization];
  if (values.length !== 1) {
    throw new TrellisError(
      ErrorCode.UNAUTHENTICATED,
      values.length === 0
        ? "missing admin token (send authorization: Bearer <token>; see ~/.trellis/config or --admin-token-file)"
        : "several authorization values; send exactly one",
    );
  }
  const raw = values[0]!;
  const text = typeof raw === "string" ? raw : Buffer.from(raw).toString("utf8");
  const m = BEARER.exec(text.trim());
  if (m === null) {
    throw new TrellisError(
      ErrorCode.UNAUTHENTICATED,
      "missing admin token: authorization is not `Bearer <token>`",
    );
  }
  if (!timingSafeEqual(digest(m[1]!), digest(expected))) {
    throw new TrellisError(ErrorCode.UNAUTHENTICATED, "invalid admin token");
  }
}

function isList(
  v: string | Uint8Array | readonly (string | Uint8Array)[],
): v is readonly (string | Uint8Array)[] {
  return Array.isArray(v);
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}
