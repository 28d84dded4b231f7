/**
 * The sidecar's settings (INTERFACES.md "Sidecar settings (flag = env)"), from flags, `TRELLIS_*`
 * environment variables and defaults, in that order of precedence.
 *
 * `registerRunOptions` declares the flags on a commander command without defaults, so that
 * `resolveSidecarConfig` can tell "given" from "not given" and apply flag > env > default itself
 * (and name the flag, or the env variable, in every error). Resolution reads the --ca-file and
 * --token-file files once, so a bad path fails at startup, not at the first certificate request.
 *
 * Settings that are ours, beyond INTERFACES.md (also listed in --help, and to be kept in
 * docs/reference.md): --drain-delay, --subscribe-timeout, --header-timeout,
 * --upstream-idle-timeout, --downstream-idle-timeout, --max-header-bytes, --max-headers. Every flag
 * has an env variable: the one INTERFACES.md names, else TRELLIS_<FLAG_IN_UPPER_SNAKE_CASE>.
 */
import { readFileSync } from "node:fs";
import { homedir, hostname } from "node:os";
import { join, resolve } from "node:path";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { Format } from "@trellis/proto/gen/trellis/v1/options_pb";
import { Option } from "commander";
import { parseRedisTarget } from "./redis-target.js";
import { parseAppPorts, parseChoice, parseDurationMs, parseFormatted, parseHostPortList, parseHttpUrl, parseInteger, parseIp, parseLabels, parseLocality, parsePort, parseSize, SettingProblem, } from "./values.js";
const CAPTURE_MODES = ["explicit", "transparent"];
const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];
const IDENTITY = "Identity:";
const CONTROL = "Control plane and credentials:";
const PORTS = "Ports:";
const SERVICES = "Services:";
const LIFECYCLE = "Lifecycle and limits:";
/** Every `run` flag, in --help order. The env names are those of INTERFACES.md where it gives one. */
export const RUN_FLAGS = [
    {
        key: "controlPlane",
        flags: "--control-plane <host:port,...>",
        env: "TRELLIS_CONTROL_PLANE",
        group: CONTROL,
        help: "control-plane replicas, comma-separated (default 127.0.0.1:15010)",
    },
    {
        key: "caFile",
        flags: "--ca-file <file>",
        env: "TRELLIS_CA_FILE",
        group: CONTROL,
        help: "PEM bundle that verifies the control plane: the ca.pem each replica writes to its state dir (required)",
    },
    {
        key: "joinToken",
        flags: "--join-token <token>",
        env: "TRELLIS_JOIN_TOKEN",
        group: CONTROL,
        help: "credential for the CA, from `trellis token create` (visible in ps: prefer --token-file or the env)",
    },
    {
        key: "tokenFile",
        flags: "--token-file <file>",
        env: "TRELLIS_TOKEN_FILE",
        group: CONTROL,
        help: "file holding the join token or ServiceAccount token (read at startup, trimmed); one of the two is required",
    },
    {
        key: "service",
        flags: "--service <name>",
        env: "TRELLIS_SERVICE",
        group: IDENTITY,
        help: "the service this sidecar fronts (required)",
    },
    {
        key: "namespace",
        flags: "--namespace <ns>",
        env: "TRELLIS_NAMESPACE",
        group: IDENTITY,
        help: "its namespace (default default)",
    },
    {
        key: "serviceAccount",
        flags: "--service-account <name>",
        env: "TRELLIS_SERVICE_ACCOUNT",
        group: IDENTITY,
        help: "service account of the identity (default: the service name)",
    },
    {
        key: "proxyId",
        flags: "--proxy-id <id>",
        env: "TRELLIS_POD_NAME",
        group: IDENTITY,
        help: "unique id of this instance (default host name + pid)",
    },
    {
        key: "advertiseAddress",
        flags: "--advertise-address <ip>",
        env: "TRELLIS_POD_IP",
        group: IDENTITY,
        help: "IP other sidecars reach this one at (default 127.0.0.1)",
    },
    {
        key: "labels",
        flags: "--labels <k=v,...>",
        env: "TRELLIS_LABELS",
        group: IDENTITY,
        help: "workload labels",
    },
    {
        key: "locality",
        flags: "--locality <region/zone[/subzone]>",
        env: "TRELLIS_LOCALITY",
        group: IDENTITY,
        help: "where this instance runs, for locality-aware balancing",
    },
    {
        key: "appPort",
        flags: "--app-port <port[/protocol],...>",
        env: "TRELLIS_APP_PORT",
        group: PORTS,
        help: "the app's ports, comma-separated; protocol http (default), http2, grpc or tcp",
    },
    {
        key: "inboundPort",
        flags: "--inbound-port <port>",
        env: "TRELLIS_INBOUND_PORT",
        group: PORTS,
        help: "inbound listener, mTLS from other sidecars (default 15006; 0 = OS picks)",
    },
    {
        key: "outboundPort",
        flags: "--outbound-port <port>",
        env: "TRELLIS_OUTBOUND_PORT",
        group: PORTS,
        help: "outbound listener, from the app (default 15001)",
    },
    {
        key: "adminPort",
        flags: "--admin-port <port>",
        env: "TRELLIS_ADMIN_PORT",
        group: PORTS,
        help: "admin port, 127.0.0.1 only (default 15000)",
    },
    {
        key: "statsPort",
        flags: "--stats-port <port>",
        env: "TRELLIS_STATS_PORT",
        group: PORTS,
        help: "stats and health port, all interfaces (default 15020)",
    },
    {
        key: "redis",
        flags: "--redis <url>",
        env: "TRELLIS_REDIS",
        group: SERVICES,
        help: "Redis for global rate limits: redis://h:p, redis-sentinel://h1:p,h2:p/master, redis-cluster://h1:p,h2:p",
    },
    {
        key: "otlpEndpoint",
        flags: "--otlp-endpoint <url>",
        env: "TRELLIS_OTLP_ENDPOINT",
        group: SERVICES,
        help: "OTLP/HTTP endpoint for traces (none by default)",
    },
    {
        key: "stateDir",
        flags: "--state-dir <dir>",
        env: "TRELLIS_STATE_DIR",
        group: LIFECYCLE,
        help: "last good config and certificates (default ~/.trellis/sidecar/<proxy-id>)",
    },
    {
        key: "capture",
        flags: "--capture <mode>",
        env: "TRELLIS_CAPTURE",
        group: LIFECYCLE,
        help: "explicit (default: the app uses the outbound port as its proxy) or transparent (needs `init`)",
    },
    {
        key: "proxyUid",
        flags: "--proxy-uid <uid>",
        env: "TRELLIS_PROXY_UID",
        group: LIFECYCLE,
        help: "uid the proxy runs as, never captured (default 1337)",
    },
    {
        key: "randomSeed",
        flags: "--random-seed <n>",
        env: "TRELLIS_RANDOM_SEED",
        group: LIFECYCLE,
        help: "seed for fault, mirror and backoff draws, for reproducible tests (default: unseeded)",
    },
    {
        key: "drainTimeout",
        flags: "--drain-timeout <duration>",
        env: "TRELLIS_DRAIN_TIMEOUT",
        group: LIFECYCLE,
        help: "longest graceful drain on SIGTERM, delay included (default 30s)",
    },
    {
        key: "drainDelay",
        flags: "--drain-delay <duration>",
        env: "TRELLIS_DRAIN_DELAY",
        group: LIFECYCLE,
        help: "first part of the drain: keep accepting with Connection: close / GOAWAY before waiting for in-flight requests (default 2s)",
    },
    {
        key: "subscribeTimeout",
        flags: "--subscribe-timeout <duration>",
        env: "TRELLIS_SUBSCRIBE_TIMEOUT",
        group: LIFECYCLE,
        help: "how long a request for a host with no config waits for its on-demand subscription (default 1s)",
    },
    {
        key: "headerTimeout",
        flags: "--header-timeout <duration>",
        env: "TRELLIS_HEADER_TIMEOUT",
        group: LIFECYCLE,
        help: "time a client has to send complete request headers (default 10s)",
    },
    {
        key: "upstreamIdleTimeout",
        flags: "--upstream-idle-timeout <duration>",
        env: "TRELLIS_UPSTREAM_IDLE_TIMEOUT",
        group: LIFECYCLE,
        help: "close pooled upstream connections idle this long (default 60s)",
    },
    {
        key: "downstreamIdleTimeout",
        flags: "--downstream-idle-timeout <duration>",
        env: "TRELLIS_DOWNSTREAM_IDLE_TIMEOUT",
        group: LIFECYCLE,
        help: "close client keep-alive connections idle this long (default 300s)",
    },
    {
        key: "maxHeaderBytes",
        flags: "--max-header-bytes <size>",
        env: "TRELLIS_MAX_HEADER_BYTES",
        group: LIFECYCLE,
        help: "largest header block accepted (default 60KiB)",
    },
    {
        key: "maxHeaders",
        flags: "--max-headers <count>",
        env: "TRELLIS_MAX_HEADERS",
        group: LIFECYCLE,
        help: "most header fields accepted per message (default 100)",
    },
    {
        key: "logLevel",
        flags: "--log-level <level>",
        env: "TRELLIS_LOG_LEVEL",
        group: LIFECYCLE,
        help: "trace, debug, info (default), warn, error, fatal or silent",
    },
];
const SPEC_BY_KEY = new Map(RUN_FLAGS.map((s) => [s.key, s]));
/**
 * Adds every sidecar flag to `cmd` (for `run`; `gateway` may reuse it). No commander defaults and
 * no commander env handling: `resolveSidecarConfig` applies flag > env > default so it can name
 * the source of a bad value. Returns `cmd` for chaining.
 */
export function registerRunOptions(cmd) {
    for (const spec of RUN_FLAGS) {
        cmd.addOption(new Option(spec.flags, `${spec.help} [env ${spec.env}]`).helpGroup(spec.group));
    }
    return cmd;
}
// Resolution and its per-setting error collection, kept apart from the public function.
class Resolver {
    opts;
    env;
    problems = [];
    constructor(opts, env) {
        this.opts = opts;
        this.env = env;
    }
    spec(key) {
        return SPEC_BY_KEY.get(key);
    }
    flagName(key) {
        return this.spec(key).flags.split(" ")[0];
    }
    /** Flag if given (even empty), else env if set and non-empty, else undefined. */
    given(key) {
        const flag = this.flagName(key);
        const fromFlag = this.opts[key];
        if (typeof fromFlag === "string")
            return { text: fromFlag, label: flag, fromEnv: false };
        const envName = this.spec(key).env;
        const fromEnv = this.env[envName];
        if (fromEnv !== undefined && fromEnv.trim().length > 0)
            return { text: fromEnv, label: `${flag} (env ${envName})`, fromEnv: true };
        return undefined;
    }
    get(key, parse, fallback) {
        const g = this.given(key);
        if (g === undefined)
            return fallback;
        // On a bad value the fallback stands in, so later checks run; the problem is already recorded.
        return this.parse(g, parse) ?? fallback;
    }
    parse(g, parse) {
        try {
            return parse(g.text);
        }
        catch (err) {
            if (!(err instanceof SettingProblem))
                throw err;
            this.problems.push(`${g.label} ${err.message}`);
            return undefined;
        }
    }
    problem(message) {
        this.problems.push(message);
    }
}
function readText(path) {
    try {
        return readFileSync(path, "utf8");
    }
    catch (err) {
        const reason = err.code ?? err.message;
        throw new SettingProblem(`cannot be read: ${path} (${reason})`);
    }
}
const PROXY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
/** Host name + "-" + pid, with anything unsafe in a path segment replaced by "-". */
function defaultProxyId() {
    const host = hostname()
        .replace(/[^A-Za-z0-9._-]/g, "-")
        .replace(/^[^A-Za-z0-9]+/, "") || "sidecar";
    return `${host.slice(0, 240)}-${process.pid}`;
}
function parseProxyId(text) {
    const t = text.trim();
    if (!PROXY_ID.test(t))
        throw new SettingProblem(`must be 1-253 of letters, digits, '.', '_' and '-' (it names the state dir), got ${JSON.stringify(text)}`);
    return t;
}
/**
 * Turns flag values and the environment into a validated SidecarConfig (flag > env > default).
 * Reads --ca-file and --token-file. Throws one TrellisError CONFIG listing every problem, one per
 * line, each naming its flag (and its env variable when the value came from there).
 */
export function resolveSidecarConfig(opts, env = process.env) {
    const r = new Resolver(opts, env);
    const dnsLabel = (t) => parseFormatted(t, Format.DNS_LABEL);
    const controlPlane = r.get("controlPlane", parseHostPortList, ["127.0.0.1:15010"]);
    const caGiven = r.given("caFile");
    let caFile = "";
    let caPem = "";
    if (caGiven === undefined || caGiven.text.trim().length === 0) {
        r.problem("--ca-file is required (or TRELLIS_CA_FILE): the control plane's CA bundle, which each control-plane " +
            "replica writes to <state-dir>/ca.pem (default ~/.trellis/control-plane/ca.pem)");
    }
    else {
        caFile = caGiven.text.trim();
        caPem =
            r.parse(caGiven, (t) => {
                const pem = readText(t.trim());
                if (!pem.includes("-----BEGIN CERTIFICATE-----"))
                    throw new SettingProblem(`is not a PEM certificate bundle: ${t.trim()}`);
                return pem;
            }) ?? "";
    }
    const serviceGiven = r.given("service");
    let service = "";
    if (serviceGiven === undefined)
        r.problem("--service is required (or TRELLIS_SERVICE): the name of the service this sidecar fronts");
    else
        service = r.parse(serviceGiven, dnsLabel) ?? "";
    const namespace = r.get("namespace", dnsLabel, "default");
    const serviceAccount = r.get("serviceAccount", (t) => parseFormatted(t, Format.DNS_SUBDOMAIN)) ?? (service || "");
    const proxyId = r.get("proxyId", parseProxyId, defaultProxyId());
    const advertiseAddress = r.get("advertiseAddress", parseIp, "127.0.0.1");
    const labels = r.get("labels", parseLabels, {});
    const locality = r.get("locality", parseLocality);
    const appPorts = r.get("appPort", parseAppPorts, []);
    const ports = {
        inboundPort: r.get("inboundPort", parsePort, 15006),
        outboundPort: r.get("outboundPort", parsePort, 15001),
        adminPort: r.get("adminPort", parsePort, 15000),
        statsPort: r.get("statsPort", parsePort, 15020),
    };
    checkPorts(r, ports, appPorts);
    const { token, tokenFile } = resolveToken(r);
    const redis = r.get("redis", parseRedisTarget);
    const otlpEndpoint = r.get("otlpEndpoint", parseHttpUrl);
    const home = env.HOME !== undefined && env.HOME.length > 0 ? env.HOME : homedir();
    const stateDir = r.get("stateDir", (t) => {
        if (t.trim().length === 0)
            throw new SettingProblem("must not be empty");
        return resolve(t.trim());
    }, join(home, ".trellis", "sidecar", proxyId));
    const capture = r.get("capture", (t) => parseChoice(t, CAPTURE_MODES), "explicit");
    const proxyUid = r.get("proxyUid", (t) => parseInteger(t, 0, 4_294_967_294), 1337);
    const before = r.problems.length;
    const drainTimeoutMs = r.get("drainTimeout", (t) => parseDurationMs(t, true), 30_000);
    const drainDelayMs = r.get("drainDelay", (t) => parseDurationMs(t, true), 2_000);
    if (r.problems.length === before && drainDelayMs > drainTimeoutMs)
        r.problem(`--drain-delay (${drainDelayMs}ms) must not exceed --drain-timeout (${drainTimeoutMs}ms): the delay is part of the drain`);
    const positive = (t) => parseDurationMs(t, false);
    const config = {
        controlPlane,
        caFile,
        caPem,
        service,
        namespace,
        serviceAccount,
        proxyId,
        advertiseAddress,
        labels,
        locality,
        appPorts,
        ...ports,
        token,
        tokenFile,
        redis,
        otlpEndpoint,
        stateDir,
        capture,
        proxyUid,
        drainTimeoutMs,
        drainDelayMs,
        randomSeed: r.get("randomSeed", (t) => parseInteger(t, 0, 4_294_967_295)),
        subscribeTimeoutMs: r.get("subscribeTimeout", positive, 1_000),
        headerTimeoutMs: r.get("headerTimeout", positive, 10_000),
        upstreamIdleTimeoutMs: r.get("upstreamIdleTimeout", positive, 60_000),
        downstreamIdleTimeoutMs: r.get("downstreamIdleTimeout", positive, 300_000),
        maxHeaderBytes: r.get("maxHeaderBytes", (t) => parseSize(t, 1024, 1024 * 1024), 60 * 1024),
        maxHeaders: r.get("maxHeaders", (t) => parseInteger(t, 1, 10_000), 100),
        logLevel: r.get("logLevel", (t) => parseChoice(t, LOG_LEVELS), "info"),
    };
    if (r.problems.length > 0)
        throw new TrellisError(ErrorCode.CONFIG, r.problems.join("\n"));
    return config;
}
// A clash would fail later as EADDRINUSE with no hint of which flag to change; catch it here.
function checkPorts(r, ports, appPorts) {
    const keys = ["inboundPort", "outboundPort", "adminPort", "statsPort"];
    for (let i = 0; i < keys.length; i++) {
        for (let j = i + 1; j < keys.length; j++) {
            const a = keys[i];
            const b = keys[j];
            if (ports[a] !== 0 && ports[a] === ports[b])
                r.problem(`${r.flagName(a)} and ${r.flagName(b)} are both ${ports[a]}; each needs its own port`);
        }
    }
    for (const app of appPorts) {
        const clash = keys.find((k) => ports[k] === app.port);
        if (clash !== undefined)
            r.problem(`--app-port ${app.port} is also the sidecar's ${r.flagName(clash)}; each needs its own port`);
    }
}
// --join-token and --token-file are one setting given two ways: a flag of either beats the env of
// either, and giving both at one level is refused rather than silently preferring one.
function resolveToken(r) {
    const flagToken = r.given("joinToken");
    const flagFile = r.given("tokenFile");
    const fromFlags = (g) => g !== undefined && !g.fromEnv;
    let tokenGiven = flagToken;
    let fileGiven = flagFile;
    if (fromFlags(flagToken) || fromFlags(flagFile)) {
        tokenGiven = fromFlags(flagToken) ? flagToken : undefined;
        fileGiven = fromFlags(flagFile) ? flagFile : undefined;
    }
    if (tokenGiven !== undefined && fileGiven !== undefined) {
        r.problem(`${tokenGiven.label} and ${fileGiven.label} are both given; use one`);
        return { token: "", tokenFile: undefined };
    }
    if (tokenGiven !== undefined) {
        const token = r.parse(tokenGiven, (t) => {
            if (t.trim().length === 0)
                throw new SettingProblem("must not be empty");
            return t.trim();
        });
        return { token: token ?? "", tokenFile: undefined };
    }
    if (fileGiven !== undefined) {
        const path = fileGiven.text.trim();
        const token = r.parse(fileGiven, () => {
            if (path.length === 0)
                throw new SettingProblem("must not be empty");
            const t = readText(path).trim();
            if (t.length === 0)
                throw new SettingProblem(`names an empty file: ${path}`);
            return t;
        });
        return { token: token ?? "", tokenFile: path };
    }
    r.problem("--join-token or --token-file is required (or TRELLIS_JOIN_TOKEN / TRELLIS_TOKEN_FILE): " +
        "create a join token with `trellis token create --namespace NS --service-account SA`");
    return { token: "", tokenFile: undefined };
}
/**
 * The config as it may be shown (logs, /config_dump): the token and the CA bundle are left out,
 * the Redis URL has its password masked.
 */
export function redactedConfig(config) {
    const { token: _token, caPem: _caPem, redis, ...rest } = config;
    return { ...rest, token: "<redacted>", redis: redis?.display };
}
