#!/usr/bin/env node
// Thin launcher: the sidecar is compiled to dist/ by `npm run build` (part of `npm run setup`).
//
// Young-generation size. A proxy moves bodies through short-lived socket buffers that V8 frees
// only at a scavenge; how many pile up in between scales with the young generation (measured:
// roughly 15-20× the semi-space size). With V8's default (semi-spaces up to 32 MB on a large
// machine) a 100 MB transfer grew the sidecar's RSS by ~60 MB; with 1 MB semi-spaces by ~10-17 MB
// (tests/integration/sidecar/protocols-large.test.ts needs ≤ 50 MB). The cost is more frequent,
// cheap scavenges and earlier promotion of long-lived request state; no throughput difference was
// measurable here. V8 sizes the heap once at startup, so the flag cannot be set from inside: the
// launcher re-executes itself with it, in place (process.execve: same pid, so signals, supervisors
// and pdeathsig are unaffected). An explicit --max-semi-space-size (node flag or NODE_OPTIONS) wins.
const SEMI_SPACE_FLAG = "--max-semi-space-size";
if (
  typeof process.execve === "function" &&
  !process.execArgv.some((a) => a.startsWith(SEMI_SPACE_FLAG)) &&
  !(process.env.NODE_OPTIONS ?? "").includes(SEMI_SPACE_FLAG)
) {
  process.execve(process.execPath, [
    process.execPath,
    `${SEMI_SPACE_FLAG}=1`,
    ...process.execArgv,
    ...process.argv.slice(1),
  ]);
}
await import("../dist/cli/main.js");
