/**
 * The etcd3 client as the etcd store needs it: no hidden retries, no circuit breakers, channels that
 * notice a dead peer and reconnect quickly.
 *
 * Why no built-in fault handling: etcd3's default global policy retries failed calls itself, which
 * would silently re-send a compare-and-swap whose first attempt may have committed (it then reports
 * a CONFLICT against our own write), and its per-host breaker refuses every call for 5 s after three
 * failures, so calls keep failing after etcd is back. The store retries itself (etcd-calls.ts),
 * knowing which writes are safe to repeat.
 */
import { Etcd3, type IOptions } from "etcd3";

type FaultPolicy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/** Runs the call once: a cockatiel-shaped policy that adds nothing. */
function passThroughPolicy(): FaultPolicy {
  const noListeners = () => ({ dispose: () => {} });
  const policy = {
    onSuccess: noListeners,
    onFailure: noListeners,
    execute: async <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal) =>
      fn({ signal: signal ?? new AbortController().signal }),
  };
  // The IPolicy type also declares a virtual `_altReturn` field that exists only for the type checker.
  return policy as unknown as FaultPolicy;
}

/** Options of the underlying gRPC channels. */
export interface EtcdChannelOptions {
  /** HTTP/2 keepalive ping interval, ms: how soon a watch stream notices a peer that vanished
   * without a reset (network partition). etcd refuses pings more often than every 5 s. */
  keepaliveMs: number;
}

/** Creates the client for `endpoints` (http://host:port each). The caller closes it. */
export function createEtcdClient(endpoints: readonly string[], options: EtcdChannelOptions): Etcd3 {
  return new Etcd3({
    hosts: [...endpoints],
    faultHandling: { host: () => passThroughPolicy(), global: passThroughPolicy() },
    grpcOptions: {
      "grpc.keepalive_time_ms": options.keepaliveMs,
      "grpc.keepalive_timeout_ms": Math.max(1000, Math.floor(options.keepaliveMs / 2)),
      // grpc-js backs off up to 120 s between reconnects by default; etcd restarts take seconds.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 1000,
      // A large prefix listing must not hit the 4 MiB default (lists are paged too, see etcd-store).
      "grpc.max_receive_message_length": -1,
    },
  });
}
