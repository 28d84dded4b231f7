/**
 * The validator on messages built in code, as the control plane receives them over gRPC (no YAML,
 * no positions): every rule declared in the .proto options, reported as `path: message`, all at once.
 *
 * Tests marked `{ todo: "bug: …" }` pin behaviour the validator gets wrong today; they run, but do not
 * fail the suite.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { create, type DescMessage, type Message } from "@bufbuild/protobuf";
import { formatPath } from "@trellis/proto/field-path";
import { PolicySchema } from "@trellis/proto/gen/trellis/v1/admin_pb";
import {
  AuthorizationAction,
  AuthorizationPolicySchema,
} from "@trellis/proto/gen/trellis/v1/authorization_policy_pb";
import { HTTPRouteSchema, RetryOn } from "@trellis/proto/gen/trellis/v1/http_route_pb";
import { MtlsMode, PeerAuthenticationSchema } from "@trellis/proto/gen/trellis/v1/peer_authentication_pb";
import {
  RateLimitPolicySchema,
  RateLimitUnit,
  RedisFailureMode,
} from "@trellis/proto/gen/trellis/v1/rate_limit_policy_pb";
import { RequestAuthenticationSchema } from "@trellis/proto/gen/trellis/v1/request_authentication_pb";
import { Protocol, ServiceSchema } from "@trellis/proto/gen/trellis/v1/service_pb";
import { TelemetrySchema } from "@trellis/proto/gen/trellis/v1/telemetry_pb";
import {
  LoadBalancerPolicy,
  OutboundTrafficPolicy,
  TrafficPolicySchema,
} from "@trellis/proto/gen/trellis/v1/traffic_policy_pb";
import { kindInfo, toPolicy } from "@trellis/proto/kinds";
import { validate } from "@trellis/proto/validate";
import { parsePolicies } from "@trellis/proto/yaml-codec";

/** Violations as `path: message`, sorted (the order of the list is not part of the contract). */
function violations(schema: DescMessage, message: Message, basePath: (string | number)[] = []): string[] {
  return validate(schema, message, basePath)
    .map((v) => `${formatPath(v.path)}: ${v.message}`)
    .sort();
}

const metadata = { name: "orders", namespace: "shop" };
const targetRef = { kind: "Service", name: "orders" };

interface Case {
  name: string;
  schema: DescMessage;
  message: Message;
  want: string[];
  todo?: string;
}

function runTable(title: string, cases: readonly Case[]): void {
  describe(title, () => {
    for (const c of cases) {
      const fn = () => assert.deepEqual(violations(c.schema, c.message), [...c.want].sort());
      if (c.todo !== undefined) it(c.name, { todo: c.todo }, fn);
      else it(c.name, fn);
    }
  });
}

runTable("valid messages give no violations", [
  {
    name: "Service",
    schema: ServiceSchema,
    message: create(ServiceSchema, {
      metadata,
      spec: { ports: [{ name: "http", port: 8080, protocol: Protocol.HTTP, targetPort: 18080 }] },
    }),
    want: [],
  },
  {
    name: "TrafficPolicy (namespace-wide, REGISTRY_ONLY)",
    schema: TrafficPolicySchema,
    message: create(TrafficPolicySchema, {
      metadata,
      spec: {
        loadBalancer: {
          policy: LoadBalancerPolicy.RING_HASH,
          hashOn: { source: { case: "header", value: "x-user" } },
        },
        healthCheck: {
          check: { case: "tcp", value: {} },
          interval: { seconds: 10n },
          timeout: { seconds: 1n },
        },
        outboundTrafficPolicy: OutboundTrafficPolicy.REGISTRY_ONLY,
      },
    }),
    want: [],
  },
  {
    name: "HTTPRoute with retry, fault, mirror and header edits",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema, {
      metadata,
      spec: {
        targetRef,
        hosts: ["orders.example.com", "*.example.com:8443"],
        rules: [
          {
            matches: [{ path: { kind: { case: "prefix", value: "/api" } }, method: "GET" }],
            backends: [
              { service: "orders-v1", weight: 90 },
              { service: "orders-v2", weight: 10 },
            ],
            timeout: { seconds: 2n },
            retry: {
              attempts: 3,
              retryOn: [RetryOn.RETRY_ON_5XX, RetryOn.RETRY_ON_RETRIABLE_STATUS_CODES],
              retriableStatusCodes: [409],
              backoff: { base: { nanos: 25_000_000 }, max: { nanos: 250_000_000 } },
              maxBufferedBody: 65536,
            },
            fault: { abort: { status: 503 }, percentage: 1 },
            mirror: { service: "orders-shadow", percentage: 5 },
            headers: { request: { set: { "x-route": "api" }, remove: ["x-internal"] } },
          },
        ],
      },
    }),
    want: [],
  },
  {
    name: "RateLimitPolicy",
    schema: RateLimitPolicySchema,
    message: create(RateLimitPolicySchema, {
      metadata,
      spec: {
        targetRef,
        local: { requestsPerSecond: 0.5, burst: 10, perIdentity: true },
        global: {
          descriptors: [{ key: "api_key", from: { source: { case: "header", value: "x-api-key" } } }],
          limit: { requests: 20, per: RateLimitUnit.SECOND },
          onRedisFailure: RedisFailureMode.LOCAL_FALLBACK,
        },
      },
    }),
    want: [],
  },
  {
    name: "PeerAuthentication with portLevelMtls",
    schema: PeerAuthenticationSchema,
    message: create(PeerAuthenticationSchema, {
      metadata,
      spec: { mtls: { mode: MtlsMode.STRICT }, portLevelMtls: { 8080: { mode: MtlsMode.PERMISSIVE } } },
    }),
    want: [],
  },
  {
    name: "AuthorizationPolicy",
    schema: AuthorizationPolicySchema,
    message: create(AuthorizationPolicySchema, {
      metadata,
      spec: {
        action: AuthorizationAction.DENY,
        rules: [
          {
            from: [
              { source: { principals: ["spiffe://cluster.local/ns/shop/*"], ipBlocks: ["10.0.0.0/8"] } },
            ],
            to: [{ operation: { methods: ["DELETE"], paths: ["/admin/*"], ports: [8080] } }],
            when: [{ key: { case: "claim", value: "groups" }, values: ["ops"] }],
          },
        ],
      },
    }),
    want: [],
  },
  {
    name: "RequestAuthentication",
    schema: RequestAuthenticationSchema,
    message: create(RequestAuthenticationSchema, {
      metadata,
      spec: {
        jwtRules: [{ issuer: "https://issuer.example.com", jwksUri: "https://issuer.example.com/jwks" }],
      },
    }),
    want: [],
  },
  {
    name: "Telemetry",
    schema: TelemetrySchema,
    message: create(TelemetrySchema, {
      metadata,
      spec: {
        tracing: {
          samplingPercentage: 10,
          customTags: { env: { source: { case: "literal", value: { value: "prod" } } } },
        },
        accessLog: { enabled: true, fields: ["method", "path"] },
      },
    }),
    want: [],
  },
]);

runTable("enums, required fields and required oneofs", [
  {
    name: "an empty policy: metadata and spec are required",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema),
    want: ["metadata: is required", "spec: is required"],
  },
  {
    name: "an empty name is a missing name",
    schema: PeerAuthenticationSchema,
    message: create(PeerAuthenticationSchema, { metadata: { name: "" }, spec: {} }),
    want: ["metadata.name: is required"],
  },
  {
    name: "out-of-range enum number",
    schema: PeerAuthenticationSchema,
    message: create(PeerAuthenticationSchema, { metadata, spec: { mtls: { mode: 7 as MtlsMode } } }),
    want: ["spec.mtls.mode: unknown value 7"],
  },
  {
    name: "out-of-range enum number in a list",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema, {
      metadata,
      spec: { targetRef, rules: [{ retry: { retryOn: [RetryOn.RETRY_ON_RESET, 99 as RetryOn] } }] },
    }),
    want: ["spec.rules[0].retry.retryOn[1]: unknown value 99"],
  },
  {
    name: "a required enum left at 0 (UNSPECIFIED) is missing",
    schema: AuthorizationPolicySchema,
    message: create(AuthorizationPolicySchema, {
      metadata,
      spec: { action: AuthorizationAction.UNSPECIFIED },
    }),
    want: ["spec.action: is required"],
  },
  {
    name: "a required port of 0 is missing (proto3 cannot tell them apart on the wire)",
    schema: ServiceSchema,
    message: create(ServiceSchema, { metadata, spec: { ports: [{ port: 0 }] } }),
    want: ["spec.ports[0].port: is required"],
  },
  {
    name: "required oneofs: path match and header value",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema, {
      metadata,
      spec: { targetRef, rules: [{ matches: [{ path: {}, headers: [{ name: "x-a", value: {} }] }] }] },
    }),
    want: [
      "spec.rules[0].matches[0].headers[0].value: one of exact, prefix, regex, present is required",
      "spec.rules[0].matches[0].path: one of exact, prefix, regex is required",
    ],
  },
  {
    name: "required oneof: health check",
    schema: TrafficPolicySchema,
    message: create(TrafficPolicySchema, { metadata, spec: { healthCheck: { interval: { seconds: 5n } } } }),
    want: ["spec.healthCheck: one of http, grpc, tcp is required"],
  },
  {
    name: "required oneof: custom tag (a map value)",
    schema: TelemetrySchema,
    message: create(TelemetrySchema, { metadata, spec: { tracing: { customTags: { env: {} } } } }),
    want: ["spec.tracing.customTags[env]: one of header, literal is required"],
  },
  {
    name: "required oneof: descriptor source; required limit unit",
    schema: RateLimitPolicySchema,
    message: create(RateLimitPolicySchema, {
      metadata,
      spec: { global: { descriptors: [{ key: "a", from: {} }], limit: { requests: 1 } } },
    }),
    want: [
      "spec.global.descriptors[0].from: one of header, identity, remoteAddress, path, method, literal, queryParameter is required",
      "spec.global.limit.per: is required",
    ],
  },
]);

runTable("numbers, strings and durations", [
  {
    name: "integer and double bounds",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema, {
      metadata,
      spec: {
        targetRef,
        rules: [
          {
            backends: [{ service: "a", weight: 1_000_001, port: 0 }],
            retry: { attempts: 11, retriableStatusCodes: [99, 600] },
            fault: { abort: { status: 199, grpcStatus: 0 }, percentage: 100.5 },
          },
        ],
      },
    }),
    want: [
      "spec.rules[0].backends[0].port: must be ≥ 1",
      "spec.rules[0].backends[0].weight: must be ≤ 1000000",
      "spec.rules[0].fault.abort.grpcStatus: must be ≥ 1",
      "spec.rules[0].fault.abort.status: must be ≥ 200",
      "spec.rules[0].fault.percentage: must be ≤ 100",
      "spec.rules[0].retry.attempts: must be ≤ 10",
      "spec.rules[0].retry.retriableStatusCodes[0]: must be ≥ 100",
      "spec.rules[0].retry.retriableStatusCodes[1]: must be ≤ 599",
    ],
  },
  {
    name: "NaN and infinite doubles are refused",
    schema: TrafficPolicySchema,
    message: create(TrafficPolicySchema, {
      metadata,
      spec: {
        retryBudget: { percent: Number.NaN },
        outlierDetection: { maxEjectionPercent: Number.POSITIVE_INFINITY },
      },
    }),
    want: [
      "spec.outlierDetection.maxEjectionPercent: must be a finite number",
      "spec.outlierDetection.maxEjectionPercent: must be ≤ 100",
      "spec.retryBudget.percent: must be a finite number",
    ],
  },
  {
    name: "rate must be > 0",
    schema: RateLimitPolicySchema,
    message: create(RateLimitPolicySchema, { metadata, spec: { local: { requestsPerSecond: -0.5 } } }),
    want: ["spec.local.requestsPerSecond: must be > 0"],
  },
  {
    name: "string formats and lengths",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema, {
      metadata: { name: "Orders", namespace: "shop_ns" },
      spec: {
        targetRef: { kind: "Deployment", name: "orders" },
        hosts: ["bad_host"],
        rules: [
          {
            name: "Rule",
            matches: [{ path: { kind: { case: "regex", value: "(" } }, method: "get" }],
            fallback: { body: "x".repeat(65537) },
          },
        ],
      },
    }),
    want: [
      "metadata.name: must be a lower-case DNS name (letters, digits, '-' and '.')",
      "metadata.namespace: must be a DNS label (lower-case letters, digits and '-', at most 63)",
      "spec.hosts[0]: must be a host name, optionally with ':port' or a leading '*.'",
      "spec.rules[0].fallback.body: must be at most 65536 characters",
      "spec.rules[0].matches[0].method: must be an upper-case HTTP method (GET, POST, ...)",
      "spec.rules[0].matches[0].path.regex: is not a valid regular expression (/(/u: Unterminated group)",
      "spec.rules[0].name: must be a DNS label (lower-case letters, digits and '-', at most 63)",
      "spec.targetRef.kind: must be one of Service",
    ],
  },
  {
    name: "principals, CIDRs and URLs",
    schema: AuthorizationPolicySchema,
    message: create(AuthorizationPolicySchema, {
      metadata,
      spec: {
        action: AuthorizationAction.ALLOW,
        rules: [
          {
            from: [
              {
                source: {
                  principals: ["cluster.local/ns/shop/sa/web", "spiffe://td/ns/*/sa/x"],
                  ipBlocks: ["10.0.0.0/33"],
                },
              },
            ],
          },
        ],
      },
    }),
    want: [
      "spec.rules[0].from[0].source.ipBlocks[0]: must have a prefix length of 0-32",
      "spec.rules[0].from[0].source.principals[0]: must start with spiffe://",
      "spec.rules[0].from[0].source.principals[1]: '*' is allowed only alone, at the start or at the end",
    ],
  },
  {
    name: "negative durations, whether in seconds or in nanos",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema, {
      metadata,
      spec: {
        targetRef,
        rules: [{ timeout: { seconds: -1n }, retry: { perTryTimeout: { nanos: -1 } } }],
      },
    }),
    want: [
      "spec.rules[0].retry.perTryTimeout: must not be negative",
      "spec.rules[0].timeout: must not be negative",
    ],
  },
  {
    name: "duration bounds",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema, {
      metadata,
      spec: {
        targetRef,
        rules: [{ timeout: { seconds: 90_000n } }, { timeout: { nanos: 500_000 } }],
      },
    }),
    want: ["spec.rules[0].timeout: must be ≤ 24h", "spec.rules[1].timeout: must be ≥ 1ms"],
  },
]);

runTable("map keys, list sizes and unique lists", [
  {
    name: "portLevelMtls key 0 and key 65536",
    schema: PeerAuthenticationSchema,
    message: create(PeerAuthenticationSchema, {
      metadata,
      spec: {
        portLevelMtls: {
          0: { mode: MtlsMode.STRICT },
          65536: { mode: MtlsMode.STRICT },
          8080: { mode: MtlsMode.STRICT },
        },
      },
    }),
    want: ["spec.portLevelMtls[0]: key must be ≥ 1", "spec.portLevelMtls[65536]: key must be ≤ 65535"],
  },
  {
    name: "string map keys and values: header names, header values, label keys",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema, {
      metadata: { name: "orders", labels: { "bad key!": "v" } },
      spec: {
        targetRef,
        rules: [{ headers: { request: { set: { "bad key": "v", "x-ok": "a\r\nb" } } } }],
      },
    }),
    want: [
      "metadata.labels[bad key!]: key must be a label key (1-63 of [A-Za-z0-9_.-])",
      "spec.rules[0].headers.request.set[bad key]: key must be an HTTP header name",
      "spec.rules[0].headers.request.set[x-ok]: must not contain CR, LF or NUL",
    ],
  },
  {
    name: "at most 512 rules",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema, {
      metadata,
      spec: { targetRef, rules: Array.from({ length: 513 }, () => ({})) },
    }),
    want: ["spec.rules: must have at most 512 items"],
  },
  {
    name: "at least 1 port",
    schema: ServiceSchema,
    message: create(ServiceSchema, { metadata, spec: { ports: [] } }),
    want: ["spec.ports: must have at least 1 item"],
  },
  {
    name: "at least 1 rule",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema, { metadata, spec: { targetRef, rules: [] } }),
    want: ["spec.rules: must have at least 1 item"],
  },
  {
    name: "unique numbers and strings: each repeat is reported at its index",
    schema: AuthorizationPolicySchema,
    message: create(AuthorizationPolicySchema, {
      metadata,
      spec: {
        action: AuthorizationAction.ALLOW,
        rules: [
          {
            from: [
              {
                source: {
                  principals: [
                    "spiffe://cluster.local/ns/shop/sa/web",
                    "spiffe://cluster.local/ns/shop/sa/web",
                  ],
                },
              },
            ],
            to: [{ operation: { methods: ["GET", "POST", "GET"], ports: [80, 80, 80] } }],
          },
        ],
      },
    }),
    want: [
      'spec.rules[0].from[0].source.principals[1]: duplicate value "spiffe://cluster.local/ns/shop/sa/web"',
      'spec.rules[0].to[0].operation.methods[2]: duplicate value "GET"',
      "spec.rules[0].to[0].operation.ports[1]: duplicate value 80",
      "spec.rules[0].to[0].operation.ports[2]: duplicate value 80",
    ],
  },
  {
    name: "unique enum list names the duplicate by its token",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema, {
      metadata,
      spec: { targetRef, rules: [{ retry: { retryOn: [RetryOn.RETRY_ON_5XX, RetryOn.RETRY_ON_5XX] } }] },
    }),
    want: ['spec.rules[0].retry.retryOn[1]: duplicate value "5xx"'],
  },
]);

runTable("cross-field rules", [
  {
    name: "jwks and jwksUri both, and neither",
    schema: RequestAuthenticationSchema,
    message: create(RequestAuthenticationSchema, {
      metadata,
      spec: {
        jwtRules: [
          { issuer: "a", jwks: '{"keys":[]}', jwksUri: "https://a.example.com/jwks" },
          { issuer: "b" },
        ],
      },
    }),
    want: [
      "spec.jwtRules[0]: exactly one of jwks, jwksUri must be set",
      "spec.jwtRules[1]: exactly one of jwks, jwksUri must be set",
    ],
  },
  {
    name: "outboundTrafficPolicy with targetRef",
    schema: TrafficPolicySchema,
    message: create(TrafficPolicySchema, {
      metadata,
      spec: { targetRef, outboundTrafficPolicy: OutboundTrafficPolicy.ALLOW_ANY },
    }),
    want: [
      "spec.outboundTrafficPolicy: outboundTrafficPolicy applies to a namespace's callers; it is allowed only without targetRef",
    ],
  },
  {
    name: "hashOn without policy; base ejection above max; health-check timeout above interval",
    schema: TrafficPolicySchema,
    message: create(TrafficPolicySchema, {
      metadata,
      spec: {
        loadBalancer: { hashOn: { source: { case: "sourceIp", value: true } } },
        outlierDetection: { baseEjectionTime: { seconds: 600n }, maxEjectionTime: { seconds: 300n } },
        healthCheck: {
          check: { case: "tcp", value: {} },
          interval: { seconds: 1n },
          timeout: { seconds: 2n },
        },
      },
    }),
    want: [
      "spec.healthCheck.timeout: must not be greater than interval",
      "spec.loadBalancer.hashOn: hashOn needs policy: RING_HASH",
      "spec.outlierDetection.baseEjectionTime: must not be greater than maxEjectionTime",
    ],
  },
  {
    name: "retriable-status-codes without codes; backoff base above max; fault without delay or abort",
    schema: HTTPRouteSchema,
    message: create(HTTPRouteSchema, {
      metadata,
      spec: {
        targetRef,
        rules: [
          {
            retry: {
              retryOn: [RetryOn.RETRY_ON_RETRIABLE_STATUS_CODES],
              backoff: { base: { seconds: 1n }, max: { nanos: 250_000_000 } },
            },
            fault: { percentage: 50 },
          },
        ],
      },
    }),
    want: [
      "spec.rules[0].fault: at least one of delay, abort must be set",
      "spec.rules[0].retry.backoff.base: must not be greater than max",
      "spec.rules[0].retry.retryOn: retryOn retriable-status-codes needs retriableStatusCodes",
    ],
  },
  {
    name: "rate limit policy with neither local nor global",
    schema: RateLimitPolicySchema,
    message: create(RateLimitPolicySchema, { metadata, spec: { targetRef } }),
    want: ["spec: at least one of local, global must be set"],
  },
  {
    name: "condition without values",
    schema: AuthorizationPolicySchema,
    message: create(AuthorizationPolicySchema, {
      metadata,
      spec: {
        action: AuthorizationAction.DENY,
        rules: [{ when: [{ key: { case: "header", value: "x-a" } }] }],
      },
    }),
    want: ["spec.rules[0].when[0]: at least one of values, notValues must be set"],
  },
]);

describe("paths", () => {
  const bad = create(PeerAuthenticationSchema, { metadata, spec: { mtls: { mode: 7 as MtlsMode } } });

  it("are prefixed with the base path", () => {
    assert.deepEqual(violations(PeerAuthenticationSchema, bad, ["policies", 3]), [
      "policies[3].spec.mtls.mode: unknown value 7",
    ]);
  });

  it("start at the kind's case when the message arrives wrapped in the admin API's Policy", () => {
    const policy = toPolicy(kindInfo("PeerAuthentication")!, bad);
    assert.deepEqual(violations(PolicySchema, policy), [
      "peerAuthentication.spec.mtls.mode: unknown value 7",
    ]);
  });

  it("every example policy, wrapped in Policy, validates with no violation", () => {
    const dir = new URL("../../../fixtures/policies/", import.meta.url);
    let n = 0;
    for (const f of readdirSync(dir).filter((x) => x.endsWith(".yaml"))) {
      for (const p of parsePolicies(readFileSync(new URL(f, dir), "utf8"), f).policies) {
        assert.deepEqual(violations(PolicySchema, toPolicy(p.info, p.message)), [], `${f} #${p.index}`);
        n++;
      }
    }
    assert.ok(n >= 16, `expected every example document, got ${n}`);
  });
});
