#!/usr/bin/env node
// The `patina` command. The TypeScript sources are compiled to dist/ by `npm install`
// (the root `prepare` script runs `tsc -b`).
import '../dist/cli/main.js'
