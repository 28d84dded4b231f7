/**
 * The benchmark's upstream app: the same minimal node:http server behind every variant (direct,
 * sidecars, nginx), so the variants differ only in what sits between the client and it.
 *
 * Every request, whatever its method or path, gets 200 with a fixed 100-byte body and
 * Content-Length (no chunking), on keep-alive connections. Listens on 127.0.0.1, port chosen by the
 * OS, and prints one JSON line `{"msg":"listening","port":N}` on stdout.
 *
 * Run as its own process: `node tests/dist/bench/upstream-app.js`. Stops on SIGTERM.
 */
import { createServer } from "node:http";

/** The response body: exactly 100 bytes. */
const BODY = Buffer.from(`${"x".repeat(99)}\n`);

// Built once: the response path allocates nothing of ours per request.
const HEADERS = { "content-type": "text/plain", "content-length": String(BODY.length) };

const server = createServer({ keepAliveTimeout: 120_000, noDelay: true }, (req, res) => {
  // Consume any request body so the keep-alive connection stays usable.
  req.resume();
  res.writeHead(200, HEADERS);
  res.end(BODY);
});
// Node's default 5 s keep-alive would make pooled proxy connections reconnect mid-run.
server.headersTimeout = 60_000;

server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  const port = typeof a === "object" && a !== null ? a.port : 0;
  process.stdout.write(`${JSON.stringify({ msg: "listening", port })}\n`);
});

process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
