/**
 * Join tokens: the credential a sidecar outside Kubernetes presents to the CA (`--join-token` /
 * `--token-file`) to get a certificate for one namespace and service account.
 *
 * Format: `trellis-join.<id>.<secret>` — id 16 hex characters (8 random bytes, the store key, not a
 * secret), secret 43 base64url characters (32 random bytes). Only the secret's SHA-256 is stored (an
 * unsalted hash is enough: 256 random bits cannot be guessed from it), as JSON:
 *
 *   /trellis/v1/security/join-tokens/<id>
 *     {"version":1,"secretSha256":"<hex>","namespace","serviceAccount","expiresAt":"<ISO>","createdAt"}
 *
 * under a store lease of the token's TTL plus a margin, so the store deletes it after it expires
 * even if nobody looks. A token stays usable, any number of times, until `expiresAt` (several
 * sidecars of one service may share it; each restart uses it again).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { ErrorCode, hasCode, TrellisError } from "@trellis/proto/errors";
import { formatWorkloadId } from "@trellis/proto/spiffe";
import { SECURITY_PREFIX } from "../store/keys.js";
import { type Store, textValue, valueText } from "../store/store.js";

/** Store prefix of join-token records. */
export const JOIN_TOKEN_PREFIX = `${SECURITY_PREFIX}join-tokens/`;
/** Every join token starts with this. */
export const JOIN_TOKEN_SCHEME = "trellis-join";
/**
 * How much longer than the token the store lease lives, in seconds. `expiresAt` is what decides;
 * the margin only keeps a lease that a slow store expires early from deleting a still-valid token.
 */
export const JOIN_TOKEN_LEASE_MARGIN_SECONDS = 300;

const RECORD_VERSION = 1;
const TOKEN_FORMAT = /^trellis-join\.([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/;
const UNKNOWN_OR_EXPIRED = "unknown or expired join token";
const MALFORMED = "malformed join token (expected trellis-join.<16 hex>.<43 base64url>)";

/** Store key of one join token. */
export function joinTokenKey(tokenId: string): string {
  return `${JOIN_TOKEN_PREFIX}${tokenId}`;
}

/** Options for `createJoinToken`. */
export interface CreateJoinTokenOptions {
  /** Namespace the token's holder gets certificates for (a valid SPIFFE path segment). */
  namespace: string;
  /** Service account the token's holder gets certificates for (a valid SPIFFE path segment). */
  serviceAccount: string;
  /** Lifetime in ms, > 0 (the CLI's `--ttl`, default 24h there). */
  ttlMs: number;
  /** Clock for `expiresAt`; default `new Date()`. */
  now?: Date;
}

/** A new join token. `token` is shown to the user once and never stored. */
export interface CreatedJoinToken {
  /** `trellis-join.<id>.<secret>`: the whole credential. */
  readonly token: string;
  /** The id part: names the token in logs and in the store; not a secret. */
  readonly tokenId: string;
  /** When it stops being accepted. */
  readonly expiresAt: Date;
}

/** Who a valid join token speaks for. */
export interface JoinTokenIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly tokenId: string;
}

/**
 * Makes a join token for `namespace`/`serviceAccount` valid for `ttlMs`, and stores its hash under
 * a new lease of ceil(ttl) + JOIN_TOKEN_LEASE_MARGIN_SECONDS seconds (create-only: a colliding id is
 * never overwritten). Throws TrellisError INVALID_ARGUMENT for a bad namespace, service account or
 * ttl; store errors as they are (the lease is revoked when the write fails).
 */
export async function createJoinToken(store: Store, opts: CreateJoinTokenOptions): Promise<CreatedJoinToken> {
  // Any trust domain works for the check: it validates the two path segments.
  formatWorkloadId({
    trustDomain: "example.org",
    namespace: opts.namespace,
    serviceAccount: opts.serviceAccount,
  });
  if (!Number.isFinite(opts.ttlMs) || opts.ttlMs <= 0) {
    throw new TrellisError(
      ErrorCode.INVALID_ARGUMENT,
      `join token ttl must be positive (got ${opts.ttlMs} ms)`,
    );
  }
  const now = opts.now ?? new Date();
  const expiresAt = new Date(now.getTime() + opts.ttlMs);
  const lease = await store.grantLease(Math.ceil(opts.ttlMs / 1000) + JOIN_TOKEN_LEASE_MARGIN_SECONDS);
  try {
    // An 8-byte id collides with negligible probability; the loop only makes a collision harmless.
    for (let attempt = 0; attempt < 3; attempt++) {
      const tokenId = randomBytes(8).toString("hex");
      const secret = randomBytes(32).toString("base64url");
      const record = {
        version: RECORD_VERSION,
        secretSha256: sha256(secret).toString("hex"),
        namespace: opts.namespace,
        serviceAccount: opts.serviceAccount,
        expiresAt: expiresAt.toISOString(),
        createdAt: now.toISOString(),
      };
      try {
        await store.put(joinTokenKey(tokenId), textValue(JSON.stringify(record)), {
          lease: lease.id,
          expectRevision: 0,
        });
      } catch (err) {
        if (hasCode(err, ErrorCode.CONFLICT)) continue;
        throw err;
      }
      return { token: `${JOIN_TOKEN_SCHEME}.${tokenId}.${secret}`, tokenId, expiresAt };
    }
    throw new TrellisError(ErrorCode.INTERNAL, "three random join token ids in a row were taken");
  } catch (err) {
    await store.revokeLease(lease.id).catch(() => undefined);
    throw err;
  }
}

/**
 * Checks a join token presented by a sidecar and returns the identity it grants.
 *
 * Steps:
 *   1. Parse `trellis-join.<id>.<secret>`; anything else is UNAUTHENTICATED (malformed).
 *   2. Read the record for `<id>`; none, or an unreadable one, is UNAUTHENTICATED.
 *   3. Compare SHA-256(secret) with the stored hash in constant time (timingSafeEqual on two
 *      32-byte digests, so neither content nor length leaks through timing).
 *   4. Reject when `now` ≥ expiresAt (the lease margin means the record can outlive the token).
 *
 * Throws TrellisError UNAUTHENTICATED "unknown or expired join token" for an unknown id, a wrong
 * secret or an expired token (one message for all three: the caller learns nothing about which
 * ids exist); store errors (UNAVAILABLE, TIMEOUT) as they are — never INTERNAL for bad input.
 */
export async function verifyJoinToken(
  store: Store,
  token: string,
  now: Date = new Date(),
): Promise<JoinTokenIdentity> {
  // 1.
  const m = typeof token === "string" ? TOKEN_FORMAT.exec(token.trim()) : null;
  if (m === null) throw new TrellisError(ErrorCode.UNAUTHENTICATED, MALFORMED);
  const tokenId = m[1]!;
  const secret = m[2]!;
  // 2.
  const kv = await store.get(joinTokenKey(tokenId));
  const record = kv === undefined ? undefined : parseRecord(valueText(kv.value));
  // 3. Hash and compare even for an unknown id, so both paths cost the same.
  const expected = record?.secretSha256 ?? Buffer.alloc(32);
  const matches = timingSafeEqual(sha256(secret), expected) && record !== undefined;
  // 4.
  if (!matches || record === undefined || now.getTime() >= record.expiresAt) {
    throw new TrellisError(ErrorCode.UNAUTHENTICATED, UNKNOWN_OR_EXPIRED);
  }
  return { namespace: record.namespace, serviceAccount: record.serviceAccount, tokenId };
}

interface JoinTokenRecord {
  secretSha256: Buffer;
  namespace: string;
  serviceAccount: string;
  /** Epoch ms. */
  expiresAt: number;
}

/** The record, or undefined when it is not one this version understands (treated as unknown). */
function parseRecord(text: string): JoinTokenRecord | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof doc !== "object" || doc === null) return undefined;
  const o = doc as Record<string, unknown>;
  const { version, secretSha256, namespace, serviceAccount, expiresAt } = o;
  if (
    version !== RECORD_VERSION ||
    typeof secretSha256 !== "string" ||
    !/^[0-9a-f]{64}$/.test(secretSha256) ||
    typeof namespace !== "string" ||
    typeof serviceAccount !== "string" ||
    typeof expiresAt !== "string"
  ) {
    return undefined;
  }
  const expires = Date.parse(expiresAt);
  if (Number.isNaN(expires)) return undefined;
  return { secretSha256: Buffer.from(secretSha256, "hex"), namespace, serviceAccount, expiresAt: expires };
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}
