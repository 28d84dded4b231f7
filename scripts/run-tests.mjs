// Runs the compiled test suite (`npm test` = `tsc -b && node scripts/run-tests.mjs`) under Node 24.
//
// 1. Reaps what earlier runs left behind: recorded processes and temp dirs whose owning test process
//    is dead (tests/helpers/reap.ts; live owners, e.g. a concurrent run, are left alone).
// 2. Finds every tests/dist/**/*.test.js except tests/dist/fixtures and tests/dist/bench.
// 3. Runs them with `node --test` (concurrency 2, 120 s per test, spec reporter on stdout); files
//    marked `// trellis-test: serial` run afterwards, one at a time.
// 4. Reaps again (every owner is dead by now) and exits with the runner's exit code.
//
// Arguments (after `npm test --`):
//   - a path to a test file, as source or as build output: `tests/integration/harness/etcd.test.ts`
//     or `tests/dist/integration/harness/etcd.test.js` (both run the compiled file);
//   - any other word is a substring filter on the compiled file paths: `npm test -- harness` runs
//     every file whose path contains "harness"; several filters are OR-ed;
//   - anything starting with `-` goes to `node --test` unchanged, e.g. `--test-name-pattern=leader`.
// A filter that matches no file is an error (exit 1), so a typo does not pass as "0 tests failed".
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const repo = resolve(fileURLToPath(import.meta.url), "../..");
const dist = join(repo, "tests", "dist");
const excluded = [join(dist, "fixtures"), join(dist, "bench")];

const reapModule = join(dist, "helpers", "reap.js");
if (!existsSync(reapModule)) {
  console.error(`run-tests: ${relative(repo, reapModule)} is missing; build first (npx tsc -b).`);
  process.exit(1);
}
const { reapStale } = await import(pathToFileURL(reapModule).href);

function report(when, result) {
  if (result.killed.length > 0 || result.removedDirs.length > 0) {
    const pids = result.killed.length > 0 ? ` (pids ${result.killed.join(", ")})` : "";
    console.error(
      `run-tests: ${when}: killed ${result.killed.length} leftover process(es)${pids}, ` +
        `removed ${result.removedDirs.length} leftover temp dir(s)`,
    );
  }
}

function findTests(dir) {
  if (excluded.includes(dir)) return [];
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findTests(path));
    else if (entry.isFile() && entry.name.endsWith(".test.js")) out.push(path);
  }
  return out;
}

/** Maps `tests/x/y.test.ts` (source) to `tests/dist/x/y.test.js`; returns undefined for non-paths. */
function asCompiledPath(arg) {
  const abs = resolve(arg);
  const testsDir = join(repo, "tests") + sep;
  if (abs.endsWith(".test.ts") && abs.startsWith(testsDir) && !abs.startsWith(dist + sep)) {
    return join(dist, abs.slice(testsDir.length)).replace(/\.ts$/, ".js");
  }
  return abs.endsWith(".test.js") ? abs : undefined;
}

const nodeFlags = [];
const filters = [];
for (const arg of process.argv.slice(2)) {
  if (arg.startsWith("-")) nodeFlags.push(arg);
  else filters.push(arg);
}

report("before the run", await reapStale());

const all = existsSync(dist) ? findTests(dist).sort() : [];
const files =
  filters.length === 0
    ? all
    : all.filter((f) =>
        filters.some((filter) => {
          const compiled = asCompiledPath(filter);
          return compiled !== undefined ? f === compiled : f.includes(filter);
        }),
      );
if (files.length === 0) {
  console.error(
    `run-tests: no test files match ${filters.length ? filters.join(" ") : "tests/dist/**/*.test.js"}`,
  );
  process.exit(1);
}

// Files whose assertions depend on timing under load (latency-aware balancing, paced loads that
// must see zero failures) say `// trellis-test: serial` at the top: they run after the others, one
// at a time, so another test file's CPU burst on a 2-core machine cannot skew them.
const isSerial = (f) => readFileSync(f, "utf8").slice(0, 2000).includes("trellis-test: serial");
const serial = files.filter(isSerial);
const parallel = files.filter((f) => !serial.includes(f));

let runner;
const forward = (signal) => runner?.kill(signal);
process.on("SIGINT", forward);
process.on("SIGTERM", forward);

async function runBatch(batch, concurrency) {
  if (batch.length === 0) return 0;
  const args = [
    "--test",
    `--test-concurrency=${concurrency}`,
    "--test-timeout=120000",
    // No --test-force-exit: with several files it drops some files' results (seen with Node 24.21:
    // 28-65 of 65 tests reported across runs). A file that leaves a handle open must be fixed.
    "--test-reporter=spec",
    "--test-reporter-destination=stdout",
    ...nodeFlags,
    ...batch.map((f) => relative(repo, f)),
  ];
  runner = spawn(process.execPath, args, { cwd: repo, stdio: "inherit" });
  const [code, signal] = await new Promise((done) => runner.once("exit", (c, s) => done([c, s])));
  return code ?? (signal ? 1 : 0);
}

const first = await runBatch(parallel, 2);
const second = await runBatch(serial, 1);
const code = first !== 0 ? first : second;

report("after the run", await reapStale());
process.exit(code);
