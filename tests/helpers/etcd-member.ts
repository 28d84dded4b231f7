/**
 * One etcd 3.4 member process and the two HTTP probes the harness needs (health and status). The
 * probes use etcd's own HTTP endpoints (`/health`, and the gRPC gateway's `/v3/maintenance/status`,
 * which renders uint64 member ids as strings) so the harness needs no etcd client library.
 */
import { request } from "node:http";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { type ManagedProcess, processError, spawnManaged } from "./processes.js";
import { waitFor } from "./wait.js";

/** Where and how one member runs; fixed for its life, so a restart reuses ports and data. */
export interface EtcdMemberSpec {
  name: string;
  dataDir: string;
  /** http://127.0.0.1:PORT, the member's client URL. */
  clientUrl: string;
  /** http://127.0.0.1:PORT, the member's peer URL. */
  peerUrl: string;
  /** `name=peerUrl,…` for every member. */
  initialCluster: string;
  clusterToken: string;
  /** Appended to the command line (e.g. `--auto-compaction-retention=1`); later flags win. */
  extraArgs: readonly string[];
}

/** What `/v3/maintenance/status` says; ids are decimal strings ("0" = no leader known). */
export interface EtcdStatus {
  memberId: string;
  leaderId: string;
}

/** Starts the member's process (not waiting for it). SIGKILL on stop: etcd lingers on TERM without quorum. */
export function spawnEtcdMember(spec: EtcdMemberSpec): ManagedProcess {
  const args = [
    `--name=${spec.name}`,
    `--data-dir=${spec.dataDir}`,
    `--listen-client-urls=${spec.clientUrl}`,
    `--advertise-client-urls=${spec.clientUrl}`,
    `--listen-peer-urls=${spec.peerUrl}`,
    `--initial-advertise-peer-urls=${spec.peerUrl}`,
    `--initial-cluster=${spec.initialCluster}`,
    "--initial-cluster-state=new", // ignored by etcd when the data dir already holds a member (restart)
    `--initial-cluster-token=${spec.clusterToken}`,
    // Short raft timers keep elections (and so failover tests) well under a second on loopback.
    "--heartbeat-interval=50",
    "--election-timeout=500",
    "--logger=zap",
    "--log-outputs=stderr",
    ...spec.extraArgs,
  ];
  // ETCD_* variables in our environment would override the flags above.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ETCD_")));
  return spawnManaged("etcd", args, { name: `etcd-${spec.name}`, env, stopSignal: "SIGKILL" });
}

/**
 * Waits until the member answers `/health` with `"true"`, i.e. it is serving and its cluster has a
 * leader (quorum). Fails early, with the member's log tail, if the process exits.
 */
export async function waitEtcdHealthy(
  proc: ManagedProcess,
  clientUrl: string,
  timeoutMs: number,
): Promise<void> {
  try {
    await waitFor(
      async () => {
        const body = (await httpJson("GET", `${clientUrl}/health`)) as { health?: unknown };
        return body.health === "true";
      },
      {
        what: `etcd ${clientUrl} healthy`,
        timeoutMs,
        failIf: () => (proc.exitInfo() === undefined ? undefined : "the process exited"),
      },
    );
  } catch (err) {
    const e = TrellisError.from(err);
    throw processError(proc, e.message, e.code);
  }
}

/** The member's own id and the leader it believes in. Rejects if it does not answer within `timeoutMs`. */
export async function etcdStatus(clientUrl: string, timeoutMs = 1000): Promise<EtcdStatus> {
  const body = (await httpJson("POST", `${clientUrl}/v3/maintenance/status`, "{}", timeoutMs)) as {
    header?: { member_id?: unknown };
    leader?: unknown;
  };
  const memberId = body.header?.member_id;
  if (typeof memberId !== "string") {
    throw new TrellisError(ErrorCode.PROTOCOL, `etcd status from ${clientUrl} has no member id`);
  }
  return { memberId, leaderId: typeof body.leader === "string" ? body.leader : "0" };
}

// node:http with agent:false, so no keep-alive socket outlives the probe (or a killed member).
function httpJson(method: string, url: string, body?: string, timeoutMs = 1000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on("timeout", () => req.destroy(new TrellisError(ErrorCode.TIMEOUT, `${method} ${url} timed out`)));
    req.on("error", reject);
    req.end(body);
  });
}
