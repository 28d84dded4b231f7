// `trellis apply` as a user runs it: the real binary against a real `trellis control-plane` (embedded
// store, its own HOME), exit codes and output; and the admin API's token check.
import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { ErrorCode, TrellisError } from "@trellis/proto/errors";
import { AdminService } from "@trellis/proto/gen/trellis/v1/admin_pb";
import { createGrpcClient } from "@trellis/proto/grpc-adapter";
import { runTrellis } from "../../helpers/cli.js";
import { type ControlPlaneProcess, startControlPlane } from "../../helpers/control-plane.js";
import { makeTempDir, removeTempDir } from "../../helpers/temp-dirs.js";

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

// The third document is invalid (line 20, column 16: attempts above the maximum of 10).
const ONE_INVALID = `${VALID}---
apiVersion: trellis.dev/v1
kind: HTTPRoute
metadata: { name: payments, namespace: shop }
spec:
  targetRef: { kind: Service, name: payments }
  rules:
    - retry: { attempts: 11 }
`;

/** Every policy the control plane holds, as `Kind/ns/name`. */
async function storedPolicies(cp: ControlPlaneProcess): Promise<string[]> {
  const r = await runTrellis(["get", "all", "-o", "json"], cp.env);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as {
    items: { kind: string; metadata: { namespace: string; name: string } }[];
  };
  return doc.items.map((i) => `${i.kind}/${i.metadata.namespace}/${i.metadata.name}`);
}

describe("trellis apply", () => {
  let cp: ControlPlaneProcess;
  let dir = "";
  before(async () => {
    cp = await startControlPlane();
    dir = makeTempDir("cli-apply");
    await writeFile(join(dir, "valid.yaml"), VALID);
    await writeFile(join(dir, "one-invalid.yaml"), ONE_INVALID);
  });
  after(async () => {
    await cp?.stop();
    await removeTempDir(dir);
  });

  it("applies nothing when one document is invalid, printing every error like validate", async () => {
    const file = join(dir, "one-invalid.yaml");
    const r = await runTrellis(["apply", "-f", file], cp.env);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, "");
    const lines = r.stderr.trimEnd().split("\n");
    assert.match(
      lines[0] ?? "",
      new RegExp(
        `^${file.replaceAll(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:20:16 spec\\.rules\\[0\\]\\.retry\\.attempts: `,
      ),
    );
    assert.match(lines.at(-1) ?? "", /^1 error in 1 file; nothing was applied$/);
    assert.deepEqual(await storedPolicies(cp), [], "the two valid documents were not applied either");
  });

  it("does not contact the control plane when the input is invalid", async () => {
    const r = await runTrellis(
      ["--control-plane", "127.0.0.1:1", "apply", "-f", join(dir, "one-invalid.yaml")],
      cp.env,
    );
    assert.equal(r.code, 1);
    assert.doesNotMatch(r.stderr, /cannot reach/);
  });

  it("creates, then reports unchanged on re-apply, then configured for a change", async () => {
    const first = await runTrellis(["apply", "-f", join(dir, "valid.yaml")], cp.env);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, "HTTPRoute/shop/orders created\nPeerAuthentication/shop/strict created\n");

    const again = await runTrellis(["apply", "-f", join(dir, "valid.yaml")], cp.env);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, "HTTPRoute/shop/orders unchanged\nPeerAuthentication/shop/strict unchanged\n");

    const changed = VALID.replace("weight: 90", "weight: 80");
    const third = await runTrellis(["apply", "-f", "-"], cp.env, changed);
    assert.equal(third.code, 0, third.stderr);
    assert.equal(
      third.stdout,
      "HTTPRoute/shop/orders configured\nPeerAuthentication/shop/strict unchanged\n",
    );

    const dry = await runTrellis(["apply", "--dry-run", "-f", "-"], cp.env, VALID);
    assert.equal(
      dry.stdout,
      "HTTPRoute/shop/orders configured (dry run)\nPeerAuthentication/shop/strict unchanged (dry run)\n",
    );
    const now = await runTrellis(["get", "routes", "orders", "-n", "shop", "-o", "yaml"], cp.env);
    assert.match(now.stdout, /weight: 80/, "the dry run stored nothing");
  });

  it("applies every YAML file below a directory", async () => {
    const tree = join(dir, "tree");
    await mkdir(join(tree, "nested"), { recursive: true });
    await writeFile(join(tree, "a.yaml"), VALID.replaceAll("namespace: shop", "namespace: tree"));
    await writeFile(
      join(tree, "nested", "b.yml"),
      `apiVersion: trellis.dev/v1\nkind: Service\nmetadata: { name: orders, namespace: tree }\nspec: { ports: [ { port: 8080 } ] }\n`,
    );
    const r = await runTrellis(["apply", "-f", tree], cp.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      "HTTPRoute/tree/orders created\nPeerAuthentication/tree/strict created\nService/tree/orders created\n",
    );
  });

  it("says clearly when the control plane cannot be reached", async () => {
    const r = await runTrellis(
      ["--control-plane", "127.0.0.1:1", "apply", "-f", join(dir, "valid.yaml")],
      cp.env,
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /^error: cannot reach the control plane at 127\.0\.0\.1:1: .*ECONNREFUSED/);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, `one line on stderr: ${r.stderr}`);
  });
});

describe("admin API credentials", () => {
  let cp: ControlPlaneProcess;
  let ca = "";
  before(async () => {
    cp = await startControlPlane();
    ca = await readFile(cp.caFile, "utf8");
  });
  after(async () => {
    await cp?.stop();
  });

  it("the CLI with a wrong token is refused, in one line, and nothing is applied", async () => {
    const r = await runTrellis(
      ["apply", "-f", "-"],
      { ...cp.env, TRELLIS_ADMIN_TOKEN: "trellis-admin.wrong" },
      VALID,
    );
    assert.notEqual(r.code, 0);
    assert.equal(
      r.stderr,
      `error: the control plane at ${cp.address} refused the admin token: invalid admin token\n`,
    );
    assert.deepEqual(await storedPolicies(cp), []);
  });

  it("the CLI without any token says where to get one", async () => {
    const home = makeTempDir("cli-no-token");
    try {
      const env = { ...cp.env, HOME: home, TRELLIS_ADMIN_TOKEN: "" };
      const r = await runTrellis(
        ["--control-plane", cp.address, "--ca-file", cp.caFile, "get", "routes"],
        env,
      );
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /^error: no admin token: pass --admin-token-file or set TRELLIS_ADMIN_TOKEN/);
    } finally {
      await removeTempDir(home);
    }
  });

  it("--admin-token-file is used", async () => {
    const home = makeTempDir("cli-token-file");
    try {
      const config = JSON.parse(await readFile(join(cp.home, ".trellis", "config"), "utf8")) as {
        token: string;
      };
      const tokenFile = join(home, "token");
      await writeFile(tokenFile, `${config.token}\n`);
      const env = { ...cp.env, HOME: home };
      const args = ["--control-plane", cp.address, "--ca-file", cp.caFile, "--admin-token-file", tokenFile];
      const r = await runTrellis([...args, "get", "routes"], env);
      assert.equal(r.code, 0, r.stderr);
    } finally {
      await removeTempDir(home);
    }
  });

  for (const [what, metadata, pattern] of [
    ["a missing token", {}, /missing admin token/],
    ["a wrong token", { authorization: "Bearer trellis-admin.wrong" }, /invalid admin token/],
  ] as const) {
    it(`the admin API refuses ${what} with UNAUTHENTICATED`, async () => {
      const client = createGrpcClient(AdminService, cp.address, grpc.credentials.createSsl(Buffer.from(ca)));
      try {
        await assert.rejects(client.list({}, { metadata, timeoutMs: 10_000 }), (err: unknown) => {
          assert.ok(err instanceof TrellisError);
          assert.equal(err.code, ErrorCode.UNAUTHENTICATED);
          assert.match(err.message, pattern);
          return true;
        });
      } finally {
        client.close();
      }
    });
  }
});
