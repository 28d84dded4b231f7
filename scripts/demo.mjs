#!/usr/bin/env node
// `npm run demo` = `trellis dev --duration 30s`: a control plane, web → orders → inventory (the last
// hop gRPC) each behind its own sidecar, paced load and a live table. Extra arguments go to
// `trellis dev` and win over the default: `npm run demo -- --duration 2m`, `npm run demo -- --json`.
//
// It runs the CLI in this process (no wrapper process between the terminal and `trellis dev`, so
// Ctrl-C and the exit status are its own), after checking the two things that make it fail
// obscurely otherwise: Node 24 (npm scripts get it from node_modules/.bin) and a built tree.
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

const repo = fileURLToPath(new URL("..", import.meta.url));
const main = fileURLToPath(new URL("../control-plane/dist/cli/main.js", import.meta.url));
const sidecar = fileURLToPath(new URL("../sidecar/dist/cli/main.js", import.meta.url));

const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  process.stderr.write(
    `npm run demo needs Node.js 24 (this is ${process.version}). Run it through npm after \`npm run setup\`, ` +
      "which installs Node 24 into node_modules/.bin.\n",
  );
  process.exit(1);
}
if (!existsSync(main) || !existsSync(sidecar)) {
  process.stderr.write(
    `Trellis is not built in ${repo}: run \`npm run setup\` (or \`npm run build\`) first.\n`,
  );
  process.exit(1);
}

process.argv = [process.argv[0], main, "dev", "--duration", "30s", ...process.argv.slice(2)];
await import(pathToFileURL(main).href);
