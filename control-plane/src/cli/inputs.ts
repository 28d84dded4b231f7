/**
 * Reads policy inputs for `-f FILE|DIR|-`: a file, every *.yaml / *.yml below a directory (sorted,
 * recursive), or standard input (named `<stdin>` in messages).
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";

export interface InputFile {
  /** The name used in diagnostics: the path as the user gave it (joined for directory entries). */
  name: string;
  text: string;
}

/** Loads every input named by the `-f` values; fails with CONFIG when a path cannot be read. */
export async function readInputs(
  paths: readonly string[],
  stdin: NodeJS.ReadableStream = process.stdin,
): Promise<InputFile[]> {
  const out: InputFile[] = [];
  for (const p of paths) {
    if (p === "-") {
      out.push({ name: "<stdin>", text: await readStream(stdin) });
      continue;
    }
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(p);
    } catch (err) {
      throw new TrellisError(ErrorCode.CONFIG, `cannot read ${p}: ${(err as Error).message}`, { cause: err });
    }
    if (st.isDirectory()) {
      const files = await yamlFilesUnder(p);
      if (files.length === 0) throw new TrellisError(ErrorCode.CONFIG, `no .yaml or .yml files under ${p}`);
      for (const f of files) out.push({ name: f, text: await readFile(f, "utf8") });
    } else {
      out.push({ name: p, text: await readFile(p, "utf8") });
    }
  }
  return out;
}

async function yamlFilesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await yamlFilesUnder(p)));
    else if (e.isFile() && /\.ya?ml$/i.test(e.name)) out.push(p);
  }
  return out;
}

async function readStream(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === "string" ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString("utf8");
}
