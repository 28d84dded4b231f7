/**
 * One demo service of `trellis dev`, run as its own process:
 * `node demo-service.js <web|orders|inventory> [address] [port]` (default 127.0.0.1, port 0).
 *
 *  - web: HTTP/1.1. Each request calls orders (`GET http://orders.shop/orders/<id>`, absolute-form,
 *    through its sidecar's outbound port as an HTTP proxy) and answers 200 with what orders said, or
 *    502 when orders failed.
 *  - orders: HTTP/1.1. Each `GET /orders/<id>` calls inventory's gRPC method `Check` over h2c to its
 *    sidecar's outbound port, with `inventory.shop` as the :authority, and answers 200 with the
 *    stock. When inventory fails it still answers 200, without the stock (`inStock: null`,
 *    `degraded`): an order page without a stock figure beats no page, and a dependency that
 *    fails fast (a route timeout) is what makes that answer fast.
 *  - inventory: gRPC (@grpc/grpc-js with raw Buffer serializers: no .proto needed for one method
 *    whose payload is a UTF-8 string) answering the stock of an item.
 *
 * Lifecycle (the stdio protocol is in demo-wire.ts): bind the address (loopback only, as explicit
 * mode requires) → print `listening` → wait for `upstream` on stdin (web, orders) → serve. A
 * `behave` message makes it fail or slow until the next one. Every downstream call's latency and
 * outcome go to stdout in `calls` batches. SIGTERM, SIGINT or the end of stdin (the parent is
 * gone) close the server, flush the last batch and exit 0.
 */
import * as http from "node:http";
import { createInterface } from "node:readline";
import * as grpc from "@grpc/grpc-js";
import {
  CALL_TIMEOUT_MS,
  type CallsMessage,
  DEMO_NAMESPACE,
  DEMO_SERVICES,
  type DemoService,
  DOWNSTREAM,
  INVENTORY_METHOD,
  type ListeningMessage,
  parseControlMessage,
  REPORT_EVERY_MS,
} from "./demo-wire.js";

const role = process.argv[2] as DemoService;
const bindAddress = process.argv[3] ?? "127.0.0.1";
const bindPort = Number(process.argv[4] ?? "0");
if (!(DEMO_SERVICES as readonly string[]).includes(role) || !Number.isInteger(bindPort)) {
  process.stderr.write(`usage: demo-service.js <${DEMO_SERVICES.join("|")}> [address] [port]\n`);
  process.exit(2);
}

/** What the last `behave` message asked for (see BehaveMessage). */
let failStatus = 0;
let delayMs = 0;

function delayed(): Promise<void> {
  return delayMs > 0 ? new Promise((r) => setTimeout(r, delayMs)) : Promise.resolve();
}

// ---------------------------------------------------------------------------------------------
// Reporting: downstream call outcomes, batched to stdout.
// ---------------------------------------------------------------------------------------------

const batch: Omit<CallsMessage, "event" | "target"> = { at: [], ms: [], ok: [] };

function record(startedMs: number, ok: boolean): void {
  batch.at.push(Date.now());
  batch.ms.push(Math.round((performance.now() - startedMs) * 1000) / 1000);
  batch.ok.push(ok ? 1 : 0);
}

function flush(): void {
  const target = DOWNSTREAM[role];
  if (target === undefined || batch.at.length === 0) return;
  const msg: CallsMessage = { event: "calls", target, at: batch.at, ms: batch.ms, ok: batch.ok };
  batch.at = [];
  batch.ms = [];
  batch.ok = [];
  send(msg);
}

function send(msg: CallsMessage | ListeningMessage): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
}

// The parent reading our stdout is gone: nothing left to report to.
process.stdout.on("error", () => process.exit(0));
const reporter = setInterval(flush, REPORT_EVERY_MS);

function log(msg: string): void {
  process.stderr.write(`${JSON.stringify({ time: Date.now(), service: role, msg })}\n`);
}

// ---------------------------------------------------------------------------------------------
// Downstream calls (through this service's sidecar).
// ---------------------------------------------------------------------------------------------

let outboundPort = 0;
const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
let inventoryClient: grpc.Client | undefined;

// Headers worth carrying from the incoming request to the downstream call, so one request id (and,
// once the sidecars trace, one trace) spans the chain.
const PROPAGATED = ["x-request-id", "traceparent", "tracestate", "b3"];

/** web → orders over HTTP/1.1, the sidecar as proxy. Resolves with orders' status and body. */
function callOrders(
  id: number,
  incoming: http.IncomingHttpHeaders,
): Promise<{ status: number; body: string }> {
  const started = performance.now();
  const headers: http.OutgoingHttpHeaders = { host: `orders.${DEMO_NAMESPACE}` };
  for (const h of PROPAGATED) if (incoming[h] !== undefined) headers[h] = incoming[h];
  return new Promise((resolve) => {
    let done = false;
    const finish = (status: number, body: string) => {
      if (done) return;
      done = true;
      record(started, status === 200);
      resolve({ status, body });
    };
    const req = http.request(
      {
        host: "127.0.0.1",
        port: outboundPort,
        path: `http://orders.${DEMO_NAMESPACE}/orders/${id}`,
        headers,
        agent,
        signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => finish(res.statusCode ?? 0, Buffer.concat(chunks).toString("utf8")));
        res.on("error", (err) => finish(0, String(err)));
      },
    );
    req.on("error", (err) => finish(0, String(err)));
    req.end();
  });
}

/** orders → inventory over gRPC (h2c to the sidecar, :authority inventory.shop). */
function callInventory(id: string): Promise<{ stock?: number; error?: string }> {
  const started = performance.now();
  const client = inventoryClient;
  if (client === undefined) {
    record(started, false);
    return Promise.resolve({ error: "no upstream yet" });
  }
  return new Promise((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      INVENTORY_METHOD,
      (b) => b,
      (b) => b,
      Buffer.from(id),
      new grpc.Metadata(),
      { deadline: Date.now() + CALL_TIMEOUT_MS },
      (err, value) => {
        record(started, err === null && value !== undefined);
        if (err !== null || value === undefined) resolve({ error: err?.message ?? "empty response" });
        else resolve({ stock: Number(value.toString("utf8")) });
      },
    );
  });
}

function connectUpstream(port: number): void {
  outboundPort = port;
  if (role === "orders") {
    inventoryClient?.close();
    inventoryClient = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      // The sidecar routes by :authority; the TCP peer is the sidecar itself.
      "grpc.default_authority": `inventory.${DEMO_NAMESPACE}`,
      // A user's http_proxy / grpc_proxy must not send the demo's calls somewhere else.
      "grpc.enable_http_proxy": 0,
    });
  }
  log(`calling ${DOWNSTREAM[role]} through the sidecar's outbound port ${port}`);
}

// ---------------------------------------------------------------------------------------------
// Servers.
// ---------------------------------------------------------------------------------------------

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

let nextId = 0;

async function handleWeb(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (outboundPort === 0) return json(res, 503, { error: "web has no sidecar yet" });
  await delayed();
  if (failStatus !== 0) return json(res, failStatus, { error: `web is failing (${failStatus})` });
  nextId = (nextId + 1) % 1000;
  const id = nextId;
  const r = await callOrders(id, req.headers);
  if (r.status !== 200) return json(res, 502, { error: `orders answered ${r.status}`, detail: r.body });
  json(res, 200, { page: "home", order: JSON.parse(r.body) as unknown });
}

async function handleOrders(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const m = /^\/orders\/(\d+)$/.exec(req.url ?? "");
  if (m === null) return json(res, 404, { error: "try GET /orders/<id>" });
  const id = m[1] as string;
  await delayed();
  if (failStatus !== 0) return json(res, failStatus, { error: `orders is failing (${failStatus})` });
  const r = await callInventory(id);
  if (r.error !== undefined)
    return json(res, 200, {
      order: Number(id),
      item: `item-${id}`,
      inStock: null,
      degraded: `inventory: ${r.error}`,
    });
  json(res, 200, { order: Number(id), item: `item-${id}`, inStock: r.stock });
}

function httpServer(handler: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>) {
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    req.resume();
    handler(req, res).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: String(err) });
      else res.destroy();
    });
  });
  return {
    listen: () =>
      new Promise<number>((resolve, reject) => {
        server.once("error", reject);
        server.listen(bindPort, bindAddress, () => {
          const a = server.address();
          resolve(typeof a === "object" && a !== null ? a.port : 0);
        });
      }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => {
          server.closeAllConnections();
          resolve();
        }, 1000).unref();
      }),
  };
}

function inventoryServer() {
  const server = new grpc.Server();
  const definition: grpc.ServiceDefinition = {
    Check: {
      path: INVENTORY_METHOD,
      requestStream: false,
      responseStream: false,
      requestSerialize: (v: Buffer) => v,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (v: Buffer) => v,
      responseDeserialize: (b: Buffer) => b,
    },
  };
  server.addService(definition, {
    Check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const id = Number(call.request.toString("utf8"));
      void delayed().then(() => {
        if (call.cancelled) return; // the caller's deadline passed (its sidecar gave up on us)
        if (failStatus !== 0)
          callback({ code: grpc.status.UNAVAILABLE, details: `inventory is failing (${failStatus})` });
        else callback(null, Buffer.from(String((id * 7919) % 100)));
      });
    },
  });
  return {
    listen: () =>
      new Promise<number>((resolve, reject) =>
        server.bindAsync(
          `${bindAddress}:${bindPort}`,
          grpc.ServerCredentials.createInsecure(),
          (err, port) => (err ? reject(err) : resolve(port)),
        ),
      ),
    close: () =>
      new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      }),
  };
}

const server =
  role === "inventory" ? inventoryServer() : httpServer(role === "web" ? handleWeb : handleOrders);

let stopping = false;
async function stop(why: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log(`stopping (${why})`);
  await server.close();
  inventoryClient?.close();
  agent.destroy();
  clearInterval(reporter);
  flush();
  process.stdout.end(() => process.exit(0));
}

process.on("SIGTERM", () => void stop("SIGTERM"));
process.on("SIGINT", () => void stop("SIGINT"));

const port = await server.listen();
send({ event: "listening", port });
log(`listening on ${bindAddress}:${port}`);

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const m = parseControlMessage(line);
  if (m?.event === "upstream") connectUpstream(m.outboundPort);
  else if (m?.event === "behave") {
    failStatus = m.failStatus;
    delayMs = m.delayMs;
    log(
      failStatus === 0 && delayMs === 0
        ? "behaving normally again"
        : `from now on: ${failStatus !== 0 ? `answering ${failStatus}` : "answering"}${delayMs > 0 ? ` ${delayMs} ms late` : ""}`,
    );
  }
});
lines.on("close", () => void stop("stdin closed"));
