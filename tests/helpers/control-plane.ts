/**
 * Runs `trellis control-plane` (the real binary) as a managed child process with its own HOME and
 * state dir, ports chosen by the OS, and short TTLs for tests; reads the bound ports from its
 * `listening` log line.
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { type ManagedProcess, spawnManaged } from "./processes.js";
import { makeTempDir } from "./temp-dirs.js";
import { waitFor } from "./wait.js";

export const TRELLIS_BIN = resolve(import.meta.dirname, "../../../control-plane/bin/trellis.js");

export interface ControlPlaneProcess {
  proc: ManagedProcess;
  /** gRPC address, `127.0.0.1:<port>`. */
  address: string;
  grpcPort: number;
  adminPort: number;
  home: string;
  stateDir: string;
  caFile: string;
  /** Environment for CLI commands that talk to this replica (HOME with its ~/.trellis/config). */
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export interface ControlPlaneStartOptions {
  /** etcd endpoints; omitted = the embedded store. */
  etcd?: readonly string[];
  /** Reuse a HOME (and so ~/.trellis) — e.g. a second replica of the same mesh. */
  home?: string;
  /** Reuse a state dir / secret file (replicas of one mesh share the secret file). */
  stateDir?: string;
  secretFile?: string;
  replicaId?: string;
  registrationTtl?: string;
  extraArgs?: string[];
}

/** Starts a replica and waits until it logs `listening`. */
export async function startControlPlane(opts: ControlPlaneStartOptions = {}): Promise<ControlPlaneProcess> {
  const home = opts.home ?? makeTempDir("trellis-cp-home");
  const stateDir = opts.stateDir ?? join(home, ".trellis", "control-plane");
  const args = [
    TRELLIS_BIN,
    "control-plane",
    "--listen",
    "127.0.0.1:0",
    "--admin",
    "127.0.0.1:0",
    "--state-dir",
    stateDir,
    "--registration-ttl",
    opts.registrationTtl ?? "2s",
    "--status-flush",
    "100ms",
    "--debounce",
    "20ms",
    "--keepalive",
    "1s",
    ...(opts.etcd !== undefined ? ["--etcd", opts.etcd.join(",")] : []),
    ...(opts.secretFile !== undefined ? ["--secret-file", opts.secretFile] : []),
    ...(opts.replicaId !== undefined ? ["--replica-id", opts.replicaId] : []),
    ...(opts.extraArgs ?? []),
  ];
  const env = { ...process.env, HOME: home, TRELLIS_LOG_LEVEL: "debug" };
  const proc = spawnManaged(process.execPath, args, { name: "trellis-cp", env, stopSignal: "SIGTERM" });
  const listening = await waitFor(
    () => {
      const text = readFileSync(proc.logFile, "utf8");
      for (const line of text.split("\n")) {
        if (!line.includes('"msg":"listening"')) continue;
        return JSON.parse(line) as { ports: { grpc: number; admin: number }; caFile: string };
      }
      return undefined;
    },
    {
      what: "control plane listening",
      timeoutMs: 20_000,
      failIf: () => (proc.exitInfo() !== undefined ? `it exited:\n${proc.logTail()}` : undefined),
    },
  );
  return {
    proc,
    address: `127.0.0.1:${listening.ports.grpc}`,
    grpcPort: listening.ports.grpc,
    adminPort: listening.ports.admin,
    home,
    stateDir,
    caFile: listening.caFile,
    env: { ...process.env, HOME: home },
    stop: () => proc.stop(),
  };
}
