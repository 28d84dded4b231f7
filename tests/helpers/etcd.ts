/**
 * Real etcd for tests: a single node (startEtcd) or a cluster (startEtcdCluster) on free loopback
 * ports with temporary data dirs, whose members can be SIGKILLed and restarted. Both return the same
 * handle; a single node is a cluster of one.
 */
import { randomUUID } from "node:crypto";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { type EtcdMemberSpec, etcdStatus, spawnEtcdMember, waitEtcdHealthy } from "./etcd-member.js";
import { withFreePorts } from "./ports.js";
import type { ManagedProcess } from "./processes.js";
import { makeTempDir, removeTempDir } from "./temp-dirs.js";
import { waitFor } from "./wait.js";

/** Options for startEtcd / startEtcdCluster. */
export interface EtcdOptions {
  /** Extra etcd flags for every member, e.g. `["--auto-compaction-mode=revision",
   * "--auto-compaction-retention=10"]`. Appended last, so they override the harness defaults. */
  extraArgs?: readonly string[];
  /** Deadline for the cluster (or a restarted member) to become healthy, ms (default 15000). */
  startTimeoutMs?: number;
}

/** One member as the test sees it. */
export interface EtcdMemberInfo {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** Pid of the running process, or undefined while the member is killed. */
  readonly pid: number | undefined;
}

/** A running etcd (single node or cluster). Stop it in `t.after`; the harness kills it anyway on exit. */
export interface Etcd {
  /** Client URLs of all members, in member order (pass them all to a client). */
  readonly endpoints: readonly string[];
  readonly members: readonly EtcdMemberInfo[];
  /** SIGKILLs member `i` and waits until it has exited. No-op if it is already down. */
  kill(i: number): Promise<void>;
  /** Starts member `i` again with its old data dir and ports. Waits until it is healthy (needs
   * quorum) unless `healthy: false`, then only until its process is up. Throws if it is running. */
  restart(i: number, opts?: { healthy?: boolean }): Promise<void>;
  /** Index of the member that live members agree is leader; waits up to `timeoutMs` (default 10000)
   * for one to be elected among the live members. */
  leaderIndex(opts?: { timeoutMs?: number }): Promise<number>;
  /** SIGKILLs every member and deletes the data dirs. Idempotent. */
  stop(): Promise<void>;
}

/** Starts a one-member etcd and waits until it is healthy. */
export function startEtcd(opts: EtcdOptions = {}): Promise<Etcd> {
  return startEtcdCluster(1, opts);
}

/**
 * Starts a `size`-member cluster (`--initial-cluster`) on fresh loopback ports and waits until every
 * member is healthy. Retries with new ports on EADDRINUSE.
 */
export function startEtcdCluster(size = 3, opts: EtcdOptions = {}): Promise<Etcd> {
  const timeoutMs = opts.startTimeoutMs ?? 15_000;
  return withFreePorts(size * 2, async (ports) => {
    const specs: EtcdMemberSpec[] = [];
    const clusterToken = `trellis-test-${randomUUID()}`; // one per cluster: it seeds the cluster id
    for (let i = 0; i < size; i++) {
      specs.push({
        name: `m${i}`,
        dataDir: makeTempDir(`etcd-m${i}`),
        clientUrl: `http://127.0.0.1:${ports[2 * i]}`,
        peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`,
        initialCluster: "",
        clusterToken,
        extraArgs: opts.extraArgs ?? [],
      });
    }
    const initialCluster = specs.map((s) => `${s.name}=${s.peerUrl}`).join(",");
    for (const s of specs) s.initialCluster = initialCluster;
    const etcd = new Cluster(specs, timeoutMs);
    try {
      await etcd.startAll();
    } catch (err) {
      await etcd.stop();
      throw err;
    }
    return etcd;
  });
}

class Cluster implements Etcd {
  readonly endpoints: readonly string[];
  private readonly procs: Array<ManagedProcess | undefined>;
  private readonly memberIds: string[] = [];
  private stopped: Promise<void> | undefined;

  constructor(
    private readonly specs: readonly EtcdMemberSpec[],
    private readonly timeoutMs: number,
  ) {
    this.endpoints = specs.map((s) => s.clientUrl);
    this.procs = specs.map(() => undefined);
  }

  get members(): readonly EtcdMemberInfo[] {
    return this.specs.map((s, i) => ({
      name: s.name,
      clientUrl: s.clientUrl,
      peerUrl: s.peerUrl,
      dataDir: s.dataDir,
      pid: this.procs[i]?.pid,
    }));
  }

  async startAll(): Promise<void> {
    this.specs.forEach((s, i) => {
      this.procs[i] = spawnEtcdMember(s);
    });
    // Members only turn healthy together, once they have elected a leader.
    await Promise.all(this.specs.map((s, i) => waitEtcdHealthy(this.procs[i]!, s.clientUrl, this.timeoutMs)));
    for (const s of this.specs) this.memberIds.push((await etcdStatus(s.clientUrl)).memberId);
  }

  async kill(i: number): Promise<void> {
    const proc = this.procs[this.index(i)];
    if (proc === undefined) return;
    this.procs[i] = undefined;
    proc.kill("SIGKILL");
    await proc.stop();
  }

  async restart(i: number, opts: { healthy?: boolean } = {}): Promise<void> {
    const spec = this.specs[this.index(i)]!;
    if (this.procs[i] !== undefined) {
      throw new TrellisError(ErrorCode.INVALID_ARGUMENT, `etcd member ${i} is running; kill it first`);
    }
    const proc = spawnEtcdMember(spec);
    this.procs[i] = proc;
    if (opts.healthy === false) {
      await waitFor(() => etcdStatus(spec.clientUrl).then(() => true), {
        what: `etcd ${spec.clientUrl} answering`,
        timeoutMs: this.timeoutMs,
        failIf: () => (proc.exitInfo() === undefined ? undefined : "the process exited"),
      });
    } else {
      await waitEtcdHealthy(proc, spec.clientUrl, this.timeoutMs);
    }
  }

  leaderIndex(opts: { timeoutMs?: number } = {}): Promise<number> {
    return waitFor(
      async () => {
        const live = this.specs.filter((_, i) => this.procs[i] !== undefined);
        const views = await Promise.allSettled(live.map((s) => etcdStatus(s.clientUrl)));
        const leaders = new Set<string>();
        for (const v of views) if (v.status === "fulfilled") leaders.add(v.value.leaderId);
        // Only an answer every reachable live member agrees on, naming a member that is alive.
        if (leaders.size !== 1) return undefined;
        const index = this.memberIds.indexOf([...leaders][0]!);
        return index >= 0 && this.procs[index] !== undefined ? index : undefined;
      },
      { what: "an etcd leader among live members", timeoutMs: opts.timeoutMs ?? 10_000 },
    );
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      await Promise.all(this.procs.map((p) => p?.stop()));
      this.procs.fill(undefined);
      await Promise.all(this.specs.map((s) => removeTempDir(s.dataDir)));
    })();
    return this.stopped;
  }

  private index(i: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= this.specs.length) {
      throw new TrellisError(ErrorCode.INVALID_ARGUMENT, `no etcd member ${i} (size ${this.specs.length})`);
    }
    return i;
  }
}
