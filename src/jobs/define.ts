/**
 * How app code declares jobs, queues and cron schedules. Declarations are plain data plus a
 * handler, checked once at startup (names, options, cron expressions, time zones).
 */

import { Cron } from 'croner';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Mail } from '../notify/mail.js';
import type { RecordsService } from '../records/service.js';
import type { HttpDependency } from '../resilience/http-client.js';

/** Options of a job, fixed at declaration; some can be overridden per enqueue. */
export interface JobOptions {
  /** Queue the job runs in (its concurrency and rate limit); default `default`. */
  queue?: string;
  /** Attempts after the first before the job is dead-lettered; default 5. */
  retries?: number;
  /** Exponential backoff with full jitter: the delay before attempt n+1 is random in [0, min(capMs, baseMs · 2^(n−1))]. */
  backoff?: { baseMs?: number; capMs?: number };
  /** Time one attempt may take; the handler's signal aborts then; default 60 s. */
  timeoutMs?: number;
  /** Higher runs first within a queue; default 0. */
  priority?: number;
  /** The payload holds secrets (links with tokens): it is erased once the job completes. */
  sensitive?: boolean;
}

/** What a handler gets besides its payload. */
export interface JobContext {
  /** The job's id. */
  id: string;
  /** The job's name. */
  name: string;
  /** The job's queue. */
  queue: string;
  /** This attempt's number, from 1. */
  attempt: number;
  /** Attempts the job has in all. */
  maxAttempts: number;
  /** Aborted when the attempt times out, the lease is lost, the job is cancelled or the worker stops. */
  signal: AbortSignal;
  /** The same for every attempt of this job: pass it to outside services so a retried effect happens once. */
  idempotencyKey: string;
  /** Set when a cron schedule enqueued the job: its name and the tick (the scheduled time). */
  schedule?: { name: string; tick: Date };
  /** A logger carrying the job's id and name. */
  log: Logger;
  /** Collections, as app code (the system principal). */
  records: RecordsService;
  /** The database. */
  db: Kysely<any>;
  /** Enqueue follow-up jobs. */
  jobs: JobsClient;
  /** Send a mail now (a failure fails this attempt, so the job's retries apply). */
  mail: { send(mail: Mail): Promise<void> };
  /** A declared outbound HTTP dependency: fetch with timeout, retries, breaker, bulkhead (pass `signal`). */
  http(name: string): HttpDependency;
  /** Notify a user: inbox, realtime when connected, else push (and email when asked). */
  notify: NotifyFn;
}

/** What a notification says and where it may go. */
export interface NotificationInput {
  /** Short title (required, up to 200 characters). */
  title: string;
  /** Body text (up to 2000 characters). */
  body?: string;
  /** App data for the client (JSON, up to 4 KB). */
  data?: Record<string, unknown>;
  /** Where it may go besides the inbox: `realtime`, `push`, `email` (default realtime and push). */
  channels?: Array<'realtime' | 'push' | 'email'>;
}

/** Send a notification to a user; in a hook it commits with the write. */
export type NotifyFn = (user: string, n: NotificationInput) => Promise<{ id: string }>;

/** A declared job. `P` is the payload's type. */
export interface JobDef<P = any> extends JobOptions {
  /** Does the work; a throw fails the attempt (retried unless it is a PermanentJobError). The result is kept for inspection. */
  handler: (payload: P, ctx: JobContext) => unknown | Promise<unknown>;
  /** Check (and convert) a payload at enqueue time; throw to refuse it. */
  validate?: (payload: unknown) => P;
}

/** Declare a job (identity, for typing). */
export function job<P = unknown>(def: JobDef<P>): JobDef<P> {
  return def;
}

/** Limits of a queue. */
export interface QueueDef {
  /** Jobs of this queue one worker process runs at once; default `RAMPART_JOBS_CONCURRENCY`. */
  concurrency?: number;
  /** At most `max` job starts in any `perMs` window, across every worker of the cluster. */
  rateLimit?: { max: number; perMs: number };
}

/** What to do with ticks missed while no node could fire them (a full outage). */
export type MissedTicks = 'skip' | 'catch-up';

/** A cron schedule: each tick enqueues one job. */
export interface ScheduleDef {
  /** Cron expression, 5 fields (minute precision) or 6 (seconds first). */
  cron: string;
  /** Name of the job each tick enqueues. */
  job: string;
  /** IANA time zone the expression is read in (DST handled: a skipped local time runs once at the shift, a repeated one once); default UTC. */
  tz?: string;
  /** Payload of each job (the tick time is in its context). */
  payload?: unknown;
  /**
   * Ticks older than `lateAfterMs` when first seen were missed (an outage): `skip` drops them,
   * `catch-up` runs one job for the latest of them. Later ticks always run. Default `catch-up`.
   */
  missed?: MissedTicks;
  /** How late a tick may fire and still count as on time; default 60 s. */
  lateAfterMs?: number;
}

/** Declare a schedule: `schedule('0 3 * * 0', 'weeklyReport', { tz: 'Africa/Lagos' })`. */
export function schedule(cron: string, jobName: string, opts: Omit<ScheduleDef, 'cron' | 'job'> = {}): ScheduleDef {
  return { cron, job: jobName, ...opts };
}

/** The result of an enqueue. */
export interface EnqueuedJob {
  /** The job's id. */
  id: string;
  /** A job with the same unique key was already waiting or running: that job's id is returned, nothing was added. */
  existing: boolean;
}

/** Per-enqueue options. */
export interface EnqueueOptions {
  /** Run no earlier than this many ms from now (by the database's clock). */
  delayMs?: number;
  /** Run no earlier than this time. */
  runAt?: Date | number;
  /** Overrides the job's priority. */
  priority?: number;
  /** While a job with this key is waiting or running, enqueueing another is a no-op returning it. */
  uniqueKey?: string;
}

/** Enqueue jobs; bound to a transaction inside hooks, so the job exists exactly when the write commits. */
export interface JobsClient {
  /** Enqueue a declared job; throws for an unknown name or a payload that is not JSON (or fails `validate`). */
  enqueue(name: string, payload?: unknown, opts?: EnqueueOptions): Promise<EnqueuedJob>;
}

/** Thrown by a handler for a failure that retrying cannot fix: the job is dead-lettered at once. */
export class PermanentJobError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PermanentJobError';
  }
}

/**
 * Thrown by a handler to be run again after `delayMs` (at least the backoff, unless `free`): a
 * provider's `Retry-After`. With `free`, the attempt is not counted (a circuit breaker that
 * refused the call: nothing was tried, so the job must not run out of attempts while it is open).
 */
export class RetryLaterError extends Error {
  constructor(
    message: string,
    readonly delayMs: number,
    readonly free = false,
  ) {
    super(message);
    this.name = 'RetryLaterError';
  }
}

/** A job with every option resolved. */
export interface ResolvedJob {
  /** The job's name. */
  name: string;
  /** Its queue. */
  queue: string;
  /** Retries + 1. */
  maxAttempts: number;
  /** Backoff base delay. */
  baseMs: number;
  /** Backoff cap. */
  capMs: number;
  /** Time one attempt may take. */
  timeoutMs: number;
  /** Default priority. */
  priority: number;
  /** Payload erased once done, never shown. */
  sensitive: boolean;
  /** The declaration (handler, validate). */
  def: JobDef;
}

/** A schedule with its parsed expression. */
export interface ResolvedSchedule extends Required<Omit<ScheduleDef, 'payload'>> {
  /** The schedule's name. */
  name: string;
  /** Payload of each tick's job. */
  payload: unknown;
  /** The parsed expression in its time zone. */
  cronner: Cron;
}

const JOB_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,99}$/;
const QUEUE_NAME = /^[a-z][a-z0-9_.-]{0,62}$/;

/** Every job, queue and schedule of an app, validated. */
export class JobRegistry {
  /** Jobs by name. */
  readonly jobs = new Map<string, ResolvedJob>();
  /** Queue limits by name (queues without a declaration use the defaults). */
  readonly queues = new Map<string, QueueDef>();
  /** Schedules by name. */
  readonly schedules = new Map<string, ResolvedSchedule>();

  constructor(private readonly defaultConcurrency: number) {}

  /** Add declarations; throws naming every problem. */
  add(decl: { jobs?: Record<string, JobDef>; queues?: Record<string, QueueDef>; schedules?: Record<string, ScheduleDef> }): void {
    const problems: string[] = [];
    for (const [name, q] of Object.entries(decl.queues ?? {})) {
      const at = `queue ${JSON.stringify(name)}`;
      if (!QUEUE_NAME.test(name)) problems.push(`${at}: name must match ${QUEUE_NAME}`);
      if (q.concurrency !== undefined && !(Number.isInteger(q.concurrency) && q.concurrency >= 1 && q.concurrency <= 1000)) {
        problems.push(`${at}: concurrency must be an integer from 1 to 1000`);
      }
      const r = q.rateLimit;
      if (r && !(Number.isInteger(r.max) && r.max >= 1 && Number.isInteger(r.perMs) && r.perMs >= 1)) {
        problems.push(`${at}: rateLimit needs integers max ≥ 1 and perMs ≥ 1`);
      }
      this.queues.set(name, q);
    }
    for (const [name, d] of Object.entries(decl.jobs ?? {})) {
      const at = `job ${JSON.stringify(name)}`;
      if (!JOB_NAME.test(name)) problems.push(`${at}: name must match ${JOB_NAME}`);
      if (this.jobs.has(name)) problems.push(`${at}: declared twice`);
      if (typeof d?.handler !== 'function') {
        problems.push(`${at}: needs a handler function`);
        continue;
      }
      const queue = d.queue ?? 'default';
      if (!QUEUE_NAME.test(queue)) problems.push(`${at}: queue name must match ${QUEUE_NAME}`);
      const retries = d.retries ?? 5;
      if (!Number.isInteger(retries) || retries < 0 || retries > 100) problems.push(`${at}: retries must be an integer from 0 to 100`);
      const baseMs = d.backoff?.baseMs ?? 1000;
      const capMs = d.backoff?.capMs ?? 600_000;
      if (!(baseMs >= 0 && capMs >= baseMs)) problems.push(`${at}: backoff needs 0 ≤ baseMs ≤ capMs`);
      const timeoutMs = d.timeoutMs ?? 60_000;
      if (!(Number.isInteger(timeoutMs) && timeoutMs >= 1)) problems.push(`${at}: timeoutMs must be a positive integer`);
      this.jobs.set(name, {
        name,
        queue,
        maxAttempts: retries + 1,
        baseMs,
        capMs,
        timeoutMs,
        priority: d.priority ?? 0,
        sensitive: d.sensitive === true,
        def: d,
      });
    }
    for (const [name, s] of Object.entries(decl.schedules ?? {})) {
      const at = `schedule ${JSON.stringify(name)}`;
      if (!JOB_NAME.test(name)) problems.push(`${at}: name must match ${JOB_NAME}`);
      const tz = s.tz ?? 'UTC';
      let cronner: Cron | undefined;
      try {
        cronner = new Cron(s.cron, { timezone: tz, paused: true });
        cronner.nextRun();
      } catch (err) {
        problems.push(`${at}: ${(err as Error).message}`);
      }
      if (s.missed !== undefined && s.missed !== 'skip' && s.missed !== 'catch-up') problems.push(`${at}: missed must be skip or catch-up`);
      if (cronner) {
        this.schedules.set(name, {
          name,
          cron: s.cron,
          job: s.job,
          tz,
          payload: s.payload ?? null,
          missed: s.missed ?? 'catch-up',
          lateAfterMs: s.lateAfterMs ?? 60_000,
          cronner,
        });
      }
    }
    if (problems.length > 0) throw new Error(`Invalid jobs declaration:\n  ${problems.join('\n  ')}`);
  }

  /** Check that every schedule names a declared job (after all declarations are in). */
  check(): void {
    const problems = [...this.schedules.values()]
      .filter((s) => !this.jobs.has(s.job))
      .map((s) => `schedule ${JSON.stringify(s.name)}: no job named ${JSON.stringify(s.job)}`);
    if (problems.length > 0) throw new Error(`Invalid jobs declaration:\n  ${problems.join('\n  ')}`);
  }

  job(name: string): ResolvedJob | undefined {
    return this.jobs.get(name);
  }

  /** Concurrency of a queue in one worker. */
  concurrency(queue: string): number {
    return this.queues.get(queue)?.concurrency ?? this.defaultConcurrency;
  }

  /** Every queue some job runs in. */
  queueNames(): string[] {
    return [...new Set([...this.jobs.values()].map((j) => j.queue))].sort();
  }
}

/** Delay before the next attempt after `attempt` failed: full jitter over the capped exponential. */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}
