/**
 * Durability for the embedded store: a write-ahead log plus periodic snapshots in one directory.
 *
 *   <dir>/wal.log        one JSON line per mutation: {"seq":N,"r":<record>}
 *   <dir>/snapshot.json  {"seq":N,"s":<state>}: the whole state after record N
 *   <dir>/LOCK           the pid of the process using the directory
 *
 * Contract: `append(record)` resolves only once the record is on disk (written and fdatasync'd);
 * records that arrive while a write is in flight are written and synced together (group commit), so
 * a burst of mutations costs one fsync, not one each. Every `snapshotEveryRecords` records the state
 * is written to snapshot.json (temp file, fsync, rename, fsync of the directory) and the log is
 * truncated. Recovery loads the snapshot, then replays the log records with a higher seq: a crash
 * between the rename and the truncation leaves records the snapshot already holds, and they are
 * skipped. A torn last line (a crash mid-write; its call never resolved) is dropped.
 */
import { closeSync, constants, openSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { type FileHandle, mkdir, open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";

/** What a directory held at open: the snapshot state (if any) and the records to replay after it. */
export interface Recovered<R, S> {
  snapshot: S | undefined;
  records: R[];
}

/** Tuning of the log. */
export interface LogOptions {
  /** Records between snapshots (≥ 1). */
  snapshotEveryRecords: number;
}

const WAL = "wal.log";
const SNAPSHOT = "snapshot.json";
const LOCK = "LOCK";

/** The open log of one directory; one process at a time (LOCK). */
export class WriteAheadLog<R, S> {
  private pending: Array<{ line: string; resolve: () => void; reject: (err: Error) => void }> = [];
  private flushing: Promise<void> | undefined;
  private failure: TrellisError | undefined;
  private sinceSnapshot = 0;
  private closed = false;

  private constructor(
    private readonly dir: string,
    private wal: FileHandle,
    private seq: number,
    private readonly options: LogOptions,
    /** The state to snapshot: must reflect exactly the records appended so far. */
    private readonly snapshotState: () => S,
  ) {}

  /**
   * Opens (creating if needed) the log in `dir` and returns it with what to recover. Fails with
   * CONFIG when the directory is in use by a live process or holds a corrupt file.
   */
  static async open<R, S>(
    dir: string,
    options: LogOptions,
    snapshotState: () => S,
  ): Promise<{ log: WriteAheadLog<R, S>; recovered: Recovered<R, S> }> {
    await mkdir(dir, { recursive: true });
    lockDir(dir);
    try {
      const { seq, snapshot } = await readSnapshot<S>(dir);
      const { records, lastSeq, goodBytes, torn } = await readLog<R>(dir, seq);
      const wal = await open(join(dir, WAL), "a+");
      if (torn) {
        await wal.truncate(goodBytes);
        await wal.datasync();
      }
      await syncDir(dir); // the log file's directory entry, on first creation
      const log = new WriteAheadLog<R, S>(dir, wal, Math.max(seq, lastSeq), options, snapshotState);
      log.sinceSnapshot = records.length;
      return { log, recovered: { snapshot, records } };
    } catch (err) {
      unlockDir(dir);
      throw err;
    }
  }

  /** Appends one record; resolves once it is durable. After an I/O failure every append rejects. */
  append(record: R): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closed)
      return Promise.reject(new TrellisError(ErrorCode.CANCELLED, "embedded store log is closed"));
    const line = `${JSON.stringify({ seq: ++this.seq, r: record })}\n`;
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ line, resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  /** Waits for pending appends, then closes the file and releases the directory. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flushing;
    await this.wal.close();
    unlockDir(this.dir);
  }

  private async flushLoop(): Promise<void> {
    // Let appends made in the same tick join this write.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      try {
        if (this.failure !== undefined) throw this.failure;
        await this.wal.write(batch.map((p) => p.line).join(""));
        await this.wal.datasync();
        this.sinceSnapshot += batch.length;
        if (this.sinceSnapshot >= this.options.snapshotEveryRecords) await this.writeSnapshot();
        for (const p of batch) p.resolve();
      } catch (err) {
        this.failure ??= new TrellisError(
          ErrorCode.UNAVAILABLE,
          `embedded store: writing ${this.dir} failed: ${String(err)}`,
          {
            cause: err,
          },
        );
        for (const p of batch) p.reject(this.failure);
      }
    }
    this.flushing = undefined;
  }

  /**
   * 1. Capture the state now: it holds every record appended so far (seq = this.seq), including
   *    ones still queued (they are written to the new log too and skipped on replay).
   * 2. Write it to a temp file and fdatasync; rename over snapshot.json; fsync the directory.
   * 3. Truncate the log: everything in it is now in the snapshot.
   */
  private async writeSnapshot(): Promise<void> {
    const seq = this.seq;
    const body = JSON.stringify({ seq, s: this.snapshotState() });
    const tmp = join(this.dir, `${SNAPSHOT}.tmp`);
    const fh = await open(tmp, "w");
    try {
      await fh.writeFile(body);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(this.dir, SNAPSHOT));
    await syncDir(this.dir);
    await this.wal.truncate(0);
    await this.wal.datasync();
    this.sinceSnapshot = 0;
  }
}

async function readSnapshot<S>(dir: string): Promise<{ seq: number; snapshot: S | undefined }> {
  let text: string;
  try {
    text = await readFile(join(dir, SNAPSHOT), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { seq: 0, snapshot: undefined };
    throw err;
  }
  try {
    const parsed = JSON.parse(text) as { seq: number; s: S };
    if (typeof parsed.seq !== "number") throw new Error("no seq");
    return { seq: parsed.seq, snapshot: parsed.s };
  } catch (err) {
    throw new TrellisError(
      ErrorCode.CONFIG,
      `embedded store: ${join(dir, SNAPSHOT)} is corrupt: ${String(err)}`,
    );
  }
}

async function readLog<R>(
  dir: string,
  afterSeq: number,
): Promise<{ records: R[]; lastSeq: number; goodBytes: number; torn: boolean }> {
  let buf: Buffer;
  try {
    buf = await readFile(join(dir, WAL));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      return { records: [], lastSeq: 0, goodBytes: 0, torn: false };
    throw err;
  }
  const records: R[] = [];
  let lastSeq = 0;
  let offset = 0;
  let lineNo = 0;
  while (offset < buf.length) {
    const nl = buf.indexOf(0x0a, offset);
    if (nl < 0) return { records, lastSeq, goodBytes: offset, torn: true }; // torn last write
    lineNo++;
    const text = buf.toString("utf8", offset, nl);
    let entry: { seq: number; r: R };
    try {
      entry = JSON.parse(text) as { seq: number; r: R };
      if (typeof entry.seq !== "number") throw new Error("no seq");
    } catch (err) {
      throw new TrellisError(
        ErrorCode.CONFIG,
        `embedded store: ${join(dir, WAL)} line ${lineNo} is corrupt: ${String(err)}`,
      );
    }
    lastSeq = entry.seq;
    if (entry.seq > afterSeq) records.push(entry.r);
    offset = nl + 1;
  }
  return { records, lastSeq, goodBytes: offset, torn: false };
}

/** Makes a rename or file creation in `dir` durable. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Takes the directory for this process; a LOCK left by a dead process is taken over. */
function lockDir(dir: string): void {
  const path = join(dir, LOCK);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx");
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = Number(readFileSync(path, "utf8").trim());
      if (Number.isInteger(owner) && owner > 0 && isAlive(owner)) {
        throw new TrellisError(ErrorCode.CONFIG, `embedded store: ${dir} is in use by process ${owner}`);
      }
      unlinkSync(path); // stale: its process is gone
    }
  }
  throw new TrellisError(ErrorCode.CONFIG, `embedded store: could not lock ${dir}`);
}

function unlockDir(dir: string): void {
  try {
    unlinkSync(join(dir, LOCK));
  } catch {
    // Already gone.
  }
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
