/**
 * Runs `trellis-sidecar run` (the real binary) as a managed child process, with ports chosen by the
 * OS, a state dir of its own and short timeouts for tests; reads the bound ports from its
 * `listening` log line.
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ControlPlaneProcess } from "./control-plane.js";
import { type ManagedProcess, spawnManaged } from "./processes.js";
import { makeTempDir } from "./temp-dirs.js";
import { waitFor } from "./wait.js";

export const SIDECAR_BIN = resolve(import.meta.dirname, "../../../sidecar/bin/trellis-sidecar.js");

export interface SidecarProcess {
  proc: ManagedProcess;
  proxyId: string;
  ports: { inbound: number; outbound: number; admin: number; stats: number };
  stateDir: string;
  /** `http://127.0.0.1:<outbound>` — use as the app's HTTP proxy. */
  proxyUrl: string;
  stop(): Promise<void>;
}

export interface SidecarStartOptions {
  cp: Pick<ControlPlaneProcess, "address" | "caFile">;
  token: string;
  service: string;
  namespace?: string;
  serviceAccount?: string;
  proxyId?: string;
  /** `8080` or `8080/grpc`, comma-separated. */
  appPorts?: string;
  stateDir?: string;
  extraArgs?: string[];
  /** Wait until /ready answers 200 (default true). */
  waitReady?: boolean;
}

let counter = 0;

export async function startSidecar(opts: SidecarStartOptions): Promise<SidecarProcess> {
  counter++;
  const proxyId = opts.proxyId ?? `${opts.service}-${process.pid}-${counter}`;
  const stateDir = opts.stateDir ?? join(makeTempDir(`sidecar-${opts.service}`), "state");
  const args = [
    SIDECAR_BIN,
    "run",
    "--control-plane",
    opts.cp.address,
    "--ca-file",
    opts.cp.caFile,
    "--join-token",
    opts.token,
    "--service",
    opts.service,
    "--namespace",
    opts.namespace ?? "shop",
    "--service-account",
    opts.serviceAccount ?? opts.service,
    "--proxy-id",
    proxyId,
    "--inbound-port",
    "0",
    "--outbound-port",
    "0",
    "--admin-port",
    "0",
    "--stats-port",
    "0",
    "--state-dir",
    stateDir,
    "--drain-delay",
    "300ms",
    "--drain-timeout",
    "5s",
    "--log-level",
    "debug",
    ...(opts.appPorts !== undefined ? ["--app-port", opts.appPorts] : []),
    ...(opts.extraArgs ?? []),
  ];
  const proc = spawnManaged(process.execPath, args, {
    name: `sidecar-${opts.service}`,
    stopSignal: "SIGTERM",
    stopTimeoutMs: 8000,
  });
  const line = await waitFor(
    () => {
      for (const l of readFileSync(proc.logFile, "utf8").split("\n")) {
        if (l.includes('"msg":"listening"')) return JSON.parse(l) as { ports: SidecarProcess["ports"] };
      }
      return undefined;
    },
    {
      what: `sidecar ${proxyId} listening`,
      timeoutMs: 20_000,
      failIf: () => (proc.exitInfo() !== undefined ? `it exited:\n${proc.logTail()}` : undefined),
    },
  );
  const sc: SidecarProcess = {
    proc,
    proxyId,
    ports: line.ports,
    stateDir,
    proxyUrl: `http://127.0.0.1:${line.ports.outbound}`,
    stop: () => proc.stop(),
  };
  if (opts.waitReady !== false) {
    await waitFor(
      async () =>
        (await fetch(`http://127.0.0.1:${sc.ports.stats}/ready`).catch(() => undefined))?.status === 200,
      {
        what: `sidecar ${proxyId} ready`,
        timeoutMs: 15_000,
        intervalMs: 50,
        failIf: () => (proc.exitInfo() !== undefined ? `it exited:\n${proc.logTail()}` : undefined),
      },
    );
  }
  return sc;
}
