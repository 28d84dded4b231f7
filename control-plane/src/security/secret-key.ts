/**
 * The mesh secret key (`--secret-file` / `TRELLIS_SECRET_FILE`): 32 random bytes, stored as base64
 * text, that encrypt the secrets the control plane keeps in the store (the bootstrap CA key and the
 * admin token). Every replica of one mesh must load the same file; the store alone (an etcd backup,
 * a snapshot) is then not enough to impersonate the control plane.
 *
 * Encryption is AES-256-GCM with a random 12-byte nonce per message (NIST SP 800-38D §8.2.2; the
 * number of messages under one key here is tiny, far below the 2^32 random-nonce limit) and
 * caller-chosen additional authenticated data, in a versioned envelope:
 *
 *   byte 0       envelope version (1)
 *   bytes 1..12  nonce
 *   bytes 13..28 GCM tag (16 bytes)
 *   bytes 29..   ciphertext
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject, randomBytes } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { createFileExclusive, PRIVATE_FILE_MODE } from "./private-files.js";

/** Length of the key in bytes (AES-256). */
export const SECRET_KEY_BYTES = 32;
/** File name of the generated secret file inside the state dir, when `--secret-file` is not given. */
export const DEFAULT_SECRET_FILE_NAME = "secret.key";
/** The envelope version `encrypt` writes. */
export const ENVELOPE_VERSION = 1;

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + NONCE_BYTES + TAG_BYTES;
/** Standard or URL-safe base64 of exactly 32 bytes (43 characters plus optional `=`). */
const KEY_TEXT = /^[A-Za-z0-9+/_-]{43}=?$/;

/** A loaded secret key. The raw bytes live only inside the KeyObject (never logged or serialised). */
export interface SecretKey {
  /** AES-256 key. */
  readonly key: KeyObject;
  /** The file it came from, for error messages. */
  readonly path: string;
  /** True when this call generated the file (the caller logs it: it must be copied to other replicas). */
  readonly created: boolean;
}

/** Options for `loadOrCreateSecretKey`. */
export interface LoadSecretKeyOptions {
  /** Called when the file is readable by group or others (it still loads: warn, don't break). */
  onWarning?: (message: string) => void;
}

/** `<stateDir>/secret.key`: where the secret file goes when `--secret-file` is not given. */
export function defaultSecretFilePath(stateDir: string): string {
  return join(stateDir, DEFAULT_SECRET_FILE_NAME);
}

/**
 * Loads the secret key from `path`, or, when the file does not exist, generates 32 random bytes and
 * writes them there as base64 text (file 0600, missing parent directories 0700). When several
 * processes race to create it, all of them end up with the same key (exclusive create, then read).
 *
 * Throws TrellisError CONFIG naming `path` when the file is unreadable (permissions, a directory) or
 * does not hold exactly 32 bytes of base64 (the content itself is never put into the message).
 */
export async function loadOrCreateSecretKey(
  path: string,
  opts: LoadSecretKeyOptions = {},
): Promise<SecretKey> {
  if (path.length === 0) throw new TrellisError(ErrorCode.CONFIG, "secret file path must not be empty");
  let created = false;
  let text = await readKeyFile(path);
  if (text === undefined) {
    const fresh = `${randomBytes(SECRET_KEY_BYTES).toString("base64")}\n`;
    try {
      created = await createFileExclusive(path, fresh, PRIVATE_FILE_MODE);
    } catch (err) {
      throw configError(`cannot create secret file ${path}: ${errMessage(err)}`, err);
    }
    // Read back rather than use `fresh`: a concurrent process may have won the race.
    text = await readKeyFile(path);
    if (text === undefined) throw configError(`secret file ${path} vanished right after it was created`);
  } else {
    await warnIfShared(path, opts.onWarning);
  }
  return { key: createSecretKey(parseKeyText(text, path)), path, created };
}

/**
 * Encrypts `plaintext` under `key`, binding it to `aad` (e.g. the store key and field it is written
 * to, so a ciphertext copied to another place does not decrypt there). Returns the envelope above.
 */
export function encrypt(key: SecretKey, plaintext: Uint8Array | string, aad: string): Uint8Array {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key.key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(aad, "utf8"));
  const data = typeof plaintext === "string" ? Buffer.from(plaintext, "utf8") : plaintext;
  const body = Buffer.concat([cipher.update(data), cipher.final()]);
  return Buffer.concat([Buffer.of(ENVELOPE_VERSION), nonce, cipher.getAuthTag(), body]);
}

/**
 * Decrypts an envelope made by `encrypt` with the same key and `aad`.
 *
 * Throws TrellisError CONFIG: "the secret file does not match the one this mesh was created with"
 * when authentication fails (another key, another aad, or tampered bytes — GCM cannot tell them
 * apart, and a different secret file is by far the likeliest); a distinct CONFIG message for an
 * envelope that is truncated or of an unknown version (written by a newer Trellis).
 */
export function decrypt(key: SecretKey, envelope: Uint8Array, aad: string): Uint8Array {
  if (envelope.length < HEADER_BYTES) {
    throw configError(
      `encrypted value is truncated (${envelope.length} bytes, need at least ${HEADER_BYTES})`,
    );
  }
  const version = envelope[0];
  if (version !== ENVELOPE_VERSION) {
    throw configError(
      `encrypted value has envelope version ${version}, this Trellis reads version ${ENVELOPE_VERSION} (written by a newer release?)`,
    );
  }
  const nonce = envelope.subarray(1, 1 + NONCE_BYTES);
  const tag = envelope.subarray(1 + NONCE_BYTES, HEADER_BYTES);
  const decipher = createDecipheriv("aes-256-gcm", key.key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(aad, "utf8"));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(envelope.subarray(HEADER_BYTES)), decipher.final()]);
  } catch (err) {
    throw configError(
      `the secret file does not match the one this mesh was created with (secret file ${key.path}; ` +
        "every replica must use a copy of the first replica's --secret-file / TRELLIS_SECRET_FILE)",
      err,
    );
  }
}

/** The file's text, or undefined when it does not exist. */
async function readKeyFile(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw configError(`cannot read secret file ${path}: ${errMessage(err)}`, err);
  }
}

function parseKeyText(text: string, path: string): Buffer {
  const trimmed = text.trim();
  const bytes = KEY_TEXT.test(trimmed) ? Buffer.from(trimmed, "base64") : undefined;
  if (bytes === undefined || bytes.length !== SECRET_KEY_BYTES) {
    throw configError(
      `secret file ${path} must hold ${SECRET_KEY_BYTES} random bytes as base64 text ` +
        `(e.g. \`head -c ${SECRET_KEY_BYTES} /dev/urandom | base64\`); it holds ${trimmed.length} characters that are not that`,
    );
  }
  return bytes;
}

async function warnIfShared(path: string, onWarning: ((message: string) => void) | undefined): Promise<void> {
  if (onWarning === undefined) return;
  try {
    const mode = (await stat(path)).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      onWarning(
        `secret file ${path} has mode ${mode.toString(8)}: it should be readable by its owner only (chmod 600)`,
      );
    }
  } catch {
    // It was just read; a stat failure here changes nothing about the key.
  }
}

function configError(message: string, cause?: unknown): TrellisError {
  return new TrellisError(ErrorCode.CONFIG, message, cause === undefined ? undefined : { cause });
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
