/**
 * The admin API's credential check, table-driven: what the CLI sends is accepted, everything else is
 * UNAUTHENTICATED with a message that says whether the token was missing or wrong.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type AuthorizationValue,
  bearerAuthorization,
  checkAdminToken,
} from "@trellis/control-plane/security/admin-auth";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";

const TOKEN = "trellis-admin.Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2Fs";

interface Case {
  name: string;
  header: AuthorizationValue;
  /** undefined: accepted; else the expected code and message pattern. */
  error?: { code: string; message: RegExp };
}

const missing = { code: ErrorCode.UNAUTHENTICATED, message: /missing admin token/ };
const invalid = { code: ErrorCode.UNAUTHENTICATED, message: /^invalid admin token$/ };

const cases: Case[] = [
  { name: "what the CLI sends", header: bearerAuthorization(TOKEN) },
  { name: "grpc-js metadata list with one value", header: [`Bearer ${TOKEN}`] },
  { name: "binary metadata value", header: Buffer.from(`Bearer ${TOKEN}`) },
  { name: "lower-case scheme", header: `bearer ${TOKEN}` },
  { name: "extra spaces", header: `  Bearer   ${TOKEN} ` },
  { name: "no header", header: undefined, error: missing },
  { name: "empty metadata list", header: [], error: missing },
  { name: "empty value", header: "", error: missing },
  { name: "scheme only", header: "Bearer", error: missing },
  { name: "scheme and blank", header: "Bearer   ", error: missing },
  { name: "token without scheme", header: TOKEN, error: missing },
  {
    name: "Basic scheme",
    header: `Basic ${Buffer.from(`admin:${TOKEN}`).toString("base64")}`,
    error: missing,
  },
  {
    name: "two values",
    header: [`Bearer ${TOKEN}`, `Bearer ${TOKEN}`],
    error: { code: ErrorCode.UNAUTHENTICATED, message: /several authorization values/ },
  },
  { name: "wrong token", header: "Bearer trellis-admin.wrong", error: invalid },
  { name: "token with one character changed", header: `Bearer ${TOKEN.slice(0, -1)}X`, error: invalid },
  { name: "prefix of the token", header: `Bearer ${TOKEN.slice(0, 20)}`, error: invalid },
  { name: "token plus suffix", header: `Bearer ${TOKEN}x`, error: invalid },
  { name: "two tokens in one value", header: `Bearer ${TOKEN} ${TOKEN}`, error: missing },
];

describe("checkAdminToken", () => {
  for (const c of cases) {
    it(c.name, () => {
      if (c.error === undefined) {
        assert.doesNotThrow(() => checkAdminToken(TOKEN, c.header));
        return;
      }
      const { code, message } = c.error;
      assert.throws(
        () => checkAdminToken(TOKEN, c.header),
        (err: unknown) => {
          assert.ok(err instanceof TrellisError);
          assert.equal(err.code, code);
          assert.match(err.message, message);
          assert.ok(!err.message.includes(TOKEN), "the expected token never appears in an error");
          return true;
        },
      );
    });
  }

  it("fails closed when no admin token is configured", () => {
    assert.throws(
      () => checkAdminToken("", "Bearer "),
      (err: unknown) => err instanceof TrellisError && err.code === ErrorCode.INTERNAL,
    );
    assert.throws(
      () => checkAdminToken("", "Bearer x"),
      (err: unknown) => err instanceof TrellisError && err.code === ErrorCode.INTERNAL,
    );
  });
});
