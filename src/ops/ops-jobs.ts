/**
 * Operations' jobs and schedules: the scheduled backup (with the retention policy after it),
 * the weekly verify of the latest backup, the audit log's retention sweep.
 */
import type { Logger } from 'pino';
import type { Config } from '../core/config.js';
import { type JobDef, job, type QueueDef, type ScheduleDef, schedule } from '../jobs/define.js';
import type { CollectionSchema } from '../records/schema.js';
import type { Alerts } from './alerts.js';
import type { AuditLog } from './audit.js';
import type { Backups } from './backups.js';
import type { RoutineChecks } from './checks.js';
import type { DataKeys } from './data-keys.js';

export const BACKUP_JOB = 'rampart.backup';
export const BACKUP_VERIFY_JOB = 'rampart.backup-verify';
export const AUDIT_SWEEP_JOB = 'rampart.clean-audit';
export const CHECKS_JOB = 'rampart.checks';
export const REENCRYPT_JOB = 'rampart.reencrypt';

export interface OpsJobsDeps {
  config: Config;
  backups: Backups;
  audit: AuditLog;
  checks: RoutineChecks;
  alerts: Alerts;
  /** Data keys and the collections with encrypted fields, when the app has any. */
  encryption?: { keys: DataKeys; collections: CollectionSchema[] };
  log: Logger;
}

export function opsJobs(d: OpsJobsDeps): {
  jobs: Record<string, JobDef>;
  queues: Record<string, QueueDef>;
  schedules: Record<string, ScheduleDef>;
} {
  const b = d.config.backup;
  const system = { type: 'system' as const };
  const schedules: Record<string, ScheduleDef> = {
    [AUDIT_SWEEP_JOB]: schedule('20 3 * * *', AUDIT_SWEEP_JOB),
  };
  // Scheduled backups need the key; without it `rampart check` reports backups as not configured.
  if (d.config.checks.cron) schedules[CHECKS_JOB] = schedule(d.config.checks.cron, CHECKS_JOB, { missed: 'skip' });
  if (b.key && b.cron) schedules[BACKUP_JOB] = schedule(b.cron, BACKUP_JOB, { missed: 'catch-up' });
  if (b.key && b.verifyCron) schedules[BACKUP_VERIFY_JOB] = schedule(b.verifyCron, BACKUP_VERIFY_JOB, { missed: 'catch-up' });
  return {
    // One at a time on a worker: a backup and a verify both read the whole database.
    queues: { 'rampart.backups': { concurrency: 1 }, 'rampart.alerts': { concurrency: 4 }, 'rampart.checks': { concurrency: 1 } },
    jobs: {
      ...d.alerts.job(),
      [CHECKS_JOB]: job({
        queue: 'rampart.checks',
        // The next tick runs them again: no retries, no pile-up behind a slow check.
        retries: 0,
        timeoutMs: 60_000,
        async handler() {
          await d.checks.runAndAlert();
        },
      }),
      [BACKUP_JOB]: job({
        queue: 'rampart.backups',
        retries: 2,
        backoff: { baseMs: 60_000, capMs: 600_000 },
        timeoutMs: 6 * 3_600_000,
        async handler() {
          try {
            const m = await d.backups.create();
            await d.audit.record({
              action: 'backup.created',
              actor: system,
              target: { type: 'backup', id: m.id },
              details: { bytes: m.file.bytes },
            });
          } catch (err) {
            await d.audit.record({
              action: 'backup.created',
              outcome: 'failure',
              actor: system,
              details: { error: (err as Error).message.slice(0, 300) },
            });
            throw err;
          }
          await d.backups.prune();
        },
      }),
      [BACKUP_VERIFY_JOB]: job<{ id?: string }>({
        queue: 'rampart.backups',
        retries: 1,
        backoff: { baseMs: 60_000, capMs: 600_000 },
        timeoutMs: 6 * 3_600_000,
        validate(p) {
          const id = (p as { id?: unknown } | null)?.id;
          if (id !== undefined && (typeof id !== 'string' || !/^[A-Za-z0-9._-]{1,200}$/.test(id)))
            throw new Error('id must be a backup id');
          return { id: id as string | undefined };
        },
        async handler(payload) {
          const r = await d.backups.verify(payload?.id ?? 'latest').catch(async (err: Error) => {
            await d.audit.record({
              action: 'backup.verified',
              outcome: 'failure',
              actor: system,
              target: payload?.id ? { type: 'backup', id: payload.id } : undefined,
              details: { error: err.message.slice(0, 300) },
            });
            throw err;
          });
          await d.audit.record({
            action: 'backup.verified',
            actor: system,
            target: { type: 'backup', id: r.id },
            details: { rows: r.rows },
          });
        },
      }),
      [REENCRYPT_JOB]: job({
        queue: 'rampart.housekeeping',
        retries: 5,
        backoff: { baseMs: 10_000, capMs: 600_000 },
        timeoutMs: 6 * 3_600_000,
        async handler(_p, ctx) {
          const enc = d.encryption;
          if (!enc) return;
          await enc.keys.load();
          let shown = -1;
          const moved = await enc.keys.reencrypt(enc.collections, (done, total) => {
            const pct = total === 0 ? 100 : Math.floor((done / total) * 10) * 10;
            if (pct !== shown) ctx.log.info({ done, total, percent: pct }, 're-encrypting values under the current data key');
            shown = pct;
          });
          await d.audit.record({ action: 'keys.data_reencrypted', actor: system, details: { values: moved } });
        },
      }),
      [AUDIT_SWEEP_JOB]: job({
        queue: 'rampart.housekeeping',
        retries: 3,
        async handler() {
          const n = await d.audit.sweep(d.config.auditKeepDays);
          if (n > 0) d.log.info({ deleted: n, keep_days: d.config.auditKeepDays }, 'audit entries past retention deleted');
        },
      }),
    },
    schedules,
  };
}
