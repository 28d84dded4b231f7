/**
 * A throwaway HOME per test, so CLIs under test (and anything they spawn) never read or write the
 * developer's real dotfiles, and tests cannot see each other's state.
 */
import { join } from "node:path";
import { makeTempDir, removeTempDir } from "./temp-dirs.js";

/** A temporary HOME directory and an environment that points at it. */
export interface TempHome {
  /** The HOME directory (absolute, empty at first). */
  readonly dir: string;
  /** process.env with HOME and the XDG base dirs (config, data, cache, state) inside `dir`; pass it
   * as a child's `env`. */
  readonly env: NodeJS.ProcessEnv;
  /** Deletes the directory. Idempotent; the harness also deletes it when the test process exits. */
  cleanup(): Promise<void>;
}

/** Makes a fresh temporary HOME (recorded, so it is reaped even if the test process is killed). */
export function tempHome(): TempHome {
  const dir = makeTempDir("home");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir,
    XDG_CONFIG_HOME: join(dir, ".config"),
    XDG_DATA_HOME: join(dir, ".local", "share"),
    XDG_CACHE_HOME: join(dir, ".cache"),
    XDG_STATE_HOME: join(dir, ".local", "state"),
  };
  return { dir, env, cleanup: () => removeTempDir(dir) };
}
