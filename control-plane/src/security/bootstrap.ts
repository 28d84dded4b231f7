/**
 * Control-plane bootstrap: the one bootstrap CA and admin token every replica of a mesh shares, the
 * serving certificate each replica presents on 15010, and the two files a replica leaves on its
 * machine (`<state-dir>/ca.pem` for sidecars, `~/.trellis/config` for the CLI).
 *
 * Store records (JSON: small, rare, and readable with `etcdctl get` when debugging; the secret
 * fields are AES-256-GCM envelopes from secret-key.ts, base64):
 *
 *   /trellis/v1/security/ca           {"version":1,"trustDomain","certPem","keyEnvelope","createdAt"}
 *   /trellis/v1/security/admin-token  {"version":1,"tokenEnvelope","createdAt"}
 *
 * The admin token is stored encrypted, not hashed: every replica must write it in plaintext into
 * ~/.trellis/config on its own machine. Each envelope's additional data is "<store key>#<field>",
 * so an encrypted value moved to another key or field does not decrypt.
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { formatWorkloadId, trustDomainProblem } from "@trellis/proto/spiffe";
import { createSelfSignedCa, issueCertificate, parseCertificate, splitPemBundle } from "@trellis/proto/x509";
import { SECURITY_PREFIX } from "../store/keys.js";
import { type Compare, type KeyValue, type Store, type TxnOp, textValue, valueText } from "../store/store.js";
import { PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, writeFileAtomic } from "./private-files.js";
import { decrypt, encrypt, type SecretKey } from "./secret-key.js";

/** Store key of the bootstrap CA record. */
export const BOOTSTRAP_CA_KEY = `${SECURITY_PREFIX}ca`;
/** Store key of the admin token record. */
export const ADMIN_TOKEN_KEY = `${SECURITY_PREFIX}admin-token`;
/** Default lifetime of the bootstrap CA: 10 years (3650 days), in ms. */
export const DEFAULT_CA_TTL_MS = 3650 * 24 * 3600 * 1000;
/** Default lifetime of a replica's serving certificate: 24 h, in ms. */
export const DEFAULT_SERVING_TTL_MS = 24 * 3600 * 1000;
/** Namespace and service account of the control plane's SPIFFE identity. */
export const CONTROL_PLANE_NAMESPACE = "trellis-system";
export const CONTROL_PLANE_SERVICE_ACCOUNT = "control-plane";
/** Every admin token starts with this, so secret scanners and humans can tell it from a join token. */
export const ADMIN_TOKEN_PREFIX = "trellis-admin.";
/** File name of the CA certificate in the state dir. */
export const CA_FILE_NAME = "ca.pem";

const RECORD_VERSION = 1;
const MAX_ATTEMPTS = 5;

/** Options for `ensureBootstrap`. */
export interface BootstrapOptions {
  /** The mesh secret key (`--secret-file`); must be the same file on every replica. */
  secretKey: SecretKey;
  /** Trust domain of the mesh; must match what the mesh was created with. */
  trustDomain: string;
  /** Clock for CA validity and expiry checks; default `new Date()`. */
  now?: Date;
  /** Lifetime of a newly created CA in ms; default DEFAULT_CA_TTL_MS. Ignored when the CA exists. */
  caTtlMs?: number;
}

/** What every replica of a mesh holds after bootstrap. The key and token are secrets. */
export interface BootstrapMaterial {
  /** The bootstrap CA certificate, PEM (what `<state-dir>/ca.pem` holds). */
  readonly caCertPem: string;
  /** Its PKCS#8 private key, PEM, decrypted. */
  readonly caKeyPem: string;
  /** The admin token, plaintext (`trellis-admin.<43 base64url chars>`, 32 random bytes). */
  readonly adminToken: string;
  /** True when this call created the CA (for the log line "created bootstrap CA"). */
  readonly createdCa: boolean;
  /** True when this call created the admin token. */
  readonly createdAdminToken: boolean;
}

/**
 * Makes sure the store holds the mesh's bootstrap CA and admin token, and returns them decrypted.
 *
 * Steps:
 *   1. Read both records. If both exist, decrypt them and return (the common case: not the first
 *      replica, or a restart).
 *   2. Otherwise make what is missing (an ECDSA P-256 CA valid `caTtlMs`, a 32-byte random token),
 *      encrypt the secret parts with `secretKey`, and write them in one transaction that requires
 *      each missing key to still be absent (modRevision 0) and each present key to be unchanged.
 *   3. If the transaction fails, another replica won the race: go to 1 and use what it stored.
 *   A missing piece next to an existing one (an operator deleted the admin token to rotate it) is
 *   re-created the same way.
 *
 * Throws TrellisError CONFIG when the stored secrets do not decrypt with `secretKey` ("the secret
 * file does not match the one this mesh was created with"), when a record is unreadable, when the
 * mesh has another trust domain, or when the stored CA has expired; CONFLICT after repeated lost
 * races; store errors (UNAVAILABLE, TIMEOUT) as they are.
 */
export async function ensureBootstrap(store: Store, opts: BootstrapOptions): Promise<BootstrapMaterial> {
  const tdProblem = trustDomainProblem(opts.trustDomain);
  if (tdProblem !== undefined) throw new TrellisError(ErrorCode.CONFIG, `trust domain: ${tdProblem}`);
  const now = opts.now ?? new Date();
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    // 1.
    const [caKv, tokenKv] = await Promise.all([store.get(BOOTSTRAP_CA_KEY), store.get(ADMIN_TOKEN_KEY)]);
    const existingCa = caKv === undefined ? undefined : readCaRecord(caKv, opts, now);
    const existingToken = tokenKv === undefined ? undefined : readTokenRecord(tokenKv, opts.secretKey);
    if (existingCa !== undefined && existingToken !== undefined) {
      return { ...existingCa, adminToken: existingToken, createdCa: false, createdAdminToken: false };
    }
    // 2.
    const compares: Compare[] = [
      { key: BOOTSTRAP_CA_KEY, modRevision: caKv?.modRevision ?? 0 },
      { key: ADMIN_TOKEN_KEY, modRevision: tokenKv?.modRevision ?? 0 },
    ];
    const ops: TxnOp[] = [];
    let ca = existingCa;
    if (ca === undefined) {
      const created = await createSelfSignedCa({
        commonName: `Trellis bootstrap CA (${opts.trustDomain})`,
        ttlMs: opts.caTtlMs ?? DEFAULT_CA_TTL_MS,
        now,
      });
      ca = { caCertPem: created.certPem, caKeyPem: created.keyPem };
      ops.push({ type: "put", key: BOOTSTRAP_CA_KEY, value: caRecord(ca, opts, now) });
    }
    let token = existingToken;
    if (token === undefined) {
      token = `${ADMIN_TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`;
      ops.push({ type: "put", key: ADMIN_TOKEN_KEY, value: tokenRecord(token, opts.secretKey, now) });
    }
    const result = await store.txn(compares, ops);
    if (result.succeeded) {
      return {
        ...ca,
        adminToken: token,
        createdCa: existingCa === undefined,
        createdAdminToken: existingToken === undefined,
      };
    }
    // 3. Lost the race; read the winner's records.
  }
  throw new TrellisError(
    ErrorCode.CONFLICT,
    `bootstrap records under ${SECURITY_PREFIX} kept changing during ${MAX_ATTEMPTS} attempts to read or create them`,
  );
}

/** The CA a serving certificate is issued from: what `ensureBootstrap` returns. */
export interface BootstrapCa {
  readonly caCertPem: string;
  readonly caKeyPem: string;
}

/** Options for `issueServingCertificate`. */
export interface ServingCertificateOptions {
  /** Trust domain for the SPIFFE ID. */
  trustDomain: string;
  /**
   * DNS names and IP addresses clients dial this replica by (`[::1]` brackets are accepted).
   * Default: `defaultServingHosts()`.
   */
  hosts?: readonly string[];
  /** Lifetime in ms; default 24 h. Cut short at the CA's own expiry. */
  ttlMs?: number;
  /** Issuer clock; default `new Date()`. */
  now?: Date;
}

/** localhost, 127.0.0.1, ::1 and this machine's host name (when it is a valid DNS name). */
export function defaultServingHosts(): string[] {
  const hosts = ["localhost", "127.0.0.1", "::1"];
  const own = hostname().toLowerCase();
  if (own.length > 0 && own.length <= 253 && HOST_NAME.test(own) && !hosts.includes(own)) hosts.push(own);
  return hosts;
}

const HOST_NAME = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * A fresh key and a leaf certificate for this replica's 15010 listener, signed by the bootstrap CA:
 * SPIFFE ID `spiffe://<td>/ns/trellis-system/sa/control-plane`, the hosts as DNS / IP SANs,
 * serverAuth + clientAuth. Every replica issues its own from the shared CA, so a client that trusts
 * ca.pem can dial any replica. Returns PEMs; the key is the caller's.
 * Throws TrellisError INVALID_ARGUMENT for a host that is neither a DNS name nor an IP, CONFIG for
 * an unusable CA (key mismatch, expired).
 */
export async function issueServingCertificate(
  ca: BootstrapCa,
  opts: ServingCertificateOptions,
): Promise<{ certPem: string; keyPem: string }> {
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  for (const raw of opts.hosts ?? defaultServingHosts()) {
    const host = raw.startsWith("[") && raw.endsWith("]") ? raw.slice(1, -1) : raw;
    const list = isIP(host) === 0 ? dnsNames : ipAddresses;
    const value = isIP(host) === 0 ? host.toLowerCase() : host;
    if (!list.includes(value)) list.push(value);
  }
  return issueCertificate({
    ca: { certPem: ca.caCertPem, keyPem: ca.caKeyPem },
    ttlMs: opts.ttlMs ?? DEFAULT_SERVING_TTL_MS,
    commonName: "trellis-control-plane",
    spiffeId: formatWorkloadId({
      trustDomain: opts.trustDomain,
      namespace: CONTROL_PLANE_NAMESPACE,
      serviceAccount: CONTROL_PLANE_SERVICE_ACCOUNT,
    }),
    dnsNames,
    ipAddresses,
    ...(opts.now === undefined ? {} : { now: opts.now }),
  });
}

/** `~/.trellis/control-plane`: the default `--state-dir`. */
export function defaultStateDir(homeDir: string): string {
  return join(homeDir, ".trellis", "control-plane");
}

/**
 * Writes `<stateDir>/ca.pem` (mode 0644: a certificate is public; sidecars running as other users
 * pass it as `--ca-file`) atomically, creating `stateDir` with mode 0700 when missing (it also holds
 * the secret file). Returns the file's path. Throws TrellisError INVALID_ARGUMENT when `caPem` holds
 * no certificate, CONFIG naming the path when it cannot be written.
 */
export async function writeStateFiles(stateDir: string, caPem: string): Promise<{ caFile: string }> {
  if (splitPemBundle(caPem).length === 0) {
    throw new TrellisError(ErrorCode.INVALID_ARGUMENT, "CA PEM holds no CERTIFICATE block");
  }
  const caFile = join(stateDir, CA_FILE_NAME);
  try {
    await writeFileAtomic(caFile, caPem, PUBLIC_FILE_MODE);
  } catch (err) {
    throw new TrellisError(ErrorCode.CONFIG, `cannot write ${caFile}: ${errMessage(err)}`, { cause: err });
  }
  return { caFile };
}

/**
 * What the CLI needs to reach and authenticate to the control plane by itself.
 * On disk (`~/.trellis/config`, mode 0600, directory 0700) it is one JSON object:
 *   {"apiVersion":"trellis.dev/v1","kind":"ClientConfig","controlPlane":"127.0.0.1:15010",
 *    "caPem":"-----BEGIN CERTIFICATE-----\n…","token":"trellis-admin.…"}
 * JSON (not YAML) so that every component can read it with no extra dependency; JSON is also YAML,
 * so a YAML reader reads it too.
 */
export interface ClientConfig {
  /** The control plane's gRPC address, `host:port`, as a client on this machine dials it. */
  readonly controlPlane: string;
  /** CA bundle (PEM) that verifies the control plane's serving certificate. */
  readonly caPem: string;
  /** Admin token sent as `authorization: Bearer <token>`. */
  readonly token: string;
}

const CLIENT_CONFIG_API_VERSION = "trellis.dev/v1";
const CLIENT_CONFIG_KIND = "ClientConfig";

/** `<homeDir>/.trellis/config`. */
export function clientConfigPath(homeDir: string): string {
  return join(homeDir, ".trellis", "config");
}

/**
 * Writes `~/.trellis/config` under `homeDir` atomically with mode 0600 (it holds the admin token),
 * creating `~/.trellis` with mode 0700 when missing. Replaces a previous config (the last replica to
 * start on a machine wins; all replicas of a mesh share CA and token). Returns the path.
 * Throws TrellisError INVALID_ARGUMENT for an empty field, CONFIG naming the path when it cannot write.
 */
export async function writeClientConfig(homeDir: string, config: ClientConfig): Promise<string> {
  for (const [field, value] of Object.entries(config)) {
    if (typeof value !== "string" || value.length === 0) {
      throw new TrellisError(
        ErrorCode.INVALID_ARGUMENT,
        `client config: ${field} must be a non-empty string`,
      );
    }
  }
  const path = clientConfigPath(homeDir);
  const doc = {
    apiVersion: CLIENT_CONFIG_API_VERSION,
    kind: CLIENT_CONFIG_KIND,
    controlPlane: config.controlPlane,
    caPem: config.caPem,
    token: config.token,
  };
  try {
    await writeFileAtomic(path, `${JSON.stringify(doc, null, 2)}\n`, PRIVATE_FILE_MODE);
  } catch (err) {
    throw new TrellisError(ErrorCode.CONFIG, `cannot write ${path}: ${errMessage(err)}`, { cause: err });
  }
  return path;
}

/**
 * Reads `~/.trellis/config` under `homeDir`: undefined when the file does not exist (the CLI then
 * uses its flags and environment alone); TrellisError CONFIG naming the path when it is unreadable
 * or not a valid ClientConfig document.
 */
export async function readClientConfig(homeDir: string): Promise<ClientConfig | undefined> {
  const path = clientConfigPath(homeDir);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new TrellisError(ErrorCode.CONFIG, `cannot read ${path}: ${errMessage(err)}`, { cause: err });
  }
  const bad = (why: string): TrellisError => new TrellisError(ErrorCode.CONFIG, `${path}: ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new TrellisError(ErrorCode.CONFIG, `${path}: not valid JSON: ${errMessage(err)}`, { cause: err });
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw bad("must be a JSON object");
  const o = doc as Record<string, unknown>;
  if (o.apiVersion !== CLIENT_CONFIG_API_VERSION || o.kind !== CLIENT_CONFIG_KIND) {
    throw bad(`must have apiVersion ${CLIENT_CONFIG_API_VERSION} and kind ${CLIENT_CONFIG_KIND}`);
  }
  const field = (name: string): string => {
    const v = o[name];
    if (typeof v !== "string" || v.length === 0) throw bad(`${name} must be a non-empty string`);
    return v;
  };
  return { controlPlane: field("controlPlane"), caPem: field("caPem"), token: field("token") };
}

interface CaRecordJson {
  version: number;
  trustDomain: string;
  certPem: string;
  keyEnvelope: string;
  createdAt: string;
}

interface TokenRecordJson {
  version: number;
  tokenEnvelope: string;
  createdAt: string;
}

const CA_KEY_AAD = `${BOOTSTRAP_CA_KEY}#keyPem`;
const TOKEN_AAD = `${ADMIN_TOKEN_KEY}#token`;

function caRecord(ca: BootstrapCa, opts: BootstrapOptions, now: Date): Uint8Array {
  const record: CaRecordJson = {
    version: RECORD_VERSION,
    trustDomain: opts.trustDomain,
    certPem: ca.caCertPem,
    keyEnvelope: Buffer.from(encrypt(opts.secretKey, ca.caKeyPem, CA_KEY_AAD)).toString("base64"),
    createdAt: now.toISOString(),
  };
  return textValue(JSON.stringify(record));
}

function tokenRecord(token: string, key: SecretKey, now: Date): Uint8Array {
  const record: TokenRecordJson = {
    version: RECORD_VERSION,
    tokenEnvelope: Buffer.from(encrypt(key, token, TOKEN_AAD)).toString("base64"),
    createdAt: now.toISOString(),
  };
  return textValue(JSON.stringify(record));
}

function readCaRecord(kv: KeyValue, opts: BootstrapOptions, now: Date): BootstrapCa {
  const o = parseRecord(kv);
  const { trustDomain, certPem, keyEnvelope } = o;
  if (typeof trustDomain !== "string" || typeof certPem !== "string" || typeof keyEnvelope !== "string") {
    throw unreadable(kv.key, "missing trustDomain, certPem or keyEnvelope");
  }
  if (trustDomain !== opts.trustDomain) {
    throw new TrellisError(
      ErrorCode.CONFIG,
      `this mesh was created with trust domain ${JSON.stringify(trustDomain)}, but this replica is configured with ${JSON.stringify(opts.trustDomain)}`,
    );
  }
  const caKeyPem = valueText(decrypt(opts.secretKey, Buffer.from(keyEnvelope, "base64"), CA_KEY_AAD));
  let info: ReturnType<typeof parseCertificate>;
  try {
    info = parseCertificate(certPem);
  } catch (err) {
    throw unreadable(kv.key, errMessage(err));
  }
  if (!info.isCa) throw unreadable(kv.key, "the stored certificate is not a CA");
  if (info.notAfter.getTime() <= now.getTime()) {
    throw new TrellisError(
      ErrorCode.CONFIG,
      `the bootstrap CA in ${kv.key} expired at ${info.notAfter.toISOString()}; no replica can serve with it`,
    );
  }
  return { caCertPem: certPem, caKeyPem };
}

function readTokenRecord(kv: KeyValue, key: SecretKey): string {
  const { tokenEnvelope } = parseRecord(kv);
  if (typeof tokenEnvelope !== "string") throw unreadable(kv.key, "missing tokenEnvelope");
  return valueText(decrypt(key, Buffer.from(tokenEnvelope, "base64"), TOKEN_AAD));
}

function parseRecord(kv: KeyValue): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(valueText(kv.value));
  } catch (err) {
    throw unreadable(kv.key, `not JSON: ${errMessage(err)}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw unreadable(kv.key, "not a JSON object");
  const o = doc as Record<string, unknown>;
  if (o.version !== RECORD_VERSION) {
    throw unreadable(
      kv.key,
      `record version ${String(o.version)}, this Trellis reads version ${RECORD_VERSION}`,
    );
  }
  return o;
}

function unreadable(key: string, why: string): TrellisError {
  return new TrellisError(ErrorCode.CONFIG, `store record ${key} is unreadable: ${why}`);
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
