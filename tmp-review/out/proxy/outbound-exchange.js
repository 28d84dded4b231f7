import { backoffMs, isIdempotent, nothingReachedUpstream, retriable, retryAfterMs, } from "../resilience/retry-policy.js";
import { applyResponseEdits } from "../routing/header-edits.js";
import { endsStream, forwardableResponseRaw, respondHeadersOnly, writeHead, } from "./app-client.js";
import { first } from "./headers.js";
import { APP_PORT_HEADER } from "./inbound.js";
import { REASON_STATUS, sendLocalReply } from "./local-reply.js";
import { cancelStream } from "./mesh-transport.js";
import { splice } from "./splice.js";
import { classifyUpstreamError } from "./upstream-error.js";
var Phase;
(function (Phase) {
    Phase[Phase["Idle"] = 0] = "Idle";
    Phase[Phase["Queued"] = 1] = "Queued";
    Phase[Phase["Attempting"] = 2] = "Attempting";
    Phase[Phase["Backoff"] = 3] = "Backoff";
    /** Response headers went to the caller: no retry from here on. */
    Phase[Phase["Committed"] = 4] = "Committed";
    Phase[Phase["Done"] = 5] = "Done";
})(Phase || (Phase = {}));
/** The largest grpc-timeout value (8 digits, RFC-less gRPC over HTTP/2 spec). */
const GRPC_TIMEOUT_UNITS = {
    H: 3_600_000,
    M: 60_000,
    S: 1000,
    m: 1,
    u: 0.001,
    n: 0.000001,
};
/** `grpc-timeout` ("<1–8 digits><H|M|S|m|u|n>") in ms; undefined when absent or malformed. */
export function parseGrpcTimeout(value) {
    if (value === undefined || value.length < 2 || value.length > 9)
        return undefined;
    const unit = GRPC_TIMEOUT_UNITS[value[value.length - 1]];
    const digits = value.slice(0, -1);
    if (unit === undefined || !/^\d+$/.test(digits))
        return undefined;
    return Number(digits) * unit;
}
const NO_PICK = {};
const EMPTY_SET = new Set();
export class OutboundExchange {
    env;
    req;
    res;
    t;
    authority;
    path;
    headers;
    started;
    grpc;
    mirror;
    phase = Phase.Idle;
    /** Number of the current attempt: 0 is the first try. */
    attempt = 0;
    stream;
    endpoint;
    attemptStarted = 0;
    /** An attempt is open: its endpoint's onStart ran and onFinish has not. */
    attemptOpen = false;
    tried;
    permit;
    retryPermit;
    cancelQueue;
    routeTimer;
    tryTimer;
    backoffTimer;
    /** Absolute deadline on env.now (Infinity: none). */
    deadline;
    method;
    hasBody;
    bodyEnded = false;
    /** onBodyData and onBodyEnd listen to the request (from the first attempt on). */
    bodyAttached = false;
    /** Body chunks kept for replay; undefined once the body outgrew maxBufferedBody. */
    chunks;
    buffered = 0;
    waitingDrain = false;
    grpcStatus;
    bytes = 0;
    /** A gRPC 200 held back until its first body byte or trailers (see step 5). */
    held;
    dst;
    lastFailure = {
        reason: "no_healthy_upstream",
        message: "no attempt was made",
    };
    constructor(env, req, res, t, authority, path, headers, started, grpc, hasBody, mirror) {
        this.env = env;
        this.req = req;
        this.res = res;
        this.t = t;
        this.authority = authority;
        this.path = path;
        this.headers = headers;
        this.started = started;
        this.grpc = grpc;
        this.mirror = mirror;
        this.method = req.method ?? "GET";
        this.hasBody = hasBody;
        this.dst = { destinationService: t.table.service, destinationNamespace: t.table.namespace };
        let budgetMs = t.rule.policy.timeoutMs ?? Number.POSITIVE_INFINITY;
        if (grpc) {
            const g = parseGrpcTimeout(first(headers["grpc-timeout"]));
            if (g !== undefined && g < budgetMs)
                budgetMs = g;
            delete headers["grpc-timeout"];
        }
        this.deadline = started + budgetMs;
        if (hasBody && t.rule.policy.retry.maxBufferedBody > 0)
            this.chunks = [];
    }
    /** Step 1: admission. */
    start() {
        const c = this.t.cluster.resilience;
        c.budget.onRequest();
        this.res.once("close", this.onCallerClose);
        // An HTTP/2 caller that resets its stream mid-body: 'aborted' comes before the body's 'end',
        // which must then not be passed on as a complete body.
        this.req.once("aborted", this.onCallerClose);
        const remaining = this.deadline - this.env.now();
        if (remaining !== Number.POSITIVE_INFINITY) {
            if (remaining <= 0) {
                this.timeout();
                return;
            }
            this.routeTimer = setTimeout(this.timeout, remaining);
        }
        const admission = c.limiter.admit();
        if (admission === undefined) {
            this.noEndpoint("overflow", `${this.t.cluster.name} is at its connection limits`);
            return;
        }
        if (admission.permit !== undefined) {
            this.permit = admission.permit;
            this.firstAttempt();
            return;
        }
        this.phase = Phase.Queued;
        this.cancelQueue = admission.cancel;
        void admission.wait?.then((permit) => {
            this.cancelQueue = undefined;
            if (permit === undefined)
                return;
            if (this.phase !== Phase.Queued) {
                permit.release();
                return;
            }
            this.permit = permit;
            this.firstAttempt();
        });
    }
    firstAttempt() {
        const t = this.t;
        const endpoint = t.cluster.balancer.pick(t.hashKey === undefined ? NO_PICK : { hashKey: t.hashKey });
        if (endpoint === undefined) {
            this.noEndpoint("no_healthy_upstream", `${t.cluster.name} has no usable endpoint`);
            return;
        }
        if (this.hasBody)
            this.attachBody();
        this.send(endpoint);
    }
    attachBody() {
        if (this.bodyAttached)
            return;
        this.bodyAttached = true;
        this.req.on("data", this.onBodyData);
        this.req.once("end", this.onBodyEnd);
    }
    /** No endpoint can serve (none usable, limits full): the route's fallback, else a local reply. */
    noEndpoint(reason, message) {
        const fb = this.t.rule.policy.fallback;
        if (fb !== undefined) {
            const status = sendLocalReply(this.res, this.grpc, "fallback", message, {
                status: fb.status,
                grpcStatus: fb.grpcStatus,
                headers: fb.headers,
                body: fb.body,
            });
            this.grpcStatus = this.grpc ? fb.grpcStatus : undefined;
            this.finish(status, "fallback", true);
            return;
        }
        this.localReply(reason, message);
    }
    localReply(reason, message) {
        const status = sendLocalReply(this.res, this.grpc, reason, message);
        if (this.grpc)
            this.grpcStatus = REASON_STATUS[reason].grpc;
        this.finish(status, reason, false);
    }
    /** Step 3: one attempt on `endpoint`. */
    send(endpoint) {
        const t = this.t;
        const data = endpoint.data;
        const h = {
            ...this.headers,
            [APP_PORT_HEADER]: String(data.appPort || t.cluster.port),
            ":method": this.method,
            ":path": this.path,
            ":authority": this.authority,
            ":scheme": "http",
        };
        const now = this.env.now();
        if (this.grpc && this.deadline !== Number.POSITIVE_INFINITY)
            h["grpc-timeout"] = `${Math.max(1, Math.ceil(this.deadline - now))}m`;
        const endStream = !this.hasBody || (this.bodyEnded && this.chunks !== undefined && this.buffered === 0);
        const stream = this.env.transport.request({ address: data.address, port: data.port }, h, endStream, t.cluster.streamOptions);
        if (stream === undefined) {
            this.noEndpoint("overflow", `${t.cluster.name} is at its connection limit`);
            return;
        }
        this.phase = Phase.Attempting;
        this.stream = stream;
        this.endpoint = endpoint;
        this.attemptStarted = now;
        this.attemptOpen = true;
        endpoint.onStart();
        if (t.cluster.balancer.panicking)
            this.env.hooks.panic(t.cluster.name);
        stream.on("response", this.onResponse);
        stream.on("error", this.onStreamError);
        if (this.attempt === 0)
            stream.on("continue", this.onContinue);
        const perTry = t.rule.policy.retry.perTryTimeoutMs;
        if (perTry !== undefined)
            this.tryTimer = setTimeout(this.onTryTimeout, perTry);
        if (!this.hasBody || endStream)
            return;
        // Replay what was buffered, then the live body continues into this stream (onBodyData).
        if (this.chunks !== undefined)
            for (const c of this.chunks)
                stream.write(c);
        if (this.bodyEnded)
            stream.end();
        else if (this.req.isPaused() && !this.waitingDrain)
            this.req.resume();
    }
    onContinue = () => {
        this.res.writeContinue?.();
    };
    onBodyData = (chunk) => {
        if (this.chunks !== undefined) {
            if (this.buffered + chunk.length <= this.t.rule.policy.retry.maxBufferedBody) {
                this.chunks.push(chunk);
                this.buffered += chunk.length;
            }
            else {
                // Too big to replay: from now on this request cannot be retried once sent.
                this.chunks = undefined;
                this.buffered = 0;
            }
        }
        this.mirror?.write(chunk);
        const s = this.stream;
        // Answered before the body ended (a local reply, a per-try timeout, an early upstream answer):
        // the rest is read and dropped. Pausing here, as between attempts, stalled the body after one
        // more chunk — the mirror's copy never got its end and hung open until the mirror's timeout.
        if (this.phase === Phase.Done)
            return;
        if (this.phase !== Phase.Attempting && this.phase !== Phase.Committed) {
            // Between attempts (backoff, queue): hold the body; what is buffered is replayed.
            this.req.pause();
            return;
        }
        if (s === undefined || s.destroyed || !s.writable)
            return; // an upstream done with the body: drop
        if (!s.write(chunk)) {
            this.req.pause();
            this.waitingDrain = true;
            s.once("drain", this.onDrain);
            s.once("close", this.onDrain);
        }
    };
    onDrain = () => {
        if (!this.waitingDrain)
            return;
        this.waitingDrain = false;
        if (this.phase === Phase.Attempting || this.phase === Phase.Committed || this.phase === Phase.Done)
            this.req.resume();
    };
    onBodyEnd = () => {
        this.bodyEnded = true;
        this.mirror?.end();
        const s = this.stream;
        if ((this.phase === Phase.Attempting || this.phase === Phase.Committed) && s !== undefined && s.writable)
            s.end();
    };
    onResponse = (headers, flags, raw) => {
        const stream = this.stream;
        if (this.phase !== Phase.Attempting || stream === undefined)
            return;
        const status = Number(headers[":status"] ?? 502);
        const gs = headers["grpc-status"];
        const grpcStatus = gs === undefined ? undefined : Number(gs);
        const ended = endsStream(flags);
        const outcome = {
            kind: "response",
            status,
            grpcStatus,
            retryAfter: status === 429 || status === 503 ? first(headers["retry-after"]) : undefined,
        };
        this.reportOutlier(status >= 500 ? (status >= 502 && status <= 504 ? "gateway-error" : "server-error") : "success");
        if (retriable(this.t.rule.policy.retry, outcome) && this.retryIfAllowed(outcome, false))
            return;
        if (this.grpc &&
            !ended &&
            status === 200 &&
            grpcStatus === undefined &&
            this.t.rule.policy.grpcTrailerRetry &&
            this.attempt < this.t.rule.policy.retry.attempts) {
            // Step 5: the status may come in the trailers; nothing goes to the caller before it is known.
            this.held = { status, raw };
            stream.on("data", this.onHeldData);
            stream.once("trailers", this.onHeldTrailers);
            stream.once("end", this.onHeldEnd);
            return;
        }
        if (this.grpc && grpcStatus !== undefined)
            this.grpcStatus = grpcStatus;
        this.commit(stream, status, raw, ended, undefined);
    };
    onHeldData = (chunk) => {
        const stream = this.stream;
        const held = this.held;
        if (stream === undefined || held === undefined)
            return;
        this.detachHeld(stream);
        this.commit(stream, held.status, held.raw, false, chunk);
    };
    onHeldTrailers = (trailers, _flags, raw) => {
        const stream = this.stream;
        const held = this.held;
        if (stream === undefined || held === undefined)
            return;
        this.detachHeld(stream);
        const gs = trailers["grpc-status"];
        const grpcStatus = gs === undefined ? undefined : Number(gs);
        const outcome = { kind: "response", status: 200, grpcStatus, retryAfter: undefined };
        if (retriable(this.t.rule.policy.retry, outcome) && this.retryIfAllowed(outcome, false))
            return;
        // Headers then trailers, no message: forwarded as such.
        this.grpcStatus = grpcStatus;
        this.phase = Phase.Committed;
        this.clearTryTimer();
        const out = forwardableResponseRaw(held.raw);
        applyResponseEdits(out, this.t.rule.headerEdits);
        writeHead(this.res, held.status, out);
        this.res.addTrailers(forwardableResponseRaw(raw));
        this.res.end();
        stream.resume();
        this.finish(held.status, "", true);
    };
    onHeldEnd = () => {
        const stream = this.stream;
        const held = this.held;
        if (stream === undefined || held === undefined)
            return;
        this.detachHeld(stream);
        this.commit(stream, held.status, held.raw, true, undefined);
    };
    detachHeld(stream) {
        this.held = undefined;
        stream.off("data", this.onHeldData);
        stream.off("trailers", this.onHeldTrailers);
        stream.off("end", this.onHeldEnd);
    }
    /** Step 6: the response goes to the caller (`firstChunk`: a body byte already read, see step 5). */
    commit(stream, status, raw, ended, firstChunk) {
        this.phase = Phase.Committed;
        this.clearTryTimer();
        const out = forwardableResponseRaw(raw);
        applyResponseEdits(out, this.t.rule.headerEdits);
        try {
            if (ended) {
                respondHeadersOnly(this.res, status, out);
                stream.resume();
                this.finish(status, "", status < 500);
                return;
            }
            writeHead(this.res, status, out);
        }
        catch (err) {
            // A head the caller's protocol cannot carry (e.g. a status Node refuses): a definite 502,
            // never an exception out of an event handler.
            this.phase = Phase.Attempting;
            this.abandonAttempt();
            this.localReply("upstream_protocol_error", `unforwardable response head: ${String(err)}`);
            return;
        }
        if (firstChunk !== undefined) {
            this.bytes += firstChunk.length;
            this.res.write(firstChunk);
        }
        stream.on("data", this.countBytes);
        stream.on("trailers", this.onTrailers);
        splice(stream, this.res, (err) => this.finish(status, err ? "upstream_reset" : "", !err && status < 500));
    }
    countBytes = (c) => {
        this.bytes += c.length;
    };
    onTrailers = (trailers, _flags, raw) => {
        if (this.grpc && trailers["grpc-status"] !== undefined)
            this.grpcStatus = Number(trailers["grpc-status"]);
        this.res.addTrailers(forwardableResponseRaw(raw));
    };
    onStreamError = (err) => {
        const stream = this.stream;
        if (stream === undefined)
            return;
        if (this.phase === Phase.Committed) {
            this.res.destroy();
            this.reportOutlier("gateway-error");
            this.finish(0, "upstream_reset", false);
            return;
        }
        if (this.phase !== Phase.Attempting)
            return;
        const f = classifyUpstreamError(err, stream.session?.connecting === false);
        const failure = f.connectFailure
            ? "connect-failure"
            : f.refusedStream
                ? "refused-stream"
                : "reset";
        this.reportOutlier("gateway-error");
        this.lastFailure = { reason: f.reason, message: f.message };
        this.failed({ kind: "failure", failure });
    };
    onTryTimeout = () => {
        this.tryTimer = undefined;
        if (this.phase !== Phase.Attempting)
            return;
        this.reportOutlier("gateway-error");
        const ms = this.t.rule.policy.retry.perTryTimeoutMs;
        this.lastFailure = {
            reason: "upstream_timeout",
            message: `no response within the per-try timeout (${ms} ms)`,
        };
        this.failed({ kind: "failure", failure: "per-try-timeout" });
    };
    /** An attempt failed without a response to forward: retry, or answer with the failure. */
    failed(outcome) {
        if (retriable(this.t.rule.policy.retry, outcome) && this.retryIfAllowed(outcome, true))
            return;
        if (this.phase === Phase.Done)
            return;
        this.abandonAttempt();
        this.localReply(this.lastFailure.reason, this.lastFailure.message);
    }
    /**
     * Step 4: retries `outcome` when safe and allowed (true: the attempt was abandoned and a retry
     * is scheduled). When the budget says no, a failure without a response is answered
     * `retry_budget_exhausted` here (true is returned, as the exchange is settled).
     */
    retryIfAllowed(outcome, noResponse) {
        const plan = this.t.rule.policy.retry;
        if (this.attempt >= plan.attempts)
            return false;
        if (this.hasBody && this.chunks === undefined)
            return false;
        if (!nothingReachedUpstream(outcome) &&
            !plan.retryNonIdempotent &&
            !isIdempotent(this.method) &&
            !this.grpcStatusRetry(outcome))
            return false;
        const now = this.env.now();
        let delay;
        if (outcome.kind === "response" && outcome.retryAfter !== undefined) {
            delay = retryAfterMs(outcome.retryAfter, this.env.wallNow());
            // Not waited for when it would outlast the route deadline: the caller gets the answer now.
            if (delay !== undefined && now + delay >= this.deadline)
                return false;
        }
        delay ??= backoffMs(plan, this.attempt + 1, this.env.random);
        const c = this.t.cluster;
        const retryPermit = c.resilience.limiter.admitRetry();
        if (retryPermit === undefined)
            return false;
        if (!c.resilience.budget.tryRetry()) {
            retryPermit.release();
            this.env.hooks.retryBudgetExhausted(c.name);
            if (!noResponse)
                return false;
            this.abandonAttempt();
            this.localReply("retry_budget_exhausted", `${this.lastFailure.reason} (${this.lastFailure.message}); the retry budget of ${c.name} is spent`);
            return true;
        }
        this.abandonAttempt();
        this.retryPermit = retryPermit;
        this.attempt++;
        this.phase = Phase.Backoff;
        this.env.hooks.retry(c.name);
        if (this.hasBody && !this.bodyEnded)
            this.req.pause();
        this.backoffTimer = setTimeout(this.nextAttempt, delay);
        return true;
    }
    /**
     * A gRPC call (always a POST) answered with a gRPC status that retryOn lists: listing a status
     * code is the service owner's statement that a call failing with it may be retried — gRPC's own
     * retry design (A6) puts that decision in the same hands. HTTP statuses and resets of gRPC calls
     * still need retryNonIdempotent.
     */
    grpcStatusRetry(outcome) {
        return (this.grpc && outcome.kind === "response" && outcome.status === 200 && outcome.grpcStatus !== undefined);
    }
    nextAttempt = () => {
        this.backoffTimer = undefined;
        if (this.phase !== Phase.Backoff)
            return;
        if (this.hasBody && this.chunks === undefined) {
            // The body outgrew the replay buffer during the backoff: it cannot be sent whole again.
            this.localReply(this.lastFailure.reason, this.lastFailure.message);
            return;
        }
        const t = this.t;
        const last = this.endpoint;
        let tried = this.tried;
        if (last !== undefined) {
            if (tried === undefined) {
                tried = new Set();
                this.tried = tried;
            }
            tried.add(last.key);
        }
        const exclude = tried ?? EMPTY_SET;
        const endpoint = t.cluster.balancer.pick(t.hashKey === undefined ? { exclude } : { exclude, hashKey: t.hashKey });
        if (endpoint === undefined) {
            this.localReply(this.lastFailure.reason, this.lastFailure.message);
            return;
        }
        this.send(endpoint);
    };
    /** Ends the current attempt (its stream cancelled unless it ended) and its endpoint bracket. */
    abandonAttempt() {
        this.clearTryTimer();
        const s = this.stream;
        if (s !== undefined) {
            s.off("response", this.onResponse);
            s.off("error", this.onStreamError);
            s.off("continue", this.onContinue);
            if (this.held !== undefined)
                this.detachHeld(s);
            s.on("error", ignore);
            cancelStream(s);
        }
        this.closeAttempt(false);
    }
    closeAttempt(ok) {
        if (!this.attemptOpen)
            return;
        this.attemptOpen = false;
        this.endpoint?.onFinish(this.env.now() - this.attemptStarted, ok);
        this.releaseRetryPermit();
    }
    releaseRetryPermit() {
        if (this.retryPermit !== undefined) {
            this.retryPermit.release();
            this.retryPermit = undefined;
        }
    }
    reportOutlier(result) {
        const e = this.endpoint;
        if (e === undefined)
            return;
        const c = this.t.cluster;
        if (c.resilience.outlier.report(e, result, c.balancer.endpoints))
            this.env.hooks.outlierEjection(c.name);
    }
    clearTryTimer() {
        if (this.tryTimer !== undefined) {
            clearTimeout(this.tryTimer);
            this.tryTimer = undefined;
        }
    }
    /** Step 2's expiry. */
    timeout = () => {
        this.routeTimer = undefined;
        const phase = this.phase;
        if (phase === Phase.Done)
            return;
        const ms = Math.round(this.deadline - this.started);
        if (phase === Phase.Attempting)
            this.reportOutlier("gateway-error");
        if (phase === Phase.Committed) {
            if (this.stream !== undefined)
                cancelStream(this.stream);
            this.res.destroy();
            this.finish(0, "upstream_timeout", false);
            return;
        }
        this.abandonAttempt();
        this.localReply("upstream_timeout", `no response within ${ms} ms`);
    };
    /** The caller went away (HTTP/1 socket closed, HTTP/2 RST_STREAM): everything upstream is cancelled. */
    onCallerClose = () => {
        if (this.phase === Phase.Done)
            return;
        if (this.phase === Phase.Committed) {
            // splice sees the closed response and reports; the upstream stream is cancelled with it.
            if (this.stream !== undefined)
                cancelStream(this.stream);
            return;
        }
        this.abandonAttempt();
        this.finish(0, "", false);
    };
    /** Records the request once; releases everything it held. */
    finish(status, reason, ok) {
        if (this.phase === Phase.Done)
            return;
        const wasQueued = this.phase === Phase.Queued;
        this.phase = Phase.Done;
        if (this.routeTimer !== undefined)
            clearTimeout(this.routeTimer);
        if (this.backoffTimer !== undefined)
            clearTimeout(this.backoffTimer);
        this.clearTryTimer();
        if (wasQueued)
            this.cancelQueue?.();
        this.closeAttempt(ok);
        this.releaseRetryPermit();
        this.permit?.release();
        this.permit = undefined;
        this.chunks = undefined;
        if (this.hasBody && this.req.isPaused())
            this.req.resume(); // read and drop the rest
        // Answered before the first attempt (overflow, no endpoint, timeout or caller gone while
        // queued): nothing read the body yet, and the mirror's copy, sent with the headers, would wait
        // for it until the mirror's timeout, then reach the mirror cut short. Read it now, for the copy.
        if (this.hasBody && this.mirror !== undefined)
            this.attachBody();
        if (this.grpc && this.grpcStatus === undefined && reason !== "")
            this.grpcStatus = REASON_STATUS[reason]?.grpc;
        this.env.hooks.outbound(this.dst, status, reason, this.started, this.bytes, this.grpcStatus);
    }
}
function ignore() { }
