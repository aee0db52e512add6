import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type CompiledQuery, type DatabaseConnection, type Driver, Kysely, type QueryResult, SqliteDialect, sql } from 'kysely';
import type { StorageConfig } from '../../core/config.js';
import { LocalNotifier } from '../notifier.js';
import { kyselyLogger } from '../query-log.js';
import { TransactionHooks } from '../tx-hooks.js';
import type { Storage, StorageHooks } from '../types.js';
import { SQLITE_COLUMN_TYPES } from './ddl.js';
import { type SqliteConnection, SqliteDatabase, type SqliteStatement } from './driver.js';
import { classifySqliteError } from './errors.js';
import { sqliteSearch } from './search.js';

const STATEMENT_CACHE = 500;
/**
 * How long one attempt to take the write lock may wait inside SQLite. better-sqlite3 is
 * synchronous: that wait blocks the event loop, so it is kept short and the rest of the
 * configured busy timeout is waited out asynchronously, between attempts.
 */
const LOCK_ATTEMPT_MS = 20;
/** How long a migration waits for the write lock held by other nodes' migrations. */
const MIGRATION_LOCK_WAIT_MS = 120_000;

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

/**
 * A statement outside a transaction (a single-statement write) that finds the write lock held
 * by another process (a worker, the CLI) is retried with jittered backoff, without blocking the
 * event loop, until the busy timeout: the same patience `transaction()` has.
 */
class BusyRetryDialect extends SqliteDialect {
  constructor(
    config: ConstructorParameters<typeof SqliteDialect>[0],
    private readonly inTransaction: () => boolean,
    private readonly busyTimeoutMs: number,
  ) {
    super(config);
  }

  override createDriver(): Driver {
    const driver = super.createDriver();
    const { inTransaction, busyTimeoutMs } = this;
    const wrap = (conn: DatabaseConnection): DatabaseConnection => ({
      streamQuery: (q, chunk) => conn.streamQuery(q, chunk),
      async executeQuery<R>(q: CompiledQuery): Promise<QueryResult<R>> {
        const deadline = Date.now() + busyTimeoutMs;
        for (let attempt = 0; ; attempt++) {
          try {
            return await conn.executeQuery<R>(q);
          } catch (err) {
            if (inTransaction() || classifySqliteError(err).kind !== 'busy' || Date.now() >= deadline) throw err;
            const backoff = Math.min(100, 5 * 2 ** attempt);
            await new Promise((r) => setTimeout(r, backoff / 2 + Math.random() * (backoff / 2)));
          }
        }
      },
    });
    // Everything else is the driver's own (bound: it keeps private state).
    return new Proxy(driver, {
      get(target, prop) {
        if (prop === 'acquireConnection') return async () => wrap(await target.acquireConnection());
        const v = Reflect.get(target, prop, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  }
}

/** The embedded backend: one SQLite file in WAL mode, one writer connection and one reader. */
export function openSqlite(config: StorageConfig, hooks: StorageHooks = {}, file?: string): Storage {
  mkdirSync(config.dataDir, { recursive: true });
  const path = file ?? join(config.dataDir, 'rampart.db');
  const writer = new SqliteDatabase(path);
  // busy_timeout first, the whole of it: switching a new file to WAL needs a lock that other
  // processes opening it at the same moment hold too (twenty nodes starting at once).
  writer.pragma(`busy_timeout = ${config.busyTimeoutMs}`);
  writer.pragma('journal_mode = WAL');
  writer.pragma('synchronous = NORMAL');
  writer.pragma('foreign_keys = ON');
  // From here on a wait blocks the event loop, so SQLite waits briefly and the rest is waited
  // out asynchronously between attempts (transaction(), BusyRetryDialect).
  writer.pragma(`busy_timeout = ${Math.min(config.busyTimeoutMs, LOCK_ATTEMPT_MS)}`);
  const readerConn = new SqliteDatabase(path, { readonly: true });
  readerConn.pragma(`busy_timeout = ${config.busyTimeoutMs}`);
  const log = kyselyLogger(hooks.onQuery);
  const readerStatements = cachingDatabase(readerConn);
  const db = new Kysely<any>({
    dialect: new BusyRetryDialect({ database: cachingDatabase(writer) }, () => writer.inTransaction, config.busyTimeoutMs),
    log,
  });
  const reader = new Kysely<any>({ dialect: new SqliteDialect({ database: readerStatements }), log });
  let inflight = 0;
  const notifier = new LocalNotifier();
  const txHooks = new TransactionHooks();
  // SQLite's clock is this machine's: every process that opens the file shares it.
  const nowMs = sql<number>`cast(unixepoch('subsec') * 1000 as integer)`;

  /**
   * BEGIN IMMEDIATE takes the write lock up front, so a transaction never fails half-way
   * when another process (the CLI, a seed) holds it. While it is held elsewhere we retry with
   * jittered backoff, without blocking the event loop, until the busy timeout has passed; then
   * the caller gets a busy error (a 503 for a client).
   */
  async function transaction<T>(fn: (trx: Kysely<any>) => Promise<T>, waitMs = config.busyTimeoutMs): Promise<T> {
    inflight++;
    try {
      return await db.connection().execute(async (conn) => {
        const deadline = Date.now() + waitMs;
        for (let attempt = 0; ; attempt++) {
          try {
            await sql`begin immediate`.execute(conn);
            break;
          } catch (err) {
            if (classifySqliteError(err).kind !== 'busy' || Date.now() >= deadline) throw err;
            const backoff = Math.min(100, 5 * 2 ** attempt);
            await new Promise((r) => setTimeout(r, backoff / 2 + Math.random() * (backoff / 2)));
          }
        }
        notifier.begin(conn);
        let committed = false;
        try {
          const result = await fn(conn);
          await txHooks.flush(conn);
          await sql`commit`.execute(conn);
          committed = true;
          return result;
        } catch (err) {
          if (writer.inTransaction) await sql`rollback`.execute(conn);
          throw err;
        } finally {
          notifier.end(conn, committed);
          txHooks.ended(conn);
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
      skipLocked: false,
      crossProcessNotify: false,
    },
    columnTypes: SQLITE_COLUMN_TYPES,
    search: sqliteSearch,
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
    beforeCommit: (trx, fn) => txHooks.beforeCommit(trx, fn),
    afterEnd: (trx, fn) => txHooks.afterEnd(trx, fn),
    // The write lock of BEGIN IMMEDIATE is database-wide: it is the migration lock. A node that
    // starts while others migrate waits for them (minutes, not the request busy timeout), as
    // PostgreSQL's advisory lock does.
    withMigrationLock: (fn) => transaction(fn, Math.max(config.busyTimeoutMs, MIGRATION_LOCK_WAIT_MS)),
    // BEGIN IMMEDIATE already holds the database-wide write lock.
    async lockNames() {},
    nowMs,
    async dbNow() {
      return Number((readerConn.prepare(`select cast(unixepoch('subsec') * 1000 as integer) as now`).get() as { now: number }).now);
    },
    async notify(trx, channel, payload) {
      notifier.notify(trx, channel, payload);
    },
    async listen(channel, fn, onState) {
      return notifier.listen(channel, fn, onState);
    },
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
      // Kysely opens its driver lazily, so it may never have taken these over: close them here,
      // the reader first, so the writer is the last connection and checkpoints the WAL away.
      if (readerConn.open) readerConn.close();
      if (writer.open) writer.close();
    },
  };
}
