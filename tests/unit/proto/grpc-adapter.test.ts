/**
 * The protobuf-es ↔ grpc-js adapter over real loopback sockets (insecure credentials; TLS is tested
 * where the certificates are minted). Every test starts its own server on port 0 and closes its
 * clients and server in teardown.
 */
import assert from "node:assert/strict";
import { type EventEmitter, once } from "node:events";
import { describe, it, type TestContext } from "node:test";
import { setImmediate as nextTurn } from "node:timers/promises";
import { create, createFileRegistry, type DescService, equals, toBinary } from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import {
  AdminService,
  file_trellis_v1_admin,
  type GetRequest,
  GetRequestSchema,
  GetResponseSchema,
  type ListResponse,
  ListResponseSchema,
  StatusResponseSchema,
} from "@trellis/proto/gen/trellis/v1/admin_pb";
import { CertificateService } from "@trellis/proto/gen/trellis/v1/certificate_pb";
import {
  type DiscoverRequest,
  DiscoverRequestSchema,
  type DiscoverResponse,
  DiscoverResponseSchema,
  DiscoveryService,
} from "@trellis/proto/gen/trellis/v1/discovery_pb";
import {
  addService,
  createGrpcClient,
  fromGrpcError,
  type GrpcClient,
  type GrpcClientOptions,
  grpcServiceDefinition,
  grpcStatusOf,
  type ServiceImplementation,
  TRELLIS_ERROR_METADATA_KEY,
  toGrpcError,
} from "@trellis/proto/grpc-adapter";
import { withDeadline } from "../../helpers/wait.js";

/** How long a test waits for something the other side must do (never a sleep). */
const WAIT_MS = 5_000;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/** Servers and clients of one test; teardown closes clients first so tryShutdown can drain. */
function harness(t: TestContext) {
  const servers: grpc.Server[] = [];
  const clients: { close(): void }[] = [];
  t.after(async () => {
    for (const client of clients) client.close();
    await Promise.all(servers.map(shutdown));
  });
  return {
    async serve<S extends DescService>(service: S, impl: ServiceImplementation<S>): Promise<string> {
      const server = new grpc.Server();
      addService(server, service, impl);
      servers.push(server);
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
          err ? reject(err) : resolve(p),
        ),
      );
      return `127.0.0.1:${port}`;
    },
    client<S extends DescService>(service: S, address: string, opts?: GrpcClientOptions): GrpcClient<S> {
      const client = createGrpcClient(service, address, grpc.credentials.createInsecure(), opts);
      clients.push(client);
      return client;
    },
  };
}

/** Graceful shutdown; calls a test left hanging are forced closed after WAIT_MS. */
function shutdown(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, WAIT_MS);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

/** Asserts `promise` rejects with a TrellisError of `code` (and `message`, when given); returns it. */
async function rejectsWith(
  promise: Promise<unknown>,
  code: ErrorCode,
  message?: string,
): Promise<TrellisError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof TrellisError, `expected a TrellisError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message !== undefined) assert.equal(err.message, message);
    return err;
  }
  assert.fail(`expected ${code}, but it resolved`);
}

/** Resolves when the server call reports 'cancelled'. */
function cancelledOn(call: EventEmitter): Promise<void> {
  return once(call, "cancelled").then(() => undefined);
}

type AdminImpl = ServiceImplementation<typeof AdminService>;

/** An AdminService whose methods other than `overrides` answer UNIMPLEMENTED. */
function adminImpl(overrides: Partial<AdminImpl>): AdminImpl {
  const unimplemented: grpc.handleUnaryCall<unknown, unknown> = (_call, callback) =>
    callback({ code: grpc.status.UNIMPLEMENTED, details: "not in this test" });
  const all = Object.fromEntries(AdminService.methods.map((m) => [m.localName, unimplemented]));
  return { ...(all as unknown as AdminImpl), ...overrides };
}

// A service with server- and client-streaming methods: no generated service has them, so it is
// built from a FileDescriptorProto at run time, reusing the generated admin messages.
const streamTestFile = create(FileDescriptorProtoSchema, {
  name: "trellis/test/v1/stream_test.proto",
  package: "trellis.test.v1",
  syntax: "proto3",
  dependency: ["trellis/v1/admin.proto"],
  service: [
    {
      name: "StreamTestService",
      method: [
        {
          name: "Watch",
          inputType: ".trellis.v1.GetRequest",
          outputType: ".trellis.v1.GetResponse",
          serverStreaming: true,
        },
        {
          name: "Collect",
          inputType: ".trellis.v1.GetRequest",
          outputType: ".trellis.v1.ListResponse",
          clientStreaming: true,
        },
      ],
    },
  ],
});
const StreamTestService = createFileRegistry(streamTestFile, (name) =>
  name === "trellis/v1/admin.proto" ? file_trellis_v1_admin : undefined,
).getService("trellis.test.v1.StreamTestService") as GenService<{
  watch: { methodKind: "server_streaming"; input: typeof GetRequestSchema; output: typeof GetResponseSchema };
  collect: {
    methodKind: "client_streaming";
    input: typeof GetRequestSchema;
    output: typeof ListResponseSchema;
  };
}>;

function subscription(i: number): DiscoverRequest {
  return create(DiscoverRequestSchema, {
    message: {
      case: "subscription",
      value: { typeUrl: `type.trellis.dev/T${i}`, responseNonce: `n${i}`, subscribe: [`name-${i}`] },
    },
  });
}

/** The echo the discovery test servers answer a subscription with. */
function resourcesFor(req: DiscoverRequest): DiscoverResponse {
  if (req.message.case !== "subscription") {
    throw new TrellisError(ErrorCode.PROTOCOL, `expected a subscription, got ${req.message.case}`);
  }
  const sub = req.message.value;
  return create(DiscoverResponseSchema, {
    message: {
      case: "resources",
      value: { typeUrl: sub.typeUrl, nonce: `ack-${sub.responseNonce}`, notFound: sub.subscribe },
    },
  });
}

function summary(res: DiscoverResponse): string {
  return res.message.case === "resources"
    ? `${res.message.value.typeUrl} ${res.message.value.nonce} ${res.message.value.notFound.join(",")}`
    : String(res.message.case);
}

function policyNamed(name: string, namespace: string) {
  return { kind: { case: "service" as const, value: { metadata: { name, namespace } } } };
}

// ---------------------------------------------------------------------------------------------
// Definitions and error mapping (no sockets)
// ---------------------------------------------------------------------------------------------

describe("grpcServiceDefinition", () => {
  const cases: [DescService, string, boolean, boolean][] = [
    [DiscoveryService, "/trellis.v1.DiscoveryService/Discover", true, true],
    [AdminService, "/trellis.v1.AdminService/Get", false, false],
    [AdminService, "/trellis.v1.AdminService/ProxyConfig", false, false],
    [CertificateService, "/trellis.v1.CertificateService/Sign", false, false],
    [StreamTestService, "/trellis.test.v1.StreamTestService/Watch", false, true],
    [StreamTestService, "/trellis.test.v1.StreamTestService/Collect", true, false],
  ];
  for (const [service, path, requestStream, responseStream] of cases) {
    it(`${path}: path and stream flags`, () => {
      const def = Object.values(grpcServiceDefinition(service)).find((m) => m.path === path);
      assert.ok(def, `no method with path ${path}`);
      assert.equal(def.requestStream, requestStream);
      assert.equal(def.responseStream, responseStream);
    });
  }

  it("serialises with protobuf binary both ways and is built once per service", () => {
    const def = grpcServiceDefinition(AdminService);
    assert.equal(grpcServiceDefinition(AdminService), def);
    const get = def.Get;
    assert.ok(get);
    assert.equal(get.originalName, "get");
    const req = create(GetRequestSchema, { kind: "Service", namespace: "shop", name: "orders" });
    const wire = get.requestSerialize(req);
    assert.ok(Buffer.isBuffer(wire));
    assert.deepEqual(new Uint8Array(wire), toBinary(GetRequestSchema, req));
    assert.ok(equals(GetRequestSchema, get.requestDeserialize(wire), req));
  });
});

describe("error mapping", () => {
  const toStatus: [ErrorCode, grpc.status][] = [
    [ErrorCode.INVALID_ARGUMENT, grpc.status.INVALID_ARGUMENT],
    [ErrorCode.NOT_FOUND, grpc.status.NOT_FOUND],
    [ErrorCode.CONFLICT, grpc.status.ABORTED],
    [ErrorCode.UNAUTHENTICATED, grpc.status.UNAUTHENTICATED],
    [ErrorCode.PERMISSION_DENIED, grpc.status.PERMISSION_DENIED],
    [ErrorCode.UNAVAILABLE, grpc.status.UNAVAILABLE],
    [ErrorCode.TIMEOUT, grpc.status.DEADLINE_EXCEEDED],
    [ErrorCode.CANCELLED, grpc.status.CANCELLED],
    [ErrorCode.CONFIG, grpc.status.INTERNAL],
    [ErrorCode.PROTOCOL, grpc.status.INTERNAL],
    [ErrorCode.INTERNAL, grpc.status.INTERNAL],
  ];
  for (const [code, status] of toStatus) {
    it(`${code} → ${grpc.status[status]} and back to ${code}`, () => {
      const grpcErr = toGrpcError(new TrellisError(code, "what happened"));
      assert.equal(grpcErr.code, status);
      assert.equal(grpcErr.details, "what happened");
      assert.deepEqual(grpcErr.metadata.get(TRELLIS_ERROR_METADATA_KEY), [code]);
      const back = fromGrpcError(grpcErr);
      assert.equal(back.code, code);
      assert.equal(back.message, "what happened");
      assert.equal(back.cause, grpcErr);
    });
  }

  it("normalises non-Trellis errors through TrellisError.from", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    assert.equal(toGrpcError(refused).code, grpc.status.UNAVAILABLE);
    assert.equal(toGrpcError("boom").code, grpc.status.INTERNAL);
    // An unexpected exception's text is not shown to the peer.
    assert.equal(toGrpcError("boom").details, "internal error");
    assert.equal(toGrpcError(new TrellisError(ErrorCode.INTERNAL, "deliberate")).details, "deliberate");
  });

  it("takes details and metadata overrides without mutating the caller's metadata", () => {
    const md = new grpc.Metadata();
    md.set("x-retry-after", "5");
    const err = toGrpcError(new TrellisError(ErrorCode.UNAVAILABLE, "internal detail"), {
      details: "try later",
      metadata: md,
    });
    assert.equal(err.details, "try later");
    assert.deepEqual(err.metadata.get("x-retry-after"), ["5"]);
    assert.deepEqual(err.metadata.get(TRELLIS_ERROR_METADATA_KEY), [ErrorCode.UNAVAILABLE]);
    assert.deepEqual(md.get(TRELLIS_ERROR_METADATA_KEY), []);
  });

  it("passes a gRPC status through unchanged", () => {
    const err = toGrpcError({ code: grpc.status.ALREADY_EXISTS, details: "exists" });
    assert.equal(err.code, grpc.status.ALREADY_EXISTS);
    assert.equal(err.details, "exists");
  });
});

// ---------------------------------------------------------------------------------------------
// Unary: AdminService
// ---------------------------------------------------------------------------------------------

describe("unary calls (AdminService)", () => {
  const TOKEN = "Bearer s3cret";

  /** Get answers the request's policy, stamped with the caller's token; "missing" is NOT_FOUND. */
  const get: AdminImpl["get"] = async (call, callback) => {
    const auth = call.metadata.get("authorization")[0];
    if (auth !== TOKEN) throw new TrellisError(ErrorCode.UNAUTHENTICATED, "admin token required");
    const { namespace, name } = call.request;
    if (name === "missing")
      throw new TrellisError(ErrorCode.NOT_FOUND, `Service ${namespace}/${name} not found`);
    const metadata = { name, namespace, labels: { "seen-authorization": auth } };
    callback(null, create(GetResponseSchema, { policy: { kind: { case: "service", value: { metadata } } } }));
  };

  it("sends the request and metadata and returns the typed response", async (t) => {
    const h = harness(t);
    const client = h.client(AdminService, await h.serve(AdminService, adminImpl({ get })));
    const res = await client.get(
      { kind: "Service", namespace: "shop", name: "orders" },
      { metadata: { authorization: TOKEN } },
    );
    assert.equal(res.policy?.kind.case, "service");
    const meta = res.policy?.kind.case === "service" ? res.policy.kind.value.metadata : undefined;
    assert.equal(meta?.name, "orders");
    assert.equal(meta?.namespace, "shop");
    assert.equal(meta?.labels["seen-authorization"], TOKEN);
  });

  it("maps a TrellisError thrown by the handler to the same code and message on the client", async (t) => {
    const h = harness(t);
    const client = h.client(AdminService, await h.serve(AdminService, adminImpl({ get })));
    const md = new grpc.Metadata();
    md.set("authorization", TOKEN);
    const err = await rejectsWith(
      client.get({ kind: "Service", namespace: "shop", name: "missing" }, { metadata: md }),
      ErrorCode.NOT_FOUND,
      "Service shop/missing not found",
    );
    const status = grpcStatusOf(err);
    assert.equal(status?.code, grpc.status.NOT_FOUND, "the wire carried NOT_FOUND");
    assert.deepEqual(status?.metadata.get(TRELLIS_ERROR_METADATA_KEY), [ErrorCode.NOT_FOUND]);

    await rejectsWith(
      client.get({ kind: "Service", namespace: "shop", name: "orders" }),
      ErrorCode.UNAUTHENTICATED,
      "admin token required",
    );
  });

  it("maps a TrellisError passed to the callback, with custom trailers", async (t) => {
    const h = harness(t);
    const address = await h.serve(
      AdminService,
      adminImpl({
        delete: (call, callback) => {
          const trailers = new grpc.Metadata();
          trailers.set("x-current-version", "42");
          const err = new TrellisError(
            ErrorCode.CONFLICT,
            `version ${call.request.resourceVersion} is stale`,
          );
          callback(toGrpcError(err, { metadata: trailers }));
        },
        // The types ask for a gRPC status; an untyped caller passing a TrellisError is mapped anyway.
        list: (_call, callback) =>
          callback(
            new TrellisError(ErrorCode.PERMISSION_DENIED, "namespace shop") as unknown as grpc.ServiceError,
          ),
      }),
    );
    const client = h.client(AdminService, address);
    const conflict = await rejectsWith(
      client.delete({ kind: "Service", name: "orders", resourceVersion: "41" }),
      ErrorCode.CONFLICT,
      "version 41 is stale",
    );
    assert.equal(grpcStatusOf(conflict)?.code, grpc.status.ABORTED);
    assert.deepEqual(grpcStatusOf(conflict)?.metadata.get("x-current-version"), ["42"]);
    const denied = await rejectsWith(client.list({}), ErrorCode.PERMISSION_DENIED, "namespace shop");
    assert.equal(grpcStatusOf(denied)?.code, grpc.status.PERMISSION_DENIED);
  });

  describe("maps plain gRPC statuses (no Trellis trailer) from any server", () => {
    const table: [keyof typeof grpc.status, ErrorCode][] = [
      ["UNAUTHENTICATED", ErrorCode.UNAUTHENTICATED],
      ["PERMISSION_DENIED", ErrorCode.PERMISSION_DENIED],
      ["NOT_FOUND", ErrorCode.NOT_FOUND],
      ["ALREADY_EXISTS", ErrorCode.CONFLICT],
      ["ABORTED", ErrorCode.CONFLICT],
      ["FAILED_PRECONDITION", ErrorCode.CONFLICT],
      ["INVALID_ARGUMENT", ErrorCode.INVALID_ARGUMENT],
      ["OUT_OF_RANGE", ErrorCode.INVALID_ARGUMENT],
      ["UNAVAILABLE", ErrorCode.UNAVAILABLE],
      ["RESOURCE_EXHAUSTED", ErrorCode.UNAVAILABLE],
      ["DEADLINE_EXCEEDED", ErrorCode.TIMEOUT],
      ["CANCELLED", ErrorCode.CANCELLED],
      ["UNIMPLEMENTED", ErrorCode.PROTOCOL],
      ["INTERNAL", ErrorCode.INTERNAL],
      ["UNKNOWN", ErrorCode.INTERNAL],
      ["DATA_LOSS", ErrorCode.INTERNAL],
    ];
    it("every status in the table", async (t) => {
      const h = harness(t);
      const address = await h.serve(
        AdminService,
        adminImpl({
          // The status named by the request's kind, the way a non-Trellis server would send it.
          list: (call, callback) =>
            callback({
              code: grpc.status[call.request.kind as keyof typeof grpc.status],
              details: `raw ${call.request.kind}`,
            }),
        }),
      );
      const client = h.client(AdminService, address);
      for (const [status, code] of table) {
        const err = await rejectsWith(client.list({ kind: status }), code, `raw ${status}`);
        assert.equal(grpcStatusOf(err)?.code, grpc.status[status]);
      }
    });
  });

  it("a deadline that expires rejects with TIMEOUT (timeoutMs, deadline and the client default)", async (t) => {
    const h = harness(t);
    let calls = 0;
    const address = await h.serve(
      AdminService,
      adminImpl({
        status: (call, callback) => {
          calls++;
          // Never answers in time; answers only if the test reaches the no-deadline case by mistake.
          const timer = setTimeout(() => callback(null, create(StatusResponseSchema)), 30_000);
          call.on("cancelled", () => clearTimeout(timer));
        },
      }),
    );
    const client = h.client(AdminService, address);
    const err = await rejectsWith(client.status({}, { timeoutMs: 100 }), ErrorCode.TIMEOUT);
    assert.equal(grpcStatusOf(err)?.code, grpc.status.DEADLINE_EXCEEDED);
    await rejectsWith(client.status({}, { deadline: new Date(Date.now() + 100) }), ErrorCode.TIMEOUT);
    await rejectsWith(
      client.status({}, { deadline: Date.now() + 100, timeoutMs: 60_000 }),
      ErrorCode.TIMEOUT,
    );
    const impatient = h.client(AdminService, address, { defaultTimeoutMs: 100 });
    await rejectsWith(impatient.status({}), ErrorCode.TIMEOUT);
    assert.ok(calls >= 1, "the server saw the calls");
  });

  it("an AbortSignal cancels the call; the server sees 'cancelled'", async (t) => {
    const h = harness(t);
    const arrived = Promise.withResolvers<EventEmitter>();
    const address = await h.serve(
      AdminService,
      adminImpl({ status: (call) => arrived.resolve(call) }), // never answers
    );
    const client = h.client(AdminService, address);
    const abort = new AbortController();
    const pending = client.status({}, { signal: abort.signal });
    const serverCall = await withDeadline(arrived.promise, WAIT_MS, "call reaches the server");
    const cancelled = cancelledOn(serverCall);
    abort.abort();
    await rejectsWith(pending, ErrorCode.CANCELLED);
    await withDeadline(cancelled, WAIT_MS, "server sees the cancellation");
    await rejectsWith(client.status({}, { signal: abort.signal }), ErrorCode.CANCELLED);
  });

  it("an unreachable server is UNAVAILABLE; a handler that throws a plain Error is INTERNAL", async (t) => {
    const h = harness(t);
    const dead = h.client(AdminService, "127.0.0.1:1");
    await rejectsWith(dead.status({}, { timeoutMs: WAIT_MS }), ErrorCode.UNAVAILABLE);
    const address = await h.serve(
      AdminService,
      adminImpl({
        status: () => {
          throw new Error("bug: undefined is not a function");
        },
      }),
    );
    const client = h.client(AdminService, address);
    // The peer learns that it failed, not the exception's text.
    await rejectsWith(client.status({}), ErrorCode.INTERNAL, "internal error");
  });

  it("addService refuses an implementation with a missing method", () => {
    const server = new grpc.Server();
    assert.throws(
      () => addService(server, AdminService, { get } as unknown as AdminImpl),
      (err: unknown) => err instanceof TrellisError && err.code === ErrorCode.INVALID_ARGUMENT,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Bidi: DiscoveryService
// ---------------------------------------------------------------------------------------------

describe("bidi streams (DiscoveryService)", () => {
  it("echoes subscriptions as resources, in order, then ends cleanly", async (t) => {
    const h = harness(t);
    let serverSawEnd = false;
    const address = await h.serve(DiscoveryService, {
      discover(call) {
        call.on("data", (req: DiscoverRequest) => call.write(resourcesFor(req)));
        call.on("end", () => {
          serverSawEnd = true;
          call.end();
        });
      },
    });
    const client = h.client(DiscoveryService, address);
    const stream = client.discover({ metadata: { "x-proxy-id": "p1" } });
    const status = once(stream.call, "status") as Promise<[grpc.StatusObject]>;
    const N = 5;
    for (let i = 0; i < N; i++) await stream.send(subscription(i));
    // An init shape works as well as a message.
    await stream.send({
      message: { case: "subscription", value: { typeUrl: "type.trellis.dev/Init", responseNonce: "i" } },
    });
    stream.end();
    const got: string[] = [];
    for await (const res of stream.responses) got.push(summary(res));
    const expected = Array.from({ length: N }, (_, i) => `type.trellis.dev/T${i} ack-n${i} name-${i}`);
    assert.deepEqual(got, [...expected, "type.trellis.dev/Init ack-i "]);
    assert.equal(serverSawEnd, true);
    const [final] = await withDeadline(status, WAIT_MS, "call status");
    assert.equal(final.code, grpc.status.OK);
    await rejectsWith(
      stream.send(subscription(99)),
      ErrorCode.INTERNAL,
      "send() after end() on a gRPC stream",
    );
  });

  it("a server-side failure ends the responses with the mapped TrellisError", async (t) => {
    const h = harness(t);
    const address = await h.serve(DiscoveryService, {
      discover(call) {
        call.on("data", (req: DiscoverRequest) => {
          try {
            call.write(resourcesFor(req));
          } catch (err) {
            call.emit("error", toGrpcError(err));
          }
        });
      },
    });
    const stream = h.client(DiscoveryService, address).discover();
    await stream.send(subscription(0));
    await stream.send({ message: { case: "deregister", value: { reason: "shutdown" } } });
    const got: string[] = [];
    await rejectsWith(
      (async () => {
        for await (const res of stream.responses) got.push(summary(res));
      })(),
      ErrorCode.PROTOCOL, // the exact code survives via the x-trellis-error trailer
      "expected a subscription, got deregister",
    );
    assert.deepEqual(got, ["type.trellis.dev/T0 ack-n0 name-0"]);
    await rejectsWith(stream.send(subscription(1)), ErrorCode.PROTOCOL);
  });

  describe("client cancellation is seen by the server", () => {
    /** A server that answers each subscription and reports its calls. */
    async function cancellableServer(t: TestContext) {
      const h = harness(t);
      const calls: grpc.ServerDuplexStream<DiscoverRequest, DiscoverResponse>[] = [];
      const address = await h.serve(DiscoveryService, {
        discover(call) {
          calls.push(call);
          call.on("data", (req: DiscoverRequest) => call.write(resourcesFor(req)));
        },
      });
      return { client: h.client(DiscoveryService, address), calls };
    }

    /** Opens a stream, waits for one answer (the server call exists), returns both ends. */
    async function established(
      client: GrpcClient<typeof DiscoveryService>,
      calls: unknown[],
      signal?: AbortSignal,
    ) {
      const stream = client.discover(signal === undefined ? {} : { signal });
      await stream.send(subscription(0));
      const responses = stream.responses[Symbol.asyncIterator]();
      const first = await withDeadline(responses.next(), WAIT_MS, "first response");
      assert.equal(first.done, false);
      const serverCall = calls[0] as grpc.ServerDuplexStream<DiscoverRequest, DiscoverResponse>;
      assert.ok(serverCall);
      return { stream, responses, serverCancelled: cancelledOn(serverCall) };
    }

    it("cancel()", async (t) => {
      const { client, calls } = await cancellableServer(t);
      const { stream, responses, serverCancelled } = await established(client, calls);
      stream.cancel();
      await withDeadline(serverCancelled, WAIT_MS, "server 'cancelled' event");
      await rejectsWith(responses.next(), ErrorCode.CANCELLED);
      await rejectsWith(stream.send(subscription(1)), ErrorCode.CANCELLED);
    });

    it("AbortSignal", async (t) => {
      const { client, calls } = await cancellableServer(t);
      const abort = new AbortController();
      const { responses, serverCancelled } = await established(client, calls, abort.signal);
      abort.abort();
      await withDeadline(serverCancelled, WAIT_MS, "server 'cancelled' event");
      await rejectsWith(responses.next(), ErrorCode.CANCELLED);
    });

    it("leaving the responses loop early", async (t) => {
      const { client, calls } = await cancellableServer(t);
      const { responses, serverCancelled } = await established(client, calls);
      await responses.return?.();
      await withDeadline(serverCancelled, WAIT_MS, "server 'cancelled' event");
    });
  });

  for (const endWhileBlocked of [false, true]) {
    const title = endWhileBlocked
      ? "end() while a send() waits: the waiting send resolves (already queued) and is delivered"
      : "send() applies backpressure: it waits while the server does not read, resumes when it does";
    it(title, async (t) => {
      const h = harness(t);
      const release = Promise.withResolvers<void>();
      let received = 0;
      const address = await h.serve(DiscoveryService, {
        async discover(call) {
          await release.promise; // read nothing until the test says so: HTTP/2 flow control fills up
          call.on("data", () => received++);
          call.on("end", () => {
            call.write(
              create(DiscoverResponseSchema, {
                message: { case: "resources", value: { nonce: String(received) } },
              }),
            );
            call.end();
          });
        },
      });
      const stream = h.client(DiscoveryService, address).discover();
      const big = create(DiscoverRequestSchema, {
        message: { case: "subscription", value: { typeUrl: "t", subscribe: ["x".repeat(64 * 1024)] } },
      });
      const sends: Promise<void>[] = [];
      let blocked: Promise<void> | undefined;
      for (let i = 0; i < 2_000 && blocked === undefined; i++) {
        const sent = stream.send(big);
        sends.push(sent);
        let settled = false;
        const settle = (): void => {
          settled = true;
        };
        sent.then(settle, settle);
        await nextTurn();
        if (!settled) blocked = sent;
      }
      assert.ok(blocked, "send() never waited although the server read nothing");
      assert.equal(stream.call.writableNeedDrain, true);
      if (endWhileBlocked) {
        stream.end();
        await withDeadline(blocked, WAIT_MS, "end() releases the waiting send");
        release.resolve();
      } else {
        // Still waiting a turn later: only the server reading can release it.
        let released = false;
        blocked.then(
          () => {
            released = true;
          },
          () => {},
        );
        await nextTurn();
        assert.equal(released, false);
        release.resolve();
        await withDeadline(Promise.all(sends), WAIT_MS, "sends drain once the server reads");
        stream.end();
      }
      await Promise.all(sends);
      const counts: string[] = [];
      for await (const res of stream.responses) {
        if (res.message.case === "resources") counts.push(res.message.value.nonce);
      }
      assert.deepEqual(counts, [String(sends.length)], "the server received every message");
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Server and client streaming (locally built descriptor)
// ---------------------------------------------------------------------------------------------

describe("server streaming (local StreamTestService)", () => {
  type StreamImpl = ServiceImplementation<typeof StreamTestService>;
  const collect: StreamImpl["collect"] = (call, callback) => {
    const names: string[] = [];
    call.on("data", (req: GetRequest) => names.push(req.name));
    call.on("end", () =>
      callback(null, create(ListResponseSchema, { policies: names.map((n) => policyNamed(n, "shop")) })),
    );
  };

  it("yields every response in order and finishes", async (t) => {
    const h = harness(t);
    const address = await h.serve(StreamTestService, {
      watch(call) {
        for (let i = 0; i < 3; i++) {
          call.write(create(GetResponseSchema, { policy: policyNamed(`${call.request.name}-${i}`, "shop") }));
        }
        call.end();
      },
      collect,
    });
    const client = h.client(StreamTestService, address);
    const names: string[] = [];
    for await (const res of client.watch({ name: "orders" })) {
      names.push(res.policy?.kind.case === "service" ? (res.policy.kind.value.metadata?.name ?? "") : "?");
    }
    assert.deepEqual(names, ["orders-0", "orders-1", "orders-2"]);
  });

  it("a handler that rejects mid-stream: the client gets the messages, then the TrellisError", async (t) => {
    const h = harness(t);
    const address = await h.serve(StreamTestService, {
      async watch(call) {
        call.write(create(GetResponseSchema));
        throw new TrellisError(ErrorCode.UNAVAILABLE, "etcd went away");
      },
      collect,
    });
    let count = 0;
    await rejectsWith(
      (async () => {
        for await (const _ of h.client(StreamTestService, address).watch({})) count++;
      })(),
      ErrorCode.UNAVAILABLE,
      "etcd went away",
    );
    assert.equal(count, 1);
  });

  it("breaking out of the loop cancels the call on the server", async (t) => {
    const h = harness(t);
    const cancelled = Promise.withResolvers<void>();
    const address = await h.serve(StreamTestService, {
      async watch(call) {
        call.on("cancelled", () => cancelled.resolve());
        // An endless watch that respects backpressure.
        for (let i = 0; !call.cancelled; i++) {
          if (!call.write(create(GetResponseSchema, { policy: policyNamed(`p${i}`, "shop") }))) {
            await Promise.race([once(call, "drain"), cancelled.promise]);
          }
        }
      },
      collect,
    });
    let seen = 0;
    for await (const _ of h.client(StreamTestService, address).watch({})) {
      if (++seen === 3) break;
    }
    await withDeadline(cancelled.promise, WAIT_MS, "server 'cancelled' event");
  });

  it("an AbortSignal ends the iteration with CANCELLED and the server sees it", async (t) => {
    const h = harness(t);
    const cancelled = Promise.withResolvers<void>();
    const address = await h.serve(StreamTestService, {
      watch(call) {
        call.on("cancelled", () => cancelled.resolve());
        call.write(create(GetResponseSchema)); // then stays open
      },
      collect,
    });
    const abort = new AbortController();
    let count = 0;
    await rejectsWith(
      (async () => {
        for await (const _ of h.client(StreamTestService, address).watch({}, { signal: abort.signal })) {
          count++;
          abort.abort();
        }
      })(),
      ErrorCode.CANCELLED,
    );
    assert.equal(count, 1);
    await withDeadline(cancelled.promise, WAIT_MS, "server 'cancelled' event");
  });
});

describe("client streaming (local StreamTestService)", () => {
  it("sends the stream and resolves with the single response", async (t) => {
    const h = harness(t);
    const address = await h.serve(StreamTestService, {
      watch: (call) => call.end(),
      collect: (call, callback) => {
        const names: string[] = [];
        call.on("data", (req: GetRequest) => names.push(req.name));
        call.on("end", () =>
          callback(null, create(ListResponseSchema, { policies: names.map((n) => policyNamed(n, "shop")) })),
        );
      },
    });
    const call = h.client(StreamTestService, address).collect({ timeoutMs: WAIT_MS });
    for (const name of ["a", "b", "c"]) await call.send({ name });
    const res: ListResponse = await call.close();
    assert.deepEqual(
      res.policies.map((p) => (p.kind.case === "service" ? p.kind.value.metadata?.name : undefined)),
      ["a", "b", "c"],
    );
  });
});
