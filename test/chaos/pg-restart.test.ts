/**
 * PostgreSQL crashes under load (immediate-mode stop, a pause, start again) while a real
 * Rampart process serves reads and writes. Expected: the process never exits, requests fail
 * fast with 503 + Retry-After while the database is away (never another 5xx), and the node
 * recovers by itself within seconds of PostgreSQL returning.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PrivatePostgres, privatePgUnavailable, type RampartProcess, startRampart } from '../helpers/processes.js';

const skip = privatePgUnavailable() ?? false;
if (skip) process.stdout.write(`# skipping PostgreSQL restart test: ${skip}\n`);

describe('PostgreSQL restart under load', { skip }, () => {
  let pgi: PrivatePostgres;
  let rampart: RampartProcess;
  const dataDir = mkdtempSync(join(tmpdir(), 'rampart-chaos-'));
  before(async () => {
    pgi = new PrivatePostgres();
    await pgi.init();
    rampart = await startRampart({ DATABASE_URL: pgi.url, RAMPART_DATA_DIR: dataDir, RAMPART_DB_CONNECT_TIMEOUT_MS: '1000' });
  });
  after(() => {
    rampart?.child.kill('SIGKILL');
    pgi?.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('no crash, fast 503s while down, full recovery after', async () => {
    const room = (await (
      await fetch(`${rampart.url}/api/v1/collections/rooms/records`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'chaos' }),
      })
    ).json()) as { id: string };
    const phase = { name: 'before' as 'before' | 'down' | 'after' };
    const counts: Record<string, Record<string, number>> = { before: {}, down: {}, after: {} };
    const slowest503 = { ms: 0 };
    let missingRetryAfter = 0;
    let lastFailureAt = 0;
    let stop = false;
    const worker = async (i: number) => {
      while (!stop) {
        const started = performance.now();
        const write = i % 2 === 0;
        let status: string;
        try {
          const r = await fetch(
            write
              ? `${rampart.url}/api/v1/collections/messages/records`
              : `${rampart.url}/api/v1/collections/messages/records?filter=${encodeURIComponent(`room = "${room.id}"`)}&limit=5`,
            write
              ? {
                  method: 'POST',
                  headers: { 'content-type': 'application/json' },
                  body: JSON.stringify({ room: room.id, body: 'x', author: 'load' }),
                }
              : {},
          );
          await r.arrayBuffer();
          status = String(r.status);
          if (r.status === 503) {
            slowest503.ms = Math.max(slowest503.ms, performance.now() - started);
            if (!r.headers.get('retry-after')) missingRetryAfter++;
          }
          if (r.status >= 500) lastFailureAt = Date.now();
        } catch {
          status = 'network-error';
          lastFailureAt = Date.now();
        }
        const c = counts[phase.name] as Record<string, number>;
        c[status] = (c[status] ?? 0) + 1;
        if (status !== '200' && status !== '201') await new Promise((r) => setTimeout(r, 20));
      }
    };
    const workers = Array.from({ length: 8 }, (_, i) => worker(i));
    await new Promise((r) => setTimeout(r, 1500));
    phase.name = 'down';
    pgi.stopImmediate();
    await new Promise((r) => setTimeout(r, 3000));
    pgi.start();
    const restartedAt = Date.now();
    phase.name = 'after';
    // Recovery: the first moment after which every request succeeds.
    await new Promise((r) => setTimeout(r, 6000));
    stop = true;
    await Promise.all(workers);
    const recoveryMs = Math.max(0, lastFailureAt - restartedAt);
    const fmt = (o: Record<string, number>) =>
      Object.entries(o)
        .map(([k, v]) => `${k}x${v}`)
        .join(' ');
    process.stdout.write(
      `# before: ${fmt(counts.before!)} | down: ${fmt(counts.down!)} | after: ${fmt(counts.after!)} | ` +
        `slowest 503 ${slowest503.ms.toFixed(0)} ms | recovered ${recoveryMs} ms after PostgreSQL started\n`,
    );
    assert.equal(rampart.child.exitCode, null, 'the process is still running');
    const all = { ...counts.before, ...counts.down, ...counts.after };
    for (const status of Object.keys(all)) {
      assert.ok(['200', '201', '503'].includes(status), `unexpected outcome ${status}: ${rampart.output().slice(-2000)}`);
    }
    assert.ok((counts.down!['503'] ?? 0) > 0, '503s while the database is down');
    assert.equal(missingRetryAfter, 0, 'every 503 carries Retry-After');
    assert.ok(slowest503.ms < 2500, `503s are fast (slowest ${slowest503.ms} ms)`);
    assert.ok(recoveryMs < 5000, `recovered within 5 s (took ${recoveryMs} ms)`);
    assert.ok((counts.after!['201'] ?? 0) > 0 && (counts.after!['200'] ?? 0) > 0, 'reads and writes succeed after');
    const ready = await fetch(`${rampart.url}/readyz`);
    assert.equal(ready.status, 200);
  });
});
