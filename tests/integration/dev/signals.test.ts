// How `trellis dev` ends when it is told to, and when it is killed: Ctrl-C (SIGINT) stops every
// process and exits 0 with the summary; SIGKILL, which it cannot catch, still takes every child
// with it (they run under `setpriv --pdeathsig KILL`). The SIGINT run also has `--no-scenarios`:
// it runs past the first scenario's start (3 s on the timeline of a run until Ctrl-C) and none
// plays.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { alive, type DevRun, firstLine, listedPorts, listeningPorts, startDev } from "./dev-helpers.js";

async function waitUntil(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`${what}: not true after ${timeoutMs} ms`);
    await delay(50);
  }
}

describe("trellis dev stops everything", { timeout: 90_000 }, () => {
  const runs: DevRun[] = [];
  after(async () => {
    await Promise.all(runs.map((r) => r.proc.stop()));
  });

  it("on SIGINT: summary as the last line, exit 0, no process or port left (and --no-scenarios plays none)", async () => {
    const run = startDev(["--duration", "0", "--interval", "1s", "--no-scenarios"]);
    runs.push(run);
    const first = await firstLine(run, 40_000);
    assert.deepEqual((first as unknown as { scenarios: unknown[] }).scenarios, [], "no scenario planned");
    // Some load first, so there is something to summarise — and past 4 s, when the failing
    // instance would have been under way.
    await waitUntil(
      "a stats line after 4 s",
      () => run.lines.some((l) => l.type === "stats" && (l.elapsedS as number) >= 4),
      15_000,
    );
    run.proc.kill("SIGINT");
    const exit = await run.proc.exited;
    await run.ended;
    assert.deepEqual(
      { code: exit.code, signal: exit.signal },
      { code: 0, signal: null },
      run.proc.logTail(60),
    );
    const last = run.lines.at(-1) as { type: string; reason: string; clean: boolean; scenarios: unknown[] };
    assert.deepEqual(last.scenarios, [], "the summary has no scenarios");
    assert.deepEqual(
      run.lines.filter((l) => l.type === "scenario"),
      [],
      "no scenario was announced",
    );
    assert.deepEqual(
      { type: last.type, reason: last.reason, clean: last.clean },
      {
        type: "summary",
        reason: "interrupted",
        clean: true,
      },
    );
    assert.deepEqual(
      first.processes.filter((p) => alive(p.pid)).map((p) => p.name),
      [],
      "processes still alive",
    );
    const bound = listeningPorts();
    assert.deepEqual(
      listedPorts(first.processes).filter((p) => bound.has(p)),
      [],
      "ports still bound",
    );
  });

  it("on SIGKILL: every child dies with it", async () => {
    const run = startDev(["--duration", "0"]);
    runs.push(run);
    const first = await firstLine(run, 40_000);
    assert.ok(first.processes.every((p) => alive(p.pid)));
    run.proc.kill("SIGKILL");
    await run.proc.exited;
    await waitUntil(
      `every child of the killed trellis dev gone (alive: ${first.processes
        .filter((p) => alive(p.pid))
        .map((p) => p.name)
        .join(", ")})`,
      () => first.processes.every((p) => !alive(p.pid)),
      5_000,
    );
  });
});
