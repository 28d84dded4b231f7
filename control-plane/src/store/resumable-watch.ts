/**
 * The watch both stores hand out: exactly-once, in-order delivery of a prefix's changes on top of a
 * backend's raw, restartable event streams (etcd's Watch RPC, the embedded store's history).
 *
 * A raw stream can break (etcd restarts, a leader change), can be cancelled because its start
 * revision was compacted, and can fall behind a slow consumer. This module hides all three: it
 * remembers what the consumer has seen (key → modRevision, and the revision up to which its view is
 * complete), resumes a broken stream from the next revision, and after a compaction re-lists the
 * prefix and delivers only the difference. A periodic full reconcile repairs, the same way, anything
 * a stream might have missed.
 */
import { type Clock, type ClockTimer, sleep } from "./clock.js";
import type { KeyValue, ListResult, WatchEvent, Watcher } from "./store.js";

/** Callbacks a raw stream reports to. After `compacted` or `failed` the stream is finished. */
export interface RawWatchHandlers {
  /** The stream is established (the backend accepted it). */
  ready(): void;
  /** Events in revision order. One call may hold several revisions, but never part of one. */
  events(events: readonly WatchEvent[]): void;
  /** The start revision is older than the backend's history (`compactRevision` is the oldest kept). */
  compacted(compactRevision: number): void;
  /** The stream broke (connection lost, cancelled by the server). */
  failed(err: unknown): void;
}

/** A raw stream; `close()` is idempotent and no handler runs after it returns. */
export interface RawWatch {
  close(): void;
}

/** What a backend provides for resumable watches. Reads have the backend's call deadline. */
export interface WatchSource {
  /**
   * Key → modRevision of every key under `prefix` as of `revision`, or undefined when that revision
   * has been compacted. A future revision yields the current state.
   */
  keysAt(prefix: string, revision: number): Promise<Map<string, number> | undefined>;
  /** The prefix's keys now, and the revision they were read at. */
  list(prefix: string): Promise<ListResult>;
  /** Opens a raw stream of the prefix's events from `fromRevision` (inclusive, ≥ 1). */
  open(prefix: string, fromRevision: number, handlers: RawWatchHandlers): RawWatch;
}

/** Tuning of a resumable watch. Every duration is in milliseconds. */
export interface ResumableWatchOptions {
  clock: Clock;
  /** Full re-list and diff every this often (0 = never). */
  reconcileIntervalMs: number;
  /**
   * Raw revisions buffered for a slow consumer before the raw stream is dropped; it is reopened
   * from the next undelivered revision once the consumer has caught up, so memory stays bounded.
   */
  bufferRevisions: number;
  /** Reconnect / retry backoff: starts at min, doubles per failure, capped at max. */
  retryMinMs: number;
  retryMaxMs: number;
}

type Item =
  | { kind: "events"; events: readonly WatchEvent[]; revisions: number }
  | { kind: "compacted"; compactRevision: number }
  | { kind: "failed"; err: unknown }
  | { kind: "reconcile" };

type OnEvents = (events: WatchEvent[]) => void | Promise<void>;

/**
 * Starts a resumable watch of `prefix` (see `WatchOptions` in store.ts for the contract) and returns
 * its handle. `fromRevision` ≤ 0 means "from now" (the consumer is taken to hold the current state).
 * Never throws: trouble is retried and reported through `onWarning`. A callback that throws is
 * reported there too; its batch counts as delivered (redelivering would loop on a poisoned batch).
 */
export function startResumableWatch(
  source: WatchSource,
  prefix: string,
  fromRevision: number,
  onEvents: OnEvents,
  onWarning: (message: string) => void,
  options: ResumableWatchOptions,
): Watcher {
  const watch = new ResumableWatch(source, prefix, onEvents, onWarning, options);
  watch.start(fromRevision);
  return watch;
}

/**
 * Starts a resumable watch for a Store's `watch()` and keeps it in `registry` until it is closed,
 * so the store can close every open watch when it closes.
 */
export function startTrackedWatch(
  registry: Set<Watcher>,
  source: WatchSource,
  prefix: string,
  options: { fromRevision: number; onWarning?: (message: string) => void },
  onEvents: OnEvents,
  watchOptions: ResumableWatchOptions,
): Watcher {
  const inner = startResumableWatch(
    source,
    prefix,
    options.fromRevision,
    onEvents,
    options.onWarning ?? (() => {}),
    watchOptions,
  );
  const watcher: Watcher = {
    close: () => {
      registry.delete(watcher);
      return inner.close();
    },
  };
  registry.add(watcher);
  return watcher;
}

class ResumableWatch implements Watcher {
  /** What the consumer holds: key → modRevision of every live key it was told about. */
  private readonly seen = new Map<string, number>();
  /** The consumer's view is complete up to this revision; later events start at delivered + 1. */
  private delivered = 0;
  private readonly queue: Item[] = [];
  private wake: (() => void) | undefined;
  /** Revisions of event items in `queue` (the slow-consumer bound). */
  private bufferedRevisions = 0;
  private stream: RawWatch | undefined;
  /** Bumped whenever a stream is abandoned, so its late callbacks are dropped. */
  private generation = 0;
  private failures = 0;
  private reconcileTimer: ClockTimer | undefined;
  private closed = false;
  private readonly stop = new AbortController();
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly source: WatchSource,
    private readonly prefix: string,
    private readonly onEvents: OnEvents,
    private readonly onWarning: (message: string) => void,
    private readonly options: ResumableWatchOptions,
  ) {}

  start(fromRevision: number): void {
    this.done = this.run(fromRevision).catch((err: unknown) => {
      // Only a bug gets here (every backend failure is retried); say so rather than die silently.
      this.warn(`watch of ${this.prefix} stopped: ${message(err)}`);
    });
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.stop.abort();
      this.abandonStream();
      this.reconcileTimer?.cancel();
      this.queue.length = 0;
      this.wake?.();
    }
    // Waits for a callback in progress: after this settles no callback runs. (So a callback must
    // not await its own watcher's close(); it would wait for itself.)
    return this.done;
  }

  private async run(fromRevision: number): Promise<void> {
    await this.retrying("read the starting state", () => this.establishBaseline(fromRevision));
    this.scheduleReconcile();
    while (!this.closed) {
      if (this.stream === undefined && this.bufferedRevisions === 0) this.openStream();
      const item = await this.next();
      if (item === undefined) break;
      await this.handle(item);
    }
  }

  /**
   * What the consumer already has when it starts watching from `fromRevision`: by contract it read
   * the prefix at `fromRevision - 1` (list() then watch from revision + 1), so `seen` is the prefix
   * as of that revision. Without it a later re-list could not tell the consumer about keys it had
   * from its own list and that were deleted while the stream was behind.
   */
  private async establishBaseline(fromRevision: number): Promise<void> {
    if (fromRevision <= 0) {
      // "From now": the consumer's view is the current state.
      const now = await this.source.list(this.prefix);
      this.resetSeen(new Map(now.items.map((kv) => [kv.key, kv.modRevision])));
      this.delivered = now.revision;
      return;
    }
    const baseline =
      fromRevision === 1
        ? new Map<string, number>()
        : await this.source.keysAt(this.prefix, fromRevision - 1);
    if (baseline !== undefined) {
      this.resetSeen(baseline);
      this.delivered = fromRevision - 1;
      return;
    }
    // The start revision is already compacted. Keys unchanged since before it are ones the consumer
    // has; newer ones are delivered as puts. Keys deleted in between cannot be known any more.
    this.warn(
      `watch of ${this.prefix} from revision ${fromRevision}: already compacted; re-listing ` +
        "(deletions before the re-list may be missed)",
    );
    const now = await this.source.list(this.prefix);
    this.resetSeen(
      new Map(now.items.filter((kv) => kv.modRevision < fromRevision).map((kv) => [kv.key, kv.modRevision])),
    );
    this.delivered = fromRevision - 1;
    await this.deliverDifference(now);
  }

  private resetSeen(keys: Map<string, number>): void {
    this.seen.clear();
    for (const [k, rev] of keys) this.seen.set(k, rev);
  }

  private openStream(): void {
    const generation = ++this.generation;
    const live = (): boolean => generation === this.generation && !this.closed;
    this.stream = this.source.open(this.prefix, this.delivered + 1, {
      ready: () => {
        if (live()) this.failures = 0;
      },
      events: (events) => {
        if (!live() || events.length === 0) return;
        this.failures = 0;
        const revisions = countRevisions(events);
        this.push({ kind: "events", events, revisions });
        this.bufferedRevisions += revisions;
        if (this.bufferedRevisions > this.options.bufferRevisions) {
          // A slow consumer: stop reading rather than buffer without bound. The loop reopens the
          // stream from the next undelivered revision once it has drained what is buffered.
          this.warn(
            `watch of ${this.prefix}: consumer is behind by ${this.bufferedRevisions} revisions; pausing the stream`,
          );
          this.abandonStream();
        }
      },
      compacted: (compactRevision) => {
        if (live()) this.push({ kind: "compacted", compactRevision });
      },
      failed: (err) => {
        if (live()) this.push({ kind: "failed", err });
      },
    });
  }

  private abandonStream(): void {
    this.generation++;
    const stream = this.stream;
    this.stream = undefined;
    stream?.close();
  }

  private push(item: Item): void {
    this.queue.push(item);
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async next(): Promise<Item | undefined> {
    while (!this.closed) {
      const item = this.queue.shift();
      if (item !== undefined) return item;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
    return undefined;
  }

  private async handle(item: Item): Promise<void> {
    switch (item.kind) {
      case "events":
        this.bufferedRevisions -= item.revisions;
        await this.deliverStreamEvents(item.events);
        return;
      case "compacted":
        this.abandonStream();
        this.dropBufferedEvents();
        this.warn(
          `watch of ${this.prefix}: revision ${this.delivered + 1} is compacted (oldest kept ` +
            `${item.compactRevision}); re-listing and delivering the difference`,
        );
        await this.retrying("re-list after compaction", async () => {
          await this.deliverDifference(await this.source.list(this.prefix));
        });
        return; // the loop reopens the stream from delivered + 1
      case "failed":
        this.abandonStream();
        this.warn(
          `watch of ${this.prefix}: stream failed (${message(item.err)}); resuming from revision ${this.delivered + 1}`,
        );
        await sleep(this.options.clock, this.backoff(), this.stop.signal);
        return;
      case "reconcile":
        try {
          await this.deliverDifference(await this.source.list(this.prefix));
        } catch (err) {
          this.warn(
            `watch of ${this.prefix}: periodic reconcile failed (${message(err)}); next one in ${this.options.reconcileIntervalMs} ms`,
          );
        }
        this.scheduleReconcile();
        return;
    }
  }

  /** Raw events → one batch per revision; revisions the consumer already has are skipped. */
  private async deliverStreamEvents(events: readonly WatchEvent[]): Promise<void> {
    let batch: WatchEvent[] = [];
    let batchRevision = 0;
    for (const ev of events) {
      const rev = ev.kv.modRevision;
      if (rev <= this.delivered) continue;
      if (rev !== batchRevision && batch.length > 0) {
        await this.deliver(batch, batchRevision);
        batch = [];
      }
      batchRevision = rev;
      batch.push(ev);
    }
    if (batch.length > 0) await this.deliver(batch, batchRevision);
  }

  /**
   * Re-list recovery (after a compaction, and the periodic reconcile): tell the consumer exactly how
   * the prefix now differs from what it has, so it ends with the current state and sees no change
   * twice.
   *
   * 1. `list` holds the prefix's keys at revision L. If L < delivered the list is older than the
   *    consumer's view (it cannot be with etcd's linearizable reads; guard anyway): deliver nothing.
   * 2. Puts: every listed key whose modRevision differs from `seen` (created or changed since the
   *    consumer's view). Each such modRevision is > delivered, because `seen` is complete up to
   *    delivered.
   * 3. Deletes: every key in `seen` that is not listed. The revision of each deletion went with the
   *    compacted history, so they are reported at L (kv.modRevision = L, empty value).
   * 4. Deliver the puts grouped per modRevision in ascending order, then the deletes in the batch of
   *    revision L (merged with L's puts, if any), so batches stay one per revision, in order.
   * 5. delivered = L: stream events at or below L are already accounted for and will be skipped;
   *    the stream (reopened, or still running for a reconcile) continues from L + 1.
   */
  private async deliverDifference(list: ListResult): Promise<void> {
    const at = list.revision;
    if (at < this.delivered) return; // step 1
    const puts: WatchEvent[] = []; // step 2
    const listed = new Set<string>();
    for (const kv of list.items) {
      listed.add(kv.key);
      if (this.seen.get(kv.key) !== kv.modRevision) puts.push({ type: "put", kv });
    }
    const deletes: WatchEvent[] = []; // step 3
    for (const key of this.seen.keys()) {
      if (!listed.has(key)) deletes.push({ type: "delete", kv: deletedKv(key, at) });
    }
    puts.sort((a, b) => a.kv.modRevision - b.kv.modRevision); // step 4
    let i = 0;
    while (i < puts.length && !this.closed) {
      const rev = puts[i]!.kv.modRevision;
      const batch: WatchEvent[] = [];
      while (i < puts.length && puts[i]!.kv.modRevision === rev) batch.push(puts[i++]!);
      if (rev === at) batch.push(...deletes.splice(0));
      await this.deliver(batch, Math.max(rev, this.delivered));
    }
    if (deletes.length > 0) await this.deliver(deletes, at);
    if (!this.closed) this.delivered = Math.max(this.delivered, at); // step 5
  }

  /** Hands one revision's batch to the consumer and waits for it; a throwing consumer is reported. */
  private async deliver(batch: WatchEvent[], revision: number): Promise<void> {
    if (this.closed) return;
    for (const ev of batch) {
      if (ev.type === "put") this.seen.set(ev.kv.key, ev.kv.modRevision);
      else this.seen.delete(ev.kv.key);
    }
    this.delivered = revision;
    try {
      await this.onEvents(batch);
    } catch (err) {
      // Redelivering would loop on a poisoned batch; the consumer owns its failure.
      this.warn(`watch of ${this.prefix}: callback failed at revision ${revision}: ${message(err)}`);
    }
  }

  private dropBufferedEvents(): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i]!.kind === "events") this.queue.splice(i, 1);
    }
    this.bufferedRevisions = 0;
  }

  private scheduleReconcile(): void {
    const every = this.options.reconcileIntervalMs;
    if (every <= 0 || this.closed) return;
    this.reconcileTimer = this.options.clock.setTimer(() => this.push({ kind: "reconcile" }), every);
  }

  /** Runs `fn` until it succeeds or the watch is closed, backing off between failures. */
  private async retrying(what: string, fn: () => Promise<void>): Promise<void> {
    while (!this.closed) {
      try {
        await fn();
        this.failures = 0;
        return;
      } catch (err) {
        const wait = this.backoff();
        this.warn(`watch of ${this.prefix}: could not ${what} (${message(err)}); retrying in ${wait} ms`);
        await sleep(this.options.clock, wait, this.stop.signal);
      }
    }
  }

  private backoff(): number {
    const { retryMinMs, retryMaxMs } = this.options;
    const ms = Math.min(retryMaxMs, retryMinMs * 2 ** Math.min(this.failures, 20));
    this.failures++;
    return ms;
  }

  private warn(text: string): void {
    if (this.closed) return;
    try {
      this.onWarning(text);
    } catch {
      // A logging hook must not break the watch.
    }
  }
}

function countRevisions(events: readonly WatchEvent[]): number {
  let n = 0;
  let last = -1;
  for (const ev of events) {
    if (ev.kv.modRevision !== last) n++;
    last = ev.kv.modRevision;
  }
  return n;
}

/** The shape of a delete event's kv: the deletion's revision and an empty value. */
export function deletedKv(key: string, revision: number): KeyValue {
  return { key, value: new Uint8Array(0), createRevision: 0, modRevision: revision };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
