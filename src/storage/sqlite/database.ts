import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type CompiledQuery, Kysely, SqliteDialect, sql } from 'kysely';
import type { StorageConfig } from '../../core/config.js';
import { kyselyLogger } from '../query-log.js';
import type { Storage, StorageHooks } from '../types.js';
import { SQLITE_COLUMN_TYPES } from './ddl.js';
import { type SqliteConnection, SqliteDatabase, type SqliteStatement } from './driver.js';
import { classifySqliteError } from './errors.js';

const STATEMENT_CACHE = 500;

/**
 * Wrap a connection so Kysely reuses prepared statements: preparing is a large share of a
 * point query's cost. Statements are keyed by SQL text (values are always bound parameters,
 * so the number of distinct texts is bounded by the query shapes), evicting the oldest.
 */
function cachingDatabase(conn: SqliteConnection) {
  const cache = new Map<string, SqliteStatement>();
  return {
    close: () => conn.close(),
    prepare(text: string) {
      let stmt = cache.get(text);
      if (!stmt) {
        stmt = conn.prepare(text);
        cache.set(text, stmt);
        if (cache.size > STATEMENT_CACHE) cache.delete(cache.keys().next().value as string);
      }
      return stmt;
    },
  };
}

/** The embedded backend: one SQLite file in WAL mode, one writer connection and one reader. */
export function openSqlite(config: StorageConfig, hooks: StorageHooks = {}, file?: string): Storage {
  mkdirSync(config.dataDir, { recursive: true });
  const path = file ?? join(config.dataDir, 'rampart.db');
  const writer = new SqliteDatabase(path);
  // busy_timeout first: every later pragma may itself need to wait for another process.
  writer.pragma(`busy_timeout = ${config.busyTimeoutMs}`);
  writer.pragma('journal_mode = WAL');
  writer.pragma('synchronous = NORMAL');
  writer.pragma('foreign_keys = ON');
  const readerConn = new SqliteDatabase(path, { readonly: true });
  readerConn.pragma(`busy_timeout = ${config.busyTimeoutMs}`);
  const log = kyselyLogger(hooks.onQuery);
  const readerStatements = cachingDatabase(readerConn);
  const db = new Kysely<any>({ dialect: new SqliteDialect({ database: cachingDatabase(writer) }), log });
  const reader = new Kysely<any>({ dialect: new SqliteDialect({ database: readerStatements }), log });
  let inflight = 0;

  /**
   * BEGIN IMMEDIATE takes the write lock up front, so a transaction never fails half-way
   * when another process (the CLI, a seed) holds it; busy_timeout waits, then we retry a few
   * times with backoff before giving up with a busy error (a 503 for the client).
   */
  async function transaction<T>(fn: (trx: Kysely<any>) => Promise<T>): Promise<T> {
    inflight++;
    try {
      return await db.connection().execute(async (conn) => {
        for (let attempt = 0; ; attempt++) {
          try {
            await sql`begin immediate`.execute(conn);
            break;
          } catch (err) {
            if (classifySqliteError(err).kind !== 'busy' || attempt >= 3) throw err;
            await new Promise((r) => setTimeout(r, 20 * 2 ** attempt + Math.random() * 20));
          }
        }
        try {
          const result = await fn(conn);
          await sql`commit`.execute(conn);
          return result;
        } catch (err) {
          if (writer.inTransaction) await sql`rollback`.execute(conn);
          throw err;
        }
      });
    } finally {
      inflight--;
    }
  }

  return {
    kind: 'sqlite',
    capabilities: {
      nativeBoolean: false,
      nativeJson: false,
      nativeTimestamp: false,
      caseInsensitiveLike: 'like',
      separateReader: true,
    },
    columnTypes: SQLITE_COLUMN_TYPES,
    db,
    reader,
    // better-sqlite3 is synchronous and the reader never holds a transaction, so a read needs
    // no connection mutex: run the cached statement directly.
    async read<R>(query: CompiledQuery, parameters: readonly unknown[]): Promise<R[]> {
      const started = performance.now();
      let failed = true;
      try {
        const rows = readerStatements.prepare(query.sql).all(parameters as unknown[]) as R[];
        failed = false;
        return rows;
      } finally {
        hooks.onQuery?.({ op: 'select', durationMs: performance.now() - started, failed });
      }
    },
    transaction,
    // The write lock of BEGIN IMMEDIATE is database-wide: it is the migration lock.
    withMigrationLock: transaction,
    async analyze() {
      await sql`analyze`.execute(db);
    },
    async ping() {
      readerConn.prepare('select 1').get();
    },
    classifyError: classifySqliteError,
    poolStats: () => ({ total: 2, idle: inflight > 0 ? 1 : 2, waiting: Math.max(0, inflight - 1) }),
    async close() {
      await reader.destroy();
      await db.destroy();
    },
  };
}
