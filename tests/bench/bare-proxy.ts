/**
 * A reference point, not a product: the cheapest honest HTTP/1.1 reverse proxy Node offers — a
 * node:http server and the undici Pool the sidecar itself uses (resolved through the sidecar
 * package, so the version is the same), with `Pool.stream` writing the upstream body straight into
 * the response. No routing, policy, metrics or header hygiene beyond the hop-by-hop headers. Its
 * CPU per request in the same run is the floor the sidecar's own stack allows on this machine.
 *
 * Usage: node tests/dist/bench/bare-proxy.js APP_PORT — listens on 127.0.0.1, port chosen by the
 * OS, prints `{"msg":"listening","port":N}`; stops on SIGTERM.
 */
import { createServer, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http";
import { createRequire } from "node:module";
import { resolve } from "node:path";

type Undici = typeof import("undici");
const undici = createRequire(resolve(import.meta.dirname, "../../../sidecar/package.json"))(
  "undici",
) as Undici;

const appPort = Number(process.argv[2]);
if (!Number.isInteger(appPort) || appPort <= 0) {
  process.stderr.write("usage: bare-proxy APP_PORT\n");
  process.exit(2);
}
const pool = new undici.Pool(`http://127.0.0.1:${appPort}`, { connections: 256, pipelining: 1 });

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
  "proxy-connection",
  "te",
]);

/** Request or response headers without hop-by-hop ones (and without host: the pool sets it). */
function forwardable(
  h: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const k in h) {
    const v = h[k];
    if (v !== undefined && !HOP_BY_HOP.has(k) && k !== "host") out[k] = v;
  }
  return out;
}

const server = createServer({ keepAliveTimeout: 120_000, noDelay: true }, (req, res) => {
  pool
    .stream(
      {
        method: (req.method ?? "GET") as "GET",
        path: req.url ?? "/",
        headers: forwardable(req.headers) as Record<string, string>,
        body: req.method === "GET" || req.method === "HEAD" ? null : req,
      },
      ({ statusCode, headers }) => {
        res.writeHead(statusCode, forwardable(headers));
        return res;
      },
    )
    .catch(() => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
});
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  process.stdout.write(
    `${JSON.stringify({ msg: "listening", port: typeof a === "object" && a !== null ? a.port : 0 })}\n`,
  );
});
process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  void pool.close();
});
