/**
 * The demo's paced (open-loop) load: requests are sent on a fixed schedule, `rate` per second,
 * whether or not earlier ones have answered. A closed-loop client (wrk, or "send the next when the
 * last returns") slows down exactly when the system does and so hides the latency users would see
 * (coordinated omission); here a slow answer does not delay the next request.
 *
 * Schedule:
 *  1. Request k is due at t0 + k / rate. One timer wakes at the next due time and sends every
 *     request that is due by then (a late wake-up sends the backlog at once, as real clients would).
 *  2. Latency is measured from the due time, not the send time, so time lost to a late timer or a
 *     busy event loop is counted against the system, not hidden.
 *  3. More than `maxInFlight` unanswered requests: the due request is not sent and counts as a
 *     failure with no latency, so a stalled mesh cannot make `trellis dev` itself run out of sockets.
 *  4. Each request gets `timeoutMs` from its due time; after it, it counts as failed.
 */
import * as http from "node:http";

export interface LoadOptions {
  /** Where requests go (web's sidecar inbound port on 127.0.0.1). */
  port: number;
  /** The Host header (`web.shop`). */
  host: string;
  /** Request path (default "/"). */
  path?: string;
  /** Requests per second, > 0. */
  rate: number;
  /** Per-request deadline from its due time, ms. */
  timeoutMs: number;
  /** Most unanswered requests at once (default 2048). */
  maxInFlight?: number;
  /**
   * Called once per request when it completes: wall-clock time, latency ms (NaN if not sent),
   * success (a 200), the status (0: no answer) and the response headers (undefined: no answer).
   */
  onResult: (
    atMs: number,
    latencyMs: number,
    ok: boolean,
    status: number,
    headers: http.IncomingHttpHeaders | undefined,
  ) => void;
}

export class LoadGenerator {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  private readonly intervalMs: number;
  private t0 = 0;
  private sent = 0;
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: LoadOptions) {
    this.intervalMs = 1000 / opts.rate;
  }

  /** Requests sent (or skipped as over the in-flight limit) so far. */
  get scheduled(): number {
    return this.sent;
  }

  /** Starts sending; the first request is due now. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.t0 = performance.now();
    this.tick();
  }

  /**
   * Stops sending and waits for the requests in flight: each is bounded by its own timeout, and the
   * wait by the timeout once more, should an answer never settle.
   */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.opts.timeoutMs + 1000);
        this.idleWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    this.agent.destroy();
  }

  private tick(): void {
    if (!this.running) return;
    const now = performance.now();
    // 1.
    while (this.t0 + this.sent * this.intervalMs <= now) {
      const due = this.t0 + this.sent * this.intervalMs;
      this.sent++;
      this.send(due);
    }
    const next = this.t0 + this.sent * this.intervalMs;
    this.timer = setTimeout(() => this.tick(), Math.max(0, next - performance.now()));
  }

  private send(due: number): void {
    // 3.
    if (this.inFlight >= (this.opts.maxInFlight ?? 2048)) {
      this.opts.onResult(Date.now(), Number.NaN, false, 0, undefined);
      return;
    }
    this.inFlight++;
    let done = false;
    const finish = (status: number, headers?: http.IncomingHttpHeaders) => {
      if (done) return;
      done = true;
      // 2.
      this.opts.onResult(Date.now(), performance.now() - due, status === 200, status, headers);
      this.inFlight--;
      if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
    };
    // 4.
    const left = Math.max(1, Math.ceil(this.opts.timeoutMs - (performance.now() - due)));
    try {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: this.opts.port,
          path: this.opts.path ?? "/",
          headers: { host: this.opts.host },
          agent: this.agent,
          signal: AbortSignal.timeout(left),
        },
        (res) => {
          res.on("data", () => {});
          res.on("end", () => finish(res.statusCode ?? 0, res.headers));
          res.on("error", () => finish(0));
        },
      );
      req.on("error", () => finish(0));
      req.end();
    } catch {
      finish(0); // a request that cannot even be built is a failed request, not a stuck one
    }
  }
}

/**
 * One GET to 127.0.0.1:`port` with Host `host`; resolves with the status (0 when there was no
 * answer within `timeoutMs`). For readiness probes, not for measured load.
 */
export async function probe(port: number, host: string, path: string, timeoutMs: number): Promise<number> {
  return (await probeBody(port, host, path, timeoutMs)).status;
}

/** Like probe(), with the response body (UTF-8; "" when there was no answer). */
export function probeBody(
  port: number,
  host: string,
  path: string,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path,
        headers: { host },
        agent: false,
        signal: AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs))),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", () => resolve({ status: 0, body: "" }));
      },
    );
    req.on("error", () => resolve({ status: 0, body: "" }));
    req.end();
  });
}
