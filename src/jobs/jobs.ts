/**
 * Builds the jobs components: the registry (app and built-in declarations), the queue, and on
 * demand a worker (in `serve` when jobs run in-process, and in `rampart worker`) and the cron
 * scheduler (every node may take part; one fires at a time).
 */
import { hostname } from 'node:os';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { JobsConfig } from '../core/config.js';
import type { Mailer } from '../notify/mail.js';
import type { Metrics } from '../observability/metrics.js';
import type { RecordsService } from '../records/service.js';
import type { Storage } from '../storage/types.js';
import { type EnqueuedJob, type EnqueueOptions, JobRegistry, type JobsClient } from './define.js';
import { JobQueue, type QueueStats } from './queue.js';
import { listSchedules, type ScheduleInfo, Scheduler } from './scheduler.js';
import { Worker } from './worker.js';

export interface Jobs {
  /** Every declared job, queue and schedule. */
  registry: JobRegistry;
  /** The queue's storage operations (operators' actions, figures). */
  queue: JobQueue;
  /** This process's name in job and schedule records. */
  node: string;
  /** The worker, once started. */
  worker: Worker | undefined;
  /** The scheduler, once started. */
  scheduler: Scheduler | undefined;
  /** A client enqueueing on `db` (a transaction: the jobs commit with it). */
  client(db: Kysely<any>): JobsClient;
  /** Enqueue a job in its own transaction. */
  enqueue(name: string, payload?: unknown, opts?: EnqueueOptions): Promise<EnqueuedJob>;
  /** Start a worker for these queues (default: every declared queue). */
  startWorker(queues?: string[]): Promise<void>;
  /** Join the election of the node that fires cron schedules. */
  startScheduler(): Promise<void>;
  /**
   * Wait until no job of these queues (default all) is due or running — with `delayed`, until
   * none is waiting at all (retries in backoff included); for tests and scripts.
   */
  settle(opts?: { queues?: string[]; timeoutMs?: number; delayed?: boolean }): Promise<void>;
  /** Every declared schedule with its last and next run. */
  schedules(): Promise<ScheduleInfo[]>;
  /** Stop the scheduler and the worker (running jobs get the grace period). */
  stop(): Promise<void>;
}

export interface JobsOptions {
  /** The jobs slice of the configuration. */
  config: JobsConfig;
  /** Where jobs live. */
  storage: Storage;
  /** Handed to handlers (`ctx.records`). */
  records: RecordsService;
  /** Handed to handlers (`ctx.mail`). */
  mailer: Mailer;
  /** Job, queue and cron figures go here. */
  metrics: Metrics;
  /** The process logger. */
  log: Logger;
}

export function createJobs(o: JobsOptions): Jobs {
  const { config, storage, log, metrics } = o;
  const registry = new JobRegistry(config.concurrency);
  const queue = new JobQueue(storage, registry);
  const node = config.nodeName ?? `${hostname()}:${process.pid}`;
  metrics.watchQueues(() => queue.stats());
  const client = (db: Kysely<any>) => queue.client(db);
  const jobs: Jobs = {
    registry,
    queue,
    node,
    worker: undefined,
    scheduler: undefined,
    client,
    enqueue: (name, payload, opts) => client(storage.db).enqueue(name, payload, opts),
    async startWorker(queues) {
      if (jobs.worker) return;
      const worker = new Worker({
        storage,
        queue,
        registry,
        config,
        node,
        log: log.child({ component: 'jobs' }),
        queues,
        observer: {
          onAttempt: (q, name, outcome, ms) => metrics.observeJob(q, name, outcome, ms / 1000),
          onReaped: (q) => metrics.countLeaseExpired(q),
        },
        context: () => ({
          records: o.records,
          db: storage.db,
          jobs: client(storage.db),
          mail: { send: (mail) => o.mailer.deliver(mail) },
          http: (name) => o.records.http(name),
          notify: o.records.notifyFor(storage.db),
        }),
      });
      jobs.worker = worker;
      await worker.start();
    },
    async startScheduler() {
      if (jobs.scheduler || !config.scheduler) return;
      const scheduler = new Scheduler(storage, queue, registry, {
        node,
        leaseMs: config.schedulerLeaseMs,
        log: log.child({ component: 'scheduler' }),
        observer: {
          onTick: (s, outcome) => metrics.countCronTick(s, outcome),
          onLeader: (leader) => metrics.setSchedulerLeader(leader),
        },
      });
      jobs.scheduler = scheduler;
      await scheduler.start();
    },
    schedules: () => listSchedules(storage, registry),
    async settle(opts = {}) {
      const until = Date.now() + (opts.timeoutMs ?? 30_000);
      for (;;) {
        const stats = (await queue.stats()).filter((s) => !opts.queues || opts.queues.includes(s.queue));
        const waiting = (s: QueueStats) => (opts.delayed ? s.counts.waiting : s.due);
        if (stats.every((s) => waiting(s) === 0 && s.counts.active === 0) && !jobs.worker?.busy) return;
        if (Date.now() > until)
          throw new Error(`jobs did not settle: ${JSON.stringify(stats.filter((s) => waiting(s) || s.counts.active))}`);
        jobs.worker?.wake();
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      await jobs.scheduler?.stop();
      await jobs.worker?.stop();
    },
  };
  return jobs;
}
