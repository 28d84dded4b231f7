/**
 * Duration strings as users write them everywhere (INTERFACES.md: "250ms", "2s", "1m", "24h"), and
 * the canonical form Trellis prints back: one unit, the largest that represents the value exactly.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import {
  durationFromMs,
  durationFromNanos,
  durationMs,
  durationNanos,
  formatDuration,
  formatDurationNanos,
  parseDuration,
  parseDurationNanos,
} from "@trellis/proto/duration";

describe("parseDuration", () => {
  // text → [seconds, nanos] of the google.protobuf.Duration, and its canonical print.
  const valid: Array<[text: string, seconds: bigint, nanos: number, canonical: string]> = [
    ["250ms", 0n, 250_000_000, "250ms"],
    ["2s", 2n, 0, "2s"],
    ["1m", 60n, 0, "1m"],
    ["24h", 86_400n, 0, "24h"],
    ["1.5s", 1n, 500_000_000, "1500ms"],
    [".5s", 0n, 500_000_000, "500ms"],
    ["1h30m", 5_400n, 0, "90m"],
    ["2h45m30.5s", 9_930n, 500_000_000, "9930500ms"],
    ["90s", 90n, 0, "90s"],
    ["1500ms", 1n, 500_000_000, "1500ms"],
    ["60s", 60n, 0, "1m"],
    ["3600s", 3_600n, 0, "1h"],
    ["86400s", 86_400n, 0, "24h"],
    ["500us", 0n, 500_000, "500us"],
    ["500µs", 0n, 500_000, "500us"],
    ["1000ns", 0n, 1_000, "1us"],
    ["1ns", 0n, 1, "1ns"],
    ["0", 0n, 0, "0s"],
    ["0s", 0n, 0, "0s"],
    ["+2s", 2n, 0, "2s"],
    [" 2s ", 2n, 0, "2s"],
    ["-1s", -1n, 0, "-1s"],
    ["-1.5s", -1n, -500_000_000, "-1500ms"],
    ["1.0000000001s", 1n, 0, "1s"],
  ];
  for (const [text, seconds, nanos, canonical] of valid) {
    it(`${JSON.stringify(text)} is ${seconds}s + ${nanos}ns, printed ${canonical}`, () => {
      const d = parseDuration(text);
      assert.ok(d !== undefined, "expected a duration");
      assert.deepEqual([d.seconds, d.nanos], [seconds, nanos]);
      assert.equal(formatDuration(d), canonical);
      assert.deepEqual(parseDuration(canonical), d, "the canonical form parses back to the same value");
    });
  }

  // Not durations: bare numbers are ambiguous ("10" — seconds? ms?), units are case-sensitive.
  const invalid = [
    "10",
    "",
    " ",
    "-",
    "s",
    "1",
    "1.s",
    "1 s",
    "1H",
    "1d",
    "1e3ms",
    "ten seconds",
    "1s2",
    "--1s",
  ];
  for (const text of invalid) {
    it(`${JSON.stringify(text)} is not a duration`, () => {
      assert.equal(parseDuration(text), undefined);
      assert.equal(parseDurationNanos(text), undefined);
    });
  }
});

describe("formatDuration: one unit, the largest that is exact", () => {
  const table: Array<[nanos: bigint, text: string]> = [
    [0n, "0s"],
    [1n, "1ns"],
    [1_500n, "1500ns"],
    [250_000_000n, "250ms"],
    [1_000_000_000n, "1s"],
    [90_000_000_000n, "90s"],
    [120_000_000_000n, "2m"],
    [5_400_000_000_000n, "90m"],
    [86_400_000_000_000n, "24h"],
    [-30_000_000_000n, "-30s"],
  ];
  for (const [nanos, text] of table) {
    it(`${nanos}ns prints ${text}`, () => {
      assert.equal(formatDurationNanos(nanos), text);
      assert.equal(formatDuration(durationFromNanos(nanos)), text);
      assert.equal(parseDurationNanos(text), nanos);
    });
  }

  it("prints a Duration whose seconds and nanos are both set", () => {
    assert.equal(formatDuration(create(DurationSchema, { seconds: 1n, nanos: 500_000_000 })), "1500ms");
    assert.equal(formatDuration(create(DurationSchema, { seconds: -2n, nanos: -250_000_000 })), "-2250ms");
  });
});

describe("conversions", () => {
  it("durationFromNanos keeps seconds and nanos of the same sign", () => {
    const d = durationFromNanos(-1_500_000_000n);
    assert.deepEqual([d.seconds, d.nanos], [-1n, -500_000_000]);
    assert.equal(durationNanos(d), -1_500_000_000n);
  });

  it("durationMs: milliseconds, fractional below 1 ms; the fallback when unset", () => {
    assert.equal(durationMs(parseDuration("1.5s")), 1500);
    assert.equal(durationMs(parseDuration("250us")), 0.25);
    assert.equal(durationMs(undefined), undefined);
    assert.equal(durationMs(undefined, 1000), 1000);
  });

  it("durationFromMs rounds to whole nanoseconds", () => {
    assert.equal(formatDuration(durationFromMs(1.5)), "1500us");
    assert.equal(formatDuration(durationFromMs(2000)), "2s");
  });
});
