#!/usr/bin/env node
// `npm run demo` — the whole mesh on one machine (`trellis dev`) arrives with the sidecar
// traffic-and-demo issue. Until then this says so plainly instead of failing obscurely.
process.stderr.write(
  "The Trellis demo (`trellis dev`: control plane, demo services behind sidecars, load and a live table)\n" +
    "is not built yet. What runs today: `npx trellis control-plane`, `npx trellis-sidecar run`,\n" +
    "`npx trellis validate|apply|get|status|proxy-config|analyze`. See README.md.\n",
);
process.exitCode = 1;
