/**
 * Runs the real `trellis` binary and collects its output.
 */
import { spawn } from "node:child_process";
import { TRELLIS_BIN } from "./control-plane.js";

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `trellis args…` with `env` (e.g. a control plane's HOME), feeding `stdin`. */
export function runTrellis(args: readonly string[], env: NodeJS.ProcessEnv, stdin = ""): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TRELLIS_BIN, ...args], { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

/** `trellis token create`, returning the token (fails the test on error). */
export async function createToken(
  env: NodeJS.ProcessEnv,
  namespace: string,
  serviceAccount: string,
): Promise<string> {
  const r = await runTrellis(
    ["token", "create", "--namespace", namespace, "--service-account", serviceAccount],
    env,
  );
  const token = /trellis-join\.\S+/.exec(r.stdout)?.[0];
  if (r.code !== 0 || token === undefined) {
    throw new Error(`trellis token create failed (${r.code}): ${r.stderr}${r.stdout}`);
  }
  return token;
}
