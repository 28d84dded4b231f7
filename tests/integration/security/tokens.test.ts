/**
 * Join tokens on the real embedded store: a token works (repeatedly) until it expires, only its hash
 * is stored, the store lease cleans it up, and every bad token — wrong secret, unknown id, malformed,
 * expired — is UNAUTHENTICATED, never INTERNAL.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  createJoinToken,
  JOIN_TOKEN_LEASE_MARGIN_SECONDS,
  joinTokenKey,
  verifyJoinToken,
} from "@trellis/control-plane/security/tokens";
import { createEmbeddedStore } from "@trellis/control-plane/store/embedded-store";
import type { Store } from "@trellis/control-plane/store/store";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { makeTempDir, removeTempDir } from "../../helpers/temp-dirs.js";

const DAY = 24 * 3600_000;
const UNKNOWN = /^unknown or expired join token$/;

function unauthenticated(pattern: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof TrellisError, `expected a TrellisError, got ${String(err)}`);
    assert.equal(err.code, ErrorCode.UNAUTHENTICATED, err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

/** The real embedded store, persisted under `dir` (as `trellis control-plane --store embedded:DIR` runs it). */
async function openStore(dir: string): Promise<{ store: Store; close: () => Promise<void> }> {
  const store = await createEmbeddedStore({ dir });
  return { store, close: () => store.close() };
}

describe("join tokens", () => {
  const root = makeTempDir("tokens");
  let store: Store;
  let closeStore: () => Promise<void>;
  before(async () => {
    ({ store, close: closeStore } = await openStore(join(root, "store")));
  });
  after(async () => {
    await closeStore();
    await removeTempDir(root);
  });

  it("round trip: the token grants its namespace and service account, again and again until it expires", async () => {
    const now = new Date("2031-05-01T12:00:00Z");
    const created = await createJoinToken(store, {
      namespace: "shop",
      serviceAccount: "orders",
      ttlMs: DAY,
      now,
    });
    assert.match(created.token, /^trellis-join\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/);
    assert.equal(created.token.split(".")[1], created.tokenId);
    assert.equal(created.expiresAt.getTime(), now.getTime() + DAY);
    const expected = { namespace: "shop", serviceAccount: "orders", tokenId: created.tokenId };
    assert.deepEqual(await verifyJoinToken(store, created.token, now), expected);
    assert.deepEqual(
      await verifyJoinToken(store, created.token, new Date(now.getTime() + DAY - 1)),
      expected,
    );
  });

  it("expired (injected clock): refused from expiresAt on, with the same message as an unknown token", async () => {
    const now = new Date("2031-05-01T12:00:00Z");
    const { token, expiresAt } = await createJoinToken(store, {
      namespace: "shop",
      serviceAccount: "orders",
      ttlMs: 60_000,
      now,
    });
    await assert.rejects(verifyJoinToken(store, token, expiresAt), unauthenticated(UNKNOWN));
    await assert.rejects(
      verifyJoinToken(store, token, new Date(expiresAt.getTime() + DAY)),
      unauthenticated(UNKNOWN),
    );
  });

  it("wrong secret for a real id is refused", async () => {
    const { token } = await createJoinToken(store, {
      namespace: "shop",
      serviceAccount: "orders",
      ttlMs: DAY,
    });
    const [scheme, id, secret] = token.split(".") as [string, string, string];
    const flipped = `${secret.slice(0, -1)}${secret.endsWith("A") ? "B" : "A"}`;
    await assert.rejects(verifyJoinToken(store, `${scheme}.${id}.${flipped}`), unauthenticated(UNKNOWN));
    // The secret of another token does not open this one either.
    const other = await createJoinToken(store, { namespace: "shop", serviceAccount: "admin", ttlMs: DAY });
    const otherSecret = other.token.split(".")[2]!;
    await assert.rejects(verifyJoinToken(store, `${scheme}.${id}.${otherSecret}`), unauthenticated(UNKNOWN));
  });

  it("unknown id is refused", async () => {
    const { token } = await createJoinToken(store, {
      namespace: "shop",
      serviceAccount: "orders",
      ttlMs: DAY,
    });
    const secret = token.split(".")[2]!;
    await assert.rejects(
      verifyJoinToken(store, `trellis-join.0123456789abcdef.${secret}`),
      unauthenticated(UNKNOWN),
    );
  });

  const malformed: [string, string][] = [
    ["empty", ""],
    ["garbage", "hello"],
    ["admin token", "trellis-admin.Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2Fs"],
    ["no secret", "trellis-join.0123456789abcdef"],
    ["empty secret", "trellis-join.0123456789abcdef."],
    ["short id", `trellis-join.0123.${"a".repeat(43)}`],
    ["upper-case id", `trellis-join.0123456789ABCDEF.${"a".repeat(43)}`],
    ["short secret", `trellis-join.0123456789abcdef.${"a".repeat(42)}`],
    ["long secret", `trellis-join.0123456789abcdef.${"a".repeat(44)}`],
    ["secret with '/'", `trellis-join.0123456789abcdef.${"a".repeat(42)}/`],
    ["path traversal id", `trellis-join.../../../ca.${"a".repeat(43)}`],
    ["extra part", `trellis-join.0123456789abcdef.${"a".repeat(43)}.x`],
    ["wrong scheme", `trellis-joins.0123456789abcdef.${"a".repeat(43)}`],
    ["huge", "x".repeat(100_000)],
  ];
  for (const [name, token] of malformed) {
    it(`malformed (${name}) is UNAUTHENTICATED`, async () => {
      await assert.rejects(verifyJoinToken(store, token), unauthenticated(/malformed join token/));
    });
  }

  it("only the secret's hash is stored, under a lease of ttl plus a margin; revoking the lease ends the token", async () => {
    const { token, tokenId } = await createJoinToken(store, {
      namespace: "edge",
      serviceAccount: "gateway",
      ttlMs: 3600_000,
    });
    const kv = await store.get(joinTokenKey(tokenId));
    assert.ok(kv !== undefined);
    const raw = Buffer.from(kv.value).toString();
    const secret = token.split(".")[2]!;
    assert.ok(!raw.includes(secret), "secret stored in plaintext");
    const record = JSON.parse(raw) as Record<string, unknown>;
    assert.equal(record.namespace, "edge");
    assert.equal(record.serviceAccount, "gateway");
    assert.match(String(record.secretSha256), /^[0-9a-f]{64}$/);
    assert.ok(kv.lease !== undefined, "stored under a lease");
    const remaining = await store.keepAlive(kv.lease);
    assert.ok(remaining >= 3600, `lease outlives the token (remaining ${remaining}s)`);
    assert.ok(
      remaining <= 3600 + JOIN_TOKEN_LEASE_MARGIN_SECONDS + 1,
      `lease not much longer (${remaining}s)`,
    );
    await store.revokeLease(kv.lease);
    assert.equal(await store.get(joinTokenKey(tokenId)), undefined);
    await assert.rejects(verifyJoinToken(store, token), unauthenticated(UNKNOWN));
  });

  it("a corrupted record is UNAUTHENTICATED, not INTERNAL", async () => {
    const { token, tokenId } = await createJoinToken(store, {
      namespace: "shop",
      serviceAccount: "orders",
      ttlMs: DAY,
    });
    await store.put(joinTokenKey(tokenId), new TextEncoder().encode("{oops"));
    await assert.rejects(verifyJoinToken(store, token), unauthenticated(UNKNOWN));
  });

  const badRequests: [string, { namespace: string; serviceAccount: string; ttlMs: number }][] = [
    ["empty namespace", { namespace: "", serviceAccount: "sa", ttlMs: DAY }],
    ["namespace with '/'", { namespace: "a/b", serviceAccount: "sa", ttlMs: DAY }],
    ["service account with a space", { namespace: "ns", serviceAccount: "my sa", ttlMs: DAY }],
    ["zero ttl", { namespace: "ns", serviceAccount: "sa", ttlMs: 0 }],
    ["negative ttl", { namespace: "ns", serviceAccount: "sa", ttlMs: -1 }],
    ["NaN ttl", { namespace: "ns", serviceAccount: "sa", ttlMs: Number.NaN }],
  ];
  for (const [name, opts] of badRequests) {
    it(`createJoinToken refuses ${name} with INVALID_ARGUMENT and stores nothing`, async () => {
      const before = (await store.list("/trellis/v1/security/join-tokens/")).items.length;
      await assert.rejects(createJoinToken(store, opts), (err: unknown) => {
        assert.ok(err instanceof TrellisError);
        assert.equal(err.code, ErrorCode.INVALID_ARGUMENT);
        return true;
      });
      assert.equal((await store.list("/trellis/v1/security/join-tokens/")).items.length, before);
    });
  }
});
