/**
 * The sidecar's scrape, parsed back line by line as Prometheus would: the INTERFACES.md names,
 * types and labels, histogram rules, escaping, one family per name, prom-client's process metrics
 * in the same text — and that the hot path creates no series after a target's first request.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LOCAL_REPLY_REASONS } from "@trellis/sidecar/metrics/labels";
import { MAX_REASONS } from "@trellis/sidecar/metrics/request-metrics";
import { METRICS_CONTENT_TYPE, SidecarMetrics } from "@trellis/sidecar/metrics/sidecar-metrics";

interface Sample {
  name: string;
  labels: Record<string, string>;
  /** Label names in the order written. */
  labelOrder: string[];
  value: number;
}

interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

/** Label pairs `a="x",b="y\"z"` → object, undoing the three escapes; throws on malformed text. */
function parseLabels(text: string): { labels: Record<string, string>; order: string[] } {
  const labels: Record<string, string> = {};
  const order: string[] = [];
  let i = 0;
  while (i < text.length) {
    const m = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(text.slice(i));
    if (m === null) throw new Error(`bad label at ${JSON.stringify(text.slice(i))}`);
    const name = m[1] as string;
    i += m[0].length;
    let value = "";
    for (;;) {
      const c = text[i];
      if (c === undefined) throw new Error("unterminated label value");
      if (c === '"') break;
      if (c === "\\") {
        const next = text[i + 1];
        if (next === "n") value += "\n";
        else if (next === "\\" || next === '"') value += next;
        else throw new Error(`bad escape \\${next}`);
        i += 2;
      } else {
        if (c === "\n") throw new Error("raw newline in label value");
        value += c;
        i++;
      }
    }
    i++; // closing quote
    if (name in labels) throw new Error(`label ${name} twice`);
    labels[name] = value;
    order.push(name);
    if (text[i] === ",") i++;
    else if (i !== text.length) throw new Error(`expected , at ${JSON.stringify(text.slice(i))}`);
  }
  return { labels, order };
}

/** The family a sample name belongs to, given the declared families. */
function familyOf(sampleName: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(sampleName);
  if (direct !== undefined && direct.type !== "histogram" && direct.type !== "summary") return direct;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!sampleName.endsWith(suffix)) continue;
    const f = families.get(sampleName.slice(0, -suffix.length));
    if (f !== undefined && (f.type === "histogram" || f.type === "summary")) return f;
  }
  return direct;
}

/**
 * Parses an exposition strictly: HELP then TYPE once per family, every sample after its family's
 * TYPE and contiguous with the family's other samples, values parseable.
 */
function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith("\n"), "the exposition ends with a newline");
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  let current: Family | undefined;
  let pendingHelp: { name: string; help: string } | undefined;
  for (const line of text.slice(0, -1).split("\n")) {
    assert.notEqual(line, "", "no blank lines");
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (help !== null) {
      pendingHelp = { name: help[1] as string, help: help[2] as string };
      continue;
    }
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type !== null) {
      const name = type[1] as string;
      assert.ok(!families.has(name), `TYPE ${name} appears twice`);
      assert.equal(pendingHelp?.name, name, `HELP for ${name} precedes its TYPE`);
      if (current !== undefined) closed.add(current.name);
      current = { name, type: type[2] as string, help: pendingHelp?.help ?? "", samples: [] };
      families.set(name, current);
      pendingHelp = undefined;
      continue;
    }
    assert.ok(!line.startsWith("#"), `unexpected comment ${line}`);
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(sample !== null, `malformed sample line ${JSON.stringify(line)}`);
    const name = sample[1] as string;
    const fam = familyOf(name, families);
    assert.ok(fam !== undefined, `sample ${name} before its TYPE`);
    assert.ok(!closed.has(fam.name), `samples of ${fam.name} are not contiguous`);
    assert.equal(fam, current, `sample ${name} outside its family's block`);
    const { labels, order } = parseLabels(sample[2] ?? "");
    const valueText = sample[3] as string;
    const value = valueText === "+Inf" ? Infinity : valueText === "-Inf" ? -Infinity : Number(valueText);
    // Prometheus parses values with Go's ParseFloat, which takes NaN in any case (prom-client writes "Nan").
    assert.ok(!Number.isNaN(value) || /^nan$/i.test(valueText), `bad value ${valueText}`);
    fam.samples.push({ name, labels, labelOrder: order, value });
  }
  return families;
}

function family(families: Map<string, Family>, name: string): Family {
  const f = families.get(name);
  assert.ok(f !== undefined, `family ${name} missing`);
  return f;
}

const TARGET = [
  "direction",
  "source_service",
  "source_namespace",
  "destination_service",
  "destination_namespace",
];
const REQUEST_LABELS = [...TARGET, "response_code", "grpc_status", "reason"];

/** Checks each histogram series: increasing le, non-decreasing counts, +Inf = _count, one _sum. */
function checkHistogram(f: Family): void {
  assert.equal(f.type, "histogram");
  const series = new Map<string, Sample[]>();
  for (const s of f.samples) {
    const { le: _le, ...rest } = s.labels;
    const key = JSON.stringify(rest);
    series.set(key, [...(series.get(key) ?? []), s]);
  }
  assert.ok(series.size > 0, `${f.name} has samples`);
  for (const [key, samples] of series) {
    const buckets = samples.filter((s) => s.name === `${f.name}_bucket`);
    const count = samples.filter((s) => s.name === `${f.name}_count`);
    const sum = samples.filter((s) => s.name === `${f.name}_sum`);
    assert.equal(count.length, 1, `${f.name} ${key}: one _count`);
    assert.equal(sum.length, 1, `${f.name} ${key}: one _sum`);
    let lastLe = -Infinity;
    let lastCount = 0;
    for (const b of buckets) {
      const le = b.labels.le === "+Inf" ? Infinity : Number(b.labels.le);
      assert.ok(le > lastLe, `${f.name}: le increases (${b.labels.le})`);
      assert.ok(b.value >= lastCount, `${f.name}: bucket counts are cumulative`);
      assert.equal(b.labelOrder.at(-1), "le", "le is the last label");
      lastLe = le;
      lastCount = b.value;
    }
    assert.equal(lastLe, Infinity, `${f.name}: the last bucket is +Inf`);
    assert.equal(lastCount, count[0]?.value, `${f.name}: +Inf bucket equals _count`);
  }
}

function requestSample(f: Family, labels: Record<string, string>): Sample | undefined {
  return f.samples.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

describe("SidecarMetrics exposition", () => {
  it("exports every INTERFACES.md family with its type, even before any traffic", async () => {
    const m = new SidecarMetrics({ processMetrics: false });
    const families = parseExposition(await m.scrape());
    const expected: Array<[string, string]> = [
      ["trellis_requests_total", "counter"],
      ["trellis_request_duration_seconds", "histogram"],
      ["trellis_request_bytes", "histogram"],
      ["trellis_response_bytes", "histogram"],
      ["trellis_tcp_connections_opened_total", "counter"],
      ["trellis_tcp_connections_closed_total", "counter"],
      ["trellis_tcp_sent_bytes_total", "counter"],
      ["trellis_tcp_received_bytes_total", "counter"],
      ["trellis_retries_total", "counter"],
      ["trellis_retry_budget_exhausted_total", "counter"],
      ["trellis_connection_limit_saturated", "gauge"],
      ["trellis_outlier_ejections_total", "counter"],
      ["trellis_endpoints_ejected", "gauge"],
      // Ours, beyond INTERFACES.md (docs/reference.md): attempts balanced in panic mode.
      ["trellis_lb_panic_total", "counter"],
      ["trellis_ratelimit_decisions_total", "counter"],
      ["trellis_ratelimit_backend_errors_total", "counter"],
      ["trellis_local_reply_total", "counter"],
      ["trellis_xds_connected", "gauge"],
      ["trellis_config_age_seconds", "gauge"],
      ["trellis_config_updates_total", "counter"],
      ["trellis_cert_expiry_timestamp_seconds", "gauge"],
    ];
    for (const [name, type] of expected) {
      assert.equal(family(families, name).type, type, name);
      assert.ok(family(families, name).help.length > 0, `${name} has HELP`);
    }
    assert.equal(families.size, expected.length, "no other families without process metrics");
    for (const name of [
      "trellis_retries_total",
      "trellis_xds_connected",
      "trellis_ratelimit_backend_errors_total",
    ]) {
      assert.deepEqual(
        family(families, name).samples.map((s) => [s.labels, s.value]),
        [[{}, 0]],
        `${name} starts at 0`,
      );
    }
    assert.deepEqual(family(families, "trellis_config_age_seconds").samples, [], "no age before any config");
    assert.deepEqual(
      family(families, "trellis_cert_expiry_timestamp_seconds").samples,
      [],
      "no expiry before a cert",
    );
  });

  it("renders request series with the eight labels in order, and histograms that obey the rules", async () => {
    const m = new SidecarMetrics({ processMetrics: false });
    const out = m.requestSeries("outbound", "web", "shop", "orders", "shop");
    out.record(200, undefined, "", 0.003, 0, 512);
    out.record(200, undefined, "", 0.2, 100, 2048);
    out.record(503, undefined, "no_healthy_upstream", 0.0001, 0, 19);
    const inb = m.requestSeries("inbound", "web", "shop", "orders", "shop");
    inb.record(200, 0, "", 0.001, 10, 20);
    inb.record(200, 14, "upstream_connect_failure", 0.05, 10, 0);

    const families = parseExposition(await m.scrape());
    const requests = family(families, "trellis_requests_total");
    assert.equal(requests.samples.length, 4);
    for (const s of requests.samples) assert.deepEqual(s.labelOrder, REQUEST_LABELS);
    assert.deepEqual(
      requestSample(requests, { direction: "outbound", response_code: "200", grpc_status: "", reason: "" })
        ?.labels,
      {
        direction: "outbound",
        source_service: "web",
        source_namespace: "shop",
        destination_service: "orders",
        destination_namespace: "shop",
        response_code: "200",
        grpc_status: "",
        reason: "",
      },
    );
    assert.equal(requestSample(requests, { direction: "outbound", response_code: "200" })?.value, 2);
    assert.equal(requestSample(requests, { response_code: "503", reason: "no_healthy_upstream" })?.value, 1);
    assert.equal(requestSample(requests, { direction: "inbound", grpc_status: "0" })?.value, 1);
    assert.equal(
      requestSample(requests, { grpc_status: "14", reason: "upstream_connect_failure" })?.value,
      1,
    );

    for (const name of [
      "trellis_request_duration_seconds",
      "trellis_request_bytes",
      "trellis_response_bytes",
    ])
      checkHistogram(family(families, name));

    const duration = family(families, "trellis_request_duration_seconds");
    const ok = { direction: "outbound", response_code: "200" };
    assert.equal(requestSample(duration, { ...ok, le: "0.005" })?.value, 1, "3 ms falls at or below 5 ms");
    assert.equal(requestSample(duration, { ...ok, le: "0.25" })?.value, 2);
    const sum = duration.samples.find(
      (s) =>
        s.name === "trellis_request_duration_seconds_sum" &&
        s.labels.direction === "outbound" &&
        s.labels.response_code === "200",
    );
    assert.ok(Math.abs((sum?.value ?? 0) - 0.203) < 1e-9);
    const resBytes = family(families, "trellis_response_bytes");
    assert.equal(requestSample(resBytes, { ...ok, le: "1024" })?.value, 1);
    assert.equal(requestSample(resBytes, { ...ok, le: "4096" })?.value, 2);
    const reqBytes = family(families, "trellis_request_bytes");
    assert.equal(
      requestSample(reqBytes, { ...ok, le: "0" })?.value,
      1,
      "bodiless requests have their own bucket",
    );
  });

  it("writes each family once, however many targets and outcomes", async () => {
    const m = new SidecarMetrics({ processMetrics: false });
    for (const dst of ["a", "b", "c"]) {
      const s = m.requestSeries("outbound", "web", "shop", dst, "shop");
      for (const code of [200, 404, 500]) s.record(code, undefined, "", 0.01, 1, 1);
      m.tcpSeries("outbound", "web", "shop", dst, "shop").connectionOpened();
    }
    const text = await m.scrape();
    parseExposition(text); // fails on a repeated TYPE or interleaved samples
    assert.equal(text.match(/^# TYPE trellis_requests_total /gm)?.length, 1);
    assert.equal(text.match(/^trellis_requests_total\{/gm)?.length, 9);
    assert.equal(text.match(/^# TYPE trellis_request_duration_seconds /gm)?.length, 1);
  });

  it("escapes quotes, backslashes and newlines in label values so they parse back unchanged", async () => {
    const m = new SidecarMetrics({ processMetrics: false });
    const nasty = 'we"ird\\svc\nname';
    m.requestSeries("outbound", nasty, "ns", "dst", "ns").record(200, undefined, "", 0.01, 0, 0);
    m.ratelimitDecisions.labels('shop/"limits"', "global", "limited").inc();
    m.connectionLimitSaturated.labels("c\\1\n", "pending").set(1);
    const families = parseExposition(await m.scrape());
    assert.equal(family(families, "trellis_requests_total").samples[0]?.labels.source_service, nasty);
    assert.equal(
      family(families, "trellis_request_duration_seconds").samples[0]?.labels.source_service,
      nasty,
    );
    assert.equal(
      family(families, "trellis_ratelimit_decisions_total").samples[0]?.labels.policy,
      'shop/"limits"',
    );
    assert.deepEqual(family(families, "trellis_connection_limit_saturated").samples[0]?.labels, {
      cluster: "c\\1\n",
      limit: "pending",
    });
  });

  it("clamps bad numbers instead of poisoning sums", async () => {
    const m = new SidecarMetrics({ processMetrics: false });
    const s = m.requestSeries("outbound", "web", "shop", "orders", "shop");
    s.record(200, undefined, "", Number.NaN, -5, Number.NaN);
    s.record(200, undefined, "", -1, Number.POSITIVE_INFINITY, 10);
    s.record(1234, 999, "", 0.01, 0, 0);
    const families = parseExposition(await m.scrape());
    for (const name of [
      "trellis_request_duration_seconds",
      "trellis_request_bytes",
      "trellis_response_bytes",
    ]) {
      const sums = family(families, name).samples.filter((x) => x.name.endsWith("_sum"));
      assert.ok(sums.length > 0);
      for (const x of sums) assert.ok(Number.isFinite(x.value), `${name} sums stay finite`);
    }
    const requests = family(families, "trellis_requests_total");
    assert.equal(
      requestSample(requests, { response_code: "0", grpc_status: "2" })?.value,
      1,
      "out-of-range codes are clamped",
    );
    checkHistogram(family(families, "trellis_request_bytes"));
  });

  it("renders the TCP, policy, config and identity families with their INTERFACES.md labels", async () => {
    let now = 1_000_000;
    const m = new SidecarMetrics({ processMetrics: false, now: () => now });
    const tcp = m.tcpSeries("outbound", "web", "shop", "passthrough", "");
    tcp.connectionOpened();
    tcp.connectionOpened();
    tcp.connectionClosed();
    tcp.addSent(100);
    tcp.addReceived(40);
    tcp.addReceived(-3);
    m.retries.inc(3);
    m.retryBudgetExhausted.inc();
    m.connectionLimitSaturated.labels("orders.shop", "pending").set(1);
    m.outlierEjections.labels("orders.shop").inc();
    m.endpointsEjected.labels("orders.shop").set(1);
    m.ratelimitDecisions.labels("shop/orders-limits", "local", "allowed").inc(5);
    m.ratelimitBackendErrors.inc();
    m.localReply("rate_limited");
    m.localReply("rate_limited");
    m.xdsConnected.set(1);
    m.configUpdates.labels("cluster", "ack").inc();
    m.configUpdates.labels("route", "nack").inc();
    m.configApplied();
    now += 2_500;
    m.setCertExpiry(1_900_000_000);

    const families = parseExposition(await m.scrape());
    const tcpLabels = {
      direction: "outbound",
      source_service: "web",
      source_namespace: "shop",
      destination_service: "passthrough",
      destination_namespace: "",
    };
    const values = (name: string) => family(families, name).samples.map((s) => [s.labels, s.value]);
    assert.deepEqual(values("trellis_tcp_connections_opened_total"), [[tcpLabels, 2]]);
    assert.deepEqual(values("trellis_tcp_connections_closed_total"), [[tcpLabels, 1]]);
    assert.deepEqual(values("trellis_tcp_sent_bytes_total"), [[tcpLabels, 100]]);
    assert.deepEqual(values("trellis_tcp_received_bytes_total"), [[tcpLabels, 40]]);
    assert.deepEqual(values("trellis_retries_total"), [[{}, 3]]);
    assert.deepEqual(values("trellis_retry_budget_exhausted_total"), [[{}, 1]]);
    assert.deepEqual(values("trellis_connection_limit_saturated"), [
      [{ cluster: "orders.shop", limit: "pending" }, 1],
    ]);
    assert.deepEqual(values("trellis_outlier_ejections_total"), [[{ cluster: "orders.shop" }, 1]]);
    assert.deepEqual(values("trellis_endpoints_ejected"), [[{ cluster: "orders.shop" }, 1]]);
    assert.deepEqual(values("trellis_ratelimit_decisions_total"), [
      [{ policy: "shop/orders-limits", scope: "local", decision: "allowed" }, 5],
    ]);
    assert.deepEqual(values("trellis_ratelimit_backend_errors_total"), [[{}, 1]]);
    assert.deepEqual(values("trellis_xds_connected"), [[{}, 1]]);
    assert.deepEqual(values("trellis_config_updates_total"), [
      [{ type: "cluster", result: "ack" }, 1],
      [{ type: "route", result: "nack" }, 1],
    ]);
    assert.deepEqual(values("trellis_config_age_seconds"), [[{}, 2.5]]);
    assert.deepEqual(values("trellis_cert_expiry_timestamp_seconds"), [[{}, 1_900_000_000]]);

    const replies = family(families, "trellis_local_reply_total").samples;
    assert.deepEqual(
      replies.map((s) => s.labels.reason),
      [...LOCAL_REPLY_REASONS],
      "every reason is exported from the start",
    );
    assert.equal(replies.find((s) => s.labels.reason === "rate_limited")?.value, 2);
    assert.equal(replies.find((s) => s.labels.reason === "no_route")?.value, 0);
  });

  it("forgetCluster drops a departed cluster's gauges but keeps its counters", async () => {
    const m = new SidecarMetrics({ processMetrics: false });
    m.connectionLimitSaturated.labels("old.shop", "requests").set(1);
    m.endpointsEjected.labels("old.shop").set(2);
    m.outlierEjections.labels("old.shop").inc();
    m.endpointsEjected.labels("kept.shop").set(0);
    m.forgetCluster("old.shop");
    const families = parseExposition(await m.scrape());
    assert.deepEqual(family(families, "trellis_connection_limit_saturated").samples, []);
    assert.deepEqual(
      family(families, "trellis_endpoints_ejected").samples.map((s) => s.labels.cluster),
      ["kept.shop"],
    );
    assert.equal(family(families, "trellis_outlier_ejections_total").samples.length, 1);
  });

  it("appends prom-client's process metrics (cpu, memory, event-loop lag) without clashing", async () => {
    const m = new SidecarMetrics();
    m.requestSeries("outbound", "web", "shop", "orders", "shop").record(200, undefined, "", 0.01, 0, 0);
    const families = parseExposition(await m.scrape());
    for (const name of [
      "process_cpu_user_seconds_total",
      "process_resident_memory_bytes",
      "nodejs_eventloop_lag_seconds",
      "nodejs_heap_size_used_bytes",
    ]) {
      assert.ok(families.has(name), `${name} present`);
    }
    assert.ok(families.has("trellis_requests_total"));
    assert.equal(METRICS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
  });
});

describe("SidecarMetrics hot path", () => {
  it("creates no series after a target's first request (10 000 records)", async () => {
    const m = new SidecarMetrics({ processMetrics: false });
    const s = m.requestSeries("outbound", "web", "shop", "orders", "shop");
    s.record(200, undefined, "", 0.001, 10, 10);
    const afterFirst = m.seriesCount();
    for (let i = 0; i < 10_000; i++) s.record(200, undefined, "", (i % 100) / 1000, i % 5000, i % 70_000);
    assert.equal(m.seriesCount(), afterFirst);
    assert.equal(s.outcomeCount, 1);
    assert.equal(m.requestSeries("outbound", "web", "shop", "orders", "shop"), s, "the series is memoised");
    const families = parseExposition(await m.scrape());
    assert.equal(family(families, "trellis_requests_total").samples[0]?.value, 10_001);
  });

  it("interleaved outcomes each get one series, once", () => {
    const m = new SidecarMetrics({ processMetrics: false });
    const s = m.requestSeries("inbound", "web", "shop", "orders", "shop");
    const before = m.seriesCount();
    for (let i = 0; i < 10_000; i++) {
      if (i % 3 === 0) s.record(200, undefined, "", 0.001, 0, 0);
      else if (i % 3 === 1) s.record(429, undefined, "rate_limited", 0.0001, 0, 0);
      else s.record(200, 14, "upstream_reset", 0.002, 0, 0);
    }
    assert.equal(m.seriesCount() - before, 3);
    const tcp = m.tcpSeries("inbound", "web", "shop", "orders", "shop");
    const withTcp = m.seriesCount();
    for (let i = 0; i < 10_000; i++) tcp.addSent(10);
    assert.equal(m.seriesCount(), withTcp);
  });

  it("bounds the number of distinct reasons (free text cannot grow series without limit)", async () => {
    const m = new SidecarMetrics({ processMetrics: false });
    const s = m.requestSeries("outbound", "web", "shop", "orders", "shop");
    for (let i = 0; i < MAX_REASONS + 200; i++) s.record(503, undefined, `reason_${i}`, 0.001, 0, 0);
    assert.ok(s.outcomeCount <= MAX_REASONS, `${s.outcomeCount} outcomes`);
    const families = parseExposition(await m.scrape());
    const other = requestSample(family(families, "trellis_requests_total"), { reason: "other" });
    assert.ok((other?.value ?? 0) >= 200);
  });
});
