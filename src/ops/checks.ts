/**
 * Routine checks: backup freshness, dead-letter growth, queue lag, the cluster's error rate,
 * open circuit breakers, disk space of the data directory, database integrity, replication lag
 * and TLS certificate expiry. The scheduled run (once across the cluster) keeps each check's
 * state in `_rampart_checks` and raises an alert when one starts failing, a reminder while it
 * keeps failing (RAMPART_ALERT_REPEAT_HOURS), and a recovery notice when it clears; `rampart
 * check` runs them on demand.
 */
import { statfs } from 'node:fs/promises';
import { connect } from 'node:tls';
import { sql } from 'kysely';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { Clock } from '../core/clock.js';
import type { ChecksConfig } from '../core/config.js';
import { uuidv7 } from '../core/ids.js';
import type { JobQueue } from '../jobs/queue.js';
import type { Storage } from '../storage/types.js';
import { listNodes } from './nodes.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

/** One check's verdict. */
export interface CheckResult {
  name: string;
  status: CheckStatus;
  message: string;
}

/** What the checks read. */
export interface ChecksDeps {
  config: ChecksConfig;
  storage: Storage;
  queue: JobQueue;
  clock: Clock;
  log: Logger;
  node: string;
  dataDir: string;
  /** Whether backups are configured (a key is set). */
  backupsConfigured: boolean;
  backupMaxAgeHours: number;
  /** Breakers of this process's outbound dependencies. */
  breakers: () => Record<string, { state: string }>;
  /** Replicas as this process sees them (bytes behind), if any. */
  replicas?: () => Array<{ name: string; up: boolean; error?: string }>;
  /** This node's own certificate file, when it serves HTTPS. */
  ownCertificate?: () => Date | undefined;
  /** Send an alert (enqueued for delivery on every channel). */
  alert(kind: 'alert' | 'recovery' | 'reminder', check: CheckResult): Promise<void>;
}

const CHECK_TIMEOUT_MS = 15_000;

export class RoutineChecks {
  constructor(private readonly d: ChecksDeps) {}

  private readonly checks: Record<string, () => Promise<[CheckStatus, string]>> = {
    backup_freshness: async () => {
      if (!this.d.backupsConfigured) return ['warn', 'backups are not configured (RAMPART_BACKUP_KEY is not set)'];
      const r = await this.d.storage.db
        .selectFrom('_rampart_backups')
        .select(['id', 'started_at'])
        .where('status', '=', 'ok')
        .orderBy('started_at', 'desc')
        .limit(1)
        .executeTakeFirst();
      if (!r) {
        // A new installation has until the limit to take its first backup.
        const since = await this.d.storage.db
          .selectFrom('_rampart_migrations')
          .select('applied_at')
          .where('name', '=', '0010_operations')
          .executeTakeFirst();
        const ageH = since ? (this.d.clock.now() - Date.parse(String(since.applied_at))) / 3_600_000 : Number.POSITIVE_INFINITY;
        return ageH > this.d.backupMaxAgeHours
          ? [
              'fail',
              `no good backup has been taken yet (backups set up ${Number.isFinite(ageH) ? `${ageH.toFixed(1)} h ago` : 'long ago'})`,
            ]
          : ['warn', 'no backup yet: the first is due by the schedule'];
      }
      const ageH = (this.d.clock.now() - Number(r.started_at)) / 3_600_000;
      return ageH > this.d.backupMaxAgeHours
        ? ['fail', `the last good backup is ${ageH.toFixed(1)} h old (limit ${this.d.backupMaxAgeHours} h): ${r.id}`]
        : ['ok', `last good backup ${ageH.toFixed(1)} h ago`];
    },
    dead_letters: async () => {
      const r = await this.d.storage.db
        .selectFrom('_rampart_jobs')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('state', '=', 'dead')
        .where('finished_at', '>', this.d.clock.now() - 3_600_000)
        .executeTakeFirstOrThrow();
      const n = Number(r.n);
      return n >= this.d.config.deadLettersPerHour
        ? ['fail', `${n} jobs dead-lettered in the last hour (limit ${this.d.config.deadLettersPerHour})`]
        : ['ok', `${n} jobs dead-lettered in the last hour`];
    },
    queue_lag: async () => {
      const lagging = (await this.d.queue.lag()).filter((q) => q.oldestDueMs > this.d.config.queueLagS * 1000);
      return lagging.length > 0
        ? ['fail', lagging.map((q) => `queue ${q.queue}: ${q.due} due, oldest waiting ${Math.round(q.oldestDueMs / 1000)} s`).join('; ')]
        : ['ok', `no queue waits longer than ${this.d.config.queueLagS} s`];
    },
    error_rate: async () => {
      const since = this.d.clock.now() - 5 * 60_000;
      const rows = (await listNodes(this.d.storage, this.d.clock.now(), 'api')).filter((n) => n.seen_at > since);
      let requests = 0;
      let errors = 0;
      // Each node's last interval (a restarted node's first report counts from zero).
      for (const { stats, prev_stats: prev } of rows) {
        if (!stats) continue;
        requests += Math.max(0, stats.requests - (prev?.requests ?? 0));
        errors += Math.max(0, stats.errors - (prev?.errors ?? 0));
      }
      if (requests === 0) return ['ok', `no requests in the last interval (${rows.length} API nodes reporting)`];
      const rate = errors / requests;
      const text = `${(rate * 100).toFixed(2)}% of ${requests} requests answered 5xx across ${rows.length} API nodes`;
      return rate > this.d.config.errorRate ? ['fail', `${text} (limit ${(this.d.config.errorRate * 100).toFixed(2)}%)`] : ['ok', text];
    },
    circuit_breakers: async () => {
      const open = Object.entries(this.d.breakers()).filter(([, s]) => s.state !== 'closed');
      return open.length > 0
        ? ['fail', `open: ${open.map(([n, s]) => `${n} (${s.state})`).join(', ')}`]
        : ['ok', `${Object.keys(this.d.breakers()).length} dependencies, every breaker closed`];
    },
    disk_space: async () => {
      const s = await statfs(this.d.dataDir);
      const freePct = (Number(s.bavail) / Number(s.blocks)) * 100;
      const freeGb = (Number(s.bavail) * Number(s.bsize)) / 1e9;
      const text = `${freePct.toFixed(1)}% free (${freeGb.toFixed(1)} GB) where the data directory is`;
      return freePct < this.d.config.diskMinFreePct ? ['fail', `${text} (limit ${this.d.config.diskMinFreePct}%)`] : ['ok', text];
    },
    database_integrity: async () => {
      // A full pass over the database: at most hourly on schedule (always when asked for).
      if (!this.thorough && this.integrity && this.d.clock.now() - this.integrity.at < 3_600_000) return this.integrity.result;
      const result = await this.integrityCheck();
      this.integrity = { at: this.d.clock.now(), result };
      return result;
    },
    replication_lag: async () => {
      const configured = this.d.replicas?.() ?? [];
      if (this.d.storage.kind !== 'postgres') return ['ok', 'SQLite: no replication'];
      // Standbys as the primary sees them (time lag of replay), whoever reads from them.
      const standbys = (
        await sql<{
          name: string;
          state: string;
          lag_s: number | null;
        }>`select coalesce(nullif(application_name, ''), host(client_addr)) as name, state, extract(epoch from replay_lag)::float8 as lag_s from pg_stat_replication`.execute(
          this.d.storage.db,
        )
      ).rows;
      if (standbys.length === 0 && configured.length === 0) return ['ok', 'no replicas'];
      const limit = this.d.config.replicaLagS;
      const notes = standbys.map(
        (s) => `${s.name} (${s.state}): ${s.lag_s === null ? 'in step' : `${Number(s.lag_s).toFixed(1)} s behind`}`,
      );
      const down = configured.filter((r) => !r.up);
      for (const r of down) notes.push(`${r.name}: down (${r.error ?? 'unreachable'})`);
      const lagging = standbys.filter((s) => s.lag_s !== null && Number(s.lag_s) > limit);
      return [
        lagging.length > 0 || down.length > 0 ? 'fail' : 'ok',
        `${notes.join('; ')}${lagging.length > 0 ? ` (limit ${limit} s)` : ''}`,
      ];
    },
    tls_expiry: async () => {
      const notes: string[] = [];
      let failing = false;
      const judge = (what: string, validTo: Date) => {
        const days = (validTo.getTime() - this.d.clock.now()) / 86_400_000;
        if (days < this.d.config.tlsMinDays) failing = true;
        notes.push(`${what}: ${days < 0 ? 'EXPIRED' : `${Math.floor(days)} days left`}`);
      };
      const own = this.d.ownCertificate?.();
      if (own) judge('this node', own);
      for (const url of this.d.config.tlsUrls) {
        try {
          judge(url, await peerCertificateExpiry(url));
        } catch (err) {
          failing = true;
          notes.push(`${url}: ${(err as Error).message}`);
        }
      }
      if (notes.length === 0) return ['ok', 'no certificates to watch'];
      return [failing ? 'fail' : 'ok', `${notes.join('; ')}${failing ? ` (limit ${this.d.config.tlsMinDays} days)` : ''}`];
    },
  };

  private thorough = false;
  private integrity?: { at: number; result: [CheckStatus, string] };

  private async integrityCheck(): Promise<[CheckStatus, string]> {
    if (this.d.storage.kind === 'sqlite') {
      const r = await sql<{ quick_check: string }>`pragma quick_check`.execute(this.d.storage.reader);
      const bad = r.rows.filter((x) => x.quick_check !== 'ok');
      return bad.length > 0
        ? [
            'fail',
            `quick_check: ${bad
              .map((x) => x.quick_check)
              .slice(0, 3)
              .join('; ')}`,
          ]
        : ['ok', 'quick_check ok'];
    }
    const r = await sql<{
      failures: string | null;
    }>`select checksum_failures as failures from pg_stat_database where datname = current_database()`.execute(this.d.storage.db);
    const n = Number(r.rows[0]?.failures ?? 0);
    return n > 0 ? ['fail', `${n} data checksum failures reported by PostgreSQL`] : ['ok', 'no checksum failures reported'];
  }

  /** The checks' names, in report order. */
  names(): string[] {
    return Object.keys(this.checks);
  }

  /** Run every check (each bounded in time; one that throws fails with its error); `thorough` always re-runs the integrity check. */
  async run(opts: { thorough?: boolean } = {}): Promise<CheckResult[]> {
    this.thorough = opts.thorough === true;
    return Promise.all(
      Object.entries(this.checks).map(async ([name, fn]) => {
        let timer: NodeJS.Timeout | undefined;
        try {
          const [status, message] = await Promise.race([
            fn(),
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error(`did not answer within ${CHECK_TIMEOUT_MS / 1000} s`)), CHECK_TIMEOUT_MS);
            }),
          ]);
          return { name, status, message };
        } catch (err) {
          return { name, status: 'fail' as const, message: `the check failed: ${(err as Error).message}` };
        } finally {
          clearTimeout(timer);
        }
      }),
    );
  }

  /**
   * Run the checks, store their state and raise alerts on changes: one alert when a check starts
   * failing, a reminder every `repeatHours` while it fails, one recovery notice when it clears.
   */
  async runAndAlert(): Promise<CheckResult[]> {
    const results = await this.run();
    const now = this.d.clock.now();
    const db = this.d.storage.db;
    const before = new Map((await db.selectFrom('_rampart_checks').selectAll().execute()).map((r) => [String(r.name), r]));
    for (const r of results) {
      const prev = before.get(r.name);
      const wasFailing = prev?.status === 'fail';
      const changed = prev?.status !== r.status;
      let alertedAt: number | null = prev?.alerted_at === null || prev?.alerted_at === undefined ? null : Number(prev.alerted_at);
      let kind: 'alert' | 'recovery' | 'reminder' | undefined;
      if (r.status === 'fail' && !wasFailing) kind = 'alert';
      else if (
        r.status === 'fail' &&
        this.d.config.repeatHours > 0 &&
        alertedAt !== null &&
        now - alertedAt >= this.d.config.repeatHours * 3_600_000
      ) {
        kind = 'reminder';
      } else if (r.status !== 'fail' && wasFailing) kind = 'recovery';
      if (kind) {
        await db
          .insertInto('_rampart_alerts')
          .values({ id: uuidv7(now), check_name: r.name, kind, status: r.status, message: r.message.slice(0, 2000), created_at: now })
          .execute();
        await this.d.alert(kind, r);
        alertedAt = kind === 'recovery' ? null : now;
        this.d.log[kind === 'recovery' ? 'info' : 'error'](
          { check: r.name, status: r.status, message: r.message },
          `routine check: ${kind}`,
        );
      }
      const row = {
        status: r.status,
        message: r.message.slice(0, 2000),
        since: changed || !prev ? now : Number(prev.since),
        checked_at: now,
        alerted_at: alertedAt,
        node: this.d.node,
      };
      if (prev) await db.updateTable('_rampart_checks').set(row).where('name', '=', r.name).execute();
      else
        await db
          .insertInto('_rampart_checks')
          .values({ name: r.name, ...row })
          .execute();
    }
    return results;
  }

  /** The checks' stored state and the latest alerts, for the console and the admin API. */
  async status(limit = 50): Promise<{ checks: unknown[]; alerts: unknown[] }> {
    const db = this.d.storage.db;
    const iso = (v: unknown) => (v === null || v === undefined ? null : new Date(Number(v)).toISOString());
    const checks = (await db.selectFrom('_rampart_checks').selectAll().orderBy('name').execute()).map((r) => ({
      name: r.name,
      status: r.status,
      message: r.message,
      since: iso(r.since),
      checked_at: iso(r.checked_at),
      alerted_at: iso(r.alerted_at),
      node: r.node,
    }));
    const alerts = (await db.selectFrom('_rampart_alerts').selectAll().orderBy('id', 'desc').limit(limit).execute()).map((r) => ({
      id: r.id,
      check: r.check_name,
      kind: r.kind,
      status: r.status,
      message: r.message,
      at: iso(r.created_at),
    }));
    return { checks, alerts };
  }

  /** `rampart_check_status{check}`: 1 ok, 0.5 warn, 0 fail, from the stored state (the same on every node). */
  registerMetrics(registry: Registry): void {
    const db = this.d.storage.db;
    new Gauge({
      name: 'rampart_check_status',
      help: 'Routine checks as last run: 1 ok, 0.5 warning, 0 failing',
      labelNames: ['check'],
      registers: [registry],
      async collect() {
        this.reset();
        const rows = await db
          .selectFrom('_rampart_checks')
          .select(['name', 'status'])
          .execute()
          .catch(() => []);
        for (const r of rows) this.set({ check: String(r.name) }, r.status === 'ok' ? 1 : r.status === 'warn' ? 0.5 : 0);
      },
    });
  }
}

/** When the certificate an https URL presents expires. */
export function peerCertificateExpiry(url: string, timeoutMs = 10_000): Promise<Date> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: u.hostname,
      port: Number(u.port || 443),
      servername: u.hostname,
      rejectUnauthorized: false,
      timeout: timeoutMs,
    });
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      socket.destroy();
      if (!cert?.valid_to) reject(new Error('no certificate presented'));
      else resolve(new Date(cert.valid_to));
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new Error(`no TLS answer within ${timeoutMs / 1000} s`));
    });
    socket.once('error', (err) => reject(new Error(`TLS connection failed: ${err.message}`)));
  });
}
