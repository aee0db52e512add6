/**
 * `/api/vN/admin/…` for operations: the audit log (filtered, paged), backups (list, take one,
 * verify one: both run as jobs on a worker) and the routine checks with their recent alerts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Guard, requireAdmin } from '../../auth/guard.js';
import { RampartError } from '../../core/errors.js';
import type { Jobs } from '../../jobs/jobs.js';
import type { AuditLog } from '../../ops/audit.js';
import { BackupNotFoundError } from '../../ops/backup-store.js';
import type { Backups } from '../../ops/backups.js';
import type { NodeInfo } from '../../ops/nodes.js';
import { BACKUP_JOB, BACKUP_VERIFY_JOB } from '../../ops/ops-jobs.js';
import { problemRef, queryParams } from '../params.js';

export interface AdminOpsDeps {
  audit: AuditLog;
  backups: Backups;
  jobs: Jobs;
  guard: Guard;
  /** The routine checks' state and recent alerts. */
  checks?: () => Promise<unknown>;
  /** The cluster's processes with their figures. */
  nodes?: () => Promise<NodeInfo[]>;
}

const time = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(v)) throw new RampartError('E_INVALID_QUERY', `${name} must be an ISO 8601 time`);
  return t;
};

const backupIdParam = { type: 'object', properties: { id: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,200}$' } }, required: ['id'] };

export function registerAdminOpsRoutes(app: FastifyInstance, d: AdminOpsDeps, root: string): void {
  const admin = (req: FastifyRequest, what: string) => requireAdmin(d.guard, req, what);
  const errors: Record<number, unknown> = { 400: problemRef, 401: problemRef, 403: problemRef };

  app.get(
    `${root}/admin/audit`,
    {
      schema: {
        tags: ['operations'],
        summary: 'The audit log, newest first: security events and admin actions',
        querystring: {
          type: 'object',
          properties: {
            action: { type: 'string', description: 'an action, or a prefix ending in "." (auth.)' },
            actor: { type: 'string', description: "the acting user's id" },
            target: { type: 'string', description: 'the id of what was acted on' },
            outcome: { type: 'string', enum: ['success', 'failure', 'denied'] },
            since: { type: 'string', format: 'date-time' },
            until: { type: 'string', format: 'date-time' },
            limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
            cursor: { type: 'string' },
          },
        },
        response: errors,
      },
    },
    async (req) => {
      await admin(req, 'read the audit log');
      const q = queryParams(req, ['action', 'actor', 'target', 'outcome', 'since', 'until', 'limit', 'cursor'] as const);
      const limit = q.limit === undefined ? 50 : Number(q.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 500)
        throw new RampartError('E_INVALID_QUERY', 'limit must be an integer from 1 to 500');
      if (q.outcome !== undefined && !['success', 'failure', 'denied'].includes(q.outcome)) {
        throw new RampartError('E_INVALID_QUERY', 'outcome must be success, failure or denied');
      }
      if (q.cursor !== undefined && !/^[0-9a-f-]{36}$/.test(q.cursor))
        throw new RampartError('E_INVALID_CURSOR', 'not a cursor from this API');
      const page = await d.audit.query({
        action: q.action,
        actorId: q.actor,
        targetId: q.target,
        outcome: q.outcome,
        since: time('since', q.since),
        until: time('until', q.until),
        limit,
        before: q.cursor,
      });
      return { items: page.entries, next_cursor: page.next };
    },
  );

  app.get(
    `${root}/admin/backups`,
    { schema: { tags: ['operations'], summary: 'Backups at the target, newest first', response: errors } },
    async (req) => {
      await admin(req, 'list backups');
      queryParams(req, []);
      try {
        return { location: d.backups.store.location, items: await d.backups.list() };
      } catch (err) {
        throw new RampartError('E_DEPENDENCY_UNAVAILABLE', `backups cannot be listed: ${(err as Error).message}`);
      }
    },
  );

  app.post(
    `${root}/admin/backups`,
    { schema: { tags: ['operations'], summary: 'Take a backup now (a job on a worker; 202 with its id)', response: errors } },
    async (req, reply) => {
      await admin(req, 'take backups');
      const { id } = await d.jobs.enqueue(BACKUP_JOB, {}, { uniqueKey: 'rampart.backup' });
      return reply.code(202).send({ job_id: id });
    },
  );

  app.get(
    `${root}/admin/backups/:id/download`,
    {
      schema: {
        tags: ['operations'],
        summary: 'Download a backup: the sealed file, or its manifest with ?part=manifest',
        params: backupIdParam,
        querystring: { type: 'object', properties: { part: { type: 'string', enum: ['data', 'manifest'] } } },
        response: { ...errors, 404: problemRef },
      },
    },
    async (req, reply) => {
      await admin(req, 'download backups');
      const { part } = queryParams(req, ['part'] as const);
      if (part !== undefined && part !== 'data' && part !== 'manifest')
        throw new RampartError('E_INVALID_QUERY', 'part must be data or manifest');
      const { id } = req.params as { id: string };
      const name = part === 'manifest' ? `${id}.manifest.json` : `${id}.rbk`;
      let stream: Awaited<ReturnType<typeof d.backups.store.open>>;
      try {
        stream = await d.backups.store.open(name);
      } catch (err) {
        if (err instanceof BackupNotFoundError) throw new RampartError('E_RECORD_NOT_FOUND', `no backup ${id}`);
        throw new RampartError('E_DEPENDENCY_UNAVAILABLE', `the backup target cannot be read: ${(err as Error).message}`);
      }
      return reply
        .header('content-type', part === 'manifest' ? 'application/json' : 'application/octet-stream')
        .header('content-disposition', `attachment; filename="${name}"`)
        .header('cache-control', 'no-store')
        .send(stream);
    },
  );

  app.post(
    `${root}/admin/backups/:id/verify`,
    {
      schema: {
        tags: ['operations'],
        summary: 'Verify a backup in scratch (a job on a worker; 202 with its id)',
        params: backupIdParam,
        response: errors,
      },
    },
    async (req, reply) => {
      await admin(req, 'verify backups');
      const { id } = await d.jobs.enqueue(BACKUP_VERIFY_JOB, { id: (req.params as { id: string }).id });
      return reply.code(202).send({ job_id: id });
    },
  );

  if (d.checks) {
    const checks = d.checks;
    app.get(
      `${root}/admin/checks`,
      { schema: { tags: ['operations'], summary: 'Routine checks and recent alerts', response: errors } },
      async (req) => {
        await admin(req, 'read routine checks');
        queryParams(req, []);
        return checks();
      },
    );
  }

  if (d.nodes) {
    const nodes = d.nodes;
    app.get(
      `${root}/admin/nodes`,
      {
        schema: {
          tags: ['operations'],
          summary: "The cluster's processes (API nodes, workers) with their figures at their last two reports",
          response: errors,
        },
      },
      async (req) => {
        await admin(req, 'list the cluster nodes');
        queryParams(req, []);
        return { items: await nodes() };
      },
    );
  }
}
