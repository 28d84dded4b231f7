/**
 * A route rule's resilience policy compiled once per snapshot (build per target): the route
 * timeout, the retry plan, fault injection, mirroring and the fallback response — everything the
 * outbound exchange reads per request without parsing or allocating.
 */
import { durationMs } from "@trellis/proto/duration";
import { clusterName } from "@trellis/proto/resource-types";
import { grpcStatusForHttp } from "../proxy/local-reply.js";
import { compileRetryPlan, DEFAULT_RETRY_PLAN, retriable } from "./retry-policy.js";
/** Largest request body buffered for replay when the route has no retry policy (bytes). */
export const DEFAULT_REPLAY_BUFFER = 64 * 1024;
/** The plan of a route without a retry policy: connect failures and refused streams, once. */
const NO_POLICY_PLAN = { ...DEFAULT_RETRY_PLAN, maxBufferedBody: DEFAULT_REPLAY_BUFFER };
const GRPC_RETRY_CODES = [1, 4, 8, 13, 14];
export function compileRoutePolicy(rule) {
    const retry = rule.retry === undefined ? NO_POLICY_PLAN : compileRetryPlan(rule.retry);
    const grpcTrailerRetry = retry.attempts > 0 &&
        GRPC_RETRY_CODES.some((code) => retriable(retry, { kind: "response", status: 200, grpcStatus: code, retryAfter: undefined }));
    const timeout = durationMs(rule.timeout);
    return {
        timeoutMs: timeout !== undefined && timeout > 0 ? timeout : undefined,
        retry,
        grpcTrailerRetry,
        fault: compileFault(rule),
        mirror: compileMirror(rule),
        fallback: compileFallback(rule),
    };
}
function compileFault(rule) {
    const f = rule.fault;
    if (f === undefined)
        return undefined;
    const abort = f.abort;
    return {
        delayMs: durationMs(f.delay),
        abort: abort === undefined
            ? undefined
            : { status: abort.status, grpcStatus: abort.grpcStatus ?? grpcStatusForHttp(abort.status) },
        percentage: f.percentage ?? 100,
    };
}
function compileMirror(rule) {
    const m = rule.mirror;
    // The control plane fills in the namespace and port; without a port it had no cluster to send.
    if (m === undefined || m.port === undefined || m.namespace === "")
        return undefined;
    return {
        cluster: clusterName(m.service, m.namespace, m.port),
        service: m.service,
        namespace: m.namespace,
        percentage: m.percentage ?? 100,
    };
}
function compileFallback(rule) {
    const f = rule.fallback;
    if (f === undefined)
        return undefined;
    const status = f.status ?? 200;
    return {
        status,
        grpcStatus: status < 300 ? 0 : grpcStatusForHttp(status),
        headers: { ...f.headers },
        body: f.body,
    };
}
