/**
 * The sidecar's settings (INTERFACES.md "Sidecar settings"): defaults, flag > env > default,
 * value parsing, and that every refusal names the flag the user has to fix.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import {
  RUN_FLAGS,
  type RunOptionValues,
  redactedConfig,
  registerRunOptions,
  resolveSidecarConfig,
  type SidecarConfig,
} from "@trellis/sidecar/config/flags";
import { Command } from "commander";
import { makeTempDir, removeTempDir } from "../../../helpers/temp-dirs.js";

const PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

let dir = "";
let caFile = "";
let tokenFile = "";

before(() => {
  dir = makeTempDir("sidecar-flags");
  caFile = join(dir, "ca.pem");
  tokenFile = join(dir, "token");
  writeFileSync(caFile, PEM);
  writeFileSync(tokenFile, "  file-token\n\n");
  writeFileSync(join(dir, "empty-token"), " \n");
  writeFileSync(join(dir, "not-pem"), "hello\n");
});
after(() => removeTempDir(dir));

/** The smallest valid settings, plus `extra`. */
function opts(extra: RunOptionValues = {}): RunOptionValues {
  return { caFile, service: "orders", joinToken: "tok", ...extra };
}

function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { HOME: dir, ...extra };
}

/** The CONFIG error's message for these settings (fails the test when they resolve). */
function configError(o: RunOptionValues, e: NodeJS.ProcessEnv = env()): string {
  try {
    resolveSidecarConfig(o, e);
  } catch (err) {
    assert.ok(err instanceof TrellisError, `expected a TrellisError, got ${String(err)}`);
    assert.equal(err.code, ErrorCode.CONFIG);
    return err.message;
  }
  assert.fail("expected the settings to be refused");
}

describe("resolveSidecarConfig defaults", () => {
  it("fills every setting a user did not give with the documented default", () => {
    const c = resolveSidecarConfig(opts(), env());
    const proxyId = `${hostname()}-${process.pid}`;
    const expected: SidecarConfig = {
      controlPlane: ["127.0.0.1:15010"],
      caFile,
      caPem: PEM,
      service: "orders",
      namespace: "default",
      serviceAccount: "orders",
      proxyId,
      advertiseAddress: "127.0.0.1",
      labels: {},
      locality: undefined,
      appPorts: [],
      inboundPort: 15006,
      outboundPort: 15001,
      adminPort: 15000,
      statsPort: 15020,
      token: "tok",
      tokenFile: undefined,
      redis: undefined,
      otlpEndpoint: undefined,
      stateDir: join(dir, ".trellis", "sidecar", proxyId),
      capture: "explicit",
      proxyUid: 1337,
      drainTimeoutMs: 30_000,
      drainDelayMs: 2_000,
      randomSeed: undefined,
      subscribeTimeoutMs: 1_000,
      headerTimeoutMs: 10_000,
      upstreamIdleTimeoutMs: 60_000,
      downstreamIdleTimeoutMs: 300_000,
      maxHeaderBytes: 61_440,
      maxHeaders: 100,
      logLevel: "info",
    };
    assert.deepEqual(c, expected);
  });

  it("accepts 0 for every listening port (the OS picks)", () => {
    const c = resolveSidecarConfig(
      opts({ inboundPort: "0", outboundPort: "0", adminPort: "0", statsPort: "0" }),
      env(),
    );
    assert.deepEqual([c.inboundPort, c.outboundPort, c.adminPort, c.statsPort], [0, 0, 0, 0]);
  });
});

describe("resolveSidecarConfig precedence: flag > env > default", () => {
  // [flag key, env name, env value, flag value, field, value from env, value from flag]
  const table: Array<
    [keyof RunOptionValues & string, string, string, string, keyof SidecarConfig, unknown, unknown]
  > = [
    [
      "controlPlane",
      "TRELLIS_CONTROL_PLANE",
      "cp-a:15010,cp-b:15010",
      "10.0.0.1:15010",
      "controlPlane",
      ["cp-a:15010", "cp-b:15010"],
      ["10.0.0.1:15010"],
    ],
    ["service", "TRELLIS_SERVICE", "billing", "orders", "service", "billing", "orders"],
    ["namespace", "TRELLIS_NAMESPACE", "shop", "prod", "namespace", "shop", "prod"],
    ["serviceAccount", "TRELLIS_SERVICE_ACCOUNT", "sa-env", "sa-flag", "serviceAccount", "sa-env", "sa-flag"],
    ["proxyId", "TRELLIS_POD_NAME", "orders-7d9f-abc", "p1", "proxyId", "orders-7d9f-abc", "p1"],
    ["advertiseAddress", "TRELLIS_POD_IP", "10.1.2.3", "fd00::7", "advertiseAddress", "10.1.2.3", "fd00::7"],
    [
      "appPort",
      "TRELLIS_APP_PORT",
      "9090/grpc",
      "8080",
      "appPorts",
      [{ port: 9090, protocol: "grpc" }],
      [{ port: 8080, protocol: "http" }],
    ],
    [
      "redis",
      "TRELLIS_REDIS",
      "redis://env-redis:6379",
      "redis://flag-redis:6380",
      "redis",
      { mode: "standalone", display: "redis://env-redis:6379", url: "redis://env-redis:6379", tls: false },
      { mode: "standalone", display: "redis://flag-redis:6380", url: "redis://flag-redis:6380", tls: false },
    ],
    [
      "otlpEndpoint",
      "TRELLIS_OTLP_ENDPOINT",
      "http://jaeger:4318",
      "https://otel.example:4318/v1/traces",
      "otlpEndpoint",
      "http://jaeger:4318",
      "https://otel.example:4318/v1/traces",
    ],
    [
      "stateDir",
      "TRELLIS_STATE_DIR",
      "/var/lib/trellis",
      "/srv/state",
      "stateDir",
      "/var/lib/trellis",
      "/srv/state",
    ],
    ["logLevel", "TRELLIS_LOG_LEVEL", "debug", "warn", "logLevel", "debug", "warn"],
    ["inboundPort", "TRELLIS_INBOUND_PORT", "16006", "17006", "inboundPort", 16006, 17006],
    ["drainTimeout", "TRELLIS_DRAIN_TIMEOUT", "1m", "45s", "drainTimeoutMs", 60_000, 45_000],
    ["drainDelay", "TRELLIS_DRAIN_DELAY", "500ms", "0s", "drainDelayMs", 500, 0],
    ["subscribeTimeout", "TRELLIS_SUBSCRIBE_TIMEOUT", "250ms", "1.5s", "subscribeTimeoutMs", 250, 1_500],
    ["maxHeaderBytes", "TRELLIS_MAX_HEADER_BYTES", "32KiB", "8192", "maxHeaderBytes", 32_768, 8_192],
    ["capture", "TRELLIS_CAPTURE", "transparent", "explicit", "capture", "transparent", "explicit"],
  ];
  for (const [key, envName, envValue, flagValue, field, fromEnv, fromFlag] of table) {
    it(`${envName} sets ${field}, and --${key} beats it`, () => {
      const base = opts();
      const withoutFlag: RunOptionValues = { ...base, [key]: undefined };
      assert.deepEqual(resolveSidecarConfig(withoutFlag, env({ [envName]: envValue }))[field], fromEnv);
      assert.deepEqual(
        resolveSidecarConfig({ ...base, [key]: flagValue }, env({ [envName]: envValue }))[field],
        fromFlag,
      );
    });
  }

  it("reads the CA file and the join token from TRELLIS_CA_FILE and TRELLIS_JOIN_TOKEN", () => {
    const c = resolveSidecarConfig(
      { service: "orders" },
      env({ TRELLIS_CA_FILE: caFile, TRELLIS_JOIN_TOKEN: " env-token " }),
    );
    assert.equal(c.caPem, PEM);
    assert.equal(c.token, "env-token");
  });

  it("treats an empty env variable as unset (Kubernetes renders missing values as empty)", () => {
    const c = resolveSidecarConfig(opts(), env({ TRELLIS_NAMESPACE: "", TRELLIS_INBOUND_PORT: "  " }));
    assert.equal(c.namespace, "default");
    assert.equal(c.inboundPort, 15006);
  });

  it("defaults the service account to the service, and the state dir to HOME/.trellis/sidecar/<proxy-id>", () => {
    const c = resolveSidecarConfig(opts({ service: "web", proxyId: "web-1" }), env());
    assert.equal(c.serviceAccount, "web");
    assert.equal(c.stateDir, join(dir, ".trellis", "sidecar", "web-1"));
  });

  it("makes a relative --state-dir absolute", () => {
    const c = resolveSidecarConfig(opts({ stateDir: "state/here" }), env());
    assert.equal(c.stateDir, resolve("state/here"));
  });
});

describe("resolveSidecarConfig refusals name the flag", () => {
  // [what, flag values, env, pattern the message must match]
  const table: Array<[string, RunOptionValues, NodeJS.ProcessEnv, RegExp]> = [
    ["missing --ca-file", { service: "orders", joinToken: "t" }, {}, /^--ca-file is required .*ca\.pem/],
    [
      "unreadable --ca-file",
      opts({ caFile: "/nonexistent/ca.pem" }),
      {},
      /^--ca-file cannot be read: \/nonexistent\/ca\.pem \(ENOENT\)/,
    ],
    ["non-PEM --ca-file", opts({ caFile: "NOT_PEM" }), {}, /^--ca-file is not a PEM certificate bundle/],
    ["missing --service", { caFile, joinToken: "t" }, {}, /^--service is required/],
    ["bad --service", opts({ service: "Orders_Svc" }), {}, /^--service must be a DNS label/],
    ["empty --service", opts({ service: "" }), {}, /^--service must not be empty/],
    ["bad --namespace", opts({ namespace: "-shop" }), {}, /^--namespace must be a DNS label/],
    [
      "bad --service-account",
      opts({ serviceAccount: "SA!" }),
      {},
      /^--service-account must be a lower-case DNS name/,
    ],
    ["bad --proxy-id", opts({ proxyId: "a/b" }), {}, /^--proxy-id must be 1-253 of letters/],
    [
      "bad --advertise-address",
      opts({ advertiseAddress: "pod.local" }),
      {},
      /^--advertise-address must be an IP address/,
    ],
    [
      "bad --control-plane",
      opts({ controlPlane: "cp-a:15010,cp-b" }),
      {},
      /^--control-plane must be comma-separated host:port.*"cp-b"/,
    ],
    [
      "port 0 in --control-plane",
      opts({ controlPlane: "cp:0" }),
      {},
      /^--control-plane needs a port 1-65535/,
    ],
    [
      "empty --control-plane",
      opts({ controlPlane: " , " }),
      {},
      /^--control-plane must list at least one host:port/,
    ],
    ["bad --labels", opts({ labels: "app" }), {}, /^--labels must be k=v pairs/],
    ["bad label value", opts({ labels: "app=a b" }), {}, /^--labels value of "app" must be at most 63/],
    ["duplicate label", opts({ labels: "a=1,a=2" }), {}, /^--labels has the key "a" twice/],
    [
      "bad --locality",
      opts({ locality: "eu/west/1/extra" }),
      {},
      /^--locality must be region\/zone\[\/subzone\]/,
    ],
    ["empty locality part", opts({ locality: "eu//a" }), {}, /^--locality must be region\/zone/],
    ["bad --app-port", opts({ appPort: "http" }), {}, /^--app-port must be comma-separated ports like 8080/],
    ["app port 0", opts({ appPort: "0" }), {}, /^--app-port must be comma-separated ports .*\(1-65535\)/],
    [
      "unknown app protocol",
      opts({ appPort: "8080/udp" }),
      {},
      /^--app-port has protocol "udp" in "8080\/udp"; use one of http, http2, grpc, tcp/,
    ],
    ["duplicate app port", opts({ appPort: "8080,8080/grpc" }), {}, /^--app-port lists port 8080 twice/],
    [
      "app port = sidecar port",
      opts({ appPort: "15001" }),
      {},
      /^--app-port 15001 is also the sidecar's --outbound-port/,
    ],
    [
      "bad --inbound-port",
      opts({ inboundPort: "65536" }),
      {},
      /^--inbound-port must be a port number 0-65535, got "65536"/,
    ],
    ["bad --outbound-port", opts({ outboundPort: "-1" }), {}, /^--outbound-port must be a port number/],
    ["bad --admin-port", opts({ adminPort: "admin" }), {}, /^--admin-port must be a port number/],
    ["bad --stats-port", opts({ statsPort: "1.5" }), {}, /^--stats-port must be a port number/],
    ["clashing ports", opts({ adminPort: "15020" }), {}, /^--admin-port and --stats-port are both 15020/],
    [
      "no token",
      { caFile, service: "orders" },
      {},
      /^--join-token or --token-file is required .*trellis token create/,
    ],
    ["empty --join-token", opts({ joinToken: " " }), {}, /^--join-token must not be empty/],
    ["both tokens", opts({ tokenFile: "/x" }), {}, /^--join-token and --token-file are both given; use one/],
    [
      "missing --token-file",
      { caFile, service: "orders", tokenFile: "/nonexistent/token" },
      {},
      /^--token-file cannot be read: \/nonexistent\/token/,
    ],
    [
      "empty --token-file",
      { caFile, service: "orders", tokenFile: "EMPTY_TOKEN" },
      {},
      /^--token-file names an empty file/,
    ],
    [
      "bad --redis",
      opts({ redis: "http://redis:6379" }),
      {},
      /^--redis must be redis:\/\/host:port, redis-sentinel:/,
    ],
    [
      "sentinel without master",
      opts({ redis: "redis-sentinel://s1:26379,s2:26379" }),
      {},
      /^--redis must name the master set/,
    ],
    [
      "sentinel bad host",
      opts({ redis: "redis-sentinel://s1,s2:26379/m" }),
      {},
      /^--redis has "s1" where host:port was expected/,
    ],
    ["cluster with path", opts({ redis: "redis-cluster://n1:7000/0" }), {}, /^--redis takes no path/],
    [
      "bad --otlp-endpoint",
      opts({ otlpEndpoint: "jaeger:4318" }),
      {},
      /^--otlp-endpoint must be an http or https URL/,
    ],
    [
      "bad --capture",
      opts({ capture: "tproxy" }),
      {},
      /^--capture must be one of explicit, transparent, got "tproxy"/,
    ],
    ["bad --proxy-uid", opts({ proxyUid: "root" }), {}, /^--proxy-uid must be a whole number 0-4294967294/],
    [
      "bad --drain-timeout",
      opts({ drainTimeout: "30" }),
      {},
      /^--drain-timeout must be a duration ≥ 0 like 250ms/,
    ],
    ["negative --drain-delay", opts({ drainDelay: "-1s" }), {}, /^--drain-delay must be a duration ≥ 0/],
    [
      "delay beyond timeout",
      opts({ drainDelay: "5s", drainTimeout: "3s" }),
      {},
      /^--drain-delay \(5000ms\) must not exceed --drain-timeout \(3000ms\)/,
    ],
    [
      "zero --subscribe-timeout",
      opts({ subscribeTimeout: "0s" }),
      {},
      /^--subscribe-timeout must be a positive duration/,
    ],
    [
      "bad --header-timeout",
      opts({ headerTimeout: "soon" }),
      {},
      /^--header-timeout must be a positive duration/,
    ],
    [
      "bad --upstream-idle-timeout",
      opts({ upstreamIdleTimeout: "0" }),
      {},
      /^--upstream-idle-timeout must be a positive duration/,
    ],
    [
      "bad --downstream-idle-timeout",
      opts({ downstreamIdleTimeout: "5 min" }),
      {},
      /^--downstream-idle-timeout must be a positive duration/,
    ],
    [
      "small --max-header-bytes",
      opts({ maxHeaderBytes: "100" }),
      {},
      /^--max-header-bytes must be a size from 1024 to 1048576 bytes/,
    ],
    ["bad --max-headers", opts({ maxHeaders: "0" }), {}, /^--max-headers must be a whole number 1-10000/],
    [
      "bad --log-level",
      opts({ logLevel: "verbose" }),
      {},
      /^--log-level must be one of trace, debug, info, warn, error, fatal, silent/,
    ],
    [
      "bad value from env",
      opts(),
      { TRELLIS_STATS_PORT: "http" },
      /^--stats-port \(env TRELLIS_STATS_PORT\) must be a port number/,
    ],
    [
      "bad pod IP from env",
      opts(),
      { TRELLIS_POD_IP: "pod" },
      /^--advertise-address \(env TRELLIS_POD_IP\) must be an IP/,
    ],
  ];
  for (const [what, o, e, pattern] of table) {
    it(what, () => {
      const fixed: RunOptionValues = {
        ...o,
        ...(o.caFile === "NOT_PEM" ? { caFile: join(dir, "not-pem") } : {}),
        ...(o.tokenFile === "EMPTY_TOKEN" ? { tokenFile: join(dir, "empty-token") } : {}),
      };
      const message = configError(fixed, env(e));
      assert.match(message, pattern);
      assert.equal(message.split("\n").length, 1, `exactly one problem expected, got:\n${message}`);
    });
  }

  it("lists every problem at once, one line each", () => {
    const message = configError({ inboundPort: "x", capture: "y" }, env());
    const lines = message.split("\n");
    assert.equal(lines.length, 5, message);
    for (const flag of ["--ca-file", "--service", "--inbound-port", "--join-token", "--capture"]) {
      assert.ok(
        lines.some((l) => l.startsWith(flag)),
        `no line for ${flag}:\n${message}`,
      );
    }
  });
});

describe("value parsing", () => {
  const appPorts: Array<[string, SidecarConfig["appPorts"]]> = [
    ["8080", [{ port: 8080, protocol: "http" }]],
    ["8080/grpc", [{ port: 8080, protocol: "grpc" }]],
    [
      "8080, 9090/http2,5432/tcp,80/HTTP",
      [
        { port: 8080, protocol: "http" },
        { port: 9090, protocol: "http2" },
        { port: 5432, protocol: "tcp" },
        { port: 80, protocol: "http" },
      ],
    ],
    ["", []],
  ];
  for (const [text, expected] of appPorts) {
    it(`--app-port ${JSON.stringify(text)}`, () => {
      assert.deepEqual(resolveSidecarConfig(opts({ appPort: text }), env()).appPorts, expected);
    });
  }

  const labels: Array<[string, Record<string, string>]> = [
    ["app=orders,version=v2", { app: "orders", version: "v2" }],
    [" app = orders , tier= ", { app: "orders", tier: "" }],
    ["trellis.dev/canary=true", { "trellis.dev/canary": "true" }],
    ["", {}],
  ];
  for (const [text, expected] of labels) {
    it(`--labels ${JSON.stringify(text)}`, () => {
      assert.deepEqual(resolveSidecarConfig(opts({ labels: text }), env()).labels, expected);
    });
  }

  const localities: Array<[string, SidecarConfig["locality"]]> = [
    ["us-east-1/us-east-1a", { region: "us-east-1", zone: "us-east-1a", subzone: "" }],
    ["eu/west/rack_7", { region: "eu", zone: "west", subzone: "rack_7" }],
    ["eu", { region: "eu", zone: "", subzone: "" }],
  ];
  for (const [text, expected] of localities) {
    it(`--locality ${JSON.stringify(text)}`, () => {
      assert.deepEqual(resolveSidecarConfig(opts({ locality: text }), env()).locality, expected);
    });
  }

  it("--redis forms: sentinel and cluster with credentials; the password is masked for display", () => {
    const sentinel = resolveSidecarConfig(
      opts({ redis: "redis-sentinel://:s3cret@s1:26379,[::1]:26380/mymaster" }),
      env(),
    ).redis;
    assert.deepEqual(sentinel, {
      mode: "sentinel",
      display: "redis-sentinel://:***@s1:26379,[::1]:26380/mymaster",
      sentinels: [
        { host: "s1", port: 26379 },
        { host: "::1", port: 26380 },
      ],
      masterName: "mymaster",
      password: "s3cret",
    });
    const cluster = resolveSidecarConfig(opts({ redis: "redis-cluster://n1:7000,n2:7001" }), env()).redis;
    assert.deepEqual(cluster, {
      mode: "cluster",
      display: "redis-cluster://n1:7000,n2:7001",
      nodes: [
        { host: "n1", port: 7000 },
        { host: "n2", port: 7001 },
      ],
    });
    const tls = resolveSidecarConfig(opts({ redis: "rediss://user:pw@r:6380/2" }), env()).redis;
    assert.equal(tls?.mode, "standalone");
    assert.equal(tls?.display, "rediss://user:***@r:6380/2");
    assert.deepEqual([tls?.username, tls?.password], ["user", "pw"]);
  });

  it("durations may use any unit and fractions", () => {
    const c = resolveSidecarConfig(
      opts({ headerTimeout: "2.5s", upstreamIdleTimeout: "1m30s", downstreamIdleTimeout: "1h" }),
      env(),
    );
    assert.deepEqual(
      [c.headerTimeoutMs, c.upstreamIdleTimeoutMs, c.downstreamIdleTimeoutMs],
      [2_500, 90_000, 3_600_000],
    );
  });
});

describe("token file", () => {
  it("is read at resolution and trimmed; its path is kept for re-reading", () => {
    const c = resolveSidecarConfig({ caFile, service: "orders", tokenFile }, env());
    assert.equal(c.token, "file-token");
    assert.equal(c.tokenFile, tokenFile);
  });

  it("a --token-file flag beats TRELLIS_JOIN_TOKEN (the pair is one setting)", () => {
    const c = resolveSidecarConfig(
      { caFile, service: "orders", tokenFile },
      env({ TRELLIS_JOIN_TOKEN: "env" }),
    );
    assert.equal(c.token, "file-token");
  });

  it("a --join-token flag beats TRELLIS_TOKEN_FILE", () => {
    const c = resolveSidecarConfig(opts({ joinToken: "flag" }), env({ TRELLIS_TOKEN_FILE: tokenFile }));
    assert.deepEqual([c.token, c.tokenFile], ["flag", undefined]);
  });

  it("TRELLIS_TOKEN_FILE alone works", () => {
    const c = resolveSidecarConfig({ caFile, service: "orders" }, env({ TRELLIS_TOKEN_FILE: tokenFile }));
    assert.equal(c.token, "file-token");
  });

  it("both in the environment is refused, naming both variables", () => {
    const message = configError(
      { caFile, service: "orders" },
      env({ TRELLIS_TOKEN_FILE: tokenFile, TRELLIS_JOIN_TOKEN: "x" }),
    );
    assert.match(
      message,
      /--join-token \(env TRELLIS_JOIN_TOKEN\) and --token-file \(env TRELLIS_TOKEN_FILE\)/,
    );
  });
});

describe("registerRunOptions", () => {
  function parse(argv: string[]): RunOptionValues {
    const cmd = registerRunOptions(new Command("run").exitOverride());
    cmd.parse(argv, { from: "user" });
    return cmd.opts();
  }

  it("declares every flag, with no commander default (so env can apply)", () => {
    assert.deepEqual(parse([]), {});
  });

  it("hands commander's values to resolveSidecarConfig", () => {
    const o = parse([
      "--ca-file",
      caFile,
      "--service",
      "orders",
      "--token-file",
      tokenFile,
      "--app-port",
      "8080,9090/grpc",
      "--inbound-port",
      "0",
      "--drain-delay",
      "1s",
      "--upstream-idle-timeout",
      "30s",
    ]);
    const c = resolveSidecarConfig(o, env({ TRELLIS_INBOUND_PORT: "16006" }));
    assert.equal(c.inboundPort, 0);
    assert.equal(c.drainDelayMs, 1_000);
    assert.equal(c.upstreamIdleTimeoutMs, 30_000);
    assert.deepEqual(
      c.appPorts.map((p) => p.port),
      [8080, 9090],
    );
  });

  it("--help lists every flag with its env variable", () => {
    const cmd = registerRunOptions(new Command("run"));
    const help = cmd.helpInformation();
    for (const spec of RUN_FLAGS) {
      assert.ok(help.includes(spec.flags.split(" ")[0] as string), `help lacks ${spec.flags}`);
      assert.ok(help.includes(spec.env), `help lacks ${spec.env}`);
    }
    for (const ours of ["--drain-delay", "--subscribe-timeout", "--header-timeout", "--max-header-bytes"])
      assert.ok(help.includes(ours));
  });

  it("covers INTERFACES.md's settings and env names", () => {
    const byFlag = new Map(RUN_FLAGS.map((s) => [s.flags.split(" ")[0], s.env]));
    const required: Array<[string, string | undefined]> = [
      ["--control-plane", "TRELLIS_CONTROL_PLANE"],
      ["--ca-file", "TRELLIS_CA_FILE"],
      ["--service", "TRELLIS_SERVICE"],
      ["--namespace", "TRELLIS_NAMESPACE"],
      ["--service-account", "TRELLIS_SERVICE_ACCOUNT"],
      ["--proxy-id", "TRELLIS_POD_NAME"],
      ["--advertise-address", "TRELLIS_POD_IP"],
      ["--labels", undefined],
      ["--locality", undefined],
      ["--app-port", "TRELLIS_APP_PORT"],
      ["--inbound-port", undefined],
      ["--outbound-port", undefined],
      ["--admin-port", undefined],
      ["--stats-port", undefined],
      ["--join-token", "TRELLIS_JOIN_TOKEN"],
      ["--token-file", undefined],
      ["--redis", "TRELLIS_REDIS"],
      ["--otlp-endpoint", "TRELLIS_OTLP_ENDPOINT"],
      ["--state-dir", "TRELLIS_STATE_DIR"],
      ["--capture", undefined],
      ["--proxy-uid", undefined],
      ["--drain-timeout", undefined],
      ["--log-level", "TRELLIS_LOG_LEVEL"],
    ];
    for (const [flag, envName] of required) {
      assert.ok(byFlag.has(flag), `missing ${flag}`);
      if (envName !== undefined) assert.equal(byFlag.get(flag), envName, flag);
    }
  });
});

describe("redactedConfig", () => {
  it("leaves out the token and CA bundle and masks the Redis password", () => {
    const c = resolveSidecarConfig(opts({ joinToken: "very-secret", redis: "redis://:pw@r:6379" }), env());
    const text = JSON.stringify(redactedConfig(c));
    assert.ok(!text.includes("very-secret"));
    assert.ok(!text.includes("BEGIN CERTIFICATE"));
    assert.ok(!text.includes(":pw@"));
    assert.ok(text.includes("redis://:***@r:6379"));
  });
});
