/** Process entry of the CLI (compiled: bin/rampart.js; from sources: `npm run dev`). */
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
