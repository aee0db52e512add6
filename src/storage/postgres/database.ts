import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { StorageConfig } from '../../core/config.js';
import { kyselyLogger } from '../query-log.js';
import { TransactionHooks } from '../tx-hooks.js';
import type { Storage, StorageHooks } from '../types.js';
import { POSTGRES_COLUMN_TYPES } from './ddl.js';
import { classifyPostgresError } from './errors.js';
import { parseHosts, primaryLocator } from './hosts.js';
import { PgListener } from './listener.js';
import { openReplicas } from './replicas.js';
import { postgresSearch } from './search.js';

/** Arbitrary constant: the advisory lock key that serializes migrations across nodes. */
const MIGRATION_LOCK_KEY = 727_265_672_700;

// int8 (bigint, count(*)) as a JS number: integer fields are bounded to ±2^53 by validation.
const types = {
  getTypeParser(oid: number, format?: string) {
    if (oid === 20) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

/**
 * A small pool of its own for a side task that must not queue behind (or starve) the app's
 * queries, with short timeouts: its callers have a fallback (the rate limiter's store).
 */
export function openSidePool(config: StorageConfig, name: string, max: number, timeoutMs: number): pg.Pool {
  const url = config.databaseUrl ?? '';
  const pool = new pg.Pool({
    connectionString: parseHosts(url).single,
    Client: primaryLocator(url, config.connectTimeoutMs).Client,
    max,
    connectionTimeoutMillis: timeoutMs,
    statement_timeout: timeoutMs,
    query_timeout: timeoutMs + 200,
    idleTimeoutMillis: 30_000,
    application_name: name,
    keepAlive: true,
    types,
  });
  pool.on('error', () => {});
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  return pool;
}

/** The cluster backend: a pg pool that survives database restarts. */
export function openPostgres(config: StorageConfig, hooks: StorageHooks = {}, url?: string): Storage {
  const target = url ?? config.databaseUrl ?? '';
  // Several hosts: connections go to whichever is the primary now (see hosts.ts).
  const locator = primaryLocator(target, config.connectTimeoutMs, (from, to) =>
    hooks.onFailover?.(`${from.host}:${from.port}`, `${to.host}:${to.port}`),
  );
  const pool = new pg.Pool({
    connectionString: parseHosts(target).single,
    Client: locator.Client,
    max: config.poolMax,
    connectionTimeoutMillis: config.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    statement_timeout: config.statementTimeoutMs,
    query_timeout: config.statementTimeoutMs + 1000,
    idle_in_transaction_session_timeout: config.idleInTransactionMs,
    application_name: 'rampart',
    keepAlive: true,
    types,
  });
  const report = (err: Error) => hooks.onBackgroundError?.(err);
  // An idle client whose server went away emits 'error' on the pool: without a listener
  // that would crash the process. A checked-out client emits on itself, so every new
  // client gets a listener too (pg-pool only listens while a client is idle).
  pool.on('error', report);
  pool.on('connect', (client) => {
    client.on('error', report);
  });
  const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }), log: kyselyLogger(hooks.onQuery) });
  const listener = new PgListener(parseHosts(target).single, locator.Client, config.connectTimeoutMs, report);
  const nowMs = sql<number>`(extract(epoch from clock_timestamp()) * 1000)::bigint`;
  const txHooks = new TransactionHooks();
  // Replicas serve the database the app runs on (not a scratch one opened by URL).
  const replicas = url === undefined ? openReplicas(config, pool, types, report) : undefined;

  return {
    kind: 'postgres',
    capabilities: {
      nativeBoolean: true,
      nativeJson: true,
      nativeTimestamp: true,
      caseInsensitiveLike: 'ilike',
      separateReader: false,
      skipLocked: true,
      crossProcessNotify: true,
    },
    columnTypes: POSTGRES_COLUMN_TYPES,
    search: postgresSearch,
    db,
    reader: db,
    read: async (query, parameters) => (await db.executeQuery({ ...query, parameters })).rows as never[],
    replicas,
    async transaction(fn) {
      let open: Kysely<any> | undefined;
      try {
        return await db.transaction().execute(async (trx) => {
          open = trx;
          const result = await fn(trx);
          await txHooks.flush(trx);
          return result;
        });
      } finally {
        if (open) txHooks.ended(open);
      }
    },
    beforeCommit: (trx, fn) => txHooks.beforeCommit(trx, fn),
    afterEnd: (trx, fn) => txHooks.afterEnd(trx, fn),
    withMigrationLock: (fn) =>
      db.transaction().execute(async (trx) => {
        // Transaction-scoped: released by COMMIT or ROLLBACK, even if this node dies.
        await sql`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`.execute(trx);
        return fn(trx);
      }),
    async lockNames(trx, names) {
      // Transaction-scoped advisory locks on a hash of each name; a collision only serializes more.
      for (const name of [...new Set(names)].sort()) await sql`select pg_advisory_xact_lock(hashtextextended(${name}, 0))`.execute(trx);
    },
    nowMs,
    async dbNow() {
      const r = await sql<{ now: number }>`select ${nowMs} as now`.execute(db);
      return Number(r.rows[0]?.now);
    },
    async notify(trx, channel, payload) {
      // Delivered at commit, dropped at rollback.
      await sql`select pg_notify(${channel}, ${payload})`.execute(trx);
    },
    listen: (channel, fn, onState) => listener.listen(channel, { fn, onState }),
    async analyze() {
      await sql`analyze`.execute(db);
    },
    async ping(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`database did not answer within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        await Promise.race([sql`select 1`.execute(db), timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    classifyError: classifyPostgresError,
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    async close() {
      await replicas?.close();
      await listener.close();
      await db.destroy();
    },
  };
}
