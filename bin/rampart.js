#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `npm run build`, which `npm install` runs too).
// `npm run dev` runs the TypeScript sources instead.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/bin.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('rampart: dist/ is missing; run `npm run build` (or `npm install`) first\n');
  process.exit(1);
}
await import(entry.href);
