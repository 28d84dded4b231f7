/**
 * One raw etcd watch: a Watch RPC stream carrying a single watcher over a key range, reported to
 * RawWatchHandlers (resumable-watch.ts does resumption, de-duplication and re-listing).
 *
 * We drive the Watch RPC ourselves instead of using etcd3's WatchManager: on reconnect that manager
 * resumes from the revision in the watch's *creation* response header (the store's current revision,
 * not the last event delivered), which silently skips events written while the stream was down, and
 * it gives no clean signal for "start revision compacted".
 *
 * Watch streams carry no deadline: they live as long as their watcher. Dead peers are noticed by the
 * channel's keepalive pings (etcd-client.ts).
 */
import type { Etcd3, IDuplexStream, IWatchRequest, IWatchResponse } from "etcd3";
import { fromEtcdEvent, prefixRange } from "./etcd-codec.js";
import type { RawWatch, RawWatchHandlers } from "./resumable-watch.js";

/** Opens a watch of `prefix` from `fromRevision` (≥ 1). Failures arrive through `handlers.failed`. */
export function openEtcdWatch(
  client: Etcd3,
  prefix: string,
  fromRevision: number,
  handlers: RawWatchHandlers,
): RawWatch {
  let finished = false;
  let stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;

  const finish = (): void => {
    finished = true;
    if (stream !== undefined) closeStream(stream);
  };
  const fail = (err: unknown): void => {
    if (finished) return;
    finish();
    handlers.failed(err);
  };

  client.watchClient.watch().then(
    (s) => {
      stream = s;
      // An 'error' listener must exist before anything can fail, or Node throws it as unhandled.
      s.on("error", fail);
      s.on("end", () => fail(new Error("watch stream ended by etcd")));
      if (finished) {
        closeStream(s);
        return;
      }
      s.on("data", (res) => {
        if (finished) return;
        // A start revision older than etcd's history: etcd answers "created", then cancels the watch
        // with the oldest revision it still has (sometimes both in one response).
        if (
          res.compact_revision !== undefined &&
          res.compact_revision !== "0" &&
          res.compact_revision !== ""
        ) {
          finish();
          handlers.compacted(Number(res.compact_revision));
          return;
        }
        if (res.canceled) {
          fail(new Error(`watch cancelled by etcd${res.cancel_reason ? `: ${res.cancel_reason}` : ""}`));
          return;
        }
        if (res.created) handlers.ready();
        if (res.events.length > 0) handlers.events(res.events.map(fromEtcdEvent));
      });
      s.write({ create_request: { ...prefixRange(prefix), start_revision: fromRevision } });
    },
    (err: unknown) => fail(err),
  );

  return { close: finish };
}

/**
 * Ends our side first, then cancels. Order matters: etcd3 marks the whole host failed (closing the
 * channel every other call and watch shares) when a stream that is still writable errors, and the
 * local cancel surfaces as a CANCELLED error.
 */
function closeStream(s: IDuplexStream<IWatchRequest, IWatchResponse>): void {
  try {
    s.end();
    s.cancel();
  } catch {
    // Already closed.
  }
}
