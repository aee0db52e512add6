/**
 * Read replicas with bounded staleness and read-your-writes.
 *
 * Every REPLICA_POLL_MS the router samples the primary's WAL position and each replica's replay
 * position. A replica serves reads only while it has replayed everything the primary had written
 * `maxLagMs` ago (so what it shows is at most that old) and its last poll succeeded. A read may
 * also carry a position it must see (the caller's last write, see ReadAfterWrites): only a
 * replica known to have replayed that far takes it. Otherwise — no replica fresh enough, or the
 * replica's query fails — the caller reads from the primary.
 */
import { type CompiledQuery, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { StorageConfig } from '../../core/config.js';
import type { ReplicaRouter, ReplicaStatus } from '../types.js';

const REPLICA_POLL_MS = 100;

/** A WAL position ('16/B374D848') as a number that orders correctly. */
export function lsnValue(lsn: string): bigint {
  const [hi = '0', lo = '0'] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

interface Replica {
  name: string;
  pool: pg.Pool;
  db: Kysely<any>;
  replayed: bigint;
  up: boolean;
  reads: number;
  lastError?: string;
}

export function openReplicas(
  config: StorageConfig,
  primary: pg.Pool,
  types: pg.CustomTypesConfig,
  report: (err: Error) => void,
): ReplicaRouter | undefined {
  if (config.replicaUrls.length === 0) return undefined;
  const replicas: Replica[] = config.replicaUrls.map((url) => {
    const pool = new pg.Pool({
      connectionString: url,
      max: config.poolMax,
      connectionTimeoutMillis: config.connectTimeoutMs,
      idleTimeoutMillis: 30_000,
      statement_timeout: config.statementTimeoutMs,
      query_timeout: config.statementTimeoutMs + 1000,
      application_name: 'rampart-replica',
      keepAlive: true,
      types,
    });
    pool.on('error', report);
    pool.on('connect', (c) => c.on('error', report));
    const u = new URL(url);
    return {
      name: `${u.hostname}:${u.port || 5432}`,
      pool,
      db: new Kysely<any>({ dialect: new PostgresDialect({ pool }) }),
      replayed: 0n,
      up: false,
      reads: 0,
    };
  });
  // The primary's positions over the last moments: [when, position], oldest first.
  const history: [number, bigint][] = [];
  let next = 0;
  let fallbacks = 0;

  const poll = async () => {
    try {
      const r = await primary.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
      history.push([Date.now(), lsnValue(r.rows[0]?.lsn ?? '0/0')]);
      const keep = Date.now() - config.replicaMaxLagMs - 5 * REPLICA_POLL_MS;
      while (history.length > 2 && (history[1] as [number, bigint])[0] < keep) history.shift();
    } catch {
      // The primary is away: replicas stay as they were last seen, staleness still judged by time.
    }
    await Promise.all(
      replicas.map(async (rep) => {
        try {
          const r = await rep.pool.query<{ lsn: string | null; standby: boolean }>(
            'select pg_last_wal_replay_lsn()::text as lsn, pg_is_in_recovery() as standby',
          );
          const row = r.rows[0];
          // A replica that was promoted (or is not a standby at all) is not ours to read from.
          rep.up = !!row?.standby && row.lsn !== null;
          rep.replayed = row?.lsn ? lsnValue(row.lsn) : 0n;
          rep.lastError = rep.up ? undefined : 'not a standby';
        } catch (err) {
          rep.up = false;
          rep.lastError = (err as Error).message;
        }
      }),
    );
  };
  const timer = setInterval(() => void poll(), REPLICA_POLL_MS);
  timer.unref();
  void poll();

  /** What the primary had written `maxLagMs` ago (a replica that has it is fresh enough). */
  const staleBound = (): bigint | undefined => {
    const at = Date.now() - config.replicaMaxLagMs;
    let bound: bigint | undefined;
    for (const [t, lsn] of history) {
      if (t > at) break;
      bound = lsn;
    }
    return bound;
  };

  const pick = (after: bigint | undefined): Replica | undefined => {
    const bound = staleBound();
    if (bound === undefined) return undefined;
    const need = after !== undefined && after > bound ? after : bound;
    for (let i = 0; i < replicas.length; i++) {
      const rep = replicas[(next + i) % replicas.length] as Replica;
      if (rep.up && rep.replayed >= need) {
        next = (next + i + 1) % replicas.length;
        return rep;
      }
    }
    return undefined;
  };

  return {
    async read<R>(query: CompiledQuery, parameters: readonly unknown[], after?: string) {
      const rep = pick(after ? lsnValue(after) : undefined);
      if (!rep) {
        fallbacks++;
        return undefined;
      }
      try {
        const rows = (await rep.db.executeQuery({ ...query, parameters })).rows as R[];
        rep.reads++;
        return rows;
      } catch (err) {
        // A failing replica is left out until its next good poll; this read goes to the primary.
        rep.up = false;
        rep.lastError = (err as Error).message;
        fallbacks++;
        return undefined;
      }
    },
    async position() {
      const r = await primary.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
      return r.rows[0]?.lsn ?? '0/0';
    },
    status(): ReplicaStatus[] {
      const head = history.at(-1)?.[1] ?? 0n;
      return replicas.map((r) => ({
        name: r.name,
        up: r.up,
        lagBytes: r.up && head > r.replayed ? Number(head - r.replayed) : 0,
        reads: r.reads,
        error: r.lastError,
      }));
    },
    fallbacks: () => fallbacks,
    async close() {
      clearInterval(timer);
      await Promise.all(replicas.map((r) => r.db.destroy()));
    },
  };
}
