/**
 * The one X.509 module of Trellis: keys, CAs, CSRs, leaf certificates, parsing and chain checks.
 * Used by the test harness, the control plane's bootstrap CA and the mesh CA alike, so that every
 * certificate in the mesh has the same profile (X.509-SVID, github.com/spiffe/spiffe
 * standards/X509-SVID.md):
 *   - ECDSA P-256 keys, ECDSA with SHA-256 signatures;
 *   - leaves: CA=false, keyUsage digitalSignature|keyAgreement (critical), extKeyUsage
 *     serverAuth+clientAuth, at most one URI SAN (the SPIFFE ID), a random positive 128-bit serial;
 *   - CAs: CA=true (critical), keyUsage keyCertSign|cRLSign (critical), subject key identifier.
 *
 * Keys: every private key is a WebCrypto `CryptoKey` owned by the caller. This module never writes
 * keys anywhere; it only turns them into PKCS#8 PEM when asked (`exportPrivateKeyPem`). Time:
 * every `ttlMs` is in milliseconds; functions that read the clock take an optional `now` so that
 * renewal logic can be tested with an injected clock.
 */
import {
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  X509Certificate as NodeX509,
  type webcrypto,
} from "node:crypto";
import { isIP } from "node:net";
import type { DetailedPeerCertificate, PeerCertificate } from "node:tls";
// @peculiar/x509 resolves its algorithm providers through tsyringe, which needs the Reflect metadata
// polyfill loaded first (ES modules evaluate imports in order).
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { ErrorCode, TrellisError } from "./errors.js";
import { spiffeIdProblem } from "./spiffe.js";

x509.cryptoProvider.set(globalThis.crypto);

/** Re-exported so callers can type `cert` fields without importing @peculiar/x509 themselves. */
export type X509Certificate = x509.X509Certificate;
/** A WebCrypto key (Node's `globalThis.crypto`); the project's `lib` has no DOM globals. */
export type CryptoKey = webcrypto.CryptoKey;
/** A WebCrypto key pair; whoever holds it owns the private key. */
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** How far `notBefore` is backdated, so a peer whose clock runs a little behind accepts the cert. */
export const CLOCK_SKEW_MS = 5 * 60_000;

const KEY_ALGORITHM: webcrypto.EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING_ALGORITHM: webcrypto.EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const ISSUED_KEY_USAGE = x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement;
const CA_KEY_USAGE = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;
const DNS_NAME =
  /^(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** A CA as stored on disk or in etcd: its certificate and its PKCS#8 private key, both PEM. */
export interface CaPem {
  readonly certPem: string;
  readonly keyPem: string;
}

/** A freshly made CA. `keys` are the caller's to keep or drop; `keyPem` is the same private key. */
export interface CreatedCa extends CaPem {
  readonly cert: X509Certificate;
  readonly keys: CryptoKeyPair;
}

/** Subject alternative names the issuer puts into a certificate. */
export interface SubjectAltNames {
  /** The single URI SAN, a SPIFFE ID (validated with `spiffeIdProblem`). */
  readonly spiffeId?: string;
  /** DNS SANs, e.g. `trellis-control-plane.trellis.svc`; a leading `*.` wildcard is allowed. */
  readonly dnsNames?: readonly string[];
  /** IP SANs, IPv4 or IPv6 text form, e.g. `127.0.0.1`, `::1`. */
  readonly ipAddresses?: readonly string[];
}

/** What `parseCertificate` reports. */
export interface CertificateInfo {
  /** Subject DN in RFC 4514-like text, e.g. `CN=Trellis Root CA`; empty string when empty. */
  readonly subject: string;
  readonly issuer: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Upper-case hex without leading zero bytes: the same text `tls.PeerCertificate.serialNumber` has. */
  readonly serialNumber: string;
  /** URI SANs that are valid SPIFFE IDs (a valid X.509-SVID has exactly one). */
  readonly spiffeIds: string[];
  readonly dnsNames: string[];
  readonly ipAddresses: string[];
  /** basicConstraints CA flag. */
  readonly isCa: boolean;
}

/** A new ECDSA P-256 key pair, extractable (so it can be exported as PEM). Owned by the caller. */
export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) of an extractable private key: what node:tls takes as `key`. */
export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  return pemText(x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY"));
}

/**
 * The private key from a PEM (PKCS#8, or SEC1 `EC PRIVATE KEY`), as an extractable signing key.
 * Throws TrellisError INVALID_ARGUMENT unless it is an ECDSA P-256 key.
 */
export async function importPrivateKeyPem(pem: string): Promise<CryptoKey> {
  const der = p256PrivateKey(pem).export({ type: "pkcs8", format: "der" });
  return crypto.subtle.importKey("pkcs8", der, KEY_ALGORITHM, true, ["sign"]);
}

/** Private key from PEM (as `importPrivateKeyPem`) together with its public key. */
export async function importKeyPairPem(pem: string): Promise<CryptoKeyPair> {
  const priv = p256PrivateKey(pem);
  const spki = createPublicKey(priv).export({ type: "spki", format: "der" });
  const [privateKey, publicKey] = await Promise.all([
    crypto.subtle.importKey("pkcs8", priv.export({ type: "pkcs8", format: "der" }), KEY_ALGORITHM, true, [
      "sign",
    ]),
    crypto.subtle.importKey("spki", spki, KEY_ALGORITHM, true, ["verify"]),
  ]);
  return { privateKey, publicKey };
}

/**
 * A self-signed root CA. Valid from `notBefore` (default now − CLOCK_SKEW_MS) until
 * (`notBefore` if given, else now) + `ttlMs`. Uses `keys` when given (e.g. a key reloaded from the
 * state dir, to re-issue the root on the same key), else makes a new pair. `pathLength` limits the
 * number of intermediate CAs below it (undefined: no limit).
 */
export async function createSelfSignedCa(opts: {
  commonName: string;
  ttlMs: number;
  keys?: CryptoKeyPair;
  pathLength?: number;
  notBefore?: Date;
  now?: Date;
}): Promise<CreatedCa> {
  checkTtl(opts.ttlMs);
  if (opts.commonName.length === 0) throw invalid("CA commonName must not be empty");
  const keys = opts.keys ?? (await generateKeyPair());
  const now = (opts.now ?? new Date()).getTime();
  const notBefore = opts.notBefore ?? new Date(now - CLOCK_SKEW_MS);
  const notAfter = new Date((opts.notBefore?.getTime() ?? now) + opts.ttlMs);
  const name = commonNameDn(opts.commonName);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: name,
    issuer: name,
    notBefore,
    notAfter,
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, opts.pathLength, true),
      new x509.KeyUsagesExtension(CA_KEY_USAGE, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    certPem: pemText(cert.toString("pem")),
    keyPem: await exportPrivateKeyPem(keys.privateKey),
    cert,
    keys,
  };
}

/**
 * A PKCS#10 CSR (PEM) signed with `keys.privateKey`, asking for the given SANs and CN. The SANs are
 * only a request: `signCsr` ignores them and uses what the issuer passes.
 */
export async function createCsr(
  opts: SubjectAltNames & { keys: CryptoKeyPair; commonName?: string },
): Promise<string> {
  const names = generalNames(opts);
  const extensions = names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names, false)] : [];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    ...(opts.commonName === undefined ? {} : { name: commonNameDn(opts.commonName) }),
    keys: opts.keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions,
  });
  return pemText(csr.toString("pem"));
}

/** Options for `signCsr`. */
export interface SignCsrOptions extends SubjectAltNames {
  /** The request, PEM. Only its public key (and the proof it holds the private key) is used. */
  readonly csrPem: string;
  /** The issuing CA. Its key must match its certificate. */
  readonly ca: CaPem;
  /** Lifetime in milliseconds from `now`; cut short at the CA's own notAfter. */
  readonly ttlMs: number;
  /** Subject CN chosen by the issuer. Default: empty subject (identity lives in the SANs). */
  readonly commonName?: string;
  /** Issue an intermediate CA instead of a leaf (then `commonName` is required). */
  readonly isCa?: boolean;
  /** For `isCa`: how many further CAs may sit below it (undefined: no limit). */
  readonly pathLength?: number;
  /** extKeyUsage serverAuth for a leaf; default true. */
  readonly serverAuth?: boolean;
  /** extKeyUsage clientAuth for a leaf; default true. */
  readonly clientAuth?: boolean;
  /** The issuer's clock; default `new Date()`. */
  readonly now?: Date;
}

/**
 * Issue a certificate for the key in a CSR, signed by `ca`; returns the certificate PEM.
 *
 * The issuer, not the requester, decides the identity: SANs and subject come only from these
 * options, never from the CSR. Copying a CSR's SANs would let any caller that can reach the CA
 * ask for someone else's SPIFFE ID; the caller of `signCsr` is the one who authenticated the
 * requester (ServiceAccount token, join token) and knows which identity it proved.
 *
 * Steps:
 *   1. Parse the CSR and verify its self-signature (proof of possession of the private key).
 *   2. Require an ECDSA P-256 public key; validate the SANs the issuer passed.
 *   3. Load the CA, check it is a CA and that its key matches its certificate.
 *   4. Validity: notBefore = max(now − CLOCK_SKEW_MS, CA notBefore); notAfter = min(now + ttlMs,
 *      CA notAfter) — a leaf that outlives its CA would fail verification early anyway.
 *   5. Sign with a random 128-bit positive serial and AKI = the CA's subject key identifier.
 *
 * Throws TrellisError INVALID_ARGUMENT for a bad CSR or bad options, CONFIG for an unusable CA
 * (not a CA, key mismatch, expired).
 */
export async function signCsr(opts: SignCsrOptions): Promise<string> {
  // 1.
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(opts.csrPem);
  } catch (err) {
    throw invalid("CSR is not a valid PKCS#10 request", err);
  }
  let signatureOk = false;
  try {
    signatureOk = await csr.verify();
  } catch (err) {
    throw invalid("CSR signature could not be verified", err);
  }
  if (!signatureOk) throw invalid("CSR signature does not verify");
  // 2.
  const requestKey = await csr.publicKey.export(KEY_ALGORITHM, ["verify"]).catch((err: unknown) => {
    throw invalid("CSR public key must be ECDSA P-256", err);
  });
  const alg = requestKey.algorithm as webcrypto.EcKeyAlgorithm;
  if (alg.name !== "ECDSA" || alg.namedCurve !== "P-256") throw invalid("CSR public key must be ECDSA P-256");
  checkTtl(opts.ttlMs);
  const isCa = opts.isCa === true;
  const names = generalNames(opts);
  if (isCa && (opts.commonName === undefined || opts.commonName.length === 0)) {
    throw invalid("an intermediate CA needs a commonName");
  }
  if (!isCa && names.length === 0) {
    throw invalid("a leaf needs at least one of spiffeId, dnsNames, ipAddresses");
  }
  // 3.
  const ca = await loadCa(opts.ca);
  if (isCa && ca.pathLength === 0) {
    throw new TrellisError(
      ErrorCode.CONFIG,
      `CA ${ca.cert.subject} has pathLength 0: it may not issue CA certificates`,
    );
  }
  // 4.
  const now = (opts.now ?? new Date()).getTime();
  const notBefore = new Date(Math.max(now - CLOCK_SKEW_MS, ca.cert.notBefore.getTime()));
  const notAfter = new Date(Math.min(now + opts.ttlMs, ca.cert.notAfter.getTime()));
  if (notAfter.getTime() <= now) {
    throw new TrellisError(ErrorCode.CONFIG, `CA certificate expired at ${ca.cert.notAfter.toISOString()}`);
  }
  // 5.
  const subject = opts.commonName === undefined ? undefined : commonNameDn(opts.commonName);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(isCa, isCa ? opts.pathLength : undefined, true),
    new x509.KeyUsagesExtension(isCa ? CA_KEY_USAGE : ISSUED_KEY_USAGE, true),
    await x509.SubjectKeyIdentifierExtension.create(requestKey),
    new x509.AuthorityKeyIdentifierExtension(ca.keyId, false),
  ];
  if (!isCa) {
    const usages: x509.ExtendedKeyUsageType[] = [];
    if (opts.serverAuth !== false) usages.push(x509.ExtendedKeyUsage.serverAuth);
    if (opts.clientAuth !== false) usages.push(x509.ExtendedKeyUsage.clientAuth);
    if (usages.length > 0) extensions.push(new x509.ExtendedKeyUsageExtension(usages, false));
  }
  // RFC 5280 §4.2.1.6: with an empty subject the SAN extension must be critical.
  if (names.length > 0) {
    extensions.push(new x509.SubjectAlternativeNameExtension(names, subject === undefined));
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    ...(subject === undefined ? {} : { subject }),
    issuer: ca.cert.subjectName,
    notBefore,
    notAfter,
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: requestKey,
    signingKey: ca.signingKey,
    extensions,
  });
  return pemText(cert.toString("pem"));
}

/**
 * Keygen + CSR + sign in one call, for tests and for the control plane's own serving certificate.
 * Returns the leaf PEM and its new PKCS#8 private key PEM (owned by the caller).
 */
export async function issueCertificate(
  opts: SubjectAltNames & {
    ca: CaPem;
    ttlMs: number;
    commonName?: string;
    serverAuth?: boolean;
    clientAuth?: boolean;
    now?: Date;
  },
): Promise<{ certPem: string; keyPem: string }> {
  const keys = await generateKeyPair();
  const csrPem = await createCsr({ keys });
  const certPem = await signCsr({ ...opts, csrPem });
  return { certPem, keyPem: await exportPrivateKeyPem(keys.privateKey) };
}

/** Fields of one certificate (the first in `pem`). Throws TrellisError INVALID_ARGUMENT if unparseable. */
export function parseCertificate(pem: string): CertificateInfo {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(pem);
  } catch (err) {
    throw invalid("not a valid X.509 certificate", err);
  }
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    serialNumber: normaliseSerial(cert.serialNumber),
    spiffeIds: names
      .filter((n) => n.type === "url" && spiffeIdProblem(n.value) === undefined)
      .map((n) => n.value),
    dnsNames: names.filter((n) => n.type === "dns").map((n) => n.value),
    ipAddresses: names.filter((n) => n.type === "ip").map((n) => n.value),
    isCa: basic?.ca === true,
  };
}

/**
 * The SPIFFE ID of a TLS peer, from Node's `subjectaltname` text ("URI:spiffe://…, DNS:…").
 * Undefined unless the certificate has exactly one URI SAN and it is a valid SPIFFE ID
 * (X509-SVID.md §2: an SVID carries exactly one URI SAN). Call it only on a verified peer
 * (`socket.authorized`): this reads the certificate, it does not check it.
 */
export function spiffeIdFromPeerCertificate(
  cert: PeerCertificate | DetailedPeerCertificate,
): string | undefined {
  const text = (cert as { subjectaltname?: unknown }).subjectaltname;
  if (typeof text !== "string" || text.length === 0) return undefined;
  const uris = subjectAltNameEntries(text)?.filter((e) => e.type === "URI");
  if (uris === undefined || uris.length !== 1) return undefined;
  const id = uris[0]!.value;
  return spiffeIdProblem(id) === undefined ? id : undefined;
}

/** Every `CERTIFICATE` PEM block in `pem`, in order, each ending with a newline. Other blocks are skipped. */
export function splitPemBundle(pem: string): string[] {
  const out: string[] = [];
  for (const m of pem.matchAll(/-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----/g)) {
    out.push(`${m[0]}\n`);
  }
  return out;
}

/**
 * True when `leafPem` chains to one of `rootsPem` through zero or more of `intermediatesPem`, all
 * valid at `at` (default now). Each array element may itself be a bundle of several PEMs. Checks,
 * per link: issuer name and key identifiers match, the signature verifies, the issuer has
 * CA=true and keyCertSign, and its pathLength is respected. Roots are trust anchors: their own
 * self-signature is not checked, but their validity window is. Several roots may be passed
 * (rotation overlap); unparseable input gives false.
 *
 * Steps (depth-first, because old and new roots may share a subject name):
 *   1. Parse everything; reject a leaf outside its validity window.
 *   2. For the current certificate, try each root as issuer; success ends the search.
 *   3. Else try each unused intermediate as issuer and continue from it (at most 8 deep).
 */
export function verifyChain(
  leafPem: string,
  intermediatesPem: readonly string[],
  rootsPem: readonly string[],
  at: Date = new Date(),
): boolean {
  let leaf: ChainCert;
  let intermediates: ChainCert[];
  let roots: ChainCert[];
  try {
    const first = splitPemBundle(leafPem)[0];
    if (first === undefined) return false;
    leaf = chainCert(first);
    intermediates = intermediatesPem.flatMap(splitPemBundle).map(chainCert);
    roots = rootsPem.flatMap(splitPemBundle).map(chainCert);
  } catch {
    return false;
  }
  const t = at.getTime();
  if (!validAt(leaf, t)) return false;
  const used = new Set<ChainCert>();
  const walk = (cert: ChainCert, depth: number): boolean => {
    for (const root of roots) if (issues(root, cert, depth, t)) return true;
    if (depth >= MAX_CHAIN_DEPTH) return false;
    for (const mid of intermediates) {
      if (used.has(mid) || !issues(mid, cert, depth, t)) continue;
      used.add(mid);
      if (walk(mid, depth + 1)) return true;
      used.delete(mid);
    }
    return false;
  };
  return walk(leaf, 0);
}

const MAX_CHAIN_DEPTH = 8;

interface ChainCert {
  readonly node: NodeX509;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly isCa: boolean;
  /** basicConstraints pathLenConstraint; undefined: no limit. */
  readonly pathLength: number | undefined;
}

function chainCert(pem: string): ChainCert {
  const node = new NodeX509(pem);
  const basic = new x509.X509Certificate(pem).getExtension(x509.BasicConstraintsExtension);
  return {
    node,
    notBefore: node.validFromDate.getTime(),
    notAfter: node.validToDate.getTime(),
    isCa: basic?.ca === true,
    pathLength: basic?.pathLength,
  };
}

function validAt(c: ChainCert, t: number): boolean {
  return c.notBefore <= t && t <= c.notAfter;
}

/** `issuer` signed `cert`, is a usable CA at `t`, and `depth` intermediates below it respect its pathLength. */
function issues(issuer: ChainCert, cert: ChainCert, depth: number, t: number): boolean {
  if (!issuer.isCa || !validAt(issuer, t)) return false;
  if (issuer.pathLength !== undefined && depth > issuer.pathLength) return false;
  // checkIssued: names, AKI/SKI and the issuer's keyUsage keyCertSign (OpenSSL X509_check_issued).
  if (!cert.node.checkIssued(issuer.node)) return false;
  try {
    return cert.node.verify(issuer.node.publicKey);
  } catch {
    return false;
  }
}

interface CaMaterial {
  readonly cert: x509.X509Certificate;
  readonly signingKey: CryptoKey;
  /** Hex subject key identifier of the CA, copied into each issued cert's AKI. */
  readonly keyId: string;
  /** basicConstraints pathLenConstraint; undefined: no limit. */
  readonly pathLength: number | undefined;
}

async function loadCa(ca: CaPem): Promise<CaMaterial> {
  let cert: x509.X509Certificate;
  let key: KeyObject;
  try {
    cert = new x509.X509Certificate(ca.certPem);
    key = p256PrivateKey(ca.keyPem);
  } catch (err) {
    throw new TrellisError(ErrorCode.CONFIG, `CA certificate or key is unreadable: ${errMessage(err)}`, {
      cause: err,
    });
  }
  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  if (basic?.ca !== true) {
    throw new TrellisError(ErrorCode.CONFIG, `issuer certificate ${cert.subject} is not a CA`);
  }
  // A mismatched pair would issue certificates that nobody can verify; catch it at the source.
  const certSpki = Buffer.from(cert.publicKey.rawData);
  const keySpki = createPublicKey(key).export({ type: "spki", format: "der" });
  if (!certSpki.equals(keySpki)) {
    throw new TrellisError(ErrorCode.CONFIG, "CA private key does not match the CA certificate");
  }
  const signingKey = await crypto.subtle.importKey(
    "pkcs8",
    key.export({ type: "pkcs8", format: "der" }),
    KEY_ALGORITHM,
    false,
    ["sign"],
  );
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyId = ski?.keyId ?? (await x509.SubjectKeyIdentifierExtension.create(cert.publicKey)).keyId;
  return { cert, signingKey, keyId, pathLength: basic.pathLength };
}

function p256PrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw invalid("not a readable private key PEM", err);
  }
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw invalid("private key must be ECDSA P-256");
  }
  return key;
}

function generalNames(san: SubjectAltNames): x509.JsonGeneralName[] {
  const names: x509.JsonGeneralName[] = [];
  if (san.spiffeId !== undefined) {
    const problem = spiffeIdProblem(san.spiffeId);
    if (problem !== undefined) throw invalid(`spiffeId ${JSON.stringify(san.spiffeId)}: ${problem}`);
    names.push({ type: "url", value: san.spiffeId });
  }
  for (const dns of san.dnsNames ?? []) {
    if (dns.length > 253 || !DNS_NAME.test(dns))
      throw invalid(`dnsNames: ${JSON.stringify(dns)} is not a DNS name`);
    names.push({ type: "dns", value: dns });
  }
  for (const ip of san.ipAddresses ?? []) {
    if (isIP(ip) === 0) throw invalid(`ipAddresses: ${JSON.stringify(ip)} is not an IP address`);
    names.push({ type: "ip", value: ip });
  }
  return names;
}

/** A one-RDN name built structurally, so a CN with `,`, `=` or `+` cannot inject extra attributes. */
function commonNameDn(cn: string): x509.Name {
  return new x509.Name([{ "2.5.4.3": [cn] }]);
}

/**
 * 16 random bytes as hex, top bit cleared (DER INTEGER stays positive without a pad byte) and
 * first byte non-zero (stays 16 bytes long). RFC 5280 §4.1.2.2: positive, at most 20 octets.
 */
function randomSerialHex(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return Buffer.from(bytes).toString("hex");
}

/**
 * Every PEM this module returns ends with a newline, so PEMs can be concatenated into a chain or
 * bundle: without it OpenSSL reads `-----END CERTIFICATE----------BEGIN…` and fails ("bad end line").
 */
function pemText(pem: string): string {
  return pem.endsWith("\n") ? pem : `${pem}\n`;
}

function normaliseSerial(hex: string): string {
  return hex.replace(/^(00)+(?=..)/, "").toUpperCase();
}

interface SanEntry {
  readonly type: string;
  readonly value: string;
}

/**
 * Parse Node's `subjectaltname` text: `TYPE:value` entries joined by ", ". Node writes a value that
 * contains `,`, `"`, `\` or control characters as a JSON string literal (lib/internal/tls
 * `escapeValue`); splitting naively on ", " would let a DNS SAN like `x, URI:spiffe://…/sa/admin`
 * forge a second URI entry. Returns undefined when the text does not follow that grammar.
 */
function subjectAltNameEntries(text: string): SanEntry[] | undefined {
  const out: SanEntry[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(":", i);
    if (colon === -1) return undefined;
    const type = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = closingQuote(text, colon + 2);
      if (end === -1) return undefined;
      end += 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end)) as string;
      } catch {
        return undefined;
      }
    } else {
      const sep = text.indexOf(", ", colon + 1);
      end = sep === -1 ? text.length : sep;
      value = text.slice(colon + 1, end);
    }
    out.push({ type, value });
    if (end === text.length) break;
    if (!text.startsWith(", ", end)) return undefined;
    i = end + 2;
  }
  return out;
}

function closingQuote(text: string, from: number): number {
  for (let j = from; j < text.length; j++) {
    if (text[j] === "\\") {
      j++; // skip the escaped character
    } else if (text[j] === '"') {
      return j;
    }
  }
  return -1;
}

function checkTtl(ttlMs: number): void {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw invalid(`ttlMs must be a positive number of milliseconds (got ${ttlMs})`);
  }
}

function invalid(message: string, cause?: unknown): TrellisError {
  return new TrellisError(ErrorCode.INVALID_ARGUMENT, message, cause === undefined ? undefined : { cause });
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
