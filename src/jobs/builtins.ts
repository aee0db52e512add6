/**
 * Rampart's own jobs and schedules: mail delivery, and housekeeping that used to need a cron
 * daemon. Each housekeeping job is idempotent and works in bounded batches, so a retry or a
 * catch-up after an outage is harmless.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { LinkKind } from '../auth/accounts.js';
import type { Config } from '../core/config.js';
import type { Mail, Mailer } from '../notify/mail.js';
import type { RecordsService } from '../records/service.js';
import { type JobDef, job, type QueueDef, type ScheduleDef, schedule } from './define.js';
import type { JobQueue } from './queue.js';

/** Name of the job that sends one mail. */
export const MAIL_JOB = 'rampart.mail';
/** Name of the job that mails a verification or reset link asked for by address. */
export const ACCOUNT_LINK_JOB = 'rampart.account-link';

export interface BuiltinDeps {
  config: Config;
  mailer: Mailer;
  records: RecordsService;
  queue: JobQueue;
  log: Logger;
  countMail(outcome: 'sent' | 'failed'): void;
  /** Accounts housekeeping: expired sessions, tokens, throttle rows, OAuth flows; deleted accounts past retention. */
  authSweep(): Promise<void>;
  /** Delete stored answers of idempotent requests past their time; returns how many. */
  idempotencySweep(): Promise<number>;
  /** Delete finished webhook deliveries past the log's retention; returns how many. */
  webhookSweep(): Promise<number>;
  /** Issue and mail an account link if the account exists (AccountService.sendLink). */
  sendLink(kind: LinkKind, email: string, send: (mail: Mail) => Promise<void>): Promise<string>;
  /** Collections whose trash the generic purge handles (users have their own retention). */
  trashCollections: string[];
}

export function builtins(d: BuiltinDeps): {
  jobs: Record<string, JobDef>;
  queues: Record<string, QueueDef>;
  schedules: Record<string, ScheduleDef>;
} {
  const j = d.config.jobs;
  return {
    queues: { 'rampart.mail': { concurrency: 4 }, 'rampart.housekeeping': { concurrency: 1 } },
    jobs: {
      [MAIL_JOB]: job<Mail>({
        queue: 'rampart.mail',
        retries: 5,
        backoff: { baseMs: d.config.auth.mailRetryBaseMs, capMs: Math.max(d.config.auth.mailRetryBaseMs, 10 * 60_000) },
        timeoutMs: 60_000,
        // Account mails carry single-use links: erased from the job once sent.
        sensitive: true,
        validate(p) {
          const m = p as Mail;
          if (!m || typeof m.to !== 'string' || typeof m.subject !== 'string' || typeof m.text !== 'string') {
            throw new Error('a mail needs to, subject and text');
          }
          return m;
        },
        async handler(mail, ctx) {
          try {
            await d.mailer.deliver(mail);
          } catch (err) {
            if (ctx.attempt >= ctx.maxAttempts) d.countMail('failed');
            throw err;
          }
          d.countMail('sent');
        },
      }),
      [ACCOUNT_LINK_JOB]: job<{ kind: LinkKind; email: string }>({
        queue: 'rampart.mail',
        retries: 5,
        backoff: { baseMs: d.config.auth.mailRetryBaseMs, capMs: Math.max(d.config.auth.mailRetryBaseMs, 10 * 60_000) },
        timeoutMs: 60_000,
        validate(p) {
          const v = p as { kind?: unknown; email?: unknown };
          if ((v?.kind !== 'verify_email' && v?.kind !== 'reset_password') || typeof v.email !== 'string') {
            throw new Error('an account link needs kind and email');
          }
          return v as { kind: LinkKind; email: string };
        },
        async handler({ kind, email }, ctx) {
          try {
            const outcome = await d.sendLink(kind, email, (mail) => d.mailer.deliver(mail));
            if (outcome === 'sent') d.countMail('sent');
            return { outcome };
          } catch (err) {
            if (ctx.attempt >= ctx.maxAttempts) d.countMail('failed');
            throw err;
          }
        },
      }),
      'rampart.purge-trash': job({
        queue: 'rampart.housekeeping',
        timeoutMs: 30 * 60_000,
        async handler(_p, ctx) {
          if (j.trashRetentionDays === 0) return { purged: 0, note: 'trash is kept (RAMPART_TRASH_RETENTION_DAYS=0)' };
          const cutoff = new Date(Date.now() - j.trashRetentionDays * 86_400_000).toISOString();
          const purged: Record<string, number> = {};
          for (const c of d.trashCollections) {
            purged[c] = await purgeTrash(ctx.records, c, cutoff, ctx.signal, ctx.log);
          }
          return { purged };
        },
      }),
      'rampart.clean-auth': job({
        queue: 'rampart.housekeeping',
        timeoutMs: 10 * 60_000,
        handler: () => d.authSweep(),
      }),
      'rampart.clean-jobs': job({
        queue: 'rampart.housekeeping',
        timeoutMs: 10 * 60_000,
        async handler() {
          const deleted = await d.queue.cleanup(j.keepCompletedHours * 3_600_000, j.keepDeadDays * 86_400_000);
          return { deleted };
        },
      }),
      'rampart.clean-idempotency': job({
        queue: 'rampart.housekeeping',
        timeoutMs: 10 * 60_000,
        handler: async () => ({ deleted: await d.idempotencySweep() }),
      }),
      'rampart.clean-webhooks': job({
        queue: 'rampart.housekeeping',
        timeoutMs: 10 * 60_000,
        handler: async () => ({ deleted: await d.webhookSweep() }),
      }),
      'rampart.clean-temp': job({
        queue: 'rampart.housekeeping',
        handler: () => ({ removed: cleanTemp(join(d.config.storage.dataDir, 'tmp'), j.tempRetentionDays * 86_400_000, d.log) }),
      }),
    },
    schedules: {
      'rampart.purge-trash': schedule('30 3 * * *', 'rampart.purge-trash'),
      'rampart.clean-auth': schedule('*/10 * * * *', 'rampart.clean-auth'),
      'rampart.clean-jobs': schedule('15 * * * *', 'rampart.clean-jobs'),
      'rampart.clean-temp': schedule('45 3 * * *', 'rampart.clean-temp'),
      'rampart.clean-idempotency': schedule('40 * * * *', 'rampart.clean-idempotency'),
      'rampart.clean-webhooks': schedule('50 3 * * *', 'rampart.clean-webhooks'),
    },
  };
}

/** Purge one collection's records deleted before `cutoff`, 100 at a time; returns how many. */
async function purgeTrash(records: RecordsService, collection: string, cutoff: string, signal: AbortSignal, log: Logger): Promise<number> {
  let purged = 0;
  let cursor: string | undefined;
  for (;;) {
    signal.throwIfAborted();
    const page = await records.list(collection, {
      deleted: 'only',
      filter: `deleted_at < ${JSON.stringify(cutoff)}`,
      sort: 'id',
      limit: 100,
      fields: 'id',
      ...(cursor ? { cursor } : {}),
    });
    for (const { id } of page.items) {
      try {
        await records.purge(collection, id);
        purged++;
      } catch (err) {
        // Still referenced under `restrict`: it stays until its referrers go.
        log.warn({ collection, id, err: (err as Error).message }, 'a trashed record could not be purged yet');
      }
    }
    if (!page.next_cursor) break;
    cursor = page.next_cursor;
  }
  if (purged > 0) log.info({ collection, purged }, 'purged trashed records past retention');
  return purged;
}

/** Remove files (and emptied directories) under `dir` not modified for `maxAgeMs`. */
function cleanTemp(dir: string, maxAgeMs: number, log: Logger): number {
  let removed = 0;
  const cutoff = Date.now() - maxAgeMs;
  const walk = (d: string) => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const name of entries) {
      const p = join(d, name);
      try {
        const st = statSync(p);
        if (st.isDirectory()) {
          walk(p);
          if (readdirSync(p).length === 0 && st.mtimeMs < cutoff) rmSync(p, { recursive: true });
        } else if (st.mtimeMs < cutoff) {
          rmSync(p);
          removed++;
        }
      } catch (err) {
        log.warn({ path: p, err: (err as Error).message }, 'could not remove a temporary file');
      }
    }
  };
  walk(dir);
  if (removed > 0) log.info({ removed, dir }, 'removed old temporary files');
  return removed;
}
