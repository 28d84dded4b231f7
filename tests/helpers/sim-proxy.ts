/**
 * Drives the simulated proxy (tests/fixtures/sim-proxy/main.ts) in its own process: start it with
 * a workload and a join token, wait for events it reports, send it commands, kill it.
 */
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WorkloadSchema } from "@trellis/proto/gen/trellis/v1/workload_pb";
import { type ManagedProcess, spawnManaged } from "./processes.js";
import { waitFor } from "./wait.js";

const MAIN = resolve(import.meta.dirname, "../fixtures/sim-proxy/main.js");

export interface SimEvent {
  event: string;
  typeUrl?: string;
  resources?: { name: string; version: string; json: Record<string, unknown> | null }[];
  removed?: string[];
  notFound?: string[];
  rejected?: string[];
  leaseId?: string;
  replica?: string;
  identity?: string;
  error?: string;
}

export interface SimProxyOptions {
  addresses: string[];
  caFile: string;
  workload: MessageInitShape<typeof WorkloadSchema>;
  joinToken: string;
  routes?: string[];
}

export class SimProxy {
  readonly events: SimEvent[] = [];
  private constructor(readonly proc: ManagedProcess) {}

  static start(opts: SimProxyOptions): SimProxy {
    const proc = spawnManaged(process.execPath, [MAIN], {
      name: `sim-${String(opts.workload.proxyId ?? "proxy")}`,
      env: { ...process.env, TRELLIS_SIM_CONFIG: JSON.stringify(opts) },
      pipe: true,
    });
    const sim = new SimProxy(proc);
    const stdout = proc.stdout;
    if (stdout !== null) {
      createInterface({ input: stdout }).on("line", (line) => {
        try {
          sim.events.push(JSON.parse(line) as SimEvent);
        } catch {
          // not an event line
        }
      });
    }
    return sim;
  }

  /** Waits until an event after index `from` satisfies `pred`; returns it. */
  async next(pred: (e: SimEvent) => boolean, what: string, from = 0, timeoutMs = 10_000): Promise<SimEvent> {
    let found: SimEvent | undefined;
    await waitFor(
      () => {
        found = this.events.slice(from).find(pred);
        return found !== undefined;
      },
      { what: `${what} (sim proxy log: ${this.proc.logFile})`, timeoutMs, intervalMs: 10 },
    );
    return found as SimEvent;
  }

  /** The latest resources of a type as it holds them (applying updates in order). */
  held(typeUrl: string): Map<string, { version: string; json: Record<string, unknown> | null }> {
    const out = new Map<string, { version: string; json: Record<string, unknown> | null }>();
    for (const e of this.events) {
      if (e.event !== "update" || e.typeUrl !== typeUrl) continue;
      for (const r of e.resources ?? []) if (!(e.rejected ?? []).includes(r.name)) out.set(r.name, r);
      for (const n of e.removed ?? []) out.delete(n);
    }
    return out;
  }

  send(cmd: Record<string, unknown>): void {
    this.proc.stdin?.write(`${JSON.stringify(cmd)}\n`);
  }

  kill(): void {
    this.proc.kill("SIGKILL");
  }

  stop(): Promise<void> {
    return this.proc.stop();
  }
}
