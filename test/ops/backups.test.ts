/**
 * Backups on both backends, for real: a backup taken during a write burst verifies, restores
 * into a fresh database with equal counts and hashes, and the restored app boots and serves;
 * a flipped byte, an edited manifest and another key's backup are refused; a non-empty target
 * is refused unless forced; the S3 path round-trips through a local S3-compatible server.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import S3rver from 's3rver';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/observability/logger.js';
import { BackupFormatError } from '../../src/ops/backup-crypto.js';
import { BackupError, Backups } from '../../src/ops/backups.js';
import { compareDigests, digestPostgres, digestSqliteFile } from '../../src/ops/digest.js';
import { collection, defineApp, f } from '../../src/records/schema.js';
import { backendMatrix, makeBackend, type TestBackend } from '../helpers/backends.js';
import { freePort } from '../helpers/processes.js';

const notes = defineApp({
  collections: {
    notes: collection({ fields: { title: f.text({ required: true }), n: f.integer(), tags: f.json() } }),
  },
});
const KEY = randomBytes(32).toString('base64');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function digestOf(backend: TestBackend) {
  if (backend.name === 'sqlite') return digestSqliteFile(join(backend.config.storage.dataDir, 'rampart.db'));
  const c = new pg.Client({ connectionString: backend.config.storage.databaseUrl });
  await c.connect();
  try {
    await c.query('begin isolation level repeatable read');
    return await digestPostgres(c);
  } finally {
    await c.end();
  }
}

function backupsFor(backend: TestBackend, env: Record<string, string> = {}) {
  const config = loadConfig({ env: { ...backend.env, ...env } });
  return new Backups({
    kind: backend.name,
    storageConfig: config.storage,
    config: config.backup,
    log: createLogger('silent'),
    node: 'test',
  });
}

for (const { name, skip } of await backendMatrix()) {
  describe(`backups (${name})`, { skip }, () => {
    test('a backup during a write burst verifies, restores equal, and the restored app serves', async () => {
      const target = mkdtempSync(join(tmpdir(), 'rampart-bk-'));
      const env = { RAMPART_BACKUP_KEY: KEY, RAMPART_BACKUP_TARGET: target };
      const source = await makeBackend(name, env);
      const app = await createApp(source.config, notes);
      await app.start();
      const restoredBackend = await makeBackend(name, env);
      try {
        let writing = true;
        let written = 0;
        const burst = (async () => {
          while (writing) {
            await app.records.create('notes', { title: `note ${written}`, n: written, tags: { i: written } });
            written++;
            // SQLite answers synchronously: let timers (and the backup) run between writes.
            await new Promise((r) => setImmediate(r));
          }
        })();
        while (written < 300) await sleep(10);
        const t0 = Date.now();
        const manifest = await app.backups.create();
        const tookMs = Date.now() - t0;
        const atBackup = written;
        while (written < atBackup + 200) await sleep(10);
        writing = false;
        await burst;
        const inBackup = manifest.tables.notes?.rows ?? 0;
        assert.ok(inBackup >= 300 && inBackup <= atBackup + 1, `the backup holds the notes committed at its snapshot (${inBackup})`);
        const verified = await app.backups.verify(manifest.id);
        // Restore into a fresh, empty database of the same kind.
        const restorer = backupsFor(restoredBackend);
        const restored = await restorer.restore(manifest.id);
        assert.equal(restored.id, manifest.id);
        const problems = compareDigests(manifest.tables, await digestOf(restoredBackend));
        assert.deepEqual(problems, [], 'restored counts and hashes equal the manifest');
        const list = await app.backups.list();
        process.stdout.write(
          `# ${name}: backup during a burst of ${written} writes (${atBackup} before it): ${inBackup} notes in the snapshot, ` +
            `${Object.keys(manifest.tables).length} tables, ${manifest.rawBytes} bytes → ${manifest.file.bytes} sealed in ${tookMs} ms; ` +
            `verify: ${verified.rows} rows match; restore: counts and hashes equal; listed ${list.length}, verified ${list[0]?.verified?.ok}\n`,
        );
        // The restored database boots (migrations run) and serves what was backed up.
        const second = await createApp(restoredBackend.config, notes);
        await second.start();
        try {
          const r = await second.server.inject({ method: 'GET', url: '/readyz' });
          assert.equal(r.statusCode, 200, r.body);
          const rows = await second.storage.db
            .selectFrom('notes')
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow();
          assert.equal(Number(rows.n), inBackup);
        } finally {
          await second.stop();
        }
        // Metrics: the last good backup and verify, read from the table.
        const metrics = await app.metrics.registry.metrics();
        assert.match(metrics, /^rampart_backup_last_verify_success 1$/m);
        assert.match(metrics, new RegExp(`^rampart_backup_last_size_bytes ${manifest.file.bytes}$`, 'm'));
      } finally {
        await app.stop();
        await source.cleanup();
        await restoredBackend.cleanup();
        rmSync(target, { recursive: true, force: true });
      }
    });

    test('a flipped byte, an edited manifest and a foreign key are refused; a non-empty target needs --force', async () => {
      const target = mkdtempSync(join(tmpdir(), 'rampart-bk-'));
      const env = { RAMPART_BACKUP_KEY: KEY, RAMPART_BACKUP_TARGET: target };
      const source = await makeBackend(name, env);
      const app = await createApp(source.config, notes);
      await app.start();
      try {
        for (let i = 0; i < 50; i++) await app.records.create('notes', { title: `n${i}`, n: i });
        const m = await app.backups.create();
        const data = join(target, m.file.name);
        const manifestPath = join(target, `${m.id}.manifest.json`);
        const original = readFileSync(data);
        const refusals: string[] = [];
        // One flipped byte in the middle of the sealed file.
        const flipped = Buffer.from(original);
        const at = Math.floor(flipped.length / 2);
        flipped[at] = (flipped[at] as number) ^ 0x01;
        writeFileSync(data, flipped);
        await assert.rejects(app.backups.verify(m.id), (err: Error) => {
          refusals.push(`flipped byte: ${err.message}`);
          return err instanceof BackupFormatError && /corrupted/.test(err.message);
        });
        writeFileSync(data, original);
        // A manifest edited by hand (a row count lowered).
        const manifestText = readFileSync(manifestPath, 'utf8');
        const edited = JSON.parse(manifestText);
        edited.tables.notes.rows = 49;
        writeFileSync(manifestPath, JSON.stringify(edited));
        await assert.rejects(app.backups.verify(m.id), (err: Error) => {
          refusals.push(`edited manifest: ${err.message}`);
          return err instanceof BackupFormatError && /altered/.test(err.message);
        });
        writeFileSync(manifestPath, manifestText);
        // Another key: a foreign backup.
        const foreign = backupsFor(source, { RAMPART_BACKUP_KEY: randomBytes(32).toString('base64') });
        await assert.rejects(foreign.restore(m.id, { force: true }), (err: Error) => {
          refusals.push(`foreign: ${err.message}`);
          return err instanceof BackupFormatError && /another backup key/.test(err.message);
        });
        // The good backup still verifies; the app's own (non-empty) database is refused.
        assert.equal((await app.backups.verify(m.id)).rows >= 50, true);
        const restorer = backupsFor(source);
        await assert.rejects(restorer.restore(m.id), (err: Error) => {
          refusals.push(`non-empty target: ${err.message}`);
          return err instanceof BackupError && /not empty/.test(err.message);
        });
        const metrics = await app.metrics.registry.metrics();
        assert.match(metrics, /^rampart_backup_last_verify_success 1$/m);
        process.stdout.write(`# ${name}: refused —\n${refusals.map((r) => `#   ${r}`).join('\n')}\n`);
      } finally {
        await app.stop();
        await source.cleanup();
        rmSync(target, { recursive: true, force: true });
      }
    });
  });
}

describe('backups to S3-compatible storage (s3rver)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-s3-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('create, list, verify, restore and retention through S3', async () => {
    const port = await freePort();
    const server = new S3rver({
      port,
      address: '127.0.0.1',
      silent: true,
      directory: dir,
      configureBuckets: [{ name: 'rampart-backups', configs: [] }],
    });
    await server.run();
    const env = {
      RAMPART_BACKUP_KEY: KEY,
      RAMPART_BACKUP_TARGET: 's3://rampart-backups/prod/db',
      RAMPART_BACKUP_S3_ENDPOINT: `http://127.0.0.1:${port}`,
      RAMPART_BACKUP_S3_ACCESS_KEY_ID: 'S3RVER',
      RAMPART_BACKUP_S3_SECRET_ACCESS_KEY: 'S3RVER',
      RAMPART_BACKUP_KEEP_DAILY: '2',
      RAMPART_BACKUP_KEEP_WEEKLY: '0',
    };
    const source = await makeBackend('sqlite', env);
    const app = await createApp(source.config, notes);
    await app.start();
    const fresh = await makeBackend('sqlite', env);
    try {
      for (let i = 0; i < 100; i++) await app.records.create('notes', { title: `s3 ${i}`, n: i });
      const m = await app.backups.create();
      const stored = readdirSync(join(dir, 'rampart-backups', 'prod', 'db')).filter((n) => !n.startsWith('.'));
      assert.ok(
        stored.some((n) => n.startsWith(m.id)),
        `objects in the bucket: ${stored.join(', ')}`,
      );
      const v = await app.backups.verify('latest');
      assert.equal(v.id, m.id);
      const restored = await backupsFor(fresh).restore('latest');
      assert.deepEqual(compareDigests(restored.tables, digestSqliteFile(join(fresh.config.storage.dataDir, 'rampart.db'))), []);
      process.stdout.write(
        `# s3: ${m.id} (${m.file.bytes} bytes) uploaded to ${app.backups.store.location}, verified (${v.rows} rows), restored into a fresh data dir\n`,
      );
      assert.match(app.backups.store.location, /^s3:\/\/rampart-backups\/prod\/db\/$/);
      // Retention (newest per day for 2 days, no weeklies): three backups today → the newest stays.
      await app.backups.create();
      const newest = await app.backups.create();
      const removed = await app.backups.prune();
      assert.equal(removed.length, 2);
      assert.deepEqual(
        (await app.backups.list()).map((b) => b.id),
        [newest.id],
      );
    } finally {
      await app.stop();
      await source.cleanup();
      await fresh.cleanup();
      await server.close();
    }
  });
});
