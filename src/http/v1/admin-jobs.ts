/**
 * `/api/vN/admin/…` for jobs, queues and schedules: operators (the admin role) list and
 * inspect jobs, retry, cancel, discard, redrive dead letters, pause queues and run schedules.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Guard, requireAdmin } from '../../auth/guard.js';
import { RampartError } from '../../core/errors.js';
import type { Jobs } from '../../jobs/jobs.js';
import type { JobErrorEntry } from '../../jobs/queue.js';
import { JOB_STATES, type JobRow, type JobState } from '../../jobs/queue.js';
import { problemRef, queryParams } from '../params.js';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function errorsOf(row: JobRow): JobErrorEntry[] {
  try {
    return JSON.parse(row.errors) as JobErrorEntry[];
  } catch {
    return [];
  }
}

/** A job as the API shows it; `full` adds payload, result and the error history. */
export function presentJob(row: JobRow, full: boolean): Record<string, unknown> {
  const errors = errorsOf(row);
  const out: Record<string, unknown> = {
    id: row.id,
    queue: row.queue,
    name: row.name,
    state: row.state,
    priority: row.priority,
    attempts: row.attempts,
    max_attempts: row.max_attempts,
    run_at: iso(row.run_at),
    created_at: iso(row.created_at),
    started_at: iso(row.started_at),
    finished_at: iso(row.finished_at),
    lease_until: iso(row.lease_until),
    worker: row.worker,
    unique_key: row.unique_key,
    schedule: row.schedule,
    tick: iso(row.tick),
    last_error: errors.length > 0 ? (errors[errors.length - 1] as JobErrorEntry).message : null,
  };
  if (full) {
    // A sensitive payload (a mail with a sign-in link) is never shown.
    out.payload = row.sensitive === 1 ? null : JSON.parse(row.payload);
    out.payload_redacted = row.sensitive === 1;
    out.result = row.result === null ? null : JSON.parse(row.result);
    out.errors = errors;
  }
  return out;
}

export function registerAdminJobRoutes(app: FastifyInstance, jobs: Jobs, guard: Guard, root: string): void {
  const admin = (req: FastifyRequest, what: string) => requireAdmin(guard, req, what);
  const tags = ['jobs'];
  const errors = { 400: problemRef, 401: problemRef, 403: problemRef, 404: problemRef };
  const idParam = { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] };
  const nameParam = (key: string) => ({
    type: 'object',
    properties: { [key]: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9_.:-]{0,99}$' } },
    required: [key],
  });
  const knownQueue = async (queue: string) => {
    if (!(await jobs.queue.knows(queue))) throw new RampartError('E_QUEUE_NOT_FOUND', `no queue ${queue}`);
  };

  app.get(
    `${root}/admin/queues`,
    { schema: { tags, summary: 'Queues with job counts by state, lag, limits and pause state', response: errors } },
    async (req) => {
      await admin(req, 'see queues');
      const stats = await jobs.queue.stats();
      return {
        items: stats.map((s) => ({
          queue: s.queue,
          paused: s.paused,
          counts: s.counts,
          due: s.due,
          oldest_due_seconds: s.oldestDueMs / 1000,
          concurrency: jobs.registry.concurrency(s.queue),
          rate_limit: jobs.registry.queues.get(s.queue)?.rateLimit ?? null,
        })),
      };
    },
  );

  for (const [action, paused] of [
    ['pause', true],
    ['resume', false],
  ] as const) {
    app.post(
      `${root}/admin/queues/:queue/${action}`,
      {
        schema: {
          tags,
          summary: `${action === 'pause' ? 'Pause' : 'Resume'} a queue on every worker`,
          params: nameParam('queue'),
          response: errors,
        },
      },
      async (req) => {
        await admin(req, `${action} queues`);
        const { queue } = req.params as { queue: string };
        await knownQueue(queue);
        await jobs.queue.setPaused(queue, paused);
        req.log.info({ queue, paused }, 'queue paused state changed');
        return { queue, paused };
      },
    );
  }

  app.post(
    `${root}/admin/queues/:queue/redrive`,
    { schema: { tags, summary: 'Retry every dead-lettered job of a queue', params: nameParam('queue'), response: errors } },
    async (req) => {
      await admin(req, 'redrive jobs');
      const { queue } = req.params as { queue: string };
      await knownQueue(queue);
      const redriven = await jobs.queue.redrive(queue);
      req.log.info({ queue, redriven }, 'dead letters redriven');
      return { queue, redriven };
    },
  );

  app.get(
    `${root}/admin/jobs`,
    {
      schema: {
        tags,
        summary: 'Jobs, newest first, by queue and state',
        querystring: {
          type: 'object',
          properties: {
            queue: { type: 'string' },
            state: { type: 'string', enum: JOB_STATES },
            limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 },
            cursor: { type: 'string', description: 'next_cursor of the previous page' },
          },
        },
        response: errors,
      },
    },
    async (req) => {
      await admin(req, 'list jobs');
      const q = queryParams(req, ['queue', 'state', 'limit', 'cursor'] as const);
      if (q.state !== undefined && !JOB_STATES.includes(q.state as JobState)) {
        throw new RampartError('E_INVALID_QUERY', `state must be one of ${JOB_STATES.join(', ')}`);
      }
      const limit = q.limit === undefined ? 50 : Number(q.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 200)
        throw new RampartError('E_INVALID_QUERY', 'limit must be an integer from 1 to 200');
      if (q.cursor !== undefined && !/^[0-9a-f-]{36}$/.test(q.cursor))
        throw new RampartError('E_INVALID_CURSOR', 'not a cursor from this API');
      const rows = await jobs.queue.list({ queue: q.queue, state: q.state as JobState | undefined, limit: limit + 1, before: q.cursor });
      const items = rows.slice(0, limit);
      return {
        items: items.map((r) => presentJob(r, false)),
        next_cursor: rows.length > limit ? (items[items.length - 1] as JobRow).id : null,
      };
    },
  );

  app.get(
    `${root}/admin/jobs/:id`,
    { schema: { tags, summary: 'One job with its payload, result and error history', params: idParam, response: errors } },
    async (req) => {
      await admin(req, 'inspect jobs');
      return presentJob(await jobs.queue.get((req.params as { id: string }).id), true);
    },
  );

  const change = (path: string, summary: string, op: (id: string) => Promise<JobRow>) =>
    app.post(
      `${root}/admin/jobs/:id/${path}`,
      { schema: { tags, summary, params: idParam, response: { ...errors, 409: problemRef } } },
      async (req) => {
        await admin(req, `${path} jobs`);
        const id = (req.params as { id: string }).id;
        const row = await op(id);
        req.log.info({ job_id: id, action: path }, 'job changed by an operator');
        return presentJob(row, false);
      },
    );
  change('retry', 'Run a dead, cancelled or delayed job again now (a dead job gets its attempts back)', (id) => jobs.queue.retry(id));
  change('cancel', 'Cancel a waiting or running job (a running attempt is aborted through its signal)', (id) => jobs.queue.cancel(id));

  app.delete(
    `${root}/admin/jobs/:id`,
    {
      schema: {
        tags,
        summary: 'Discard a finished job (dead, completed or cancelled)',
        params: idParam,
        response: { ...errors, 409: problemRef },
      },
    },
    async (req, reply) => {
      await admin(req, 'discard jobs');
      await jobs.queue.discard((req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  app.get(
    `${root}/admin/schedules`,
    { schema: { tags, summary: 'Cron schedules with last and next run, last status and node', response: errors } },
    async (req) => {
      await admin(req, 'see schedules');
      return { items: await jobs.schedules() };
    },
  );

  app.post(
    `${root}/admin/schedules/:name/run`,
    {
      schema: {
        tags,
        summary: "Enqueue a schedule's job now (outside its ticks)",
        params: nameParam('name'),
        response: { ...errors, 202: { type: 'object', properties: { schedule: { type: 'string' }, job_id: { type: 'string' } } } },
      },
    },
    async (req, reply) => {
      await admin(req, 'run schedules');
      const { name } = req.params as { name: string };
      const s = jobs.registry.schedules.get(name);
      if (!s) throw new RampartError('E_SCHEDULE_NOT_FOUND', `no schedule ${name}`);
      const job = await jobs.enqueue(s.job, s.payload);
      req.log.info({ schedule: name, job_id: job.id }, 'schedule run by an operator');
      return reply.code(202).send({ schedule: name, job_id: job.id });
    },
  );
}
