// Big bodies through the mesh without big memory: 100 MB streamed up to a slow app, and 100 MB
// streamed down to a slow client, through a client sidecar → server sidecar chain, while each
// sidecar's resident memory (VmRSS from /proc, sampled every 100 ms) grows by at most 50 MB.
// A proxy that buffered a body (instead of letting backpressure reach the sender) would grow by
// about the body's size: the readers here are slower than the writers on purpose.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import * as http from "node:http";
import { after, before, describe, it, type TestContext } from "node:test";
import { type Chain, rssBytes, sampleRss, sidecarPid, startChain } from "../../fixtures/sidecar/chain.js";
import { closeServer, listen } from "../../helpers/servers.js";
import { withDeadline } from "../../helpers/wait.js";

const MB = 1024 * 1024;
const TOTAL = 100 * MB;
const BLOCK = randomBytes(64 * 1024);
const RSS_LIMIT = 50 * MB;
/** The slow side reads or writes 1 MiB, then pauses this long: at most ~50 MB/s. */
const PAUSE_MS = 20;

/** Writes `total` bytes of BLOCK copies to `out`, honouring backpressure; returns the SHA-256. */
async function writeBlocks(
  out: NodeJS.WritableStream,
  total: number,
  onWrite?: (n: number) => void,
): Promise<string> {
  const h = createHash("sha256");
  let sent = 0;
  while (sent < total) {
    const chunk = total - sent >= BLOCK.length ? BLOCK : BLOCK.subarray(0, total - sent);
    h.update(chunk);
    sent += chunk.length;
    onWrite?.(sent);
    if (!out.write(chunk)) await new Promise((r) => out.once("drain", r));
  }
  return h.digest("hex");
}

/** Reads `stream` slowly (PAUSE_MS after each MiB); resolves with the byte count and SHA-256. */
function readSlowly(
  stream: NodeJS.ReadableStream & { pause(): unknown; resume(): unknown },
  onRead?: (n: number) => void,
): Promise<{ length: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    let length = 0;
    let sincePause = 0;
    stream.on("data", (c: Buffer) => {
      h.update(c);
      length += c.length;
      sincePause += c.length;
      onRead?.(length);
      if (sincePause >= MB) {
        sincePause = 0;
        stream.pause();
        setTimeout(() => stream.resume(), PAUSE_MS);
      }
    });
    stream.on("end", () => resolve({ length, sha256: h.digest("hex") }));
    stream.on("error", reject);
  });
}

describe("sidecar chain: 100 MB bodies stream with bounded memory", () => {
  let chain: Chain;
  let app: http.Server;
  let authority = "";
  let pids: { client: number; server: number };
  /** Bytes the app has read of the current upload / written of the current download. */
  let appRead = 0;
  let appWritten = 0;
  /** Each sidecar's RSS after the warm-up: growth is measured from here, for both transfers. */
  let warm: { client: number; server: number };

  before(async () => {
    app = http.createServer((req, res) => {
      if (req.url?.startsWith("/sink")) {
        appRead = 0;
        void readSlowly(req, (n) => {
          appRead = n;
        }).then((r) => res.end(JSON.stringify(r)));
        return;
      }
      if (req.url?.startsWith("/source")) {
        const bytes = Number(new URL(req.url, "http://x").searchParams.get("bytes"));
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(bytes) });
        appWritten = 0;
        void writeBlocks(res, bytes, (n) => {
          appWritten = n;
        }).then(() => res.end());
        return;
      }
      res.writeHead(404).end();
    });
    const appPort = await listen(app);
    authority = `orders.shop:${appPort}`;
    chain = await startChain(String(appPort));
    pids = { client: sidecarPid(chain.client), server: sidecarPid(chain.server) };
    // Warm-up (route subscription, connection pools, JIT) so the baseline is a running sidecar's.
    await upload(4 * MB);
    await download(4 * MB);
    warm = { client: rssBytes(pids.client), server: rssBytes(pids.server) };
  });

  after(async () => {
    await chain?.stop();
    if (app !== undefined) await closeServer(app, { timeoutMs: 1000 });
  });

  /** POSTs `bytes` through the web sidecar to the slow-reading app. */
  function upload(
    bytes: number,
    onWrite?: (n: number) => void,
  ): Promise<{ sent: string; got: { length: number; sha256: string } }> {
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: "127.0.0.1",
        port: chain.client.ports.outbound,
        method: "POST",
        path: `http://${authority}/sink`,
        headers: { "content-type": "application/octet-stream", "content-length": String(bytes) },
        agent: false,
      });
      let sent = "";
      req.on("response", (res) => {
        let text = "";
        res.on("data", (c: Buffer) => {
          text += c.toString();
        });
        res.on("end", () => {
          try {
            resolve({ sent, got: JSON.parse(text) as { length: number; sha256: string } });
          } catch {
            reject(new Error(`status ${res.statusCode}: ${text}`));
          }
        });
      });
      req.on("error", reject);
      void writeBlocks(req, bytes, onWrite).then((h) => {
        sent = h;
        req.end();
      });
    });
  }

  /** GETs `bytes` from the app through the web sidecar, reading slowly. */
  function download(
    bytes: number,
    onRead?: (n: number) => void,
  ): Promise<{ length: number; sha256: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: chain.client.ports.outbound,
          path: `http://${authority}/source?bytes=${bytes}`,
          agent: false,
        },
        (res) => {
          if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
          readSlowly(res, onRead).then(resolve, reject);
        },
      );
      req.on("error", reject);
      req.end();
    });
  }

  function expectedSha(total: number): string {
    const h = createHash("sha256");
    for (let sent = 0; sent < total; sent += BLOCK.length)
      h.update(BLOCK.subarray(0, Math.min(BLOCK.length, total - sent)));
    return h.digest("hex");
  }

  /**
   * Peak RSS during a transfer minus the RSS after the warm-up. (Not minus the RSS just before the
   * transfer: that would hide whatever the earlier transfer left behind.)
   */
  function assertRss(t: TestContext, name: "client" | "server", r: { peak: number }): void {
    const grew = r.peak - warm[name];
    t.diagnostic(
      `${name} sidecar RSS +${(grew / MB).toFixed(1)} MB over warm (peak ${(r.peak / MB).toFixed(1)} MB)`,
    );
    assert.ok(
      grew <= RSS_LIMIT,
      `${name} sidecar RSS grew by ${(grew / MB).toFixed(1)} MB (warm ${(warm[name] / MB).toFixed(1)} MB, peak ${(r.peak / MB).toFixed(1)} MB)`,
    );
  }

  it("a 100 MB request body reaches a slow-reading app intact; backpressure reaches the client; each sidecar's RSS grows ≤ 50 MB", async (t) => {
    const client = sampleRss(pids.client);
    const server = sampleRss(pids.server);
    let maxInFlight = 0;
    const r = await withDeadline(
      upload(TOTAL, (written) => {
        maxInFlight = Math.max(maxInFlight, written - appRead);
      }),
      40_000,
      "100 MB upload",
    );
    const rc = client.stop();
    const rs = server.stop();
    assert.equal(r.got.length, TOTAL);
    assert.equal(r.got.sha256, r.sent);
    assertRss(t, "client", rc);
    assertRss(t, "server", rs);
    t.diagnostic(`client ran at most ${(maxInFlight / MB).toFixed(1)} MB ahead of the app`);
    // Without backpressure the client would finish writing while the app had read only ~half.
    assert.ok(maxInFlight <= 64 * MB, `client ran ${(maxInFlight / MB).toFixed(1)} MB ahead of the app`);
  });

  it("a 100 MB response body reaches a slow-reading client intact; each sidecar's RSS grows ≤ 50 MB", async (t) => {
    const client = sampleRss(pids.client);
    const server = sampleRss(pids.server);
    let maxInFlight = 0;
    const r = await withDeadline(
      download(TOTAL, (read) => {
        maxInFlight = Math.max(maxInFlight, appWritten - read);
      }),
      40_000,
      "100 MB download",
    );
    const rc = client.stop();
    const rs = server.stop();
    assert.equal(r.length, TOTAL);
    assert.equal(r.sha256, expectedSha(TOTAL));
    assertRss(t, "client", rc);
    assertRss(t, "server", rs);
    t.diagnostic(`the app ran at most ${(maxInFlight / MB).toFixed(1)} MB ahead of the client`);
    // Without backpressure the app would finish writing while the client had read only ~half.
    assert.ok(maxInFlight <= 64 * MB, `the app ran ${(maxInFlight / MB).toFixed(1)} MB ahead of the client`);
  });
});
