import chat from '../examples/chat/rampart.config.ts';
import { createApp } from '../src/app.ts';
import { loadConfig } from '../src/core/config.ts';

const app = await createApp(loadConfig({ env: { RAMPART_DATA_DIR: '/tmp/pd', LOG_LEVEL: 'warn' } }), chat);
await app.server.ready();
const url = process.argv[2] ?? '/healthz';
const gc = (globalThis as any).gc as () => void;
for (let round = 0; round < 5; round++) {
  const t = performance.now();
  for (let i = 0; i < 5000; i++) await app.server.inject({ method: 'GET', url });
  gc();
  console.log(
    `round ${round}: ${(((performance.now() - t) / 5000) * 1000).toFixed(0)} µs/req, heap ${(process.memoryUsage().heapUsed / 1e6).toFixed(1)} MB`,
  );
}
await app.stop();
