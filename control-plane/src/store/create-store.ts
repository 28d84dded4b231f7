/**
 * Picks the store from configuration: etcd when endpoints are given, else the embedded store
 * (persisted to `embeddedDir` if given, memory only otherwise). Returns it with the one line the
 * control plane logs at startup, so an operator sees at once what the state lives in.
 */
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import type { Clock } from "./clock.js";
import { createEmbeddedStore } from "./embedded-store.js";
import { createEtcdStore } from "./etcd-store.js";
import type { Store } from "./store.js";

/** Store configuration (flags / environment). Durations in milliseconds; all optional. */
export interface CreateStoreOptions {
  /** etcd client URLs (http://host:port). Non-empty selects the etcd store. */
  etcd?: readonly string[];
  /** Embedded store directory (ignored with `etcd`); without it the embedded store is memory only. */
  embeddedDir?: string;
  /** etcd: deadline of each ordinary call, retries included (default 5000). */
  requestTimeoutMs?: number;
  /** Watches (both stores): full reconcile interval (default 300000; 0 disables). */
  reconcileIntervalMs?: number;
  /** Watches (both stores): reconnect backoff bounds (defaults 100 and 5000). */
  watchRetryMinMs?: number;
  watchRetryMaxMs?: number;
  /** Watches (both stores): revisions buffered for a slow consumer (default 10000). */
  watchBufferRevisions?: number;
  /** etcd: gRPC keepalive interval (default 10000). */
  keepaliveMs?: number;
  /** Embedded: revisions of watch history kept (default 10000). */
  historyRevisions?: number;
  /** Embedded: log records between snapshots (default 10000). */
  snapshotEveryRecords?: number;
  /** Timers (default: the system clock). */
  clock?: Clock;
}

/** The chosen store and its startup log line. */
export interface CreatedStore {
  store: Store;
  /** e.g. "store: etcd at http://10.0.0.5:2379, http://10.0.0.6:2379 (request timeout 5000 ms)". */
  description: string;
}

/**
 * Creates the store the options ask for. The etcd store connects lazily (its first call fails with
 * UNAVAILABLE if etcd is unreachable); the embedded store recovers its directory now and fails with
 * CONFIG if the directory is unusable or in use by another process.
 */
export async function createStore(options: CreateStoreOptions = {}): Promise<CreatedStore> {
  const watch = pick(options, [
    "reconcileIntervalMs",
    "watchRetryMinMs",
    "watchRetryMaxMs",
    "watchBufferRevisions",
    "clock",
  ]);
  const endpoints = (options.etcd ?? []).map((e) => e.trim()).filter((e) => e !== "");
  if (endpoints.length > 0) {
    for (const e of endpoints) {
      if (!/^https?:\/\/[^/\s]+$/.test(e)) {
        throw new TrellisError(
          ErrorCode.CONFIG,
          `etcd endpoint ${JSON.stringify(e)} is not http(s)://host:port`,
        );
      }
    }
    const store = createEtcdStore({
      endpoints,
      ...watch,
      ...pick(options, ["requestTimeoutMs", "keepaliveMs"]),
    });
    const timeout = options.requestTimeoutMs ?? 5000;
    return { store, description: `store: etcd at ${endpoints.join(", ")} (request timeout ${timeout} ms)` };
  }
  const store = await createEmbeddedStore({
    ...watch,
    ...pick(options, ["historyRevisions", "snapshotEveryRecords"]),
    ...(options.embeddedDir === undefined ? {} : { dir: options.embeddedDir }),
  });
  const where =
    options.embeddedDir === undefined
      ? "in memory only (state is lost on exit)"
      : `persisted to ${options.embeddedDir} (write-ahead log + snapshots)`;
  return {
    store,
    description: `store: embedded, single-node (one control-plane replica only), ${where}, revision ${await store.revision()}`,
  };
}

/** The listed options that are set (exactOptionalPropertyTypes: never copy an explicit undefined). */
function pick<K extends keyof CreateStoreOptions>(
  options: CreateStoreOptions,
  keys: readonly K[],
): Pick<CreateStoreOptions, K> {
  const out: Partial<Pick<CreateStoreOptions, K>> = {};
  for (const k of keys) if (options[k] !== undefined) out[k] = options[k];
  return out as Pick<CreateStoreOptions, K>;
}
