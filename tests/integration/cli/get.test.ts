// `trellis get`, `delete` and `analyze` against a real `trellis control-plane` (embedded store):
// what a user sees, and that `get -o yaml` applies back as unchanged.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runTrellis } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../../helpers/control-plane.js";

const POLICIES = `apiVersion: trellis.dev/v1
kind: Service
metadata: { name: orders, namespace: shop, labels: { team: orders } }
spec: { ports: [ { port: 8080, protocol: http } ] }
---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules:
    - matches: [ { path: { prefix: /api }, method: GET } ]
      backends: [ { service: orders, weight: 90 }, { service: orders-canary, weight: 10 } ]
      timeout: 2s
      retry: { attempts: 3, perTryTimeout: 500ms, retryOn: [connect-failure, 5xx], backoff: { base: 25ms, max: 250ms } }
    - matches: [ { path: { prefix: /api/v1 }, method: GET } ]
      backends: [ { service: orders } ]
---
apiVersion: trellis.dev/v1
kind: TrafficPolicy
metadata: { name: defaults, namespace: shop }
spec:
  outboundTrafficPolicy: REGISTRY_ONLY
  connectionLimits: { maxConnections: 100 }
---
apiVersion: trellis.dev/v1
kind: RateLimitPolicy
metadata: { name: orders-limits, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  local: { requestsPerSecond: 100, burst: 20 }
  global:
    descriptors: [ { key: api_key, from: { header: x-api-key } } ]
    limit: { requests: 20, per: second }
    onRedisFailure: allow
`;

describe("trellis get / delete / analyze", () => {
  let cp: ControlPlaneProcess;
  before(async () => {
    cp = await startControlPlane();
    const r = await runTrellis(["apply", "-f", "-"], cp.env, POLICIES);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await cp?.stop();
  });

  it("get -o yaml prints what apply -f - takes back as unchanged", async () => {
    const yaml = await runTrellis(["get", "all", "-o", "yaml"], cp.env);
    assert.equal(yaml.code, 0, yaml.stderr);
    assert.match(yaml.stdout, /resourceVersion: "\d+"/);
    assert.match(yaml.stdout, /status:\n {2}conditions:\n {4}- type: Applied/);
    const back = await runTrellis(["apply", "-f", "-"], cp.env, yaml.stdout);
    assert.equal(back.code, 0, back.stderr);
    assert.equal(
      back.stdout,
      [
        "Service/shop/orders unchanged",
        "TrafficPolicy/shop/defaults unchanged",
        "HTTPRoute/shop/orders unchanged",
        "RateLimitPolicy/shop/orders-limits unchanged",
        "",
      ].join("\n"),
    );
  });

  it("an edited copy of get -o yaml applies as configured; a stale copy is refused", async () => {
    const yaml = (await runTrellis(["get", "routes", "orders", "-n", "shop", "-o", "yaml"], cp.env)).stdout;
    const edited = yaml.replace("timeout: 2s", "timeout: 3s");
    assert.notEqual(edited, yaml);
    const ok = await runTrellis(["apply", "-f", "-"], cp.env, edited);
    assert.equal(ok.stdout, "HTTPRoute/shop/orders configured\n", ok.stderr);
    // `yaml` still carries the old resourceVersion: applying it again would undo the edit.
    const stale = await runTrellis(["apply", "-f", "-"], cp.env, yaml);
    assert.notEqual(stale.code, 0);
    assert.match(stale.stderr, /^error: HTTPRoute shop\/orders: resourceVersion \d+ is stale/);
    const now = (await runTrellis(["get", "routes", "orders", "-n", "shop", "-o", "yaml"], cp.env)).stdout;
    assert.match(now, /timeout: 3s/);
    assert.match(now, /generation: 2/);
  });

  it("get prints a table by default, by kind alias, listing every namespace", async () => {
    const r = await runTrellis(["get", "routes"], cp.env);
    assert.equal(r.code, 0, r.stderr);
    const [header, row, ...rest] = r.stdout.trimEnd().split("\n");
    assert.match(header ?? "", /^NAMESPACE +NAME +APPLIED +REJECTED +PENDING +AGE$/);
    assert.match(row ?? "", /^shop +orders +0 +0 +0 +\d+s$/);
    assert.deepEqual(rest, []);
    const wide = await runTrellis(["get", "svc", "-n", "shop", "-o", "wide"], cp.env);
    assert.match(wide.stdout, /GENERATION +VERSION +TARGET +REASON\n/);
    const none = await runTrellis(["get", "svc", "-n", "elsewhere"], cp.env);
    assert.equal(none.code, 0);
    assert.equal(none.stdout, "");
    assert.match(none.stderr, /no policies found/);
  });

  it("get -o json is protobuf JSON with apiVersion and kind", async () => {
    const r = await runTrellis(
      ["get", "ratelimitpolicy", "orders-limits", "-n", "shop", "-o", "json"],
      cp.env,
    );
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as {
      apiVersion: string;
      kind: string;
      metadata: { name: string; generation: string };
      spec: { local: { requestsPerSecond: number } };
      status: { conditions: { type: string; status: string }[] };
    };
    assert.equal(doc.apiVersion, "trellis.dev/v1");
    assert.equal(doc.kind, "RateLimitPolicy");
    assert.equal(doc.metadata.generation, "1");
    assert.equal(doc.spec.local.requestsPerSecond, 100);
    assert.equal(doc.status.conditions[0]?.type, "Applied");
  });

  it("get of something that is not there fails with a clear message", async () => {
    const missing = await runTrellis(["get", "routes", "nope", "-n", "shop"], cp.env);
    assert.notEqual(missing.code, 0);
    assert.equal(missing.stderr, "error: HTTPRoute shop/nope not found\n");
    const kind = await runTrellis(["get", "gizmos"], cp.env);
    assert.notEqual(kind.code, 0);
    assert.match(kind.stderr, /^error: unknown kind "gizmos"/);
  });

  it("analyze reports unknown services and shadowed rules, and exits 1 on errors", async () => {
    const r = await runTrellis(["analyze", "-n", "shop"], cp.env);
    assert.equal(r.code, 1, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split("\n"), [
      "ERROR unknown-service HTTPRoute/shop/orders spec.rules[0].backends[1]: backend service orders-canary.shop does not exist (no registrations and no Service policy); requests routed to it fail",
      "WARNING shadowed-rule HTTPRoute/shop/orders spec.rules[1]: rules[1] can never match: rules[0] matches every request it matches, and the first matching rule wins",
    ]);
    const clean = await runTrellis(["analyze", "-n", "elsewhere"], cp.env);
    assert.equal(clean.code, 0);
    assert.equal(clean.stdout, "no findings\n");
  });

  it("delete removes a policy; deleting it again fails", async () => {
    const r = await runTrellis(["delete", "tp", "defaults", "-n", "shop"], cp.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "TrafficPolicy/shop/defaults deleted\n");
    const again = await runTrellis(["delete", "tp", "defaults", "-n", "shop"], cp.env);
    assert.notEqual(again.code, 0);
    assert.equal(again.stderr, "error: TrafficPolicy shop/defaults not found\n");
    const gone = await runTrellis(["get", "tp", "defaults", "-n", "shop"], cp.env);
    assert.notEqual(gone.code, 0);
  });
});
