#!/usr/bin/env node
// Registers the TypeScript loader so Rampart and the app's rampart.config.ts run without a build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
