import * as http from "node:http";
import * as http2 from "node:http2";
import { create } from "@bufbuild/protobuf";
import { EndpointSchema } from "@trellis/proto/gen/trellis/v1/resources_pb";
import { HTTPRouteRuleSchema } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import { TrafficPolicySpecSchema } from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
const O = "/work/main/tmp-review/out/";
const { OutboundExchange } = await import(O + "proxy/outbound-exchange.js");
const { H2cTransport } = await import(O + "proxy/mesh-transport.js");
const { compileRoutePolicy } = await import(O + "resilience/route-policy.js");
const { NO_HEADER_EDITS } = await import(O + "routing/header-edits.js");
const { ClusterResilienceRegistry } = await import(O + "resilience/cluster-resilience.js");
const { createBalancer, balancerConfigFrom } = await import(O + "balancer/balancer.js");
const { startMirror } = await import(O + "proxy/mirror.js");
const { requestHasBody } = await import(O + "proxy/app-client.js");
const { forwardableRaw } = await import(O + "proxy/app-client.js");
export { create, http, http2 };

export async function peer(handler) {
  const server = http2.createServer();
  server.on("stream", (stream, headers) => { stream.on("error", () => {}); handler(stream, headers); });
  server.on("session", (s) => s.on("error", () => {}));
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: server.address().port };
}

export function setup({ rule = {}, policy = {}, ports, mirrorPorts, random = Math.random }) {
  const records = [];
  const events = [];
  const hooks = {
    inbound() {},
    outbound: (dst, status, reason, started, bytes, grpc) => records.push({ status, reason, bytes, grpc }),
    retry: (c) => events.push(["retry", c]),
    retryBudgetExhausted: (c) => events.push(["budget", c]),
    outlierEjection: (c) => events.push(["eject", c]),
    panic: (c) => events.push(["panic", c]),
    error: (w, e) => events.push(["error", w, String(e)]),
  };
  const now = () => performance.now();
  const reg = new ClusterResilienceRegistry({ now });
  const mk = (name, ps) => {
    const resilience = reg.get(name, create(TrafficPolicySpecSchema, policy));
    const balancer = createBalancer(balancerConfigFrom(undefined, { minHealthPercent: resilience.outlierConfig.minHealthPercent }),
      ps.map((p) => create(EndpointSchema, { address: "127.0.0.1", port: p, appPort: 8080, proxyId: "p" + p })), { now, random });
    return { name, service: name, namespace: "ns", port: 8080, protocol: "http", balancer, hashKey: undefined, connectTimeoutMs: 1000, resilience,
      streamOptions: { connectTimeoutMs: 1000, connections: resilience.limiter } };
  };
  const cluster = mk("c", ports);
  const mcluster = mirrorPorts ? mk("m", mirrorPorts) : undefined;
  const r = create(HTTPRouteRuleSchema, rule);
  const compiled = { policy: compileRoutePolicy(r), headerEdits: NO_HEADER_EDITS };
  const transport = new H2cTransport();
  const env = { transport, hooks, random, now, wallNow: Date.now };
  const handle = (req, res) => {
    const grpc = (req.headers["content-type"] ?? "").startsWith("application/grpc");
    const hasBody = requestHasBody(req);
    const headers = forwardableRaw(req.rawHeaders);
    let mirror;
    if (mcluster) mirror = startMirror(transport, mcluster, req.method, "svc:8080", req.url, headers, !hasBody, 10000);
    new OutboundExchange(env, req, res, { table: { service: "svc", namespace: "ns" }, rule: compiled, cluster, hashKey: undefined },
      "svc:8080", req.url, headers, performance.now(), grpc, hasBody, mirror).start();
  };
  return { records, events, cluster, mcluster, handle, transport, compiled };
}

export async function front(handle, h2 = false) {
  const server = h2 ? http2.createServer(handle) : http.createServer(handle);
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: server.address().port };
}
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export function limits(c) { const l = c.resilience.limiter; return { active: l.active, pending: l.pending, retries: l.activeRetries, conns: l.connections, outstanding: c.balancer.endpoints.map(e => e.outstanding) }; }
