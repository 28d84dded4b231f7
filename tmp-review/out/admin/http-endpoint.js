/**
 * What the admin and stats servers share: a listen/close handle around a node:http server, and the
 * few response helpers their routes use. Not on the data path.
 */
import { METRICS_CONTENT_TYPE } from "../metrics/exposition.js";
/** Prometheus text exposition format 0.0.4. */
export const PROMETHEUS_CONTENT_TYPE = METRICS_CONTENT_TYPE;
/** Wraps `server` as an HttpEndpoint bound to `host` (undefined = all interfaces, dual-stack). */
export function httpEndpoint(server, host) {
    return {
        server,
        listen(port) {
            return new Promise((resolve, reject) => {
                const onError = (err) => reject(err);
                server.once("error", onError);
                const done = () => {
                    server.off("error", onError);
                    resolve(server.address().port);
                };
                if (host === undefined)
                    server.listen(port, done);
                else
                    server.listen(port, host, done);
            });
        },
        close(graceMs = 1_000) {
            if (!server.listening)
                return Promise.resolve();
            return new Promise((resolve) => {
                // A keep-alive connection turns idle only when its response ends, so idle ones are closed
                // as they appear, not just once; whatever is still busy at the deadline is destroyed.
                const sweep = setInterval(() => server.closeIdleConnections(), 25);
                const deadline = setTimeout(() => server.closeAllConnections(), graceMs);
                server.close(() => {
                    clearInterval(sweep);
                    clearTimeout(deadline);
                    resolve();
                });
                server.closeIdleConnections();
            });
        },
    };
}
/** The request path without the query string ("/" when absent). */
export function pathOf(req) {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    return q < 0 ? url : url.slice(0, q);
}
/** Sends a complete response. A HEAD request gets the headers only (node:http drops the body). */
export function send(res, status, contentType, body) {
    if (res.headersSent) {
        res.destroy();
        return;
    }
    const headers = { "cache-control": "no-store" };
    if (contentType !== undefined)
        headers["content-type"] = contentType;
    res.writeHead(status, headers).end(body);
}
/** 405 with the Allow header (RFC 9110 §15.5.6 requires it). */
export function methodNotAllowed(res, allow) {
    if (res.headersSent)
        return;
    res.writeHead(405, { allow, "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
}
/** Answers with `produce()`'s text, or 500 with the error's message when it throws or rejects. */
export function sendProduced(res, contentType, produce) {
    const fail = (err) => send(res, 500, "text/plain; charset=utf-8", `error: ${err instanceof Error ? err.message : String(err)}\n`);
    let result;
    try {
        result = produce();
    }
    catch (err) {
        fail(err);
        return;
    }
    if (typeof result === "string")
        send(res, 200, contentType, result);
    else
        result.then((text) => send(res, 200, contentType, text), fail);
}
/** 200 `okBody` / 503 `failBody` from a health check; a check that throws counts as failing. */
export function readyRoute(res, check, okBody = "ready\n", failBody = "not ready\n") {
    let ok = false;
    try {
        ok = check();
    }
    catch {
        ok = false;
    }
    send(res, ok ? 200 : 503, "text/plain; charset=utf-8", ok ? okBody : failBody);
}
