/**
 * What `trellis dev` and its demo service processes say to each other, and the names they share.
 *
 * The demo mesh is a chain of three services in one namespace:
 *
 *   load generator ─HTTP/1.1─▶ web ─HTTP/1.1─▶ orders (2 replicas) ─gRPC (h2c)─▶ inventory
 *
 * every arrow going through the caller's sidecar (outbound port, explicit mode) and the callee's
 * sidecar (inbound port); the load generator, outside the mesh, talks to web's inbound port directly.
 * Each replica is its own app process with its own sidecar (DEMO_INSTANCES).
 *
 * Each demo service is its own process (demo-service.ts) and talks to `trellis dev` over its stdio,
 * one JSON object per line:
 *  - stdout, service → dev: `listening` once its port is bound (the port its sidecar gets as
 *    --app-port), then `calls` batches: the outcome and latency of every call it made downstream,
 *    so each service's row in the table is measured by its caller, the way a client sees it.
 *  - stdin, dev → service: `upstream` with its sidecar's outbound port, once that sidecar is up
 *    (the app port must exist before the sidecar starts, so this comes second); `behave` when a
 *    scenario makes it fail or slow, and again when the scenario ends. End of stdin means
 *    `trellis dev` is gone: the service exits.
 */

/** The namespace every demo service runs in. */
export const DEMO_NAMESPACE = "shop";

/** The services, in call order. */
export const DEMO_SERVICES = ["web", "orders", "inventory"] as const;
export type DemoService = (typeof DEMO_SERVICES)[number];

/** Who calls whom (the last service calls no one). */
export const DOWNSTREAM: Readonly<Record<DemoService, DemoService | undefined>> = {
  web: "orders",
  orders: "inventory",
  inventory: undefined,
};

/**
 * Replicas per service. orders runs two, so one of them can fail while the other serves (the
 * failing-instance scenario): its callers' retries and outlier detection need somewhere else to go.
 */
export const DEMO_REPLICAS: Readonly<Record<DemoService, number>> = {
  web: 1,
  orders: 2,
  inventory: 1,
};

/** One process of a demo service: `web`, or `orders-1`, `orders-2` for a service with replicas. */
export interface DemoInstance {
  service: DemoService;
  /** 1-based. */
  replica: number;
  /** The process name (`orders-2`; a single-replica service keeps its plain name). */
  name: string;
  /**
   * The loopback address its app binds. Endpoints of one service carry one target port, so
   * replicas on one host share the app port number and each binds its own address, like pods:
   * replica 1 on 127.0.0.1, replica n on 127.0.0.n (all of 127/8 is loopback on Linux).
   */
  address: string;
}

/** Every demo instance, in call order (web, orders-1, orders-2, inventory). */
export const DEMO_INSTANCES: readonly DemoInstance[] = DEMO_SERVICES.flatMap((service) =>
  Array.from({ length: DEMO_REPLICAS[service] }, (_, i) => ({
    service,
    replica: i + 1,
    name: DEMO_REPLICAS[service] > 1 ? `${service}-${i + 1}` : service,
    address: i === 0 ? "127.0.0.1" : `127.0.0.${i + 1}`,
  })),
);

/** The protocol each service's app port is registered with (`--app-port <port>/<protocol>`). */
export const APP_PROTOCOL: Readonly<Record<DemoService, "http" | "grpc">> = {
  web: "http",
  orders: "http",
  inventory: "grpc",
};

/** The one gRPC method inventory serves: request = item id (UTF-8), response = stock count (UTF-8). */
export const INVENTORY_METHOD = "/trellis.demo.v1.Inventory/Check";

/** How long a demo call (load → web, web → orders, orders → inventory) may take before it counts as failed. */
export const CALL_TIMEOUT_MS = 5_000;

/** How often a demo service sends its `calls` batch, ms. */
export const REPORT_EVERY_MS = 250;

/** Service → dev: the app's port is bound. */
export interface ListeningMessage {
  event: "listening";
  port: number;
}

/**
 * Service → dev: calls that completed since the last batch, in completion order. Parallel arrays:
 * `at` wall-clock completion time (ms since the epoch), `ms` latency in ms, `ok` 1 or 0.
 */
export interface CallsMessage {
  event: "calls";
  target: DemoService;
  at: number[];
  ms: number[];
  ok: number[];
}

/** Dev → service: the outbound port of this service's sidecar, to send downstream calls to. */
export interface UpstreamMessage {
  event: "upstream";
  outboundPort: number;
}

/**
 * Dev → service: how to behave from now on (the scenarios' lever). `failStatus` 0 = answer
 * normally, else answer every request with that HTTP status (gRPC: UNAVAILABLE) without doing the
 * work; `delayMs` is added before each answer. `{failStatus: 0, delayMs: 0}` is the normal service.
 */
export interface BehaveMessage {
  event: "behave";
  failStatus: number;
  delayMs: number;
}

/** What dev sends to a service. */
export type ControlMessage = UpstreamMessage | BehaveMessage;

export type ServiceMessage = ListeningMessage | CallsMessage;

/** Parses one line from a demo service; undefined for anything that is not one of its messages. */
export function parseServiceMessage(line: string): ServiceMessage | undefined {
  if (!line.startsWith("{")) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const m = value as Record<string, unknown>;
  if (m.event === "listening" && typeof m.port === "number") return { event: "listening", port: m.port };
  if (
    m.event === "calls" &&
    typeof m.target === "string" &&
    (DEMO_SERVICES as readonly string[]).includes(m.target) &&
    isNumberArray(m.at) &&
    isNumberArray(m.ms) &&
    isNumberArray(m.ok) &&
    m.at.length === m.ms.length &&
    m.at.length === m.ok.length
  ) {
    return { event: "calls", target: m.target as DemoService, at: m.at, ms: m.ms, ok: m.ok };
  }
  return undefined;
}

/** Parses one line from `trellis dev`; undefined for anything else. */
export function parseControlMessage(line: string): ControlMessage | undefined {
  try {
    const m = JSON.parse(line) as Record<string, unknown>;
    if (m.event === "upstream" && typeof m.outboundPort === "number" && m.outboundPort > 0)
      return { event: "upstream", outboundPort: m.outboundPort };
    if (
      m.event === "behave" &&
      typeof m.failStatus === "number" &&
      (m.failStatus === 0 || (m.failStatus >= 400 && m.failStatus <= 599)) &&
      typeof m.delayMs === "number" &&
      m.delayMs >= 0
    )
      return { event: "behave", failStatus: m.failStatus, delayMs: m.delayMs };
  } catch {
    // not ours
  }
  return undefined;
}

function isNumberArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => typeof x === "number");
}
