/**
 * Writing files that hold secrets (or sit next to them) with exact permissions, atomically.
 *
 * Why not a plain `writeFile(path, data, {mode})`: the mode is only applied when the file is
 * created (an existing 0644 file stays 0644 after we write a token into it), and it is masked by
 * the umask. And a reader (the CLI, a sidecar reading ca.pem) must never see a half-written file.
 * So: write a temporary file beside the target, chmod it to the exact mode, then rename it over
 * the target (atomic within one directory on POSIX).
 */
import { randomBytes } from "node:crypto";
import { chmod, link, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** Mode of directories we create for Trellis state and config: owner only. */
export const PRIVATE_DIR_MODE = 0o700;
/** Mode of files that hold secrets (secret key, client config with the admin token). */
export const PRIVATE_FILE_MODE = 0o600;
/** Mode of files that are public but live in a private directory (ca.pem). */
export const PUBLIC_FILE_MODE = 0o644;

/**
 * Creates `dir` and any missing parents with mode 0700. An existing directory keeps its mode: it
 * may be shared with other programs, and tightening it is the operator's decision, not ours.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
}

/**
 * Replaces `path` with `data` atomically, with exactly `mode` (not masked by the umask), creating
 * the parent directory (0700) when missing. Readers see either the old or the new content.
 * Throws the Node error (EACCES, ENOTDIR, …) for the caller to put into context.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  await ensurePrivateDir(dirname(path));
  const tmp = tempPath(path);
  try {
    await writeFile(tmp, data, { mode: mode & PRIVATE_FILE_MODE, flag: "wx" });
    await chmod(tmp, mode);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Creates `path` with `data` and `mode` only if it does not exist yet; returns false (writing
 * nothing) when it does. Two processes racing to create the same file both end up reading the
 * winner's complete content: the file appears fully written (hard link of a finished temp file,
 * which fails with EEXIST instead of replacing), never half-written and never overwritten.
 */
export async function createFileExclusive(
  path: string,
  data: string | Uint8Array,
  mode: number,
): Promise<boolean> {
  await ensurePrivateDir(dirname(path));
  const tmp = tempPath(path);
  try {
    await writeFile(tmp, data, { mode: mode & PRIVATE_FILE_MODE, flag: "wx" });
    await chmod(tmp, mode);
    await link(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    await rm(tmp, { force: true });
  }
}

function tempPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
}
