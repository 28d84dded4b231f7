// Hard to abuse: what reaches the app through a sidecar, and what a misbehaving client or app gets.
// Real control plane, real sidecar processes (run with --header-timeout 1s), real sockets. Requests
// "from the app" go to the web sidecar's outbound port (the mesh chain to orders); requests "from
// outside" go straight to the orders sidecar's inbound port (plaintext). The app is a raw TCP server
// that records every request head it receives (tests/fixtures/sidecar-hardening/ledger-app.ts).
//
// Decisions this file pins down (DESIGN §4, issue 4 §6):
//  - every malformed request gets a definite 4xx with `x-trellis-error: bad_request` and
//    `connection: close`, 431 for header size or count; nothing of it reaches the app;
//  - a Connection header may name hop-by-hop fields (they are stripped: `Connection: close,
//    x-secret` never delivers x-secret), but naming Content-Length, Transfer-Encoding or Host is an
//    attempt to make a proxy drop framing or the target, and gets 400;
//  - a transfer coding other than plain `chunked` gets 400 (we frame bodies ourselves);
//  - an `Upgrade` other than websocket is ignored, not refused: the request is served with Upgrade
//    and HTTP2-Settings stripped.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  entryValues,
  type LedgerApp,
  type LedgerEntry,
  startLedgerApp,
} from "../../fixtures/sidecar-hardening/ledger-app.js";
import { type HardeningMesh, startHardeningMesh } from "../../fixtures/sidecar-hardening/mesh.js";
import { headerValues, type RawResponse, rawExchange } from "../../fixtures/sidecar-hardening/raw-http.js";
import { waitFor } from "../../helpers/wait.js";

const HEADER_TIMEOUT_MS = 1000;
/** Node checks header deadlines once per connectionsCheckingInterval (1 s in the frontend). */
const CHECK_INTERVAL_MS = 1000;

interface Malformed {
  name: string;
  status: 400 | 431;
  /** The request bytes, for `host` and a unique `path`. */
  request: (host: string, path: string) => string;
}

const MANY_HEADERS = Array.from({ length: 3000 }, (_, i) => `X-H${i}: v\r\n`).join("");

const MALFORMED: readonly Malformed[] = [
  {
    name: "both Content-Length and Transfer-Encoding",
    status: 400,
    request: (h, p) =>
      `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
  },
  {
    name: "Transfer-Encoding then Content-Length",
    status: 400,
    request: (h, p) =>
      `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`,
  },
  {
    name: "duplicate Content-Length, same value",
    status: 400,
    request: (h, p) =>
      `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello`,
  },
  {
    name: "duplicate Content-Length, different values",
    status: 400,
    request: (h, p) =>
      `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`,
  },
  {
    name: "Content-Length as a list (5, 5)",
    status: 400,
    request: (h, p) => `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 5, 5\r\n\r\nhello`,
  },
  {
    name: "signed Content-Length +5",
    status: 400,
    request: (h, p) => `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: +5\r\n\r\nhello`,
  },
  {
    name: "signed Content-Length -1",
    status: 400,
    request: (h, p) => `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: -1\r\n\r\n`,
  },
  {
    name: "obs-fold (continuation line starting with a space)",
    status: 400,
    request: (h, p) => `GET ${p} HTTP/1.1\r\nHost: ${h}\r\nX-Folded: first\r\n  continued\r\n\r\n`,
  },
  {
    name: "obs-fold (continuation line starting with a tab)",
    status: 400,
    request: (h, p) => `GET ${p} HTTP/1.1\r\nHost: ${h}\r\nX-Folded: first\r\n\tcontinued\r\n\r\n`,
  },
  {
    name: "NUL in a header value",
    status: 400,
    request: (h, p) => `GET ${p} HTTP/1.1\r\nHost: ${h}\r\nX-Bad: a\u0000b\r\n\r\n`,
  },
  {
    name: "bare CR in a header value",
    status: 400,
    request: (h, p) => `GET ${p} HTTP/1.1\r\nHost: ${h}\r\nX-Bad: a\rb\r\n\r\n`,
  },
  {
    name: "whitespace before the colon (Transfer-Encoding : chunked)",
    status: 400,
    request: (h, p) =>
      `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello`,
  },
  {
    name: "oversized header block (70 KiB > the 60 KiB limit)",
    status: 431,
    request: (h, p) => `GET ${p} HTTP/1.1\r\nHost: ${h}\r\nX-Big: ${"a".repeat(70 * 1024)}\r\n\r\n`,
  },
  {
    name: "3,000 headers (> the 100 limit)",
    status: 431,
    request: (h, p) => `GET ${p} HTTP/1.1\r\nHost: ${h}\r\n${MANY_HEADERS}\r\n`,
  },
  {
    name: "Connection naming Content-Length",
    status: 400,
    request: (h, p) =>
      `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nConnection: close, Content-Length\r\nContent-Length: 5\r\n\r\nhello`,
  },
  {
    name: "Connection naming Transfer-Encoding",
    status: 400,
    request: (h, p) =>
      `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
  },
  {
    name: "Connection naming Host",
    status: 400,
    request: (h, p) => `GET ${p} HTTP/1.1\r\nHost: ${h}\r\nConnection: keep-alive, host\r\n\r\n`,
  },
  {
    name: "Transfer-Encoding: identity (final coding not chunked)",
    status: 400,
    request: (h, p) => `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding: identity\r\n\r\nhello`,
  },
  {
    name: "Transfer-Encoding: gzip, chunked (a coding we would silently drop)",
    status: 400,
    request: (h, p) =>
      `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
  },
  {
    name: "two Host headers",
    status: 400,
    request: (h, p) => `GET ${p} HTTP/1.1\r\nHost: ${h}\r\nHost: evil.example\r\n\r\n`,
  },
  {
    name: "HTTP/1.1 without Host",
    status: 400,
    request: (_h, p) => `GET ${p} HTTP/1.1\r\nX-No-Host: 1\r\n\r\n`,
  },
];

/** A plain GET that must reach the app (the positive control after each refused request). */
function goodRequest(host: string, path: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
}

function only(values: string[], what: string): string {
  assert.equal(values.length, 1, `${what}: ${JSON.stringify(values)}`);
  return values[0] as string;
}

describe("sidecar hardening: malformed requests, hop-by-hop headers, header timeout, upstream framing", () => {
  let app: LedgerApp;
  let mesh: HardeningMesh;
  let ports: { outbound: number; inbound: number };

  /** The ledger entries whose target starts with `prefix`. */
  const received = (prefix: string): LedgerEntry[] => app.ledger.filter((e) => e.target.startsWith(prefix));

  before(async () => {
    app = await startLedgerApp();
    mesh = await startHardeningMesh(app.port, ["--header-timeout", `${HEADER_TIMEOUT_MS}ms`]);
    ports = { outbound: mesh.client.ports.outbound, inbound: mesh.server.ports.inbound };
    // The web sidecar learns orders.shop on demand; wait until the chain delivers.
    await waitFor(
      async () => (await rawExchange(ports.outbound, goodRequest(mesh.authority, "/warmup"))).status === 200,
      { what: "the chain web → orders delivers", timeoutMs: 15_000, intervalMs: 100 },
    );
  });

  after(async () => {
    await mesh?.stop();
    await app?.close();
  });

  for (const via of ["outbound", "inbound"] as const) {
    describe(`malformed requests to the ${via} port get a definite 4xx and never reach the app`, () => {
      MALFORMED.forEach((c, i) => {
        it(`${c.name} → ${c.status}`, async () => {
          const bad = `/malformed/${via}/${i}`;
          const r = await rawExchange(ports[via], c.request(mesh.authority, bad));
          assert.equal(r.status, c.status, `status (closed=${r.closed}, body=${JSON.stringify(r.body)})`);
          assert.deepEqual(headerValues(r, "x-trellis-error"), ["bad_request"]);
          assert.ok(
            headerValues(r, "connection").some((v) => /close/i.test(v)),
            "the connection is closed after a refused request",
          );
          // Positive control: the sidecar still serves, and the app's ledger holds only the control.
          const good = `/control/${via}/${i}`;
          const ok = await rawExchange(ports[via], goodRequest(mesh.authority, good));
          assert.equal(ok.status, 200, ok.body);
          assert.deepEqual(received(`/malformed/${via}/${i}`), [], "the malformed request reached the app");
          assert.equal(received(good).length, 1, "the control request reached the app once");
        });
      });
    });
  }

  for (const via of ["outbound", "inbound"] as const) {
    it(`${via}: hop-by-hop request headers (Connection: close, x-secret; Keep-Alive, Proxy-Connection, TE, Upgrade, HTTP2-Settings) never reach the app; end-to-end ones do`, async () => {
      const path = `/hop-request/${via}`;
      const r = await rawExchange(
        ports[via],
        `GET ${path} HTTP/1.1\r\nHost: ${mesh.authority}\r\n` +
          "Connection: close, x-secret\r\n" +
          "X-Secret: must-not-arrive\r\n" +
          "Keep-Alive: timeout=77\r\n" +
          "Proxy-Connection: keep-alive\r\n" +
          "TE: trailers, deflate;q=0.5\r\n" +
          "Upgrade: h2c\r\n" +
          "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n" +
          "X-End-To-End: stays\r\n\r\n",
      );
      assert.equal(r.status, 200, r.body);
      const [e] = received(path);
      assert.ok(e !== undefined, "the request reached the app");
      assert.deepEqual(entryValues(e, "x-secret"), []);
      assert.ok(
        entryValues(e, "connection").every((v) => !/x-secret|close/i.test(v)),
        `connection as the app saw it: ${JSON.stringify(entryValues(e, "connection"))}`,
      );
      assert.deepEqual(entryValues(e, "keep-alive"), []);
      assert.deepEqual(entryValues(e, "proxy-connection"), []);
      assert.ok(
        entryValues(e, "te").every((v) => v === "trailers"),
        "TE, except trailers, is this hop's",
      );
      assert.deepEqual(entryValues(e, "upgrade"), []);
      assert.deepEqual(entryValues(e, "http2-settings"), []);
      assert.deepEqual(entryValues(e, "transfer-encoding"), []);
      assert.deepEqual(entryValues(e, "x-end-to-end"), ["stays"]);
    });

    it(`${via}: hop-by-hop response headers from the app (and the field its Connection names) never reach the client; the body is re-framed intact`, async () => {
      const r = await rawExchange(
        ports[via],
        `GET /hop HTTP/1.1\r\nHost: ${mesh.authority}\r\nConnection: close\r\n\r\n`,
      );
      assert.equal(r.status, 200);
      assert.equal(r.body, "hop-body");
      assert.deepEqual(headerValues(r, "x-kept"), ["yes"]);
      assert.deepEqual(headerValues(r, "x-resp-secret"), []);
      assert.ok(
        headerValues(r, "connection").every((v) => !/x-resp-secret/i.test(v)),
        JSON.stringify(headerValues(r, "connection")),
      );
      // The sidecar's own HTTP/1 server may announce its own keep-alive; the app's must not leak.
      assert.ok(headerValues(r, "keep-alive").every((v) => !/99|max=7/.test(v)));
      assert.deepEqual(headerValues(r, "proxy-connection"), []);
      assert.deepEqual(headerValues(r, "te"), []);
      assert.deepEqual(headerValues(r, "upgrade"), []);
      assert.deepEqual(headerValues(r, "http2-settings"), []);
    });

    it(`${via}: a chunked request body reaches the app intact under the sidecar's own framing`, async () => {
      const path = `/chunked/${via}`;
      const r = await rawExchange(
        ports[via],
        `POST ${path} HTTP/1.1\r\nHost: ${mesh.authority}\r\nConnection: close\r\n` +
          "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
      );
      assert.equal(r.status, 200, r.body);
      const e = received(path)[0];
      assert.ok(e !== undefined);
      assert.equal(e.body, "hello world");
      // Whatever framing the app sees is the proxy's: plain chunked or a Content-Length, never a list.
      assert.ok(entryValues(e, "transfer-encoding").every((v) => v.toLowerCase() === "chunked"));
    });

    it(`${via}: x-request-id is added when absent and kept when present; x-forwarded-for gets the socket peer appended at each hop`, async () => {
      const hops = via === "outbound" ? 2 : 1; // outbound: app → web sidecar → orders sidecar
      const a = `/rid/${via}/absent`;
      const b = `/rid/${via}/present`;
      assert.equal((await rawExchange(ports[via], goodRequest(mesh.authority, a))).status, 200);
      assert.equal((await rawExchange(ports[via], goodRequest(mesh.authority, a))).status, 200);
      const r = await rawExchange(
        ports[via],
        `GET ${b} HTTP/1.1\r\nHost: ${mesh.authority}\r\nConnection: close\r\n` +
          "X-Request-Id: client-chosen-42\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
      );
      assert.equal(r.status, 200);
      const [first, second] = received(a);
      assert.ok(first !== undefined && second !== undefined);
      const id1 = only(entryValues(first, "x-request-id"), "generated x-request-id");
      const id2 = only(entryValues(second, "x-request-id"), "generated x-request-id");
      assert.ok(id1.length > 0 && id1 !== id2, `ids ${id1} ${id2} must be unique`);
      assert.equal(
        only(entryValues(first, "x-forwarded-for"), "x-forwarded-for"),
        Array(hops).fill("127.0.0.1").join(", "),
      );
      const kept = received(b)[0];
      assert.ok(kept !== undefined);
      assert.deepEqual(entryValues(kept, "x-request-id"), ["client-chosen-42"]);
      assert.deepEqual(entryValues(kept, "x-forwarded-for"), [
        ["203.0.113.9", ...Array(hops).fill("127.0.0.1")].join(", "),
      ]);
    });

    for (const [what, partial] of [
      ["half a request line", "GET /stalled-line HT"],
      ["half the headers", `GET /stalled-headers HTTP/1.1\r\nHost: orders.shop\r\nX-Partial: abc`],
    ] as const) {
      it(`${via}: a client that sends ${what} and stalls gets 408 (or is closed) within the header timeout`, async () => {
        const r: RawResponse = await rawExchange(ports[via], partial, { timeoutMs: 8000 });
        assert.ok(r.status === 408 || (r.status === undefined && r.closed), `status ${r.status}`);
        if (r.status === 408) assert.deepEqual(headerValues(r, "x-trellis-error"), ["bad_request"]);
        // Not immediately (it is the timer), and not much later than timeout + one check interval.
        assert.ok(r.elapsedMs >= HEADER_TIMEOUT_MS - 100, `closed after ${r.elapsedMs} ms`);
        assert.ok(
          r.elapsedMs <= HEADER_TIMEOUT_MS + CHECK_INTERVAL_MS + 1500,
          `closed after ${r.elapsedMs} ms`,
        );
        assert.deepEqual(received("/stalled"), []);
      });
    }

    for (const order of ["cl-te", "te-cl"] as const) {
      it(`${via}: an app answering with both Content-Length and Transfer-Encoding (${order}) gives 502 upstream_protocol_error, and that app connection is discarded`, async () => {
        const path = `/framing/${order}?via=${via}`;
        const r = await rawExchange(ports[via], goodRequest(mesh.authority, path));
        assert.equal(r.status, 502, r.body);
        assert.deepEqual(headerValues(r, "x-trellis-error"), ["upstream_protocol_error"]);
        const bad = received(path)[0];
        assert.ok(bad !== undefined, "the app received the request");
        // The sidecar closes the connection whose framing it could not trust …
        await waitFor(() => app.closed.has(bad.conn), {
          what: `app connection ${bad.conn} closed by the sidecar`,
          timeoutMs: 5000,
        });
        // … and the next request is served on another one.
        const next = `/after-framing/${order}/${via}`;
        const ok = await rawExchange(ports[via], goodRequest(mesh.authority, next));
        assert.equal(ok.status, 200, ok.body);
        const e = received(next)[0];
        assert.ok(e !== undefined);
        assert.notEqual(e.conn, bad.conn);
      });
    }
  }
});
