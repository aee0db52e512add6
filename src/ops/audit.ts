/**
 * The audit log: an append-only record of security events and admin actions (logins and
 * failed logins, refresh-token reuse, session revocations, role changes, rule changes,
 * app-version policy changes, job redrives, backups, restores, key rotations). Nothing in
 * Rampart updates an entry; the retention sweep is the only delete. Entries carry ids, never
 * passwords, tokens or record contents.
 */
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Clock } from '../core/clock.js';
import { uuidv7 } from '../core/ids.js';
import type { Storage } from '../storage/types.js';

const T = '_rampart_audit';

/** Who did it. */
export interface AuditActor {
  /** `user` (a signed-in caller), `admin`, `system` (a job, the scheduler), `cli` (an operator's command), `anonymous`. */
  type: 'user' | 'admin' | 'system' | 'cli' | 'anonymous';
  /** The user's id, when there is one. */
  id?: string;
}

/** One entry to append. */
export interface AuditEvent {
  /** Dotted name: `auth.login`, `auth.login_failed`, `session.revoked`, `backup.created`, … */
  action: string;
  /** Default `success`. */
  outcome?: 'success' | 'failure' | 'denied';
  actor?: AuditActor;
  target?: { type: string; id?: string };
  ip?: string;
  requestId?: string;
  /** Small, non-secret context (counts, reasons, names). */
  details?: Record<string, unknown>;
}

/** A stored entry. */
export interface AuditEntry {
  id: string;
  at: string;
  action: string;
  outcome: string;
  actor: AuditActor;
  target: { type: string; id: string | null } | null;
  ip: string | null;
  requestId: string | null;
  details: Record<string, unknown> | null;
}

/** Filters of a query; every one optional. */
export interface AuditQuery {
  /** An action, or a prefix ending in `.` (`auth.`). */
  action?: string;
  actorId?: string;
  targetId?: string;
  outcome?: string;
  since?: number;
  until?: number;
  limit: number;
  /** The last id of the previous page (entries come newest first). */
  before?: string;
}

export class AuditLog {
  private readonly failures?: Counter;
  constructor(
    private readonly storage: Storage,
    private readonly clock: Clock,
    private readonly log: Logger,
    registry?: Registry,
  ) {
    if (registry) {
      this.failures = new Counter({
        name: 'rampart_audit_write_failures_total',
        help: 'Audit entries that could not be written (each is also logged at error level)',
        registers: [registry],
      });
    }
  }

  /**
   * Append an entry, in the caller's transaction when given (the entry commits with the change
   * it describes). Outside a transaction a failure is logged and counted, not thrown: the action
   * already happened and the log line keeps the trace.
   */
  async record(e: AuditEvent, db?: Kysely<any>): Promise<void> {
    const row = {
      id: uuidv7(this.clock.now()),
      at: this.clock.now(),
      action: e.action,
      outcome: e.outcome ?? 'success',
      actor_type: e.actor?.type ?? 'system',
      actor_id: e.actor?.id ?? null,
      target_type: e.target?.type ?? null,
      target_id: e.target?.id ?? null,
      ip: e.ip ?? null,
      request_id: e.requestId ?? null,
      details: e.details ? JSON.stringify(e.details) : null,
    };
    if (db) {
      await db.insertInto(T).values(row).execute();
      return;
    }
    try {
      await this.storage.db.insertInto(T).values(row).execute();
    } catch (err) {
      this.failures?.inc();
      this.log.error({ err: (err as Error).message, audit: { ...row, details: undefined } }, 'audit entry could not be written');
    }
  }

  /** Entries newest first, filtered, keyset-paged. */
  async query(q: AuditQuery): Promise<{ entries: AuditEntry[]; next: string | null }> {
    let s = this.storage.db
      .selectFrom(T)
      .selectAll()
      .orderBy('id', 'desc')
      .limit(q.limit + 1);
    if (q.action)
      s = q.action.endsWith('.') ? s.where('action', 'like', `${q.action.replace(/[%_\\]/g, '')}%`) : s.where('action', '=', q.action);
    if (q.actorId) s = s.where('actor_id', '=', q.actorId);
    if (q.targetId) s = s.where('target_id', '=', q.targetId);
    if (q.outcome) s = s.where('outcome', '=', q.outcome);
    if (q.since !== undefined) s = s.where('at', '>=', q.since);
    if (q.until !== undefined) s = s.where('at', '<', q.until);
    if (q.before) s = s.where('id', '<', q.before);
    const rows = await s.execute();
    const page = rows.slice(0, q.limit);
    return {
      entries: page.map((r) => ({
        id: String(r.id),
        at: new Date(Number(r.at)).toISOString(),
        action: String(r.action),
        outcome: String(r.outcome),
        actor: { type: r.actor_type, ...(r.actor_id ? { id: String(r.actor_id) } : {}) },
        target: r.target_type ? { type: String(r.target_type), id: r.target_id === null ? null : String(r.target_id) } : null,
        ip: r.ip ?? null,
        requestId: r.request_id ?? null,
        details: r.details ? JSON.parse(String(r.details)) : null,
      })),
      next: rows.length > q.limit ? String(page[page.length - 1]?.id) : null,
    };
  }

  /**
   * Record a change of the collections' access rules (they are code: a deploy changes them).
   * Compares a hash of every collection's rules with the last recorded one; the first start
   * records the rules as they are.
   */
  async recordRules(rules: Record<string, unknown>, actor: AuditActor = { type: 'system' }): Promise<boolean> {
    const hash = createHash('sha256').update(JSON.stringify(rules)).digest('hex').slice(0, 16);
    const last = (await this.query({ action: 'rules.changed', limit: 1 })).entries[0];
    const before = (last?.details?.rules ?? {}) as Record<string, string>;
    if (last?.details?.hash === hash) return false;
    const perCollection = Object.fromEntries(
      Object.entries(rules).map(([c, r]) => [c, createHash('sha256').update(JSON.stringify(r)).digest('hex').slice(0, 12)]),
    );
    const changed = Object.keys({ ...before, ...perCollection }).filter((c) => before[c] !== perCollection[c]);
    await this.record({ action: 'rules.changed', actor, details: { hash, changed, rules: perCollection } });
    return true;
  }

  /** Delete entries older than the retention, in batches; returns how many. */
  async sweep(keepDays: number, batch = 5000): Promise<number> {
    const cutoff = this.clock.now() - keepDays * 86_400_000;
    let total = 0;
    for (;;) {
      const ids = this.storage.db.selectFrom(T).select('id').where('at', '<', cutoff).limit(batch);
      const r = await this.storage.db.deleteFrom(T).where('id', 'in', ids).executeTakeFirst();
      const n = Number(r.numDeletedRows);
      total += n;
      if (n < batch) return total;
    }
  }
}
