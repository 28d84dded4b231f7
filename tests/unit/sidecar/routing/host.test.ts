/**
 * Host / :authority normalisation (every spelling of one destination selects one route) and the
 * mapping of a host to the RouteConfig the sidecar subscribes to on demand.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatAuthority, normalizeAuthority, serviceNameForHost } from "@trellis/sidecar/routing/host";

describe("normalizeAuthority", () => {
  // [Host header, scheme default port] → [host, port]
  const valid: Array<[header: string, defaultPort: number, host: string, port: number]> = [
    ["orders.shop", 80, "orders.shop", 80],
    ["orders.shop:8080", 80, "orders.shop", 8080],
    ["Orders.SHOP:8080", 80, "orders.shop", 8080],
    ["orders.shop:80", 80, "orders.shop", 80],
    ["orders.shop.", 80, "orders.shop", 80],
    ["orders.shop.:8080", 80, "orders.shop", 8080],
    ["ORDERS.shop.svc.cluster.local.", 80, "orders.shop.svc.cluster.local", 80],
    ["orders.shop:", 80, "orders.shop", 80],
    ["orders", 80, "orders", 80],
    ["my_host-1", 80, "my_host-1", 80],
    ["api.example.com:443", 443, "api.example.com", 443],
    ["api.example.com", 443, "api.example.com", 443],
    ["10.0.0.1:9090", 80, "10.0.0.1", 9090],
    ["[::1]", 80, "[::1]", 80],
    ["[::1]:8080", 80, "[::1]", 8080],
    ["[::1]:", 80, "[::1]", 80],
    ["[2001:DB8::1]:65535", 80, "[2001:db8::1]", 65535],
  ];
  for (const [header, defaultPort, host, port] of valid) {
    it(`${JSON.stringify(header)} (default ${defaultPort}) → ${host} port ${port}`, () => {
      assert.deepEqual(normalizeAuthority(header, defaultPort), { host, port });
    });
  }

  const invalid = [
    "",
    ":80",
    ".",
    ".orders",
    "orders..shop",
    "orders.shop..",
    "a:b:c",
    "::1",
    "[::1",
    "[::1]x",
    "[zz::1]",
    "[]",
    "orders:0",
    "orders:65536",
    "orders:8o",
    "orders:123456",
    "orders:-1",
    "user@orders.shop",
    "orders shop",
    "orders/shop",
    "orders%2eshop",
    "caf\u00e9.example",
  ];
  for (const header of invalid) {
    it(`refuses ${JSON.stringify(header)}`, () => {
      assert.equal(normalizeAuthority(header, 80), undefined);
    });
  }

  it("formatAuthority leaves the default port out, as RouteConfig domains do", () => {
    assert.equal(formatAuthority({ host: "orders.shop", port: 80 }, 80), "orders.shop");
    assert.equal(formatAuthority({ host: "orders.shop", port: 8080 }, 80), "orders.shop:8080");
    assert.equal(formatAuthority({ host: "[::1]", port: 443 }, 80), "[::1]:443");
  });
});

describe("serviceNameForHost", () => {
  // [normalised host, caller's namespace] → RouteConfig name or undefined (not a mesh name)
  const cases: Array<[host: string, ownNamespace: string, name: string | undefined]> = [
    ["orders", "shop", "orders.shop"],
    ["orders", "default", "orders.default"],
    ["orders.shop", "web", "orders.shop"],
    ["orders.shop.svc", "web", "orders.shop"],
    ["orders.shop.svc.cluster.local", "web", "orders.shop"],
    ["orders-v2.shop-prod.svc.cluster.local", "web", "orders-v2.shop-prod"],
    ["api.example.com", "web", undefined],
    ["orders.shop.svc.cluster", "web", undefined],
    ["orders.shop.svc.cluster.remote", "web", undefined],
    ["orders.shop.local", "web", undefined],
    ["a.b.c.d.e.f", "web", undefined],
    ["10.0.0.1", "web", undefined],
    ["127.0.0.1", "web", undefined],
    ["orders.123", "web", undefined],
    ["[::1]", "web", undefined],
    ["localhost", "web", undefined],
    ["", "web", undefined],
    ["-orders", "web", undefined],
    ["orders_v2.shop", "web", undefined],
    ["orders.shop:8080", "web", undefined],
    [`${"a".repeat(64)}.shop`, "web", undefined],
  ];
  for (const [host, ns, name] of cases) {
    it(`${JSON.stringify(host)} from namespace ${ns} → ${name ?? "not a mesh name"}`, () => {
      assert.equal(serviceNameForHost(host, ns), name);
    });
  }

  it("works on what normalizeAuthority produced from a raw Host header", () => {
    const authority = normalizeAuthority("Orders.Shop.SVC.cluster.local.:8080", 80);
    assert.ok(authority !== undefined);
    assert.equal(serviceNameForHost(authority.host, "web"), "orders.shop");
  });
});
