// `trellis validate` as a user runs it: the real binary, real files, exit codes and output.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";

const TRELLIS = resolve(import.meta.dirname, "../../../../control-plane/bin/trellis.js");

function run(
  args: string[],
  stdin?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [TRELLIS, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    child.on("error", fail);
    child.on("close", (code) => done({ code, stdout, stderr }));
    child.stdin.end(stdin ?? "");
  });
}

const VALID = `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules:
    - backends: [ { service: orders-v1, weight: 90 }, { service: orders-v2, weight: 10 } ]
---
apiVersion: trellis.dev/v1
kind: PeerAuthentication
metadata: { name: strict, namespace: shop }
spec: { mtls: { mode: STRICT } }
`;

// Three errors: line 8 col 9 (attempts), line 9 col 9 (unknown field), line 15 col 11 (enum).
const THREE_ERRORS = `apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: orders, namespace: shop }
spec:
  targetRef: { kind: Service, name: orders }
  rules:
    - retry:
        attempts: -1
        retryOnn: [5xx]
---
apiVersion: trellis.dev/v1
kind: PeerAuthentication
metadata: { name: strict, namespace: shop }
spec:
  mtls: { mode: STRICTEST }
`;

describe("trellis validate", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "trellis-validate-"));
    await writeFile(join(dir, "valid.yaml"), VALID);
    await writeFile(join(dir, "three.yaml"), THREE_ERRORS);
    await mkdir(join(dir, "tree", "nested"), { recursive: true });
    await writeFile(join(dir, "tree", "a.yaml"), VALID);
    await writeFile(join(dir, "tree", "nested", "b.yml"), VALID);
    await writeFile(join(dir, "tree", "ignored.txt"), "not yaml");
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("prints every error with file:line:col and field path, and exits 1", async () => {
    const file = join(dir, "three.yaml");
    const r = await run(["validate", "-f", file]);
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split("\n");
    assert.deepEqual(lines.slice(0, 3), [
      `${file}:8:9 spec.rules[0].retry.attempts: must be ≥ 0`,
      `${file}:9:9 spec.rules[0].retry.retryOnn: unknown field "retryOnn"; did you mean "retryOn"?`,
      `${file}:15:11 spec.mtls.mode: unknown value "STRICTEST"; expected one of STRICT, PERMISSIVE`,
    ]);
    assert.match(lines[3] ?? "", /^3 errors in 1 file/);
    assert.equal(r.stdout, "");
  });

  it("prints a one-line summary for a valid file and exits 0", async () => {
    const r = await run(["validate", "-f", join(dir, "valid.yaml")]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "valid: 2 documents in 1 file (HTTPRoute 1, PeerAuthentication 1)\n");
  });

  it("reads a directory recursively, *.yaml and *.yml only", async () => {
    const r = await run(["validate", "-f", join(dir, "tree")]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "valid: 4 documents in 2 files (HTTPRoute 2, PeerAuthentication 2)\n");
  });

  it("reads standard input as <stdin>", async () => {
    const r = await run(["validate", "-f", "-"], THREE_ERRORS);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^<stdin>:8:9 spec\.rules\[0\]\.retry\.attempts: must be ≥ 0$/m);
  });

  it("fails clearly on a missing file", async () => {
    const r = await run(["validate", "-f", join(dir, "nope.yaml")]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cannot read .*nope\.yaml/);
  });

  it("lists only verbs that exist in --help, and each of them answers --help", async () => {
    const r = await run(["--help"]);
    assert.equal(r.code, 0);
    const section = r.stdout.split("Commands:")[1] ?? "";
    const commands = [...section.matchAll(/^ {2}([a-z][\w-]*)/gm)].map((m) => m[1] as string);
    assert.deepEqual(commands.sort(), [
      "analyze",
      "apply",
      "control-plane",
      "delete",
      "dev",
      "get",
      "help",
      "proxy-config",
      "status",
      "token",
      "validate",
    ]);
    for (const c of commands.filter((x) => x !== "help")) {
      const h = await run([c, "--help"]);
      assert.equal(h.code, 0, `trellis ${c} --help: ${h.stderr}`);
      assert.match(h.stdout, new RegExp(`^Usage: trellis ${c}`, "m"));
    }
  });
});
