/**
 * The last good configuration on disk (`<state-dir>/config.json`), so a sidecar restarted while the
 * control plane is unreachable still serves. Written atomically (temp file + rename) after changes,
 * debounced; read once at startup. Resources are stored as protobuf binary (base64) with their
 * names and versions, exactly as they were accepted.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { RESOURCE_SCHEMAS } from "@trellis/proto/resource-types";
import type { HeldResource } from "../xds/client.js";

const FORMAT_VERSION = 1;

interface PersistedFile {
  format: number;
  savedAt: string;
  /** RouteConfig names subscribed to (on-demand subscriptions survive a restart). */
  routes: string[];
  resources: Record<string, { name: string; version: string; value: string }[]>;
}

export interface PersistedConfig {
  routes: string[];
  resources: Map<string, HeldResource[]>;
}

export function configPath(stateDir: string): string {
  return join(stateDir, "config.json");
}

/** Reads the persisted config; undefined when there is none or it cannot be read (then: logged, ignored). */
export async function loadPersistedConfig(
  stateDir: string,
  warn: (m: string) => void,
): Promise<PersistedConfig | undefined> {
  let text: string;
  try {
    text = await readFile(configPath(stateDir), "utf8");
  } catch {
    return undefined;
  }
  try {
    const file = JSON.parse(text) as PersistedFile;
    if (file.format !== FORMAT_VERSION) throw new Error(`format ${file.format} is not ${FORMAT_VERSION}`);
    const resources = new Map<string, HeldResource[]>();
    for (const [typeUrl, list] of Object.entries(file.resources)) {
      const schema = RESOURCE_SCHEMAS.get(typeUrl);
      if (schema === undefined) continue;
      resources.set(
        typeUrl,
        list.map((r) => ({
          name: r.name,
          version: r.version,
          message: fromBinary(schema, Buffer.from(r.value, "base64")),
        })),
      );
    }
    return { routes: file.routes ?? [], resources };
  } catch (err) {
    warn(`ignoring unreadable persisted config ${configPath(stateDir)}: ${(err as Error).message}`);
    return undefined;
  }
}

/** Writes the config atomically. */
export async function savePersistedConfig(
  stateDir: string,
  routes: Iterable<string>,
  held: ReadonlyMap<string, ReadonlyMap<string, HeldResource>>,
): Promise<void> {
  const file: PersistedFile = {
    format: FORMAT_VERSION,
    savedAt: new Date().toISOString(),
    routes: [...routes],
    resources: {},
  };
  for (const [typeUrl, byName] of held) {
    const schema = RESOURCE_SCHEMAS.get(typeUrl);
    if (schema === undefined) continue;
    file.resources[typeUrl] = [...byName.values()].map((r) => ({
      name: r.name,
      version: r.version,
      value: Buffer.from(toBinary(schema, r.message as never)).toString("base64"),
    }));
  }
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const path = configPath(stateDir);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(file), { mode: 0o600 });
  await rename(tmp, path);
}
