/**
 * Backups you can restore: a consistent snapshot (SQLite `VACUUM INTO` in a read transaction;
 * PostgreSQL `pg_dump` in an exported snapshot) sealed with the backup key, with a manifest of
 * row counts and content hashes taken from that same snapshot. `verify` restores into scratch
 * and proves it equal; `restore` does the same before it touches the target. Every run is
 * recorded in `_rampart_backups` (the metrics, `rampart check` and the console read it there).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type pg from 'pg';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { BackupConfig, StorageConfig } from '../core/config.js';
import type { Progress } from '../core/progress.js';
import { openSidePool } from '../storage/postgres/database.js';
import { SqliteDatabase } from '../storage/sqlite/driver.js';
import type { Storage } from '../storage/types.js';
import {
  BackupFormatError,
  type BackupKey,
  backupKey,
  manifestAuthentic,
  openSealedFile,
  sealFile,
  sha256File,
  signManifest,
} from './backup-crypto.js';
import { type BackupStore, openStore } from './backup-store.js';
import { compareDigests, type Digests, digestPostgres, postgresTables, sqliteTables } from './digest.js';
import type { SqliteTask } from './sqlite-task.js';

export const MANIFEST_SUFFIX = '.manifest.json';
const DATA_SUFFIX = '.rbk';

/** What a backup holds, written beside it and authenticated with the backup key. */
export interface Manifest {
  format: 1;
  id: string;
  backend: 'sqlite' | 'postgres';
  createdAt: string;
  /** The last applied migrations (system and schema): the schema version of the data. */
  schema: { migrations: number; last: string | null };
  tables: Digests;
  file: { name: string; bytes: number; sha256: string };
  /** Size of the dump before compression. */
  rawBytes: number;
  encryption: { algorithm: 'AES-256-GCM'; keyId: string };
  compression: 'gzip';
  durationMs: number;
  mac?: string;
}

export interface BackupSummary {
  id: string;
  createdAt: string;
  bytes: number;
  tables: number;
  rows: number;
  verified?: { at: string; ok: boolean; error?: string | null };
  /** Why the manifest cannot be read with this key (foreign, altered). */
  error?: string;
}

/** A backup or restore refused for a reason the operator can act on. */
export class BackupError extends Error {}

type ProgressFactory = (label: string, total: number) => Progress;
const quiet: ProgressFactory = () => ({ update() {}, finish() {} });

export interface BackupsDeps {
  /** The app's storage (records runs and verifies); a restore runs without it (it replaces the database). */
  storage?: Storage;
  kind: 'sqlite' | 'postgres';
  storageConfig: StorageConfig;
  config: BackupConfig;
  log: Logger;
  node: string;
}

export class Backups {
  readonly store: BackupStore;
  constructor(private readonly d: BackupsDeps) {
    this.store = openStore(d.config);
  }

  private get db() {
    if (!this.d.storage) throw new Error('Backups: this operation needs the app storage');
    return this.d.storage.db;
  }

  private key(): BackupKey {
    if (!this.d.config.key) {
      throw new BackupError('RAMPART_BACKUP_KEY is not set: backups are sealed with it (32 random bytes: openssl rand -base64 32)');
    }
    return backupKey(this.d.config.key);
  }

  private get sqlitePath(): string {
    return join(this.d.storageConfig.dataDir, 'rampart.db');
  }

  private bin(name: 'pg_dump' | 'pg_restore'): string {
    return this.d.config.pgBinDir ? join(this.d.config.pgBinDir, name) : name;
  }

  /** Take a backup now; returns its manifest. */
  async create(progress: ProgressFactory = quiet): Promise<Manifest> {
    const k = this.key();
    const started = Date.now();
    const stamp = new Date(started)
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z');
    const id = `rampart-${this.d.kind}-${stamp}-${randomBytes(3).toString('hex')}`;
    const db = this.db;
    await db
      .insertInto('_rampart_backups')
      .values({ id, started_at: started, status: 'running', location: this.store.location, node: this.d.node })
      .execute();
    const dir = await mkdtemp(join(tmpdir(), 'rampart-backup-'));
    try {
      const dump = join(dir, 'dump');
      const tables = this.d.kind === 'sqlite' ? await this.snapshotSqlite(dump, progress) : await this.snapshotPostgres(dump, progress);
      const schema = await this.schemaVersion();
      const rawBytes = (await stat(dump)).size;
      const bar = progress('seal', rawBytes);
      const sealed = join(dir, id + DATA_SUFFIX);
      const file = await sealFile(dump, sealed, k, id, (n) => bar.update(n));
      bar.finish();
      const manifest = signManifest<Manifest>(
        {
          format: 1,
          id,
          backend: this.d.kind,
          createdAt: new Date(started).toISOString(),
          schema,
          tables,
          file: { name: id + DATA_SUFFIX, ...file },
          rawBytes,
          encryption: { algorithm: 'AES-256-GCM', keyId: k.id },
          compression: 'gzip',
          durationMs: Date.now() - started,
        },
        k,
      );
      const manifestPath = join(dir, id + MANIFEST_SUFFIX);
      await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
      // The data first, the manifest last: a listed backup is a complete one.
      await this.store.put(sealed, id + DATA_SUFFIX);
      await this.store.put(manifestPath, id + MANIFEST_SUFFIX);
      const rows = Object.values(tables).reduce((n, t) => n + t.rows, 0);
      await db
        .updateTable('_rampart_backups')
        .set({ status: 'ok', finished_at: Date.now(), bytes: file.bytes, rows, duration_ms: Date.now() - started })
        .where('id', '=', id)
        .execute();
      this.d.log.info(
        { backup: id, bytes: file.bytes, rows, location: this.store.location, duration_ms: Date.now() - started },
        'backup written',
      );
      return manifest;
    } catch (err) {
      await db
        .updateTable('_rampart_backups')
        .set({ status: 'failed', finished_at: Date.now(), error: (err as Error).message.slice(0, 1000), duration_ms: Date.now() - started })
        .where('id', '=', id)
        .execute()
        .catch(() => {});
      this.d.log.error({ backup: id, err: (err as Error).message }, 'backup failed');
      throw err;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private snapshotSqlite(dump: string, progress: ProgressFactory): Promise<Digests> {
    return sqliteTask({ op: 'snapshot', src: this.sqlitePath, dest: dump }, progress);
  }

  private pool(url?: string): pg.Pool {
    // Hours, not the app's short statement timeout: a dump of a big database takes its time.
    return openSidePool(
      { ...this.d.storageConfig, databaseUrl: url ?? this.d.storageConfig.databaseUrl },
      'rampart-backup',
      1,
      6 * 3_600_000,
    );
  }

  private async snapshotPostgres(dump: string, progress: ProgressFactory): Promise<Digests> {
    const pool = this.pool();
    const client = await pool.connect();
    try {
      await client.query('begin isolation level repeatable read read only');
      const snapshot = (await client.query<{ s: string }>('select pg_export_snapshot() as s')).rows[0]?.s as string;
      const total = await this.countRows(client);
      // pg_dump reads the exported snapshot while we hash the same one: the manifest describes exactly the dump.
      const dumped = this.run(this.bin('pg_dump'), [
        '--format=custom',
        '--compress=0',
        '--no-owner',
        '--no-acl',
        `--snapshot=${snapshot}`,
        `--file=${dump}`,
        `--dbname=${this.d.storageConfig.databaseUrl}`,
      ]);
      // Awaited below; until then a failure must not go unhandled (the hashing may fail first).
      dumped.catch(() => {});
      const bar = progress('hash rows', total);
      const digests = await digestPostgres(client, (n) => bar.update(n));
      bar.finish();
      await dumped;
      await client.query('commit');
      return digests;
    } catch (err) {
      await client.query('rollback').catch(() => {});
      throw err;
    } finally {
      client.release();
      await pool.end();
    }
  }

  private async countRows(client: pg.ClientBase): Promise<number> {
    let total = 0;
    for (const t of await postgresTables(client)) {
      total += Number((await client.query(`select count(*)::int as n from "${t.replaceAll('"', '""')}"`)).rows[0].n);
    }
    return total;
  }

  private run(cmd: string, args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d) => {
        err += d;
      });
      child.on('error', (e) =>
        reject(
          new BackupError(
            `${cmd} could not run (${(e as NodeJS.ErrnoException).code}): install the PostgreSQL client tools or set RAMPART_PG_BIN_DIR`,
          ),
        ),
      );
      child.on('exit', (code) =>
        code === 0
          ? resolve()
          : reject(new BackupError(`${cmd.split('/').pop()} failed (exit ${code}): ${redactUrls(err.trim()).slice(0, 2000)}`)),
      );
    });
  }

  private async schemaVersion(): Promise<Manifest['schema']> {
    const rows = await this.db.selectFrom('_rampart_migrations').select(['seq', 'name']).orderBy('seq', 'desc').execute();
    return { migrations: rows.length, last: rows[0] ? String(rows[0].name) : null };
  }

  /** Backups at the target, newest first, with what the table knows of their verifies. */
  async list(): Promise<BackupSummary[]> {
    const k = this.key();
    const names = (await this.store.list()).filter((n) => n.endsWith(MANIFEST_SUFFIX));
    const out: BackupSummary[] = [];
    const dir = await mkdtemp(join(tmpdir(), 'rampart-backup-'));
    try {
      for (const name of names) {
        const id = name.slice(0, -MANIFEST_SUFFIX.length);
        let m: Manifest;
        try {
          m = await this.readManifest(id, dir, k);
        } catch (err) {
          // Listed, not hidden: a backup this key cannot read is a problem to see (and `latest` to refuse).
          const stamp = /-(\d{8}T\d{6}Z)-/.exec(id)?.[1];
          const at = stamp
            ? `${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 11)}:${stamp.slice(11, 13)}:${stamp.slice(13, 15)}Z`
            : '';
          out.push({ id, createdAt: at, bytes: 0, tables: 0, rows: 0, error: (err as Error).message });
          continue;
        }
        out.push({
          id: m.id,
          createdAt: m.createdAt,
          bytes: m.file.bytes,
          tables: Object.keys(m.tables).length,
          rows: Object.values(m.tables).reduce((n, t) => n + t.rows, 0),
        });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const rows =
      out.length > 0 && this.d.storage
        ? await this.db
            .selectFrom('_rampart_backups')
            .select(['id', 'verified_at', 'verify_ok', 'verify_error'])
            .where(
              'id',
              'in',
              out.map((o) => o.id),
            )
            .execute()
        : [];
    for (const r of rows) {
      const o = out.find((x) => x.id === r.id);
      if (o && r.verified_at !== null) {
        o.verified = { at: new Date(Number(r.verified_at)).toISOString(), ok: Number(r.verify_ok) === 1, error: r.verify_error };
      }
    }
    return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  private async readManifest(id: string, dir: string, k: BackupKey): Promise<Manifest> {
    if (!/^[A-Za-z0-9._-]+$/.test(id)) throw new BackupError(`not a backup id: ${JSON.stringify(id)}`);
    const path = join(dir, id + MANIFEST_SUFFIX);
    await this.store.get(id + MANIFEST_SUFFIX, path);
    let m: Manifest & Record<string, unknown>;
    try {
      m = JSON.parse(await readFile(path, 'utf8'));
    } catch {
      throw new BackupFormatError(`${id}: the manifest is not valid JSON`);
    }
    if (m.format !== 1 || m.id !== id) throw new BackupFormatError(`${id}: not a Rampart backup manifest`);
    if (!manifestAuthentic(m, k)) {
      throw new BackupFormatError(
        m.encryption?.keyId && m.encryption.keyId !== k.id
          ? `${id}: made with another backup key (${m.encryption.keyId}; this one is ${k.id}): a foreign backup`
          : `${id}: the manifest was altered (its MAC does not hold)`,
      );
    }
    return m;
  }

  /**
   * Fetch, check and unseal a backup into `dir` (the dump file), checking the file's checksum
   * and authenticity; nothing is restored from a backup that fails any of them.
   */
  private async fetch(id: string, dir: string, progress: ProgressFactory): Promise<{ manifest: Manifest; dump: string }> {
    const k = this.key();
    const manifest = await this.readManifest(id, dir, k);
    if (manifest.backend !== this.d.kind) {
      throw new BackupError(`${id} is a ${manifest.backend} backup; this app runs on ${this.d.kind}`);
    }
    const sealed = join(dir, manifest.file.name);
    const bar = progress('download', 1);
    await this.store.get(manifest.file.name, sealed);
    bar.finish();
    const sum = await sha256File(sealed);
    if (sum !== manifest.file.sha256)
      throw new BackupFormatError(
        `${id}: the backup file is corrupted (SHA-256 ${sum.slice(0, 12)}…, the manifest says ${manifest.file.sha256.slice(0, 12)}…)`,
      );
    const dump = join(dir, 'dump');
    await openSealedFile(sealed, dump, k, id);
    await rm(sealed, { force: true });
    return { manifest, dump };
  }

  /**
   * Restore into scratch (a temporary SQLite file, or a scratch PostgreSQL database), check its
   * integrity and compare counts and hashes with the manifest. Records the result.
   */
  async verify(id: string | 'latest', progress: ProgressFactory = quiet): Promise<{ id: string; tables: number; rows: number }> {
    const target = id === 'latest' ? (await this.list())[0]?.id : id;
    if (!target) throw new BackupError(`no backups at ${this.store.location}`);
    const dir = await mkdtemp(join(tmpdir(), 'rampart-verify-'));
    try {
      const { manifest, dump } = await this.fetch(target, dir, progress);
      const digests = this.d.kind === 'sqlite' ? await this.checkSqlite(dump, progress) : await this.checkPostgresScratch(dump, progress);
      const problems = compareDigests(manifest.tables, digests);
      if (problems.length > 0)
        throw new BackupFormatError(`${target}: the restored data differs from the manifest: ${problems.slice(0, 5).join('; ')}`);
      await this.recordVerify(target, true);
      return { id: target, tables: Object.keys(digests).length, rows: Object.values(digests).reduce((n, t) => n + t.rows, 0) };
    } catch (err) {
      await this.recordVerify(target, false, (err as Error).message);
      throw err;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private async recordVerify(id: string, ok: boolean, error?: string): Promise<void> {
    const db = this.db;
    const set = { verified_at: Date.now(), verify_ok: ok ? 1 : 0, verify_error: error?.slice(0, 1000) ?? null };
    const r = await db.updateTable('_rampart_backups').set(set).where('id', '=', id).executeTakeFirst();
    // A backup made elsewhere (another cluster's, copied in): remember its verify too.
    if (Number(r.numUpdatedRows) === 0) {
      await db
        .insertInto('_rampart_backups')
        .values({ id, started_at: Date.now(), status: 'external', location: this.store.location, node: this.d.node, ...set })
        .execute()
        .catch(() => {});
    }
    if (!ok) this.d.log.error({ backup: id, err: error }, 'backup verify failed');
    else this.d.log.info({ backup: id }, 'backup verified');
  }

  private checkSqlite(file: string, progress: ProgressFactory): Promise<Digests> {
    return sqliteTask({ op: 'check', src: file }, progress);
  }

  private async checkPostgresScratch(dump: string, progress: ProgressFactory): Promise<Digests> {
    const name = `rampart_verify_${randomBytes(4).toString('hex')}`;
    const admin = this.pool();
    await admin.query(`create database ${name}`);
    try {
      const url = withDatabase(this.d.storageConfig.databaseUrl as string, name);
      await this.pgRestore(dump, url, progress);
      const pool = this.pool(url);
      try {
        const client = await pool.connect();
        try {
          await client.query('begin isolation level repeatable read read only');
          const total = await this.countRows(client);
          const bar = progress('hash rows', total);
          const digests = await digestPostgres(client, (n) => bar.update(n));
          bar.finish();
          await client.query('commit');
          return digests;
        } finally {
          client.release();
        }
      } finally {
        await pool.end();
      }
    } finally {
      await admin.query(`drop database if exists ${name} with (force)`).catch(() => {});
      await admin.end();
    }
  }

  private async pgRestore(dump: string, url: string, progress: ProgressFactory): Promise<void> {
    const bar = progress('pg_restore', 1);
    // One transaction: a restore that fails leaves the target as it was.
    await this.run(this.bin('pg_restore'), ['--no-owner', '--no-acl', '--exit-on-error', '--single-transaction', `--dbname=${url}`, dump]);
    bar.finish();
  }

  /** Whether the target database holds any table. */
  async targetEmpty(): Promise<boolean> {
    if (this.d.kind === 'sqlite') {
      if (!existsSync(this.sqlitePath)) return true;
      const db = new SqliteDatabase(this.sqlitePath, { readonly: true });
      try {
        return sqliteTables(db).length === 0;
      } finally {
        db.close();
      }
    }
    const pool = this.pool();
    try {
      const client = await pool.connect();
      try {
        return (await postgresTables(client)).length === 0;
      } finally {
        client.release();
      }
    } finally {
      await pool.end();
    }
  }

  /**
   * Restore a backup over the app's database. The backup is verified in scratch first; a
   * non-empty target is refused unless `force`. The caller runs migrations afterwards. On SQLite
   * the nodes must be stopped (the file is replaced); on PostgreSQL the restore is one transaction.
   */
  async restore(id: string | 'latest', o: { force?: boolean; progress?: ProgressFactory } = {}): Promise<Manifest> {
    const progress = o.progress ?? quiet;
    if (!o.force && !(await this.targetEmpty())) {
      throw new BackupError('the target database is not empty: restore refuses to overwrite it (--force replaces everything in it)');
    }
    const target = id === 'latest' ? (await this.list())[0]?.id : id;
    if (!target) throw new BackupError(`no backups at ${this.store.location}`);
    const dir = await mkdtemp(join(tmpdir(), 'rampart-restore-'));
    try {
      const { manifest, dump } = await this.fetch(target, dir, progress);
      if (this.d.kind === 'sqlite') {
        const problems = compareDigests(manifest.tables, await this.checkSqlite(dump, progress));
        if (problems.length > 0)
          throw new BackupFormatError(`${target}: the restored data differs from the manifest: ${problems.join('; ')}`);
        // Beside the target, then renamed over it: the switch is atomic on one file system.
        const staged = `${this.sqlitePath}.restoring`;
        await copyFile(dump, staged);
        for (const suffix of ['-wal', '-shm']) await rm(this.sqlitePath + suffix, { force: true });
        await rename(staged, this.sqlitePath);
      } else {
        // Checked in scratch first, so a bad backup never reaches the target.
        const problems = compareDigests(manifest.tables, await this.checkPostgresScratch(dump, progress));
        if (problems.length > 0)
          throw new BackupFormatError(`${target}: the restored data differs from the manifest: ${problems.join('; ')}`);
        if (o.force) {
          const pool = this.pool();
          try {
            await pool.query('drop schema if exists public cascade; create schema public');
          } finally {
            await pool.end();
          }
        }
        await this.pgRestore(dump, this.d.storageConfig.databaseUrl as string, progress);
      }
      this.d.log.warn({ backup: target, tables: Object.keys(manifest.tables).length }, 'database restored from a backup');
      return manifest;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Apply the retention policy: keep the newest backup of each of the last `keepDaily` days
   * and of each of the last `keepWeekly` ISO weeks; delete the rest. Returns the deleted ids.
   */
  async prune(): Promise<string[]> {
    // Only backups this key can read take part: a foreign or damaged one is never deleted here.
    const all = (await this.list()).filter((b) => !b.error);
    const keep = retained(
      all.map((b) => ({ id: b.id, at: Date.parse(b.createdAt) })),
      this.d.config.keepDaily,
      this.d.config.keepWeekly,
    );
    const removed: string[] = [];
    for (const b of all) {
      if (keep.has(b.id)) continue;
      await this.store.remove(b.id + MANIFEST_SUFFIX);
      await this.store.remove(b.id + DATA_SUFFIX);
      removed.push(b.id);
    }
    if (removed.length > 0) this.d.log.info({ removed, kept: keep.size }, 'old backups removed (retention)');
    return removed;
  }

  /** Gauges read from the backups table at scrape time: the same on every node. */
  registerMetrics(registry: Registry): void {
    const db = this.db;
    const latest = async (where: 'ok' | 'verify') => {
      let q = db.selectFrom('_rampart_backups').selectAll().limit(1);
      q =
        where === 'ok'
          ? q.where('status', '=', 'ok').orderBy('started_at', 'desc')
          : q.where('verified_at', 'is not', null).orderBy('verified_at', 'desc');
      return q.executeTakeFirst().catch(() => undefined);
    };
    // One read of both rows per scrape (the five gauges are collected together).
    let memo: { at: number; rows: Promise<[Row | undefined, Row | undefined]> } | undefined;
    type Row = Record<string, unknown>;
    const rows = () => {
      if (!memo || Date.now() - memo.at > 1000) memo = { at: Date.now(), rows: Promise.all([latest('ok'), latest('verify')]) };
      return memo.rows;
    };
    const gauges: Array<[string, string, (ok: Row | undefined, verify: Row | undefined) => number]> = [
      [
        'rampart_backup_last_success_timestamp_seconds',
        'When the last good backup was taken (0: never)',
        (ok) => Number(ok?.started_at ?? 0) / 1000,
      ],
      ['rampart_backup_last_size_bytes', 'Size of the last good backup, sealed', (ok) => Number(ok?.bytes ?? 0)],
      ['rampart_backup_last_duration_seconds', 'How long the last good backup took', (ok) => Number(ok?.duration_ms ?? 0) / 1000],
      [
        'rampart_backup_last_verify_success',
        '1 when the last backup verify restored and matched its manifest, 0 when it failed, -1 when none ran',
        (_ok, v) => (v ? Number(v.verify_ok) : -1),
      ],
      [
        'rampart_backup_last_verify_timestamp_seconds',
        'When the last backup verify ran (0: never)',
        (_ok, v) => Number(v?.verified_at ?? 0) / 1000,
      ],
    ];
    for (const [name, help, value] of gauges) {
      new Gauge({
        name,
        help,
        registers: [registry],
        async collect() {
          const [ok, verify] = await rows();
          this.set(value(ok, verify));
        },
      });
    }
  }
}

/**
 * Run SQLite work in a worker thread (see sqlite-task.ts); its progress reaches `progress`. The
 * thread runs the same build as this file: the TypeScript sources under tsx, dist/ otherwise.
 */
function sqliteTask(task: SqliteTask, progress: ProgressFactory): Promise<Digests> {
  const source = import.meta.url.endsWith('.ts');
  const entry = new URL(`./sqlite-task${source ? '.ts' : '.js'}`, import.meta.url);
  // From the TypeScript sources (development, tests) the thread registers tsx's loader first:
  // Node 20 does not pass --import hooks on to worker threads.
  const worker = source
    ? new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); })`, {
        eval: true,
        workerData: task,
      })
    : new Worker(entry, { workerData: task });
  return new Promise((resolve, reject) => {
    let bar: Progress | undefined;
    let label = '';
    worker.on('message', (m: { progress?: [string, number, number]; result?: Digests; error?: string; corrupt?: boolean }) => {
      if (m.progress) {
        const [l, done, total] = m.progress;
        if (l !== label) {
          bar?.finish();
          bar = progress(l, total);
          label = l;
        }
        bar?.update(done);
      } else if (m.result) {
        bar?.finish();
        resolve(m.result);
      } else if (m.error !== undefined) {
        reject(m.corrupt ? new BackupFormatError(m.error) : new BackupError(m.error));
      }
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new BackupError(`the SQLite backup thread exited with code ${code}`));
    });
  });
}

/** Ids kept by the retention policy (pure: newest per day for N days, newest per ISO week for M weeks). */
export function retained(backups: Array<{ id: string; at: number }>, keepDaily: number, keepWeekly: number): Set<string> {
  const sorted = [...backups].sort((a, b) => b.at - a.at);
  const keep = new Set<string>();
  const pick = (bucket: (t: number) => string, n: number) => {
    const seen = new Set<string>();
    for (const b of sorted) {
      const k = bucket(b.at);
      if (seen.has(k)) continue;
      if (seen.size >= n) break;
      seen.add(k);
      keep.add(b.id);
    }
  };
  pick((t) => new Date(t).toISOString().slice(0, 10), keepDaily);
  pick((t) => isoWeek(t), keepWeekly);
  return keep;
}

function isoWeek(t: number): string {
  const d = new Date(t);
  const day = (d.getUTCDay() + 6) % 7;
  d.setUTCDate(d.getUTCDate() - day + 3);
  const firstThursday = new Date(Date.UTC(d.getUTCFullYear(), 0, 4));
  const week = 1 + Math.round(((d.getTime() - firstThursday.getTime()) / 86_400_000 - 3 + ((firstThursday.getUTCDay() + 6) % 7)) / 7);
  return `${d.getUTCFullYear()}-W${week}`;
}

/** The same PostgreSQL URL naming another database (works with several hosts). */
export function withDatabase(url: string, name: string): string {
  const q = url.indexOf('?');
  const base = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q);
  const authorityStart = base.indexOf('//') + 2;
  const slash = base.indexOf('/', authorityStart);
  return `${slash === -1 ? base : base.slice(0, slash)}/${name}${query}`;
}

/** Passwords in connection URLs never reach a log or an error message. */
export function redactUrls(text: string): string {
  return text.replace(/(\w+:\/\/[^:/?#\s]*:)[^@\s]*@/g, '$1[redacted]@');
}
