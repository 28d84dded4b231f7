/** tempHome isolates a child's HOME; requireRoot skips locally but fails on CI. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { tempHome } from "../../helpers/home.js";
import { requireRoot } from "../../helpers/root.js";

test("tempHome gives a child process its own empty HOME and XDG dirs, removed by cleanup()", async () => {
  const home = tempHome();
  assert.notEqual(home.dir, process.env.HOME);
  const out = execFileSync("sh", ["-c", 'echo "$HOME|$XDG_CONFIG_HOME"; ls -A "$HOME" | wc -l'], {
    env: home.env,
    encoding: "utf8",
  });
  assert.equal(out, `${home.dir}|${home.dir}/.config\n0\n`);
  await home.cleanup();
  assert.equal(existsSync(home.dir), false);
  await home.cleanup(); // idempotent
});

test("requireRoot: root passes; non-root skips locally and fails under CI=true", () => {
  const skips: string[] = [];
  const t = { skip: (msg?: string) => void skips.push(msg ?? "") };
  assert.equal(requireRoot(t, "netns", { uid: 0, ci: true }), true);
  assert.equal(requireRoot(t, "netns", { uid: 1000, ci: false }), false);
  assert.deepEqual(skips, ["needs root: netns"]);
  assert.throws(() => requireRoot(t, "netns", { uid: 1000, ci: true }), /needs root: netns.*CI=true/);
  assert.equal(skips.length, 1, "no skip under CI");
});
