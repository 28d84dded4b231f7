// Failure classification: what reason the caller sees and whether a retry is safe.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { classifyUpstreamError } from "@trellis/sidecar/proxy/upstream-error";

describe("classifyUpstreamError", () => {
  it("a refused connect is a connect failure, connected or not", () => {
    const err = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    assert.equal(classifyUpstreamError(err, false).connectFailure, true);
    assert.equal(classifyUpstreamError(err, true).reason, "upstream_connect_failure");
  });

  it("a stream cancelled because its session never connected is a connect failure", () => {
    const cause = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    const err = Object.assign(new Error("The pending stream has been canceled"), {
      code: "ERR_HTTP2_STREAM_CANCEL",
      cause,
    });
    const f = classifyUpstreamError(err, false);
    assert.equal(f.connectFailure, true);
    assert.equal(f.reason, "upstream_connect_failure");
  });

  it("our connect timeout is a connect failure", () => {
    const cause = Object.assign(new Error("connect timed out"), { code: "TRELLIS_ERR_TIMEOUT" });
    const err = Object.assign(new Error("canceled"), { code: "ERR_HTTP2_STREAM_CANCEL", cause });
    assert.equal(classifyUpstreamError(err, false).connectFailure, true);
  });

  it("a REFUSED_STREAM reset is a refused stream; another reset is a reset", () => {
    const refused = Object.assign(new Error("Stream closed with error code NGHTTP2_REFUSED_STREAM"), {
      code: "ERR_HTTP2_STREAM_ERROR",
    });
    assert.equal(classifyUpstreamError(refused, true).refusedStream, true);
    const reset = Object.assign(new Error("Stream closed with error code NGHTTP2_INTERNAL_ERROR"), {
      code: "ERR_HTTP2_STREAM_ERROR",
    });
    const f = classifyUpstreamError(reset, true);
    assert.deepEqual([f.reason, f.connectFailure, f.refusedStream], ["upstream_reset", false, false]);
  });

  it("errors whose code is not a string (an aborted request's DOMException has 20) never throw", () => {
    const abort = new DOMException("This operation was aborted", "AbortError");
    assert.equal(typeof (abort as unknown as { code: unknown }).code, "number");
    assert.equal(classifyUpstreamError(abort, false).reason, "upstream_reset");
    assert.equal(classifyUpstreamError({ code: 42 }, true).reason, "upstream_reset");
    assert.equal(classifyUpstreamError(undefined, true).reason, "upstream_reset");
    assert.equal(classifyUpstreamError("boom", true).message, "boom");
  });
});
