import chat from './test/fixtures/open-chat.ts';
import { createApp } from './src/app.ts';
import { loadConfig } from './src/core/config.ts';
import { rmSync } from 'node:fs';
rmSync('/tmp/rr', { recursive: true, force: true });
const app = await createApp(loadConfig({ env: { RAMPART_DATA_DIR: '/tmp/rr', LOG_LEVEL: 'warn', PORT: '0' } }), chat);
await app.start();
const acc = app.auth.accounts;
await acc.signup({ email: 'x@example.com', password: 'password123' }, { ip: '1.1.1.1' });
const toks: string[] = [];
for (let i = 0; i < 20; i++) toks.push((await acc.login({ email: 'x@example.com', password: 'password123' }, { ip: '1.1.1.1' })).refresh_token);
for (const conc of [1, 20]) {
  const n = 3000;
  let done = 0;
  const t = performance.now();
  await Promise.all(Array.from({ length: conc }, async (_, c) => {
    let tok = toks[c]!;
    while (done < n) { done++; tok = (await acc.refresh({ refresh_token: tok })).refresh_token; }
    toks[c] = tok;
  }));
  const ms = performance.now() - t;
  console.log(`conc ${conc}: ${(n / ms * 1000).toFixed(0)}/s, ${(ms / n * 1000).toFixed(0)} us each`);
}
// breakdown
let t = performance.now();
for (let i = 0; i < 2000; i++) await app.auth.tokens.sign({ sub: 'a', sid: 'b', role: 'user', email: 'x', email_verified: false });
console.log('sign us', ((performance.now() - t) / 2000 * 1000).toFixed(0));
await app.stop();
