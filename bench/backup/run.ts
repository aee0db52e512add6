/**
 * Backups on SQLite and PostgreSQL: BENCH_BACKUP_ROWS (200,000) records of ~200 bytes written
 * in batches, then `backup create` (snapshot, hash every row, gzip + AES-256-GCM) and `backup
 * verify` (restore into scratch, integrity, hash every row again), each timed; rows/s and MB/s
 * of the uncompressed dump, and the sealed size. Progress on stderr, the table on stdout.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp } from '../../src/app.js';
import { createProgress } from '../../src/core/progress.js';
import { collection, defineApp, f } from '../../src/records/schema.js';
import { makeBackend } from '../../test/helpers/backends.js';
import { log } from '../lib.js';

const ROWS = Number(process.env.BENCH_BACKUP_ROWS ?? 200_000);
const app = defineApp({
  collections: { docs: collection({ fields: { title: f.text(), body: f.text(), n: f.integer(), tags: f.json() } }) },
});

const rows: string[] = [];
for (const name of ['sqlite', 'postgres'] as const) {
  const target = mkdtempSync(join(tmpdir(), 'rampart-bench-bk-'));
  const backend = await makeBackend(name, { RAMPART_BACKUP_KEY: randomBytes(32).toString('base64'), RAMPART_BACKUP_TARGET: target });
  const a = await createApp(backend.config, app);
  await a.migrator.up();
  try {
    const bar = createProgress(`${name}: seed`, ROWS);
    for (let i = 0; i < ROWS; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, ROWS - i) }, (_, k) => ({
        id: crypto.randomUUID(),
        created_at: new Date().toISOString(),
        updated_at: new Date().toISOString(),
        version: 1,
        title: `document ${i + k}`,
        body: randomBytes(60).toString('base64'),
        n: i + k,
        tags: JSON.stringify({ k: (i + k) % 17, words: ['alpha', 'beta'] }),
      }));
      await a.storage.db.insertInto('docs').values(batch).execute();
      bar.update(i + batch.length);
    }
    bar.finish();
    const progress = (label: string, total: number) => createProgress(`${name}: ${label}`, total);
    const t0 = performance.now();
    const m = await a.backups.create(progress);
    const createS = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    const v = await a.backups.verify(m.id, progress);
    const verifyS = (performance.now() - t1) / 1000;
    const mb = m.rawBytes / 1e6;
    rows.push(
      `| ${name} | ${v.rows.toLocaleString('en')} | ${mb.toFixed(1)} MB → ${(m.file.bytes / 1e6).toFixed(1)} MB | ${createS.toFixed(1)} s (${Math.round(v.rows / createS).toLocaleString('en')} rows/s, ${(mb / createS).toFixed(1)} MB/s) | ${verifyS.toFixed(1)} s (${Math.round(v.rows / verifyS).toLocaleString('en')} rows/s) |`,
    );
    log(`${name}: done`);
  } finally {
    await a.stop();
    await backend.cleanup();
    rmSync(target, { recursive: true, force: true });
  }
}
process.stdout.write(
  `\nbackups of ${ROWS.toLocaleString('en')} records (node ${process.version})\n\n| backend | rows (all tables) | dump → sealed | create | verify (restore + check) |\n|---|---|---|---|---|\n${rows.join('\n')}\n`,
);
