/**
 * Traffic for the sidecar integration tests: a small HTTP/1.1 client that sends through a
 * sidecar's outbound port (explicit mode: the Host header names the mesh service), and a paced
 * open-loop load generator.
 *
 * Open loop: request k is sent at start + k/rate whatever happened to the earlier ones, on its own
 * timer, so a stall in the system under test shows up as failed or late requests instead of
 * silently slowing the load down (the "coordinated omission" of closed-loop generators). Bounded:
 * at most rate × duration requests (fewer when stopped early), each with a deadline, and at most
 * `maxInFlight` at once (a request that would exceed it is counted as failed, never queued).
 */
import * as http from "node:http";
import { setTimeout as delay } from "node:timers/promises";

/** One answer. */
export interface MeshResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface MeshRequest {
  /** The mesh authority, e.g. `orders.shop:8080`. */
  host: string;
  /** Request-target as sent, unnormalised (default "/"). */
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  /** Deadline for the whole exchange, ms (default 5000). */
  timeoutMs?: number;
  /** Request body (sent with Content-Length). */
  body?: string;
}

/** Sends requests to a sidecar's outbound port over a keep-alive pool. */
export class MeshClient {
  private readonly agent: http.Agent;

  constructor(
    private readonly outboundPort: number,
    opts: { maxSockets?: number } = {},
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 64 });
  }

  /** Sends one request; rejects on a network error or the deadline. */
  send(r: MeshRequest): Promise<MeshResponse> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: this.outboundPort,
          method: r.method ?? "GET",
          path: r.path ?? "/",
          headers: { ...r.headers, host: r.host },
          agent: this.agent,
          timeout: r.timeoutMs ?? 5000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString("utf8"),
            }),
          );
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${r.timeoutMs ?? 5000} ms`)));
      req.on("error", reject);
      req.end(r.body);
    });
  }

  /** Closes the pooled connections. */
  close(): void {
    this.agent.destroy();
  }
}

/** How one request of a load ended. */
export interface LoadSample {
  /** Sequence number, 0-based. */
  index: number;
  /** When it was sent, ms after the load started. */
  sentAtMs: number;
  latencyMs: number;
  /** HTTP status; 0 for a network error or deadline. */
  status: number;
  /** The app that answered (`x-app`), or "". */
  app: string;
  /** `x-trellis-error` or the network error, "" when none. */
  error: string;
}

export interface PacedLoadOptions {
  /** Requests per second. */
  rate: number;
  durationMs: number;
  /**
   * Most requests outstanding at once (default 1000): a bound on the generator, not a load
   * shaper — a stall of the system under test (or of a busy test machine) must show up as slow
   * answers, and only a stall longer than this many requests counts as failures.
   */
  maxInFlight?: number;
  /** Sends request `index`; the result's status < 400 counts as success. */
  send: (index: number) => Promise<MeshResponse>;
}

export interface LoadResult {
  samples: LoadSample[];
  /** The samples with status 0 or ≥ 400. */
  failures: LoadSample[];
  /** Wall time from the first send to the last answer, ms. */
  elapsedMs: number;
  /** The largest lateness of a send against its schedule, ms (the generator's own health). */
  maxLagMs: number;
}

/** A running load: `done` resolves once every request has been answered or has failed. */
export interface PacedLoad {
  readonly done: Promise<LoadResult>;
  /** Samples so far (answered requests). */
  readonly samples: readonly LoadSample[];
  /** Requests sent so far. */
  sent(): number;
  /** Time since the load started, ms. */
  elapsedMs(): number;
  /**
   * Sends nothing more from now on (for a load whose end depends on the test's progress: start it
   * with a generous `durationMs` as the bound, and stop it once what it covers has happened).
   */
  stop(): void;
}

/**
 * Starts an open-loop load: request k at start + k × 1000/rate ms, rate × duration requests in
 * all (unless stopped earlier). The scheduling loop has its own timer (ticks of ≤ 5 ms that send whatever is due), so it
 * keeps its pace while the test awaits other things.
 */
export function startPacedLoad(opts: PacedLoadOptions): PacedLoad {
  let total = Math.round((opts.rate * opts.durationMs) / 1000);
  const maxInFlight = opts.maxInFlight ?? 1000;
  const samples: LoadSample[] = [];
  const pending: Promise<void>[] = [];
  let sent = 0;
  let inFlight = 0;
  let maxLagMs = 0;
  const start = performance.now();
  const fire = (index: number, dueMs: number) => {
    const sentAtMs = performance.now() - start;
    maxLagMs = Math.max(maxLagMs, sentAtMs - dueMs);
    if (inFlight >= maxInFlight) {
      samples.push({
        index,
        sentAtMs,
        latencyMs: 0,
        status: 0,
        app: "",
        error: "generator: too many in flight",
      });
      return;
    }
    inFlight++;
    const t0 = performance.now();
    pending.push(
      opts.send(index).then(
        (r) => {
          inFlight--;
          samples.push({
            index,
            sentAtMs,
            latencyMs: performance.now() - t0,
            status: r.status,
            app: String(r.headers["x-app"] ?? ""),
            error: String(r.headers["x-trellis-error"] ?? ""),
          });
        },
        (err: unknown) => {
          inFlight--;
          samples.push({
            index,
            sentAtMs,
            latencyMs: performance.now() - t0,
            status: 0,
            app: "",
            error: err instanceof Error ? err.message : String(err),
          });
        },
      ),
    );
  };
  const done = (async (): Promise<LoadResult> => {
    const interval = 1000 / opts.rate;
    while (sent < total) {
      const now = performance.now() - start;
      while (sent < total && sent * interval <= now) {
        fire(sent, sent * interval);
        sent++;
      }
      if (sent < total) await delay(Math.max(1, Math.min(5, sent * interval - (performance.now() - start))));
    }
    await Promise.all(pending);
    samples.sort((a, b) => a.index - b.index);
    return {
      samples,
      failures: samples.filter((s) => s.status === 0 || s.status >= 400),
      elapsedMs: performance.now() - start,
      maxLagMs,
    };
  })();
  return {
    done,
    samples,
    sent: () => sent,
    elapsedMs: () => performance.now() - start,
    stop: () => {
      total = Math.min(total, sent);
    },
  };
}

/** A one-line summary of failures for assertion messages (first few, with their reasons). */
export function describeFailures(failures: readonly LoadSample[], max = 10): string {
  if (failures.length === 0) return "no failures";
  const shown = failures
    .slice(0, max)
    .map((f) => `#${f.index} at ${f.sentAtMs.toFixed(0)}ms: ${f.status} ${f.error}`)
    .join("; ");
  return `${failures.length} failed: ${shown}${failures.length > max ? "; …" : ""}`;
}

/**
 * Closed-loop traffic for distribution checks: `total` requests, `concurrency` at a time; returns
 * the answers in completion order. Rejects on the first network error.
 */
export async function sendConcurrently(
  total: number,
  concurrency: number,
  send: (index: number) => Promise<MeshResponse>,
): Promise<MeshResponse[]> {
  const out: MeshResponse[] = [];
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      out.push(await send(i));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

/** Count of answers per `x-app`. */
export function countByApp(responses: readonly { headers: http.IncomingHttpHeaders }[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of responses) {
    const app = String(r.headers["x-app"] ?? `(status ${"status" in r ? String(r.status) : "?"})`);
    counts.set(app, (counts.get(app) ?? 0) + 1);
  }
  return counts;
}
