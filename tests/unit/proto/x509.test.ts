import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import * as tls from "node:tls";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import {
  type CaPem,
  CLOCK_SKEW_MS,
  type CreatedCa,
  createCsr,
  createSelfSignedCa,
  exportPrivateKeyPem,
  generateKeyPair,
  importKeyPairPem,
  importPrivateKeyPem,
  issueCertificate,
  parseCertificate,
  signCsr,
  spiffeIdFromPeerCertificate,
  splitPemBundle,
  verifyChain,
} from "@trellis/proto/x509";
import { closeServer, listen } from "../../helpers/servers.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const SERVER_ID = "spiffe://cluster.local/ns/mesh/sa/server";
const CLIENT_ID = "spiffe://cluster.local/ns/prod/sa/frontend";

/** X.509 times have one-second precision; tests that compare dates inject a whole-second clock. */
function wholeSecond(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}

function hasCode(code: ErrorCode, message?: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof TrellisError && err.code === code && (message?.test(err.message) ?? true);
}

/** Connects with `opts`, resolves on secureConnect; rejects on error or close before it. */
function connectTls(opts: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(opts);
    const onError = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.once("error", onError);
    socket.once("close", () => reject(new Error("closed before secureConnect")));
    socket.once("secureConnect", () => {
      socket.off("error", onError);
      resolve(socket);
    });
  });
}

/** Writes `line` and reads until the first newline; what a user of the connection would see. */
async function roundTrip(socket: tls.TLSSocket, line: string): Promise<string> {
  let buf = "";
  const got = new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl !== -1) {
        socket.off("data", onData);
        resolve(buf.slice(0, nl));
      }
    };
    socket.on("data", onData);
    socket.once("error", reject);
    socket.once("end", () => reject(new Error(`connection ended after ${JSON.stringify(buf)}`)));
    socket.once("close", () => reject(new Error(`connection closed after ${JSON.stringify(buf)}`)));
  });
  socket.write(`${line}\n`);
  return got;
}

/** Closes a client socket and waits until it is gone. */
async function closeSocket(socket: tls.TLSSocket): Promise<void> {
  if (socket.destroyed) return;
  const closed = once(socket, "close");
  socket.end();
  socket.destroySoon();
  await closed;
}

/**
 * A mutual-TLS echo server: for each line it answers `<client spiffe id> <line>`, the way a sidecar
 * reads the verified peer identity right after the handshake.
 */
function mtlsEchoServer(ca: CaPem, leaf: { certPem: string; keyPem: string }): tls.Server {
  const server = tls.createServer({
    key: leaf.keyPem,
    cert: leaf.certPem,
    ca: ca.certPem,
    requestCert: true,
    rejectUnauthorized: true,
  });
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    const peer = spiffeIdFromPeerCertificate(socket.getPeerCertificate()) ?? "<none>";
    let buf = "";
    socket.on("data", (chunk: Buffer) => {
      buf += chunk.toString("utf8");
      for (let nl = buf.indexOf("\n"); nl !== -1; nl = buf.indexOf("\n")) {
        socket.write(`${peer} ${buf.slice(0, nl)}\n`);
        buf = buf.slice(nl + 1);
      }
    });
    socket.on("error", () => {});
  });
  return server;
}

let ca: CreatedCa;
let serverLeaf: { certPem: string; keyPem: string };
let clientLeaf: { certPem: string; keyPem: string };

before(async () => {
  ca = await createSelfSignedCa({ commonName: "Trellis test root", ttlMs: DAY });
  serverLeaf = await issueCertificate({
    ca,
    ttlMs: HOUR,
    spiffeId: SERVER_ID,
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
  });
  clientLeaf = await issueCertificate({ ca, ttlMs: HOUR, spiffeId: CLIENT_ID });
});

describe("mutual TLS with certificates from this module", { timeout: 20_000 }, () => {
  let server: tls.Server;
  let port: number;

  before(async () => {
    server = mtlsEchoServer(ca, serverLeaf);
    port = await listen(server);
  });
  after(async () => {
    await closeServer(server);
  });

  it("completes a handshake both ways and the server reads the client's SPIFFE id", async () => {
    const socket = await connectTls({
      host: "127.0.0.1",
      port,
      ca: ca.certPem,
      key: clientLeaf.keyPem,
      cert: clientLeaf.certPem,
    });
    try {
      assert.equal(socket.authorized, true);
      assert.equal(spiffeIdFromPeerCertificate(socket.getPeerCertificate()), SERVER_ID);
      assert.equal(await roundTrip(socket, "hello"), `${CLIENT_ID} hello`);
    } finally {
      await closeSocket(socket);
    }
  });

  it("rejects a client whose certificate comes from another CA", async () => {
    const otherCa = await createSelfSignedCa({ commonName: "Trellis test root", ttlMs: DAY });
    const intruder = await issueCertificate({ ca: otherCa, ttlMs: HOUR, spiffeId: CLIENT_ID });
    let accepted = 0;
    const onAccept = (): void => {
      accepted++;
    };
    server.on("secureConnection", onAccept);
    const serverSaw = once(server, "tlsClientError") as Promise<[Error, tls.TLSSocket]>;
    // TLS 1.3: the client finishes its side of the handshake before the server has checked the
    // client certificate, so connect may succeed; the server then drops the connection and no
    // answer must ever come back.
    const outcome = connectTls({
      host: "127.0.0.1",
      port,
      ca: ca.certPem,
      key: intruder.keyPem,
      cert: intruder.certPem,
    }).then(
      async (socket) => {
        try {
          return await roundTrip(socket, "let me in");
        } catch (err) {
          return err as Error;
        } finally {
          socket.destroy();
        }
      },
      (err: unknown) => err as Error,
    );
    try {
      // Node destroys the socket without a TLS alert ("socket hang up"); the reason is on the socket.
      const [, rejected] = await serverSaw;
      assert.equal(rejected.authorized, false);
      assert.equal(rejected.authorizationError, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
      const result = await outcome;
      assert.ok(result instanceof Error, `intruder got an answer: ${String(result)}`);
      assert.equal(accepted, 0);
    } finally {
      server.off("secureConnection", onAccept);
    }
  });

  it("makes the client refuse a server whose certificate comes from another CA", async () => {
    const otherCa = await createSelfSignedCa({ commonName: "Trellis test root", ttlMs: DAY });
    const impostor = await issueCertificate({
      ca: otherCa,
      ttlMs: HOUR,
      spiffeId: SERVER_ID,
      ipAddresses: ["127.0.0.1"],
    });
    const fake = mtlsEchoServer(otherCa, impostor);
    const fakePort = await listen(fake);
    try {
      await assert.rejects(
        connectTls({
          host: "127.0.0.1",
          port: fakePort,
          ca: ca.certPem,
          key: clientLeaf.keyPem,
          cert: clientLeaf.certPem,
        }),
        // The impostor's server sends its own root along (OpenSSL adds it from `ca`), hence this code.
        (err: NodeJS.ErrnoException) =>
          err.code === "SELF_SIGNED_CERT_IN_CHAIN" || err.code === "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
      );
    } finally {
      await closeServer(fake);
    }
  });

  it("works with a chain root → intermediate → leaf sent by the server", async () => {
    const root = await createSelfSignedCa({ commonName: "Trellis chain root", ttlMs: DAY, pathLength: 1 });
    const mid = await intermediateOf(root, "Trellis chain intermediate");
    const leaf = await issueCertificate({
      ca: mid,
      ttlMs: HOUR,
      spiffeId: SERVER_ID,
      ipAddresses: ["127.0.0.1"],
    });
    const client = await issueCertificate({ ca: mid, ttlMs: HOUR, spiffeId: CLIENT_ID });
    const chained = mtlsEchoServer(root, { certPem: leaf.certPem + mid.certPem, keyPem: leaf.keyPem });
    const chainedPort = await listen(chained);
    try {
      const socket = await connectTls({
        host: "127.0.0.1",
        port: chainedPort,
        ca: root.certPem,
        key: client.keyPem,
        cert: client.certPem + mid.certPem,
      });
      try {
        assert.equal(await roundTrip(socket, "via intermediate"), `${CLIENT_ID} via intermediate`);
      } finally {
        await closeSocket(socket);
      }
    } finally {
      await closeServer(chained);
    }
  });
});

describe("certificate rotation with server.setSecureContext", { timeout: 20_000 }, () => {
  it("new connections get the new leaf while an existing connection stays up", async () => {
    const first = await issueCertificate({
      ca,
      ttlMs: HOUR,
      spiffeId: SERVER_ID,
      ipAddresses: ["127.0.0.1"],
    });
    const second = await issueCertificate({
      ca,
      ttlMs: 2 * HOUR,
      spiffeId: SERVER_ID,
      ipAddresses: ["127.0.0.1"],
    });
    const server = mtlsEchoServer(ca, first);
    const port = await listen(server);
    const client = {
      host: "127.0.0.1",
      port,
      ca: ca.certPem,
      key: clientLeaf.keyPem,
      cert: clientLeaf.certPem,
    };
    const sockets: tls.TLSSocket[] = [];
    try {
      const old = await connectTls(client);
      sockets.push(old);
      assert.equal(old.getPeerCertificate().serialNumber, parseCertificate(first.certPem).serialNumber);

      server.setSecureContext({ key: second.keyPem, cert: second.certPem, ca: ca.certPem });

      const fresh = await connectTls(client);
      sockets.push(fresh);
      const freshSerial = fresh.getPeerCertificate().serialNumber;
      assert.equal(freshSerial, parseCertificate(second.certPem).serialNumber);
      assert.notEqual(freshSerial, parseCertificate(first.certPem).serialNumber);
      // requestCert/rejectUnauthorized are server options, not context ones: still enforced.
      assert.equal(await roundTrip(fresh, "new"), `${CLIENT_ID} new`);

      assert.equal(await roundTrip(old, "still here"), `${CLIENT_ID} still here`);
      assert.equal(old.getPeerCertificate().serialNumber, parseCertificate(first.certPem).serialNumber);
    } finally {
      for (const s of sockets) await closeSocket(s);
      await closeServer(server);
    }
  });
});

describe("signCsr", () => {
  it("refuses a CSR whose signed content was altered", async () => {
    const keys = await generateKeyPair();
    const csrPem = await createCsr({ keys, spiffeId: "spiffe://cluster.local/ns/prod/sa/aaaa" });
    // Same-length edit inside the requested SAN keeps the DER well-formed; only the signature breaks.
    const der = pemBody(csrPem);
    const at = der.indexOf("sa/aaaa");
    assert.ok(at > 0);
    der.write("sa/root", at, "latin1");
    const tampered = toPem(der, "CERTIFICATE REQUEST");
    await assert.rejects(
      signCsr({ csrPem: tampered, ca, ttlMs: HOUR, spiffeId: CLIENT_ID }),
      hasCode(ErrorCode.INVALID_ARGUMENT, /CSR signature does not verify/),
    );
    // The untouched CSR is fine: the failure above is the tampering, not the setup.
    await signCsr({ csrPem, ca, ttlMs: HOUR, spiffeId: CLIENT_ID });
  });

  it("refuses something that is not a CSR", async () => {
    await assert.rejects(
      signCsr({ csrPem: ca.certPem, ca, ttlMs: HOUR, spiffeId: CLIENT_ID }),
      hasCode(ErrorCode.INVALID_ARGUMENT, /not a valid PKCS#10/),
    );
  });

  it("issues the identity the issuer passes, not the one the CSR asks for", async () => {
    const keys = await generateKeyPair();
    const csrPem = await createCsr({
      keys,
      spiffeId: "spiffe://cluster.local/ns/kube-system/sa/admin",
      dnsNames: ["admin.example.com"],
      commonName: "admin.example.com",
    });
    const info = parseCertificate(await signCsr({ csrPem, ca, ttlMs: HOUR, spiffeId: CLIENT_ID }));
    assert.deepEqual(info.spiffeIds, [CLIENT_ID]);
    assert.deepEqual(info.dnsNames, []);
    assert.equal(info.subject, "");
    assert.equal(info.isCa, false);
    assert.equal(info.issuer, "CN=Trellis test root");

    const dnsOnly = parseCertificate(await signCsr({ csrPem, ca, ttlMs: HOUR, dnsNames: ["web.prod.svc"] }));
    assert.deepEqual(dnsOnly.spiffeIds, []);
    assert.deepEqual(dnsOnly.dnsNames, ["web.prod.svc"]);
  });

  it("respects ttlMs, backdates notBefore, and never outlives the CA", async () => {
    const now = wholeSecond(Date.now());
    const short = parseCertificate(
      (await issueCertificate({ ca, ttlMs: 2 * HOUR, spiffeId: CLIENT_ID, now })).certPem,
    );
    assert.equal(short.notAfter.getTime(), now.getTime() + 2 * HOUR);
    assert.equal(short.notBefore.getTime(), now.getTime() - CLOCK_SKEW_MS);

    const caNow = wholeSecond(Date.now());
    const shortCa = await createSelfSignedCa({
      commonName: "short-lived root",
      ttlMs: 30 * 60_000,
      now: caNow,
    });
    assert.equal(shortCa.cert.notAfter.getTime(), caNow.getTime() + 30 * 60_000);
    const capped = parseCertificate(
      (await issueCertificate({ ca: shortCa, ttlMs: DAY, spiffeId: CLIENT_ID })).certPem,
    );
    assert.equal(capped.notAfter.getTime(), shortCa.cert.notAfter.getTime());
    assert.ok(capped.notBefore.getTime() >= shortCa.cert.notBefore.getTime());
    assert.equal(
      verifyChain(
        (await issueCertificate({ ca: shortCa, ttlMs: DAY, spiffeId: CLIENT_ID })).certPem,
        [],
        [shortCa.certPem],
      ),
      true,
    );

    await assert.rejects(
      issueCertificate({
        ca: shortCa,
        ttlMs: HOUR,
        spiffeId: CLIENT_ID,
        now: new Date(caNow.getTime() + HOUR),
      }),
      hasCode(ErrorCode.CONFIG, /CA certificate expired/),
    );
  });

  it("issues leaves with the X.509-SVID profile and a fresh 128-bit serial each time", async () => {
    const a = parseCertificate((await issueCertificate({ ca, ttlMs: HOUR, spiffeId: CLIENT_ID })).certPem);
    const b = parseCertificate((await issueCertificate({ ca, ttlMs: HOUR, spiffeId: CLIENT_ID })).certPem);
    assert.notEqual(a.serialNumber, b.serialNumber);
    // 16 bytes, positive, no leading zero byte; the first byte may still print as 0X.
    assert.match(a.serialNumber, /^(0[1-9A-F]|[1-7][0-9A-F])[0-9A-F]{30}$/);
    assert.equal(a.isCa, false);
  });

  it("refuses bad issuer arguments and an unusable CA", async () => {
    const csrPem = await createCsr({ keys: await generateKeyPair() });
    const cases: Array<[Parameters<typeof signCsr>[0], ErrorCode, RegExp]> = [
      [{ csrPem, ca, ttlMs: HOUR }, ErrorCode.INVALID_ARGUMENT, /leaf needs at least one of/],
      [{ csrPem, ca, ttlMs: 0, spiffeId: CLIENT_ID }, ErrorCode.INVALID_ARGUMENT, /ttlMs must be a positive/],
      [
        { csrPem, ca, ttlMs: HOUR, spiffeId: "spiffe://td/ns/../sa/x" },
        ErrorCode.INVALID_ARGUMENT,
        /path segment '\.\.'/,
      ],
      [{ csrPem, ca, ttlMs: HOUR, dnsNames: ["bad name"] }, ErrorCode.INVALID_ARGUMENT, /is not a DNS name/],
      [
        { csrPem, ca, ttlMs: HOUR, ipAddresses: ["300.1.1.1"] },
        ErrorCode.INVALID_ARGUMENT,
        /is not an IP address/,
      ],
      [{ csrPem, ca, ttlMs: HOUR, isCa: true }, ErrorCode.INVALID_ARGUMENT, /needs a commonName/],
      [
        { csrPem, ca: { certPem: ca.certPem, keyPem: serverLeaf.keyPem }, ttlMs: HOUR, spiffeId: CLIENT_ID },
        ErrorCode.CONFIG,
        /does not match the CA certificate/,
      ],
      [
        {
          csrPem,
          ca: { certPem: serverLeaf.certPem, keyPem: serverLeaf.keyPem },
          ttlMs: HOUR,
          spiffeId: CLIENT_ID,
        },
        ErrorCode.CONFIG,
        /is not a CA/,
      ],
    ];
    for (const [opts, code, message] of cases) {
      await assert.rejects(signCsr(opts), hasCode(code, message), message.source);
    }
  });
});

describe("verifyChain", () => {
  it("follows root → intermediate → leaf and fails without the link, with the wrong root, or out of time", async () => {
    const root = await createSelfSignedCa({ commonName: "root", ttlMs: DAY });
    const mid = await intermediateOf(root, "intermediate");
    const leaf = (await issueCertificate({ ca: mid, ttlMs: HOUR, spiffeId: CLIENT_ID })).certPem;
    assert.equal(verifyChain(leaf, [mid.certPem], [root.certPem]), true);
    assert.equal(verifyChain(leaf, [], [root.certPem]), false);
    assert.equal(verifyChain(leaf, [mid.certPem], [ca.certPem]), false);
    assert.equal(verifyChain(leaf, [mid.certPem], [root.certPem], new Date(Date.now() + 2 * HOUR)), false);
    assert.equal(verifyChain(leaf, [mid.certPem], [root.certPem], new Date(Date.now() - HOUR)), false);
    assert.equal(verifyChain("not a pem", [], [root.certPem]), false);
  });

  it("accepts both roots during a rotation, even when they share a name", async () => {
    const oldRoot = await createSelfSignedCa({ commonName: "Trellis root", ttlMs: DAY });
    const newRoot = await createSelfSignedCa({ commonName: "Trellis root", ttlMs: DAY });
    const oldLeaf = (await issueCertificate({ ca: oldRoot, ttlMs: HOUR, spiffeId: CLIENT_ID })).certPem;
    const newLeaf = (await issueCertificate({ ca: newRoot, ttlMs: HOUR, spiffeId: CLIENT_ID })).certPem;
    const bundle = oldRoot.certPem + newRoot.certPem;
    assert.equal(verifyChain(oldLeaf, [], [bundle]), true);
    assert.equal(verifyChain(newLeaf, [], [bundle]), true);
    assert.equal(verifyChain(newLeaf, [], [oldRoot.certPem]), false);
  });

  it("enforces the root's pathLength", async () => {
    // signCsr refuses to issue below a pathLength-0 CA, so issue first and then re-create the root
    // on the same key with pathLength 0: only the constraint differs.
    const open = await createSelfSignedCa({ commonName: "no intermediates", ttlMs: DAY });
    const mid = await intermediateOf(open, "forbidden intermediate");
    const root = await createSelfSignedCa({
      commonName: "no intermediates",
      ttlMs: DAY,
      keys: open.keys,
      pathLength: 0,
    });
    assert.equal(
      verifyChain(
        (await issueCertificate({ ca: mid, ttlMs: HOUR, spiffeId: CLIENT_ID })).certPem,
        [mid.certPem],
        [open.certPem],
      ),
      true,
    );
    await assert.rejects(intermediateOf(root, "refused"), hasCode(ErrorCode.CONFIG, /pathLength 0/));
    const leaf = (await issueCertificate({ ca: mid, ttlMs: HOUR, spiffeId: CLIENT_ID })).certPem;
    assert.equal(verifyChain(leaf, [mid.certPem], [root.certPem]), false);
    const direct = (await issueCertificate({ ca: root, ttlMs: HOUR, spiffeId: CLIENT_ID })).certPem;
    assert.equal(verifyChain(direct, [], [root.certPem]), true);
  });
});

describe("spiffeIdFromPeerCertificate", () => {
  const cases: Array<[string | undefined, string | undefined]> = [
    [`URI:${CLIENT_ID}`, CLIENT_ID],
    [`DNS:web.prod.svc, URI:${CLIENT_ID}, IP Address:10.0.0.1`, CLIENT_ID],
    [`URI:${CLIENT_ID}, URI:spiffe://cluster.local/ns/prod/sa/other`, undefined],
    ["URI:https://example.com/", undefined],
    ["URI:spiffe://cluster.local/ns/../sa/x", undefined],
    ["DNS:web.prod.svc", undefined],
    ["", undefined],
    [undefined, undefined],
    // Node quotes a value containing ", " (JSON string); it must not be read as a second entry.
    ['DNS:"x, URI:spiffe://cluster.local/ns/kube-system/sa/admin"', undefined],
    [`DNS:"x, URI:spiffe://cluster.local/ns/kube-system/sa/admin", URI:${CLIENT_ID}`, CLIENT_ID],
  ];
  for (const [san, want] of cases) {
    it(`${JSON.stringify(san)} → ${want ?? "undefined"}`, () => {
      const cert = (san === undefined ? {} : { subjectaltname: san }) as tls.PeerCertificate;
      assert.equal(spiffeIdFromPeerCertificate(cert), want);
    });
  }
});

describe("keys, PEM and parsing", () => {
  it("round-trips a private key through PKCS#8 PEM and signs with the imported pair", async () => {
    const keys = await generateKeyPair();
    const pem = await exportPrivateKeyPem(keys.privateKey);
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
    const again = await exportPrivateKeyPem(await importPrivateKeyPem(pem));
    assert.equal(again, pem);
    // A CA re-created on a reloaded key still verifies certificates issued by the old CA cert.
    const reloaded = await importKeyPairPem(ca.keyPem);
    const reissued = await createSelfSignedCa({
      commonName: "Trellis test root",
      ttlMs: DAY,
      keys: reloaded,
    });
    assert.equal(verifyChain(clientLeaf.certPem, [], [reissued.certPem]), true);
  });

  it("accepts a SEC1 EC key and refuses a non-P-256 key", async () => {
    const { createPrivateKey, generateKeyPairSync } = await import("node:crypto");
    const sec1 = createPrivateKey(ca.keyPem).export({ type: "sec1", format: "pem" }).toString();
    assert.equal(await exportPrivateKeyPem(await importPrivateKeyPem(sec1)), ca.keyPem);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({
      type: "pkcs8",
      format: "pem",
    });
    await assert.rejects(importPrivateKeyPem(rsa.toString()), hasCode(ErrorCode.INVALID_ARGUMENT, /P-256/));
    await assert.rejects(importPrivateKeyPem("garbage"), hasCode(ErrorCode.INVALID_ARGUMENT));
  });

  it("parses the fields a user looks at", () => {
    const info = parseCertificate(serverLeaf.certPem);
    assert.deepEqual(info.spiffeIds, [SERVER_ID]);
    assert.deepEqual(info.dnsNames, ["localhost"]);
    assert.deepEqual(info.ipAddresses, ["127.0.0.1"]);
    assert.equal(info.isCa, false);
    assert.equal(parseCertificate(ca.certPem).isCa, true);
    assert.equal(parseCertificate(ca.certPem).subject, "CN=Trellis test root");
    assert.throws(() => parseCertificate("nope"), hasCode(ErrorCode.INVALID_ARGUMENT));
  });

  it("keeps a CN with DN syntax in it as one attribute", async () => {
    const odd = await createSelfSignedCa({ commonName: "root, O=Evil+OU=x", ttlMs: HOUR });
    assert.equal(odd.cert.subjectName.getField("O").length, 0);
    assert.deepEqual(odd.cert.subjectName.getField("CN"), ["root, O=Evil+OU=x"]);
  });

  it("splits a bundle into its certificates, skipping other blocks", () => {
    const bundle = `${ca.certPem}\n${serverLeaf.keyPem}junk\n${serverLeaf.certPem}`;
    const parts = splitPemBundle(bundle);
    assert.equal(parts.length, 2);
    assert.equal(parseCertificate(parts[0]!).serialNumber, parseCertificate(ca.certPem).serialNumber);
    assert.equal(parseCertificate(parts[1]!).serialNumber, parseCertificate(serverLeaf.certPem).serialNumber);
    assert.deepEqual(splitPemBundle("no pem here"), []);
  });
});

async function intermediateOf(root: CaPem, commonName: string): Promise<CaPem> {
  const keys = await generateKeyPair();
  const certPem = await signCsr({
    csrPem: await createCsr({ keys }),
    ca: root,
    ttlMs: DAY / 2,
    isCa: true,
    commonName,
  });
  return { certPem, keyPem: await exportPrivateKeyPem(keys.privateKey) };
}

function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
}

function toPem(der: Buffer, tag: string): string {
  const b64 = der.toString("base64").replace(/.{1,64}/g, "$&\n");
  return `-----BEGIN ${tag}-----\n${b64}-----END ${tag}-----\n`;
}
