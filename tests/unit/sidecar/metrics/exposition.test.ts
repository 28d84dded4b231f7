/**
 * The hand-written Prometheus text format pieces: escaping, number formatting, bucket placement,
 * and the counter / gauge families built on them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  Buckets,
  escapeHelp,
  escapeLabelValue,
  formatValue,
  writeHistogram,
} from "@trellis/sidecar/metrics/exposition";
import { callbackGauge, counterFamily, gaugeFamily } from "@trellis/sidecar/metrics/simple-metrics";

describe("escaping", () => {
  const labelValues: Array<[string, string]> = [
    ["plain", "plain"],
    ['say "hi"', 'say \\"hi\\"'],
    ["C:\\path", "C:\\\\path"],
    ["two\nlines", "two\\nlines"],
    ['\\"\n', '\\\\\\"\\n'],
    ["", ""],
    ["ünïcode ✓", "ünïcode ✓"],
  ];
  for (const [raw, escaped] of labelValues) {
    it(`label value ${JSON.stringify(raw)}`, () => assert.equal(escapeLabelValue(raw), escaped));
  }

  it("HELP escapes backslash and newline but not quotes", () => {
    assert.equal(escapeHelp('a "b" \\ c\nd'), 'a "b" \\\\ c\\nd');
  });
});

describe("formatValue", () => {
  const table: Array<[number, string]> = [
    [0, "0"],
    [42, "42"],
    [0.25, "0.25"],
    [1e-7, "1e-7"],
    [-3.5, "-3.5"],
    [Number.POSITIVE_INFINITY, "+Inf"],
    [Number.NEGATIVE_INFINITY, "-Inf"],
    [Number.NaN, "NaN"],
  ];
  for (const [n, text] of table) it(`${n} → ${text}`, () => assert.equal(formatValue(n), text));
});

describe("Buckets", () => {
  const b = new Buckets([0.1, 1, 10]);

  it("puts a value in the first bucket whose bound is ≥ it (le is inclusive)", () => {
    assert.deepEqual(
      [0, 0.1, 0.10001, 1, 5, 10, 10.5, 1e9].map((v) => b.indexOf(v)),
      [0, 0, 1, 1, 2, 2, 3, 3],
    );
  });

  it("refuses bounds that are not strictly increasing and finite", () => {
    assert.throws(() => new Buckets([1, 1]));
    assert.throws(() => new Buckets([2, 1]));
    assert.throws(() => new Buckets([1, Number.POSITIVE_INFINITY]));
  });

  it("writes cumulative buckets, +Inf, _sum and _count", () => {
    const out: string[] = [];
    writeHistogram(out, "h", 'a="x"', b, [1, 0, 2, 3], 99.5);
    assert.equal(
      out.join(""),
      [
        'h_bucket{a="x",le="0.1"} 1',
        'h_bucket{a="x",le="1"} 1',
        'h_bucket{a="x",le="10"} 3',
        'h_bucket{a="x",le="+Inf"} 6',
        'h_sum{a="x"} 99.5',
        'h_count{a="x"} 6',
        "",
      ].join("\n"),
    );
  });

  it("writes an unlabelled histogram without empty braces on _sum and _count", () => {
    const out: string[] = [];
    writeHistogram(out, "h", "", new Buckets([1]), [1, 1], 3);
    assert.equal(out.join(""), 'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n');
  });
});

describe("counter and gauge families", () => {
  it("an unlabelled counter is exported as 0 from the start, and ignores non-positive increments", () => {
    const f = counterFamily<[]>("c_total", "A counter.", []);
    const out: string[] = [];
    f.render(out);
    assert.equal(out.join(""), "# HELP c_total A counter.\n# TYPE c_total counter\nc_total 0\n");
    const cell = f.labels();
    cell.inc();
    cell.inc(2.5);
    cell.inc(-10);
    cell.inc(Number.NaN);
    assert.equal(cell.value, 3.5);
  });

  it("labels() returns the same cell for the same values, and remove() drops the series", () => {
    const f = gaugeFamily<[string, string]>("g", "A gauge.", ["cluster", "limit"]);
    const a = f.labels("orders", "pending");
    assert.equal(f.labels("orders", "pending"), a);
    a.set(1);
    f.labels("orders", "requests").set(0);
    assert.equal(f.seriesCount(), 2);
    const out: string[] = [];
    f.render(out);
    assert.match(out.join(""), /^g\{cluster="orders",limit="pending"\} 1$/m);
    assert.equal(f.remove("orders", "pending"), true);
    assert.equal(f.seriesCount(), 1);
    const after: string[] = [];
    f.render(after);
    assert.doesNotMatch(after.join(""), /limit="pending"/);
  });

  it("keeps label values apart even when one contains the key separator or a comma", () => {
    const f = counterFamily<[string, string]>("k_total", "k", ["a", "b"]);
    f.labels("x,y", "z").inc();
    f.labels("x", "y,z").inc(2);
    assert.equal(f.seriesCount(), 2);
  });

  it("refuses invalid metric and label names (a programming error)", () => {
    assert.throws(() => counterFamily<[]>("bad-name", "x", []));
    assert.throws(() => counterFamily<[string]>("ok", "x", ["le"]));
    assert.throws(() => counterFamily<[string]>("ok", "x", ["__reserved"]));
    assert.throws(() => counterFamily<[string]>("ok", "x", ["has space"]));
  });

  it("a callback gauge writes no sample while its value is undefined", () => {
    let v: number | undefined;
    const g = callbackGauge("cb", "Callback.", () => v);
    const before: string[] = [];
    g.render(before);
    assert.equal(before.join(""), "# HELP cb Callback.\n# TYPE cb gauge\n");
    assert.equal(g.seriesCount(), 0);
    v = 12.5;
    const after: string[] = [];
    g.render(after);
    assert.match(after.join(""), /^cb 12\.5$/m);
  });
});
