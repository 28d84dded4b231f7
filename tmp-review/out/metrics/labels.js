/**
 * Label vocabularies of the sidecar's metrics (INTERFACES.md "Metrics" and "On the wire"). Typed
 * unions where INTERFACES.md fixes the values, so a typo is a compile error, not a new series.
 */
/** The labels that identify a traffic target, in exposition order (request and TCP metrics). */
export const TARGET_LABEL_NAMES = [
    "direction",
    "source_service",
    "source_namespace",
    "destination_service",
    "destination_namespace",
];
/** The labels that split a request target's series by outcome, in exposition order. */
export const OUTCOME_LABEL_NAMES = ["response_code", "grpc_status", "reason"];
/**
 * Why the proxy answered itself (`x-trellis-error`, and `reason` on request metrics and
 * `trellis_local_reply_total`). Order as in INTERFACES.md "On the wire".
 */
export const LOCAL_REPLY_REASONS = [
    "bad_request",
    "no_route",
    "unauthenticated",
    "unauthorized",
    "mtls_required",
    "rate_limited",
    "upstream_connect_failure",
    "upstream_reset",
    "upstream_protocol_error",
    "no_healthy_upstream",
    "overflow",
    "retry_budget_exhausted",
    "ratelimit_unavailable",
    "draining",
    "upstream_timeout",
    "fault_injected",
    "fallback",
];
