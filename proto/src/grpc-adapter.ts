/**
 * The bridge between protobuf-es v2 service descriptors (`GenService`, e.g. `DiscoveryService`) and
 * @grpc/grpc-js: nothing on npm generates grpc-js service definitions for protobuf-es v2.
 *
 * - Servers: `addService(server, DiscoveryService, impl)` with `impl` typed from the descriptor
 *   (grpc-js handler types over protobuf-es message shapes). A handler that throws or returns a
 *   rejected promise answers with the mapped gRPC status instead of grpc-js's opaque UNKNOWN.
 * - Clients: `createGrpcClient(DiscoveryService, address, credentials)` gives promise-based unary
 *   calls, async-iterable server streams and duplex handles for client and bidi streams.
 * - Errors: every client-side failure is a `TrellisError` whose `cause` is the grpc-js
 *   `ServiceError` (code, details, metadata: read it with `grpcStatusOf`); `toGrpcError` maps the
 *   other way. The exact Trellis code also travels in the `x-trellis-error` trailer, so codes with
 *   no gRPC twin (CONFIG, PROTOCOL) survive the round trip.
 *
 * Descriptor → definition is done once per service (cached); the per-call path only creates the
 * request message, the call and its listeners.
 */
import type {
  DescMessage,
  DescMethod,
  DescMethodBiDiStreaming,
  DescMethodClientStreaming,
  DescMethodServerStreaming,
  DescMethodUnary,
  DescService,
  Message,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ErrorCode, TrellisError } from "./errors.js";

// ---------------------------------------------------------------------------------------------
// Service definitions
// ---------------------------------------------------------------------------------------------

/** Response-trailer key carrying the exact `TRELLIS_ERR_*` code of a failed call (set by toGrpcError). */
export const TRELLIS_ERROR_METADATA_KEY = "x-trellis-error";

/** gRPC path of a method: `/<package>.<Service>/<Method>` (gRPC over HTTP/2 spec, "Path"). */
export function grpcMethodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

const definitions = new WeakMap<DescService, grpc.ServiceDefinition>();

/**
 * The grpc-js definition of a service, keyed by proto method name with `originalName` = the
 * protobuf-es localName (as @grpc/proto-loader does). Built once per descriptor and cached.
 * Serialisation is protobuf binary (`toBinary` / `fromBinary`); a malformed payload makes grpc-js
 * fail the call with INTERNAL.
 */
export function grpcServiceDefinition(service: DescService): grpc.ServiceDefinition {
  const cached = definitions.get(service);
  if (cached !== undefined) return cached;
  const definition: Record<string, grpc.MethodDefinition<Message, Message>> = {};
  for (const method of service.methods) {
    const streams = STREAMING[method.methodKind];
    definition[method.name] = {
      path: grpcMethodPath(method),
      requestStream: streams.request,
      responseStream: streams.response,
      requestSerialize: serializer(method.input),
      requestDeserialize: deserializer(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
      originalName: method.localName,
    };
  }
  definitions.set(service, definition);
  return definition;
}

const STREAMING: Record<DescMethod["methodKind"], { request: boolean; response: boolean }> = {
  unary: { request: false, response: false },
  server_streaming: { request: false, response: true },
  client_streaming: { request: true, response: false },
  bidi_streaming: { request: true, response: true },
};

function serializer(schema: DescMessage): (message: Message) => Buffer {
  return (message) => {
    const bytes = toBinary(schema, message);
    // A view, not a copy: grpc-js only reads the buffer while framing it.
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer(schema: DescMessage): (bytes: Buffer) => Message {
  return (bytes) => fromBinary(schema, bytes);
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/** The grpc-js handler type for one method, its request/response types the methods' message shapes. */
export type GrpcHandler<M> =
  M extends DescMethodUnary<infer I, infer O>
    ? grpc.handleUnaryCall<MessageShape<I>, MessageShape<O>>
    : M extends DescMethodServerStreaming<infer I, infer O>
      ? grpc.handleServerStreamingCall<MessageShape<I>, MessageShape<O>>
      : M extends DescMethodClientStreaming<infer I, infer O>
        ? grpc.handleClientStreamingCall<MessageShape<I>, MessageShape<O>>
        : M extends DescMethodBiDiStreaming<infer I, infer O>
          ? grpc.handleBidiStreamingCall<MessageShape<I>, MessageShape<O>>
          : grpc.UntypedHandleCall;

/**
 * A server implementation of `S`: one handler per method, keyed by localName (`discover`, `get`).
 * Handlers may be `async`: a thrown error or rejected promise is answered with `toGrpcError(err)`.
 */
export type ServiceImplementation<S extends DescService> = {
  [K in keyof S["method"]]: GrpcHandler<S["method"][K]>;
};

/**
 * Registers `impl` for `service` on `server`. Every method needs a handler (a missing one throws
 * INVALID_ARGUMENT here, at startup). Handlers are called with `this` = `impl`.
 * Error contract per call: an error passed to a unary/client-streaming `callback` or thrown/rejected
 * from any handler is sent as `toGrpcError(err)`; a unary callback after the first is ignored.
 * Streaming handlers that fail on their own should `call.emit("error", toGrpcError(err))`.
 */
export function addService<S extends DescService>(
  server: grpc.Server,
  service: S,
  impl: ServiceImplementation<S>,
): void {
  const handlers = impl as unknown as Record<string, grpc.UntypedHandleCall | undefined>;
  const untyped: grpc.UntypedServiceImplementation = {};
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (typeof handler !== "function") {
      throw new TrellisError(
        ErrorCode.INVALID_ARGUMENT,
        `addService(${service.typeName}): no handler for method "${method.localName}"`,
      );
    }
    untyped[method.name] = guardHandler(method.methodKind, handler.bind(impl));
  }
  server.addService(grpcServiceDefinition(service), untyped);
}

type AnyCallback = grpc.sendUnaryData<Message>;
type UnaryLike = (call: unknown, callback: AnyCallback) => unknown;
type StreamLike = (call: grpc.ServerWritableStream<Message, Message>) => unknown;

/** Wraps a handler once, at registration, so failures become proper gRPC statuses. */
function guardHandler(
  kind: DescMethod["methodKind"],
  handler: grpc.UntypedHandleCall,
): grpc.UntypedHandleCall {
  if (kind === "unary" || kind === "client_streaming") {
    const fn = handler as unknown as UnaryLike;
    return ((call: unknown, callback: AnyCallback) => {
      // 1. Answer at most once: an async handler can call back and then throw.
      let answered = false;
      const answer: AnyCallback = (err, value, trailer, flags) => {
        if (answered) return;
        answered = true;
        // 2. grpc-js would send a TrellisError (string code) as UNKNOWN: map it first.
        callback(err === null || err === undefined ? null : toGrpcError(err), value, trailer, flags);
      };
      // 3. Sync throws and async rejections become the mapped status.
      try {
        const result = fn(call, answer);
        if (isThenable(result)) result.then(undefined, (err: unknown) => answer(toGrpcError(err)));
      } catch (err) {
        answer(toGrpcError(err));
      }
    }) as grpc.UntypedHandleCall;
  }
  const fn = handler as unknown as StreamLike;
  return ((call: grpc.ServerWritableStream<Message, Message>) => {
    try {
      const result = fn(call);
      if (isThenable(result)) result.then(undefined, (err: unknown) => failServerStream(call, err));
    } catch (err) {
      failServerStream(call, err);
    }
  }) as grpc.UntypedHandleCall;
}

/** grpc-js turns an 'error' event on a server stream into the call's status (server-call.ts). */
function failServerStream(call: grpc.ServerWritableStream<Message, Message>, err: unknown): void {
  if (call.writableEnded || call.cancelled) return; // status already sent or nobody left to tell
  call.emit("error", toGrpcError(err));
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === "function";
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

const knownCodes = new Set<string>(Object.values(ErrorCode));

/**
 * gRPC status (as a grpc-js ServiceError) for anything thrown, for `callback(toGrpcError(e))` or
 * `call.emit("error", toGrpcError(e))`. A grpc status error passes through; anything else goes
 * through `TrellisError.from` and its code maps to a status. `details` overrides the message;
 * `metadata` (copied, never mutated) becomes the trailers, plus `x-trellis-error: <code>`.
 */
export function toGrpcError(
  err: unknown,
  opts: { details?: string; metadata?: grpc.Metadata } = {},
): grpc.ServiceError {
  const status = asStatusError(err);
  if (status !== undefined) {
    return statusError(status.code, opts.details ?? status.details, opts.metadata ?? status.metadata);
  }
  const trellis = TrellisError.from(err);
  const metadata = opts.metadata?.clone() ?? new grpc.Metadata();
  metadata.set(TRELLIS_ERROR_METADATA_KEY, trellis.code);
  // Only deliberate errors (a TrellisError thrown as such) show their message to the peer; an
  // unexpected exception's text may carry internals, so peers get a generic message (servers log it).
  const message = err instanceof TrellisError ? trellis.message : "internal error";
  return statusError(grpcStatusFor(trellis.code), opts.details ?? message, metadata);
}

function statusError(code: grpc.status, details: string, metadata: grpc.Metadata): grpc.ServiceError {
  return Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), { code, details, metadata });
}

/**
 * TrellisError for a failed call. The `x-trellis-error` trailer wins when it names a known code;
 * otherwise the status maps: UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, INVALID_ARGUMENT and
 * OUT_OF_RANGE → INVALID_ARGUMENT, ALREADY_EXISTS/ABORTED/FAILED_PRECONDITION → CONFLICT,
 * UNAVAILABLE and RESOURCE_EXHAUSTED (retry later) → UNAVAILABLE, DEADLINE_EXCEEDED → TIMEOUT,
 * CANCELLED, UNIMPLEMENTED → PROTOCOL (the peer does not speak this API), else INTERNAL.
 * The message is the status details; `cause` is the original ServiceError. Non-gRPC errors go
 * through `TrellisError.from`.
 */
export function fromGrpcError(err: unknown): TrellisError {
  if (err instanceof TrellisError) return err;
  const status = asStatusError(err);
  if (status === undefined) return TrellisError.from(err);
  const sent = status.metadata.get(TRELLIS_ERROR_METADATA_KEY)[0];
  const code =
    typeof sent === "string" && knownCodes.has(sent) ? (sent as ErrorCode) : trellisCodeFor(status.code);
  const message = status.details !== "" ? status.details : err instanceof Error ? err.message : String(err);
  return new TrellisError(code, message, { cause: err });
}

/** The gRPC status behind `err`: a grpc-js ServiceError itself or the `cause` of a TrellisError. */
export function grpcStatusOf(err: unknown): grpc.StatusObject | undefined {
  return asStatusError(err) ?? (err instanceof TrellisError ? asStatusError(err.cause) : undefined);
}

function asStatusError(err: unknown): grpc.StatusObject | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const { code, details, metadata } = err as Partial<Record<"code" | "details" | "metadata", unknown>>;
  if (typeof code !== "number" || !Number.isInteger(code) || code < 0 || code > 16) return undefined;
  return {
    code,
    details: typeof details === "string" ? details : err instanceof Error ? err.message : "",
    metadata: metadata instanceof grpc.Metadata ? metadata : new grpc.Metadata(),
  };
}

/** TrellisError code → gRPC status (CONFLICT is a lost compare-and-swap: ABORTED, per statuscodes.md). */
function grpcStatusFor(code: ErrorCode): grpc.status {
  switch (code) {
    case ErrorCode.INVALID_ARGUMENT:
      return grpc.status.INVALID_ARGUMENT;
    case ErrorCode.NOT_FOUND:
      return grpc.status.NOT_FOUND;
    case ErrorCode.CONFLICT:
      return grpc.status.ABORTED;
    case ErrorCode.UNAUTHENTICATED:
      return grpc.status.UNAUTHENTICATED;
    case ErrorCode.PERMISSION_DENIED:
      return grpc.status.PERMISSION_DENIED;
    case ErrorCode.UNAVAILABLE:
      return grpc.status.UNAVAILABLE;
    case ErrorCode.TIMEOUT:
      return grpc.status.DEADLINE_EXCEEDED;
    case ErrorCode.CANCELLED:
      return grpc.status.CANCELLED;
    case ErrorCode.CONFIG:
    case ErrorCode.PROTOCOL:
    case ErrorCode.INTERNAL:
      return grpc.status.INTERNAL;
  }
}

function trellisCodeFor(code: grpc.status): ErrorCode {
  switch (code) {
    case grpc.status.UNAUTHENTICATED:
      return ErrorCode.UNAUTHENTICATED;
    case grpc.status.PERMISSION_DENIED:
      return ErrorCode.PERMISSION_DENIED;
    case grpc.status.NOT_FOUND:
      return ErrorCode.NOT_FOUND;
    case grpc.status.ALREADY_EXISTS:
    case grpc.status.ABORTED:
    case grpc.status.FAILED_PRECONDITION:
      return ErrorCode.CONFLICT;
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.OUT_OF_RANGE:
      return ErrorCode.INVALID_ARGUMENT;
    case grpc.status.UNAVAILABLE:
    case grpc.status.RESOURCE_EXHAUSTED:
      return ErrorCode.UNAVAILABLE;
    case grpc.status.DEADLINE_EXCEEDED:
      return ErrorCode.TIMEOUT;
    case grpc.status.CANCELLED:
      return ErrorCode.CANCELLED;
    case grpc.status.UNIMPLEMENTED:
      return ErrorCode.PROTOCOL;
    default:
      return ErrorCode.INTERNAL;
  }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/** Per-call options for every client method. */
export interface GrpcCallOptions {
  /** Request metadata; a plain object is copied into a grpc.Metadata (`-bin` keys take Buffers). */
  metadata?: grpc.Metadata | Readonly<Record<string, string | Buffer>>;
  /** Absolute deadline: a Date or epoch milliseconds (as grpc-js). When it passes: TIMEOUT. */
  deadline?: Date | number;
  /** Relative deadline in ms from the call's start; with `deadline` too, the earlier one wins. */
  timeoutMs?: number;
  /** Aborting cancels the call (RST_STREAM, the server sees 'cancelled'); the caller gets CANCELLED. */
  signal?: AbortSignal;
}

/** `createGrpcClient` options: grpc-js client/channel options plus Trellis defaults. */
export interface GrpcClientOptions extends grpc.ClientOptions {
  /**
   * Timeout in ms for unary and client-streaming calls that set no `deadline`/`timeoutMs`.
   * Never applied to server-streaming or bidi calls (they are long-lived watches). Default: none.
   */
  defaultTimeoutMs?: number;
}

/** A unary method: resolves with the response, rejects with a TrellisError. */
export type UnaryMethod<I extends DescMessage, O extends DescMessage> = (
  request: MessageInitShape<I>,
  opts?: GrpcCallOptions,
) => Promise<MessageShape<O>>;

/**
 * A server-streaming method. The call starts when iteration starts (one call per iterable, which
 * can be iterated once); leaving the loop early cancels it; a failed call throws a TrellisError.
 */
export type ServerStreamingMethod<I extends DescMessage, O extends DescMessage> = (
  request: MessageInitShape<I>,
  opts?: GrpcCallOptions,
) => AsyncIterable<MessageShape<O>>;

/** A client-streaming method: starts the call at once and returns its handle. */
export type ClientStreamingMethod<I extends DescMessage, O extends DescMessage> = (
  opts?: GrpcCallOptions,
) => ClientStreamingCall<I, O>;

/** A bidi-streaming method: starts the call at once and returns its duplex handle. */
export type BidiStreamingMethod<I extends DescMessage, O extends DescMessage> = (
  opts?: GrpcCallOptions,
) => BidiStreamingCall<I, O>;

/**
 * The sending half shared by client-streaming and bidi calls.
 *
 * Backpressure: `send` returns a Promise that resolves at once while the call's write buffer is
 * under its high-water mark (16 messages), and otherwise when it drains — i.e. when HTTP/2 flow
 * control lets the queued messages out. `await` each send and a slow peer slows the sender down.
 * Resolution means "accepted for sending", not "delivered". It rejects (always handle it: an
 * unhandled rejection kills the process) when the call has failed (the call's TrellisError),
 * finished or been cancelled (CANCELLED), or after `end()` (INTERNAL: a caller bug).
 */
export interface StreamSender<I extends DescMessage> {
  /** Queues one message (a message or its init shape); see the backpressure contract above. */
  send(message: MessageInitShape<I>): Promise<void>;
  /** Half-closes the request stream; sends still waiting for drain resolve (already queued). */
  end(): void;
  /** Cancels the call: the server sees 'cancelled'; pending and later sends reject CANCELLED. */
  cancel(): void;
}

/** A running bidi call. */
export interface BidiStreamingCall<I extends DescMessage, O extends DescMessage> extends StreamSender<I> {
  /**
   * The responses in order; iterable once. Ends when the server closes with OK, throws the call's
   * TrellisError otherwise; leaving the loop early cancels the whole call.
   */
  readonly responses: AsyncIterable<MessageShape<O>>;
  /** The underlying grpc-js call (peer, events); owned by this handle. */
  readonly call: grpc.ClientDuplexStream<MessageShape<I>, MessageShape<O>>;
}

/** A running client-streaming call. */
export interface ClientStreamingCall<I extends DescMessage, O extends DescMessage> extends StreamSender<I> {
  /** The single response; rejects with the call's TrellisError. Unobserved rejections are not fatal. */
  readonly response: Promise<MessageShape<O>>;
  /** `end()` then `response`. */
  close(): Promise<MessageShape<O>>;
  /** The underlying grpc-js call; owned by this handle. */
  readonly call: grpc.ClientWritableStream<MessageShape<I>>;
}

/** The client method for one descriptor method (never for an untyped `DescMethod`). */
export type GrpcClientMethod<M> =
  M extends DescMethodUnary<infer I, infer O>
    ? UnaryMethod<I, O>
    : M extends DescMethodServerStreaming<infer I, infer O>
      ? ServerStreamingMethod<I, O>
      : M extends DescMethodClientStreaming<infer I, infer O>
        ? ClientStreamingMethod<I, O>
        : M extends DescMethodBiDiStreaming<infer I, infer O>
          ? BidiStreamingMethod<I, O>
          : never;

/** A typed client of `S`: one method per RPC (by localName), plus the channel it owns. */
export type GrpcClient<S extends DescService> = {
  readonly [K in keyof S["method"]]: GrpcClientMethod<S["method"][K]>;
} & {
  /** Closes the channel: calls in flight fail with UNAVAILABLE/CANCELLED; later calls fail. */
  close(): void;
  /** The grpc-js client (channel, waitForReady); owned by this object. */
  readonly grpcClient: grpc.Client;
};

const RESERVED_CLIENT_NAMES = new Set(["close", "grpcClient"]);

/**
 * A typed client for `service` at `address` (grpc-js target syntax, e.g. `127.0.0.1:8443`). The
 * caller owns it and must `close()` it. Throws INVALID_ARGUMENT if a method's localName clashes
 * with `close`/`grpcClient`.
 */
export function createGrpcClient<S extends DescService>(
  service: S,
  address: string,
  credentials: grpc.ChannelCredentials,
  options: GrpcClientOptions = {},
): GrpcClient<S> {
  const { defaultTimeoutMs, ...clientOptions } = options;
  const raw = new grpc.Client(address, credentials, clientOptions);
  const definition = grpcServiceDefinition(service);
  const client: Record<string, unknown> = { close: () => raw.close(), grpcClient: raw };
  for (const method of service.methods) {
    if (RESERVED_CLIENT_NAMES.has(method.localName)) {
      raw.close();
      throw new TrellisError(
        ErrorCode.INVALID_ARGUMENT,
        `createGrpcClient(${service.typeName}): method "${method.localName}" clashes with the client's own member`,
      );
    }
    const spec: MethodSpec = {
      raw,
      input: method.input,
      def: definition[method.name] as grpc.MethodDefinition<Message, Message>,
      defaultTimeoutMs,
    };
    client[method.localName] = CLIENT_METHOD[method.methodKind](spec);
  }
  return client as GrpcClient<S>;
}

/** Everything a client method needs, resolved once per method at client creation. */
interface MethodSpec {
  readonly raw: grpc.Client;
  readonly input: DescMessage;
  readonly def: grpc.MethodDefinition<Message, Message>;
  readonly defaultTimeoutMs: number | undefined;
}

type Init = MessageInitShape<DescMessage>;

const CLIENT_METHOD: Record<DescMethod["methodKind"], (spec: MethodSpec) => unknown> = {
  unary:
    (spec): UnaryMethod<DescMessage, DescMessage> =>
    (request, opts) =>
      unaryCall(spec, request, opts),
  server_streaming:
    (spec): ServerStreamingMethod<DescMessage, DescMessage> =>
    (request, opts) =>
      serverStreamCall(spec, request, opts),
  client_streaming:
    (spec): ClientStreamingMethod<DescMessage, DescMessage> =>
    (opts) =>
      new ClientStreamHandle(spec, opts),
  bidi_streaming:
    (spec): BidiStreamingMethod<DescMessage, DescMessage> =>
    (opts) =>
      new BidiStreamHandle(spec, opts),
};

function unaryCall(spec: MethodSpec, init: Init, opts: GrpcCallOptions | undefined): Promise<Message> {
  return new Promise((resolve, reject) => {
    const signal = opts?.signal;
    if (signal?.aborted) {
      reject(abortedError());
      return;
    }
    const request = createRequest(spec.input, init);
    if (request instanceof TrellisError) {
      reject(request);
      return;
    }
    // Declared before the call: grpc-js may call back synchronously (e.g. on a closed channel).
    let call: grpc.ClientUnaryCall | undefined;
    const onAbort = (): void => call?.cancel();
    const { def } = spec;
    call = spec.raw.makeUnaryRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      request,
      toMetadata(opts?.metadata),
      callOptions(opts, spec.defaultTimeoutMs),
      (err, response) => {
        signal?.removeEventListener("abort", onAbort);
        if (err !== null) reject(fromGrpcError(err));
        else resolve(response as Message);
      },
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

async function* serverStreamCall(
  spec: MethodSpec,
  init: Init,
  opts: GrpcCallOptions | undefined,
): AsyncGenerator<Message, void, undefined> {
  const signal = opts?.signal;
  if (signal?.aborted) throw abortedError();
  const request = createRequest(spec.input, init);
  if (request instanceof TrellisError) throw request;
  const { def } = spec;
  const call = spec.raw.makeServerStreamRequest(
    def.path,
    def.requestSerialize,
    def.responseDeserialize,
    request,
    toMetadata(opts?.metadata),
    callOptions(opts, undefined),
  );
  const onAbort = (): void => call.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    yield* readResponses(call);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * Yields a call's responses. Node's stream iterator reads on demand, so an unread stream stops
 * asking grpc-js for messages and HTTP/2 flow control pushes back on the server.
 */
async function* readResponses(
  call: grpc.ClientReadableStream<Message>,
): AsyncGenerator<Message, void, undefined> {
  let finished = false;
  try {
    for await (const message of call) yield message as Message;
    finished = true;
  } catch (err) {
    finished = true;
    throw fromGrpcError(err);
  } finally {
    // The consumer left early: the stream iterator destroyed the Node stream but the HTTP/2 stream
    // is still open; cancel so the server sees the client go (and stops producing).
    if (!finished) call.cancel();
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

/** The write half of a client/bidi call: backpressure, end, cancel, failure of pending sends. */
class Outbound {
  protected readonly stream: grpc.ClientWritableStream<Message>;
  readonly #input: DescMessage;
  readonly #signal: AbortSignal | undefined;
  #drain: PromiseWithResolvers<void> | undefined;
  /** Why sends are refused; set by end(), cancel() or the call's end. */
  #refusal: TrellisError | undefined;
  #failure: TrellisError | undefined;

  constructor(
    stream: grpc.ClientWritableStream<Message>,
    input: DescMessage,
    signal: AbortSignal | undefined,
  ) {
    this.stream = stream;
    this.#input = input;
    this.#signal = signal;
    stream.on("drain", () => this.#releaseDrain());
    // Always listen: an unlistened 'error' event would crash the process when nobody iterates.
    stream.on("error", (err: unknown) => {
      this.#failure ??= fromGrpcError(err);
    });
    stream.once("status", () => this.#finished());
    if (signal !== undefined) {
      if (signal.aborted) queueMicrotask(() => this.cancel());
      else signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  send(init: Init): Promise<void> {
    if (this.#refusal !== undefined) return Promise.reject(this.#refusal);
    const message = createRequest(this.#input, init);
    if (message instanceof TrellisError) return Promise.reject(message);
    if (this.stream.write(message)) return RESOLVED;
    // One promise shared by every sender waiting for this drain: no per-message allocation.
    this.#drain ??= Promise.withResolvers<void>();
    return this.#drain.promise;
  }

  end(): void {
    if (this.#refusal !== undefined) return;
    this.#refusal = new TrellisError(ErrorCode.INTERNAL, "send() after end() on a gRPC stream");
    this.stream.end();
    // Node emits no 'drain' once a stream is ending; the queued messages still go out first.
    this.#releaseDrain();
  }

  cancel(): void {
    this.#refusal ??= new TrellisError(ErrorCode.CANCELLED, "gRPC stream cancelled by the client");
    this.stream.cancel();
  }

  readonly #onAbort = (): void => this.cancel();

  #releaseDrain(): void {
    this.#drain?.resolve();
    this.#drain = undefined;
  }

  #finished(): void {
    this.#signal?.removeEventListener("abort", this.#onAbort);
    const failure =
      this.#failure ??
      new TrellisError(ErrorCode.CANCELLED, "gRPC call finished before the message was sent");
    this.#refusal ??= failure;
    if (this.#drain !== undefined) {
      // Marked handled here; every sender awaiting it still sees the rejection.
      this.#drain.promise.catch(() => {});
      this.#drain.reject(failure);
      this.#drain = undefined;
    }
  }
}

class BidiStreamHandle extends Outbound implements BidiStreamingCall<DescMessage, DescMessage> {
  readonly responses: AsyncIterable<Message>;
  readonly call: grpc.ClientDuplexStream<Message, Message>;

  constructor(spec: MethodSpec, opts: GrpcCallOptions | undefined) {
    const { def } = spec;
    const call = spec.raw.makeBidiStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      toMetadata(opts?.metadata),
      callOptions(opts, undefined),
    );
    super(call, spec.input, opts?.signal);
    this.call = call;
    this.responses = readResponses(call);
  }
}

class ClientStreamHandle extends Outbound implements ClientStreamingCall<DescMessage, DescMessage> {
  readonly response: Promise<Message>;
  readonly call: grpc.ClientWritableStream<Message>;

  constructor(spec: MethodSpec, opts: GrpcCallOptions | undefined) {
    const { def } = spec;
    const response = Promise.withResolvers<Message>();
    const call = spec.raw.makeClientStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      toMetadata(opts?.metadata),
      callOptions(opts, spec.defaultTimeoutMs),
      (err, value) => {
        if (err !== null) response.reject(fromGrpcError(err));
        else response.resolve(value as Message);
      },
    );
    super(call, spec.input, opts?.signal);
    this.call = call;
    // The caller may learn of a failure through send() and never await `response`.
    response.promise.catch(() => {});
    this.response = response.promise;
  }

  close(): Promise<Message> {
    this.end();
    return this.response;
  }
}

function createRequest(schema: DescMessage, init: Init): Message | TrellisError {
  try {
    return create(schema, init);
  } catch (err) {
    return new TrellisError(ErrorCode.INVALID_ARGUMENT, `bad ${schema.typeName}: ${String(err)}`, {
      cause: err,
    });
  }
}

function abortedError(): TrellisError {
  return new TrellisError(ErrorCode.CANCELLED, "gRPC call aborted before it started");
}

function toMetadata(metadata: GrpcCallOptions["metadata"]): grpc.Metadata {
  if (metadata instanceof grpc.Metadata) return metadata;
  const out = new grpc.Metadata();
  if (metadata !== undefined) for (const [key, value] of Object.entries(metadata)) out.set(key, value);
  return out;
}

function callOptions(
  opts: GrpcCallOptions | undefined,
  defaultTimeoutMs: number | undefined,
): grpc.CallOptions {
  let deadline = opts?.deadline instanceof Date ? opts.deadline.getTime() : (opts?.deadline ?? Infinity);
  const timeoutMs = opts?.timeoutMs ?? (opts?.deadline === undefined ? defaultTimeoutMs : undefined);
  if (timeoutMs !== undefined) deadline = Math.min(deadline, Date.now() + timeoutMs);
  return deadline === Infinity ? {} : { deadline };
}
