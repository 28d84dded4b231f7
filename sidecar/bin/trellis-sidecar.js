#!/usr/bin/env node
// Thin launcher: the sidecar is compiled to dist/ by `npm run build` (part of `npm run setup`).
import "../dist/cli/main.js";
