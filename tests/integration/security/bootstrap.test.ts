/**
 * Control-plane bootstrap on the real embedded store: replicas sharing one store and one secret file
 * agree on one CA and admin token, serve TLS that a client trusting ca.pem accepts, keep the secrets
 * encrypted in the store, refuse a foreign secret file clearly, and leave ca.pem and ~/.trellis/config
 * on disk with the right modes.
 */
import assert from "node:assert/strict";
import { copyFile, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connect, createServer } from "node:tls";
import {
  ADMIN_TOKEN_KEY,
  BOOTSTRAP_CA_KEY,
  clientConfigPath,
  defaultServingHosts,
  defaultStateDir,
  ensureBootstrap,
  issueServingCertificate,
  readClientConfig,
  writeClientConfig,
  writeStateFiles,
} from "@trellis/control-plane/security/bootstrap";
import { loadOrCreateSecretKey, type SecretKey } from "@trellis/control-plane/security/secret-key";
import { createEmbeddedStore } from "@trellis/control-plane/store/embedded-store";
import type { Store } from "@trellis/control-plane/store/store";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { parseCertificate, spiffeIdFromPeerCertificate, verifyChain } from "@trellis/proto/x509";
import { tempHome } from "../../helpers/home.js";
import { closeServer, listen } from "../../helpers/servers.js";
import { makeTempDir, removeTempDir } from "../../helpers/temp-dirs.js";

const TD = "cluster.local";
const CP_ID = `spiffe://${TD}/ns/trellis-system/sa/control-plane`;

function hasCode(code: string, pattern?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof TrellisError, `expected a TrellisError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (pattern !== undefined) assert.match(err.message, pattern);
    return true;
  };
}

/**
 * Serves TLS with `cert` on 127.0.0.1:0 and dials it the way a strict client does (default
 * `rejectUnauthorized` and hostname check) as `dialHost`, trusting `caPem`. Returns the server's SPIFFE
 * ID on success, or the client's error message.
 */
async function handshake(
  cert: { certPem: string; keyPem: string },
  caPem: string,
  dialHost: string,
): Promise<{ ok: true; spiffeId: string | undefined } | { ok: false; error: string }> {
  const server = createServer({ cert: cert.certPem, key: cert.keyPem }, (socket) => socket.end());
  const port = await listen(server);
  try {
    return await new Promise((resolve) => {
      // An IP is dialled as the host itself (RFC 6066 forbids an IP as SNI); a name via SNI on loopback.
      const target = isIP(dialHost) === 0 ? { host: "127.0.0.1", servername: dialHost } : { host: dialHost };
      const socket = connect({ ...target, port, ca: caPem });
      socket.once("secureConnect", () => {
        resolve({ ok: true, spiffeId: spiffeIdFromPeerCertificate(socket.getPeerCertificate()) });
        socket.destroy();
      });
      socket.once("error", (err) => resolve({ ok: false, error: err.message }));
    });
  } finally {
    await closeServer(server);
  }
}

/** The real embedded store, persisted under `dir` (as `trellis control-plane --store embedded:DIR` runs it). */
async function openStore(dir: string): Promise<{ store: Store; close: () => Promise<void> }> {
  const store = await createEmbeddedStore({ dir });
  return { store, close: () => store.close() };
}

describe("bootstrap with two replicas on one store", () => {
  const root = makeTempDir("bootstrap");
  let store: Store;
  let closeStore: () => Promise<void>;
  let keyA: SecretKey;
  let keyB: SecretKey;

  before(async () => {
    ({ store, close: closeStore } = await openStore(join(root, "store")));
    keyA = await loadOrCreateSecretKey(join(root, "replica-a", "secret.key"));
    // Replica B runs with a copy of replica A's secret file, as the docs tell operators to do.
    await mkdir(join(root, "replica-b"), { mode: 0o700 });
    await copyFile(join(root, "replica-a", "secret.key"), join(root, "replica-b", "secret.key"));
    keyB = await loadOrCreateSecretKey(join(root, "replica-b", "secret.key"));
  });
  after(async () => {
    await closeStore();
    await removeTempDir(root);
  });

  it("two replicas starting at once agree on one CA and one admin token", async () => {
    const [a, b] = await Promise.all([
      ensureBootstrap(store, { secretKey: keyA, trustDomain: TD }),
      ensureBootstrap(store, { secretKey: keyB, trustDomain: TD }),
    ]);
    assert.equal(a.caCertPem, b.caCertPem);
    assert.equal(a.caKeyPem, b.caKeyPem);
    assert.equal(a.adminToken, b.adminToken);
    assert.equal([a.createdCa, b.createdCa].filter(Boolean).length, 1, "exactly one replica created the CA");
    assert.match(a.adminToken, /^trellis-admin\.[A-Za-z0-9_-]{43}$/);
    const ca = parseCertificate(a.caCertPem);
    assert.equal(ca.isCa, true);
    const tenYears = 3650 * 24 * 3600 * 1000;
    assert.ok(
      Math.abs(ca.notAfter.getTime() - Date.now() - tenYears) < 60_000,
      "default CA lifetime 10 years",
    );
    // A restart reads what is stored and creates nothing.
    const again = await ensureBootstrap(store, { secretKey: keyA, trustDomain: TD });
    assert.equal(again.caCertPem, a.caCertPem);
    assert.equal(again.caKeyPem, a.caKeyPem);
    assert.equal(again.adminToken, a.adminToken);
    assert.equal(again.createdCa, false);
    assert.equal(again.createdAdminToken, false);
  });

  it("each replica's serving certificate chains to the shared CA and completes a TLS handshake with a client trusting ca.pem", async () => {
    const a = await ensureBootstrap(store, { secretKey: keyA, trustDomain: TD });
    const b = await ensureBootstrap(store, { secretKey: keyB, trustDomain: TD });
    const { caFile } = await writeStateFiles(join(root, "replica-a", "state"), a.caCertPem);
    const caPem = await readFile(caFile, "utf8");
    for (const replica of [a, b]) {
      const serving = await issueServingCertificate(replica, { trustDomain: TD });
      assert.ok(verifyChain(serving.certPem, [], [caPem]));
      const info = parseCertificate(serving.certPem);
      assert.deepEqual(info.spiffeIds, [CP_ID]);
      assert.ok(info.dnsNames.includes("localhost"));
      assert.ok(info.ipAddresses.includes("127.0.0.1"));
      const ttl = info.notAfter.getTime() - Date.now();
      assert.ok(ttl > 23.9 * 3600_000 && ttl <= 24 * 3600_000, `default serving TTL 24h, got ${ttl} ms`);
      for (const dialHost of ["localhost", "127.0.0.1"]) {
        const r = await handshake(serving, caPem, dialHost);
        assert.deepEqual(r, { ok: true, spiffeId: CP_ID }, `dialling ${dialHost}`);
      }
    }
  });

  it("a client that does not trust ca.pem, or dials a name not in the certificate, is refused", async () => {
    const a = await ensureBootstrap(store, { secretKey: keyA, trustDomain: TD });
    const serving = await issueServingCertificate(a, { trustDomain: TD, hosts: ["cp.example.test"] });
    const other = await ensureBootstrap(await openIsolatedStore(), { secretKey: keyA, trustDomain: TD });
    assert.deepEqual(await handshake(serving, a.caCertPem, "cp.example.test"), { ok: true, spiffeId: CP_ID });
    const untrusted = await handshake(serving, other.caCertPem, "cp.example.test");
    assert.equal(untrusted.ok, false);
    assert.match(untrusted.ok ? "" : untrusted.error, /self.signed|unable to (get|verify)/i);
    const wrongName = await handshake(serving, a.caCertPem, "localhost");
    assert.equal(wrongName.ok, false);
    assert.match(wrongName.ok ? "" : wrongName.error, /localhost/);
  });

  it("serving hosts: defaults include this machine's name; IPs and [IPv6] become IP SANs", async () => {
    const a = await ensureBootstrap(store, { secretKey: keyA, trustDomain: TD });
    const defaults = defaultServingHosts();
    assert.deepEqual(defaults.slice(0, 3), ["localhost", "127.0.0.1", "::1"]);
    if (/^[a-z0-9.-]+$/i.test(hostname())) assert.ok(defaults.includes(hostname().toLowerCase()));
    const serving = await issueServingCertificate(a, {
      trustDomain: TD,
      hosts: ["CP.Example.Test", "10.0.0.7", "[fd00::7]", "cp.example.test"],
      ttlMs: 3600_000,
    });
    const info = parseCertificate(serving.certPem);
    assert.deepEqual(info.dnsNames, ["cp.example.test"]);
    assert.deepEqual(info.ipAddresses.sort(), ["10.0.0.7", "fd00::7"].sort());
    await assert.rejects(
      issueServingCertificate(a, { trustDomain: TD, hosts: ["not a host"] }),
      hasCode(ErrorCode.INVALID_ARGUMENT),
    );
  });

  it("the store holds the CA key and admin token encrypted, never in plaintext", async () => {
    const a = await ensureBootstrap(store, { secretKey: keyA, trustDomain: TD });
    const caRaw = Buffer.from((await store.get(BOOTSTRAP_CA_KEY))!.value).toString("latin1");
    const tokenRaw = Buffer.from((await store.get(ADMIN_TOKEN_KEY))!.value).toString("latin1");
    assert.ok(caRaw.includes("BEGIN CERTIFICATE"), "the certificate itself is public and stored as PEM");
    assert.ok(!caRaw.includes("PRIVATE KEY"), "CA key stored in plaintext");
    const keyBody = a.caKeyPem.split("\n")[1]!;
    assert.ok(!caRaw.includes(keyBody), "CA key material stored in plaintext");
    assert.ok(!tokenRaw.includes(a.adminToken), "admin token stored in plaintext");
    assert.ok(!tokenRaw.includes(a.adminToken.slice("trellis-admin.".length)));
    // Everything under the security prefix, as one dump (what an etcd backup would hold).
    const all = (await store.list("/trellis/v1/security/")).items.map((kv) =>
      Buffer.from(kv.value).toString(),
    );
    assert.ok(!all.join("\n").includes("PRIVATE KEY"));
    assert.ok(!all.join("\n").includes(a.adminToken));
  });

  it("a replica with a different secret file fails with the clear CONFIG message", async () => {
    const stranger = await loadOrCreateSecretKey(join(root, "stranger", "secret.key"));
    await assert.rejects(
      ensureBootstrap(store, { secretKey: stranger, trustDomain: TD }),
      hasCode(ErrorCode.CONFIG, /the secret file does not match the one this mesh was created with/),
    );
    // ... and did not replace anything: the right key still works.
    const a = await ensureBootstrap(store, { secretKey: keyA, trustDomain: TD });
    assert.equal(a.createdCa, false);
  });

  it("a replica configured with another trust domain is refused", async () => {
    await assert.rejects(
      ensureBootstrap(store, { secretKey: keyA, trustDomain: "other.example" }),
      hasCode(ErrorCode.CONFIG, /created with trust domain "cluster.local".*"other.example"/),
    );
    await assert.rejects(
      ensureBootstrap(store, { secretKey: keyA, trustDomain: "Bad_Domain:1" }),
      hasCode(ErrorCode.CONFIG, /trust domain/),
    );
  });

  it("a deleted admin token is re-created next to the existing CA (rotation by deletion)", async () => {
    const before = await ensureBootstrap(store, { secretKey: keyA, trustDomain: TD });
    await store.delete(ADMIN_TOKEN_KEY);
    const [x, y] = await Promise.all([
      ensureBootstrap(store, { secretKey: keyA, trustDomain: TD }),
      ensureBootstrap(store, { secretKey: keyB, trustDomain: TD }),
    ]);
    assert.equal(x.adminToken, y.adminToken);
    assert.notEqual(x.adminToken, before.adminToken);
    assert.equal(x.caCertPem, before.caCertPem);
    assert.equal(x.createdCa || y.createdCa, false);
    assert.equal([x.createdAdminToken, y.createdAdminToken].filter(Boolean).length, 1);
  });

  it("an expired stored CA is a CONFIG error, not a silently bad certificate", async () => {
    const isolated = await openIsolatedStore();
    const t0 = new Date("2030-01-01T00:00:00Z");
    await ensureBootstrap(isolated, { secretKey: keyA, trustDomain: TD, now: t0, caTtlMs: 3600_000 });
    await assert.rejects(
      ensureBootstrap(isolated, {
        secretKey: keyA,
        trustDomain: TD,
        now: new Date(t0.getTime() + 2 * 3600_000),
      }),
      hasCode(ErrorCode.CONFIG, /expired/),
    );
  });

  it("a corrupted record is a CONFIG error naming the key", async () => {
    const isolated = await openIsolatedStore();
    await isolated.put(BOOTSTRAP_CA_KEY, new TextEncoder().encode("{not json"));
    await assert.rejects(
      ensureBootstrap(isolated, { secretKey: keyA, trustDomain: TD }),
      hasCode(ErrorCode.CONFIG, /\/trellis\/v1\/security\/ca is unreadable/),
    );
  });

  const isolatedStores: (() => Promise<void>)[] = [];
  async function openIsolatedStore(): Promise<Store> {
    const opened = await openStore(makeTempDir("bootstrap-iso"));
    isolatedStores.push(opened.close);
    return opened.store;
  }
  after(async () => {
    for (const close of isolatedStores) await close();
  });
});

describe("state files and client config", () => {
  const home = tempHome();
  after(() => home.cleanup());

  it("writes <state-dir>/ca.pem 0644 in a new 0700 state dir, replacing an older one", async () => {
    const stateDir = defaultStateDir(home.dir);
    assert.equal(stateDir, join(home.dir, ".trellis", "control-plane"));
    const { caFile } = await writeStateFiles(stateDir, CERT_A);
    assert.equal(caFile, join(stateDir, "ca.pem"));
    assert.equal(await readFile(caFile, "utf8"), CERT_A);
    assert.equal((await stat(caFile)).mode & 0o777, 0o644);
    assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
    assert.equal((await stat(join(home.dir, ".trellis"))).mode & 0o777, 0o700);
    await writeStateFiles(stateDir, CERT_B);
    assert.equal(await readFile(caFile, "utf8"), CERT_B);
    await assert.rejects(writeStateFiles(stateDir, "no pem here"), hasCode(ErrorCode.INVALID_ARGUMENT));
  });

  it("writes ~/.trellis/config 0600 and reads it back; an existing world-readable file is tightened", async () => {
    const path = clientConfigPath(home.dir);
    assert.equal(path, join(home.dir, ".trellis", "config"));
    assert.equal(await readClientConfig(home.dir), undefined, "no config yet");
    await mkdir(join(home.dir, ".trellis"), { recursive: true });
    await writeFile(path, "{}", { mode: 0o644 });
    const config = { controlPlane: "127.0.0.1:15010", caPem: CERT_A, token: "trellis-admin.abc" };
    assert.equal(await writeClientConfig(home.dir, config), path);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(await readClientConfig(home.dir), config);
    const doc = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
    assert.equal(doc.apiVersion, "trellis.dev/v1");
    assert.equal(doc.kind, "ClientConfig");
  });

  it("a new HOME gets ~/.trellis created 0700", async () => {
    const other = tempHome();
    try {
      await writeClientConfig(other.dir, { controlPlane: "h:1", caPem: CERT_A, token: "t" });
      assert.equal((await stat(join(other.dir, ".trellis"))).mode & 0o777, 0o700);
      assert.equal((await stat(clientConfigPath(other.dir))).mode & 0o777, 0o600);
    } finally {
      await other.cleanup();
    }
  });

  const badConfigs: { name: string; text: string; message: RegExp }[] = [
    { name: "not JSON", text: "controlPlane: x", message: /not valid JSON/ },
    { name: "an array", text: "[]", message: /must be a JSON object/ },
    {
      name: "another kind",
      text: '{"apiVersion":"trellis.dev/v1","kind":"Other"}',
      message: /kind ClientConfig/,
    },
    {
      name: "a missing token",
      text: '{"apiVersion":"trellis.dev/v1","kind":"ClientConfig","controlPlane":"h:1","caPem":"x"}',
      message: /token must be a non-empty string/,
    },
  ];
  for (const { name, text, message } of badConfigs) {
    it(`reading a config that is ${name} is a CONFIG error naming the file`, async () => {
      const h = tempHome();
      try {
        await mkdir(join(h.dir, ".trellis"));
        await writeFile(clientConfigPath(h.dir), text);
        await assert.rejects(readClientConfig(h.dir), (err: unknown) => {
          hasCode(ErrorCode.CONFIG, message)(err);
          assert.ok((err as Error).message.includes(clientConfigPath(h.dir)));
          return true;
        });
      } finally {
        await h.cleanup();
      }
    });
  }

  it("refuses to write a config with an empty field", async () => {
    await assert.rejects(
      writeClientConfig(home.dir, { controlPlane: "", caPem: CERT_A, token: "t" }),
      hasCode(ErrorCode.INVALID_ARGUMENT, /controlPlane/),
    );
  });
});

// Two syntactically valid certificate blocks for the file tests (content is not parsed there).
const CERT_A = "-----BEGIN CERTIFICATE-----\nQUFBQQ==\n-----END CERTIFICATE-----\n";
const CERT_B = "-----BEGIN CERTIFICATE-----\nQkJCQg==\n-----END CERTIFICATE-----\n";
