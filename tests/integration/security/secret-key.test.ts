/**
 * The mesh secret file: generated with the right modes when absent, shared by replicas, rejected with
 * a CONFIG error naming the file when it is garbage, and AES-256-GCM envelopes that refuse the wrong
 * key, the wrong context and tampering.
 */
import assert from "node:assert/strict";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  decrypt,
  defaultSecretFilePath,
  encrypt,
  loadOrCreateSecretKey,
} from "@trellis/control-plane/security/secret-key";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { makeTempDir, removeTempDir } from "../../helpers/temp-dirs.js";

const MISMATCH = /the secret file does not match the one this mesh was created with/;

function isConfig(pattern: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof TrellisError, `expected a TrellisError, got ${String(err)}`);
    assert.equal(err.code, ErrorCode.CONFIG);
    assert.match(err.message, pattern);
    return true;
  };
}

describe("secret file", () => {
  const root = makeTempDir("secret");
  after(() => removeTempDir(root));

  it("is generated when absent: 32 random bytes as base64, file 0600, new parent dirs 0700", async () => {
    const stateDir = join(root, "gen", "state");
    const path = defaultSecretFilePath(stateDir);
    const key = await loadOrCreateSecretKey(path);
    assert.equal(key.created, true);
    assert.equal(key.path, path);
    const text = (await readFile(path, "utf8")).trim();
    assert.equal(Buffer.from(text, "base64").length, 32);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
    assert.equal((await stat(join(root, "gen"))).mode & 0o777, 0o700);
  });

  it("is loaded, not replaced, when present: a copy on another replica decrypts what the first encrypted", async () => {
    const first = join(root, "replica-a", "secret.key");
    const a = await loadOrCreateSecretKey(first);
    const again = await loadOrCreateSecretKey(first);
    assert.equal(again.created, false);
    const copy = join(root, "replica-b", "secret.key");
    await mkdir(join(root, "replica-b"));
    await writeFile(copy, await readFile(first));
    const b = await loadOrCreateSecretKey(copy);
    const envelope = encrypt(a, "ca key", "ctx");
    assert.equal(Buffer.from(decrypt(b, envelope, "ctx")).toString(), "ca key");
    assert.equal(Buffer.from(decrypt(again, envelope, "ctx")).toString(), "ca key");
  });

  it("races to create settle on one key", async () => {
    const path = join(root, "race", "secret.key");
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateSecretKey(path)));
    assert.equal(keys.filter((k) => k.created).length, 1);
    const envelope = encrypt(keys[0]!, "x", "ctx");
    for (const k of keys) assert.equal(Buffer.from(decrypt(k, envelope, "ctx")).toString(), "x");
  });

  it("warns when the file is readable by others", async () => {
    const path = join(root, "loose.key");
    await writeFile(path, `${Buffer.alloc(32, 7).toString("base64")}\n`, { mode: 0o644 });
    const warnings: string[] = [];
    await loadOrCreateSecretKey(path, { onWarning: (m) => warnings.push(m) });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /chmod 600/);
  });

  const badFiles: { name: string; content: string }[] = [
    { name: "garbage", content: "not a key at all\n" },
    { name: "too short", content: `${Buffer.alloc(16).toString("base64")}\n` },
    { name: "too long", content: `${Buffer.alloc(48).toString("base64")}\n` },
    { name: "empty", content: "" },
    { name: "hex instead of base64", content: `${Buffer.alloc(32, 1).toString("hex")}\n` },
  ];
  for (const { name, content } of badFiles) {
    it(`rejects a file with ${name} as CONFIG naming the path, without echoing the content`, async () => {
      const path = join(root, `bad-${name.replaceAll(" ", "-")}.key`);
      await writeFile(path, content, { mode: 0o600 });
      await assert.rejects(loadOrCreateSecretKey(path), (err: unknown) => {
        isConfig(/must hold 32 random bytes as base64/)(err);
        assert.ok((err as Error).message.includes(path));
        if (content.trim().length > 0) assert.ok(!(err as Error).message.includes(content.trim()));
        return true;
      });
    });
  }

  it("rejects a directory in place of the file as CONFIG naming the path", async () => {
    const path = join(root, "is-a-dir");
    await mkdir(path);
    await assert.rejects(loadOrCreateSecretKey(path), isConfig(/cannot read secret file .*is-a-dir/));
  });
});

describe("encrypt / decrypt", () => {
  const root = makeTempDir("envelope");
  after(() => removeTempDir(root));

  it("round-trips, with a fresh nonce each time and no plaintext in the envelope", async () => {
    const key = await loadOrCreateSecretKey(join(root, "k1"));
    const plaintext = "-----BEGIN PRIVATE KEY-----\nsecret\n";
    const e1 = encrypt(key, plaintext, "ctx");
    const e2 = encrypt(key, plaintext, "ctx");
    assert.notDeepEqual(e1, e2);
    assert.equal(e1[0], 1, "envelope version byte");
    assert.ok(!Buffer.from(e1).toString("latin1").includes("PRIVATE KEY"));
    assert.equal(Buffer.from(decrypt(key, e1, "ctx")).toString(), plaintext);
  });

  it("refuses another key with the clear CONFIG message naming the secret file", async () => {
    const a = await loadOrCreateSecretKey(join(root, "a"));
    const b = await loadOrCreateSecretKey(join(root, "b"));
    const envelope = encrypt(a, "token", "ctx");
    await assert.rejects(async () => decrypt(b, envelope, "ctx"), isConfig(MISMATCH));
    await assert.rejects(
      async () => decrypt(b, envelope, "ctx"),
      (err: unknown) => {
        assert.ok((err as Error).message.includes(join(root, "b")));
        return true;
      },
    );
  });

  it("refuses another context (aad) and tampered bytes", async () => {
    const key = await loadOrCreateSecretKey(join(root, "k2"));
    const envelope = encrypt(key, "token", "/trellis/v1/security/ca#keyPem");
    assert.throws(() => decrypt(key, envelope, "/trellis/v1/security/admin-token#token"), isConfig(MISMATCH));
    const tampered = Buffer.from(envelope);
    tampered[tampered.length - 1]! ^= 1;
    assert.throws(() => decrypt(key, tampered, "/trellis/v1/security/ca#keyPem"), isConfig(MISMATCH));
  });

  it("names truncated and unknown-version envelopes for what they are", async () => {
    const key = await loadOrCreateSecretKey(join(root, "k3"));
    assert.throws(() => decrypt(key, new Uint8Array(5), "ctx"), isConfig(/truncated/));
    const future = Buffer.from(encrypt(key, "x", "ctx"));
    future[0] = 2;
    assert.throws(() => decrypt(key, future, "ctx"), isConfig(/envelope version 2/));
  });
});
