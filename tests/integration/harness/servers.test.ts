/** closeServer drains: in-flight work finishes, idle connections do not hold it up, stragglers are cut. */
import assert from "node:assert/strict";
import { once } from "node:events";
import { Agent, createServer, get, type IncomingMessage, type ServerResponse } from "node:http";
import { connect as h2connect, createServer as h2createServer } from "node:http2";
import { connect, createServer as netCreateServer } from "node:net";
import { test } from "node:test";
import { closeServer, listen } from "../../helpers/servers.js";
import { waitFor, withDeadline } from "../../helpers/wait.js";

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" });
    socket.on("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.on("error", () => resolve(true));
  });
}

function body(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (c: string) => {
      text += c;
    });
    res.on("end", () => resolve(text));
    res.on("error", reject);
  });
}

/** An HTTP server whose responses wait until the test releases them. */
function heldServer() {
  const held: ServerResponse[] = [];
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.write("part1,");
    held.push(res);
  });
  return { server, held };
}

test("closeServer waits for an in-flight HTTP request, refusing new connections meanwhile", async (t) => {
  const { server, held } = heldServer();
  const port = await listen(server);
  t.after(() => closeServer(server, { timeoutMs: 100 }));
  const agent = new Agent({ keepAlive: true });
  t.after(() => agent.destroy());
  const response = new Promise<IncomingMessage>((resolve, reject) =>
    get({ port, host: "127.0.0.1", agent }, resolve).on("error", reject),
  );
  await waitFor(() => held.length === 1, { what: "request in the handler" });

  let closed = false;
  const closing = closeServer(server, { timeoutMs: 30_000 }).then(() => {
    closed = true;
  });
  await waitFor(() => refused(port), { what: "new connections refused" });
  assert.equal(closed, false, "close waits while a response is in flight");

  held[0]!.end("part2");
  const res = await response;
  assert.equal(res.statusCode, 200);
  assert.equal(await body(res), "part1,part2", "the in-flight response completes intact");
  // The keep-alive connection now idles in the agent: closeServer must not wait for the agent.
  await withDeadline(closing, 5000, "closeServer after the response");
});

test("closeServer destroys what is still open at its deadline", async (t) => {
  const { server, held } = heldServer();
  const port = await listen(server);
  t.after(() => {
    for (const res of held) res.destroy();
  });
  const failed = new Promise<string>((resolve) => {
    get({ port, host: "127.0.0.1", agent: false }, (res) => {
      res.on("error", (e) => resolve(e.message));
      res.on("aborted", () => resolve("aborted"));
      res.resume();
    }).on("error", (e) => resolve(e.message));
  });
  await waitFor(() => held.length === 1, { what: "request in the handler" });
  const started = Date.now();
  await withDeadline(closeServer(server, { timeoutMs: 200 }), 5000, "closeServer at deadline");
  assert.ok(Date.now() - started >= 190, "it waited for the deadline first");
  assert.match(await withDeadline(failed, 5000, "client sees the cut"), /aborted|socket hang up|ECONNRESET/);
});

test("closeServer lets an HTTP/2 stream finish (GOAWAY), then closes", async (t) => {
  let release: (() => void) | undefined;
  const server = h2createServer((_req, res) => {
    release = () => res.end("h2-done");
  });
  const port = await listen(server);
  t.after(() => closeServer(server, { timeoutMs: 100 }));
  const session = h2connect(`http://127.0.0.1:${port}`);
  t.after(() => session.destroy());
  const stream = session.request({ ":path": "/" });
  stream.setEncoding("utf8");
  let text = "";
  stream.on("data", (c: string) => {
    text += c;
  });
  const ended = once(stream, "end");
  await waitFor(() => release !== undefined, { what: "h2 request in the handler" });

  let closed = false;
  const closing = closeServer(server, { timeoutMs: 30_000 }).then(() => {
    closed = true;
  });
  await waitFor(() => refused(port), { what: "new connections refused" });
  assert.equal(closed, false);
  release!();
  await withDeadline(ended, 5000, "h2 stream end");
  assert.equal(text, "h2-done");
  await withDeadline(closing, 5000, "closeServer after the stream");
});

test("closeServer cuts an idle raw TCP connection at the deadline", async () => {
  const server = netCreateServer(() => {});
  const port = await listen(server);
  const client = connect({ port, host: "127.0.0.1" });
  await once(client, "connect");
  const clientClosed = once(client, "close");
  await withDeadline(closeServer(server, { timeoutMs: 100 }), 5000, "closeServer(net)");
  await withDeadline(clientClosed, 5000, "client socket closed");
  assert.equal(server.listening, false);
});
