/**
 * A worker: fetches due jobs of its queues, runs each handler with a per-attempt timeout and
 * an AbortSignal, renews the leases of running jobs (heartbeat), takes back jobs whose lease
 * expired elsewhere, and reports each outcome with the attempt's fencing token.
 *
 * It wakes on a notification (PostgreSQL NOTIFY, or in-process on SQLite), when a slot frees,
 * when the next delayed job is due, and otherwise every poll interval: a lost notification
 * delays a job by at most one poll, never loses it.
 */
import type { Logger } from 'pino';
import type { JobsConfig } from '../core/config.js';
import { contextFrom, inSpan, SpanKind, tracingEnabled } from '../observability/tracing.js';
import type { Storage } from '../storage/types.js';
import { type JobContext, type JobRegistry, PermanentJobError, RetryLaterError } from './define.js';
import { type Held, JOBS_CHANNEL, type JobQueue, type JobRow } from './queue.js';

/** Outcomes a worker reports, for metrics. */
export interface WorkerObserver {
  /** An attempt ended: completed, failed (will retry), dead, fenced (late result refused), released. */
  onAttempt(queue: string, name: string, outcome: 'completed' | 'failed' | 'dead' | 'fenced', durationMs: number): void;
  /** Leases taken back from a lost worker. */
  onReaped(queue: string, dead: boolean): void;
}

/** Fetch at most this many jobs of one queue in one transaction. */
const CLAIM_BATCH = 100;
/** Completions are written in batches of up to this many, at most this often. */
const FLUSH_MAX = 200;

interface Running {
  row: JobRow;
  controller: AbortController;
  started: number;
  /** The attempt's outcome is known (so a late heartbeat loss changes nothing). */
  settled: boolean;
  /** Given back at shutdown: neither completed nor failed here. */
  released?: boolean;
}

export interface WorkerOptions {
  /** For notifications and the database clock. */
  storage: Storage;
  /** The queue's storage operations. */
  queue: JobQueue;
  /** Declared jobs and queues. */
  registry: JobRegistry;
  /** Leases, polling, concurrency, grace period. */
  config: JobsConfig;
  /** This process's name in job records. */
  node: string;
  /** The worker's logger. */
  log: Logger;
  /** Told each attempt's outcome, for metrics. */
  observer: WorkerObserver;
  /** The parts of a handler's context that come from the app. */
  context: (row: JobRow) => Pick<JobContext, 'records' | 'db' | 'jobs' | 'mail' | 'http' | 'notify'>;
  /** Queues to serve; default every queue of a declared job. */
  queues?: string[];
}

export class Worker {
  private readonly running = new Map<string, Running>();
  private readonly perQueue = new Map<string, number>();
  private readonly queues: string[];
  private readonly names: string[];
  private stopping = false;
  /** After this, a stopping worker gives up writing completions (their leases expire; they rerun). */
  private stopDeadline = Number.POSITIVE_INFINITY;
  private loopDone: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private timers: NodeJS.Timeout[] = [];
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private unlisten: (() => void) | undefined;
  private completions: Array<Held & { result?: unknown; queue: string; name: string; started: number }> = [];
  private flushing: Promise<void> | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly blockedUntil = new Map<string, number>();
  /** Database clock minus local clock, from the last look at it. */
  private skewMs = 0;

  constructor(private readonly o: WorkerOptions) {
    this.queues = o.queues ?? o.registry.queueNames();
    this.names = [...o.registry.jobs.keys()];
  }

  /** Jobs running now or whose outcome is not written yet. */
  get busy(): boolean {
    return this.running.size > 0 || this.completions.length > 0 || this.flushing !== undefined;
  }

  async start(): Promise<void> {
    const { config, storage, log } = this.o;
    this.unlisten = await storage.listen(
      JOBS_CHANNEL,
      (queue) => {
        if (this.queues.includes(queue)) this.wake();
      },
      (connected) => {
        // After a reconnect, notifications sent meanwhile are gone: look now.
        if (connected) this.wake();
        else log.warn('job notifications lost: falling back to polling until the listener reconnects');
      },
    );
    const every = (ms: number, fn: () => Promise<unknown>) => {
      const t = setInterval(() => {
        fn().catch((err) => log.warn({ err: (err as Error).message }, 'job worker housekeeping failed; retrying'));
      }, ms);
      t.unref();
      return t;
    };
    // Leases are renewed at a third of their length: two renewals may fail before one is lost.
    this.heartbeatTimer = every(Math.max(100, Math.floor(config.leaseMs / 3)), () => this.heartbeat());
    this.timers.push(every(Math.max(200, Math.floor(config.leaseMs / 2)), () => this.reap()));
    this.loopDone = this.loop();
    log.info({ node: this.o.node, queues: this.queues, lease_ms: config.leaseMs }, 'job worker started');
  }

  /** Look for work now. */
  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  private free(queue: string): number {
    return this.o.registry.concurrency(queue) - (this.perQueue.get(queue) ?? 0);
  }

  private async loop(): Promise<void> {
    const { queue, config, node, log } = this.o;
    let failures = 0;
    while (!this.stopping) {
      this.woken = false;
      const now = Date.now() + this.skewMs;
      const requests = this.queues
        .filter((q) => (this.blockedUntil.get(q) ?? 0) <= now)
        .map((q) => ({ queue: q, limit: Math.min(CLAIM_BATCH, this.free(q)) }))
        .filter((r) => r.limit > 0);
      let full = false;
      if (requests.length > 0) {
        try {
          const { rows, blockedUntil } = await queue.claim(requests, this.names, node, config.leaseMs);
          failures = 0;
          for (const [q, until] of blockedUntil) this.blockedUntil.set(q, until);
          for (const row of rows) this.run(row);
          // A queue that filled its request may have more waiting.
          full = requests.some((r) => rows.filter((x) => x.queue === r.queue).length >= r.limit);
        } catch (err) {
          failures++;
          log.warn({ err: (err as Error).message, failures }, 'fetching jobs failed; retrying with backoff');
          await this.sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)) * (0.5 + Math.random() / 2));
          continue;
        }
      }
      if (this.stopping) break;
      if (full && !this.woken) {
        // More is waiting: go on once a slot is free (run() wakes us when one frees).
        if (requests.some((r) => this.free(r.queue) > 0)) continue;
      }
      if (this.woken) continue;
      await this.sleep(await this.idleWait());
    }
  }

  /** How long to sleep with nothing to do: until the next delayed job or window, at most one poll. */
  private async idleWait(): Promise<number> {
    const { config, queue } = this.o;
    let wait = config.pollMs;
    const localNow = Date.now();
    try {
      const dbNow = await this.o.storage.dbNow();
      this.skewMs = dbNow - localNow;
      const next = await queue.nextDue(this.queues);
      if (next !== undefined) wait = Math.min(wait, Math.max(0, next - dbNow));
    } catch {
      // The fetch loop reports database trouble.
    }
    for (const until of this.blockedUntil.values()) wait = Math.min(wait, Math.max(0, until - (localNow + this.skewMs)));
    return Math.max(wait, 1);
  }

  private sleep(ms: number): Promise<void> {
    if (this.woken || this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wakeUp = () => {
        this.wakeUp = undefined;
        done();
      };
    });
  }

  private run(row: JobRow): void {
    const def = this.o.registry.job(row.name);
    const controller = new AbortController();
    const r: Running = { row, controller, started: performance.now(), settled: false };
    this.running.set(row.id, r);
    this.perQueue.set(row.queue, (this.perQueue.get(row.queue) ?? 0) + 1);
    const log = this.o.log.child({ job_id: row.id, job: row.name, attempt: row.attempts });
    const timeout = setTimeout(() => controller.abort(new Error(`attempt timed out after ${row.timeout_ms} ms`)), row.timeout_ms);
    const aborted = new Promise<never>((_, reject) => {
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
    });
    aborted.catch(() => {});
    const ctx: JobContext = {
      id: row.id,
      name: row.name,
      queue: row.queue,
      attempt: row.attempts,
      maxAttempts: row.max_attempts,
      signal: controller.signal,
      idempotencyKey: `job:${row.id}`,
      schedule: row.schedule && row.tick !== null ? { name: row.schedule, tick: new Date(row.tick) } : undefined,
      log,
      ...this.o.context(row),
    };
    const call = async () => {
      if (!def) throw new PermanentJobError(`no handler for job ${row.name}`);
      return def.def.handler(JSON.parse(row.payload), ctx);
    };
    // Traced: the run continues the trace of the enqueue (request → job → outbound calls).
    const work = tracingEnabled()
      ? inSpan(
          `job ${row.name}`,
          {
            'messaging.system': 'rampart',
            'messaging.operation.type': 'process',
            'messaging.destination.name': row.queue,
            'rampart.job.id': row.id,
            'rampart.job.attempt': row.attempts,
          },
          call,
          { kind: SpanKind.CONSUMER, parent: contextFrom(row.trace ?? undefined) },
        )
      : call();
    Promise.race([work, aborted])
      .then(
        (result) => {
          r.settled = true;
          this.completions.push({ id: row.id, fence: row.fence, result, queue: row.queue, name: row.name, started: r.started });
          this.scheduleFlush();
        },
        async (err: unknown) => {
          r.settled = true;
          if (!r.released) await this.failed(row, err, r.started, log);
        },
      )
      .finally(() => {
        clearTimeout(timeout);
        this.running.delete(row.id);
        this.perQueue.set(row.queue, (this.perQueue.get(row.queue) ?? 1) - 1);
        this.wake();
      });
    // A handler that ignores its signal keeps running, but its result no longer counts.
    work.catch(() => {});
  }

  private async failed(row: JobRow, err: unknown, started: number, log: Logger): Promise<void> {
    const e = err instanceof Error ? err : new Error(String(err));
    const permanent = e instanceof PermanentJobError;
    const ms = performance.now() - started;
    try {
      const later = e instanceof RetryLaterError ? { delayMs: e.delayMs, free: e.free } : undefined;
      const out = await this.o.queue.fail(
        { id: row.id, fence: row.fence },
        { message: e.message, stack: e.stack },
        this.o.node,
        permanent,
        later,
      );
      if (!out) {
        log.warn({ err: e.message }, 'failure of a job attempt refused: this worker no longer holds its lease');
        this.o.observer.onAttempt(row.queue, row.name, 'fenced', ms);
      } else if (out.dead) {
        log.error({ err: e.message, attempts: row.attempts }, 'job dead-lettered: attempts used up or failure permanent');
        this.o.observer.onAttempt(row.queue, row.name, 'dead', ms);
      } else {
        log.warn({ err: e.message, retry_in_ms: out.delayMs }, 'job attempt failed; retrying after backoff');
        this.o.observer.onAttempt(row.queue, row.name, 'failed', ms);
      }
    } catch (dbErr) {
      // The lease runs out and the job is taken back: nothing is lost.
      log.error({ err: (dbErr as Error).message }, 'could not record a failed attempt; its lease will expire and it will be retried');
    }
  }

  private scheduleFlush(): void {
    if (this.completions.length >= FLUSH_MAX) {
      void this.flush();
      return;
    }
    if (this.flushTimer || this.flushing) return;
    // One transaction for the completions of this moment: the next turn of the event loop.
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush();
    }, 0);
  }

  /** Write pending completions; a batch that cannot be written is retried until the leases run out. */
  private async flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = (async () => {
      while (this.completions.length > 0) {
        const batch = this.completions.splice(0, FLUSH_MAX);
        try {
          const accepted = await this.o.queue.complete(batch);
          for (const c of batch) {
            const ms = performance.now() - c.started;
            if (accepted.has(c.id)) this.o.observer.onAttempt(c.queue, c.name, 'completed', ms);
            else {
              this.o.log.warn(
                { job_id: c.id, job: c.name },
                'completion refused: this worker lost the lease of the job (it ran elsewhere too)',
              );
              this.o.observer.onAttempt(c.queue, c.name, 'fenced', ms);
            }
          }
        } catch (err) {
          this.o.log.warn({ err: (err as Error).message, jobs: batch.length }, 'recording completed jobs failed; retrying');
          this.completions.unshift(...batch);
          await new Promise((r) => setTimeout(r, 200));
          if (this.stopping && this.completions.length > 0 && this.stopDeadline < Date.now()) break;
        }
      }
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async heartbeat(): Promise<void> {
    const held = [...this.running.values()].filter((r) => !r.settled).map((r) => ({ id: r.row.id, fence: r.row.fence }));
    if (held.length === 0) return;
    const still = await this.o.queue.heartbeat(held, this.o.config.leaseMs);
    for (const h of held) {
      const r = this.running.get(h.id);
      if (!still.has(h.id) && r && !r.settled) {
        this.o.log.warn({ job_id: h.id }, 'lost the lease of a running job (expired or cancelled): aborting it here');
        r.controller.abort(new Error('the lease of this attempt was lost or the job was cancelled'));
      }
    }
  }

  private async reap(): Promise<void> {
    const taken = await this.o.queue.reap();
    for (const t of taken) {
      this.o.log.warn({ job_id: t.row.id, job: t.row.name, worker: t.row.worker, dead: t.dead }, 'took back a job whose lease expired');
      this.o.observer.onReaped(t.row.queue, t.dead);
    }
    if (taken.length > 0) this.wake();
  }

  /**
   * Stop fetching; let running jobs finish within the grace period; abort and release the rest
   * (they run again elsewhere at once, without counting an attempt); write what completed.
   */
  async stop(graceMs = this.o.config.shutdownGraceMs): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.stopDeadline = Date.now() + graceMs + 5000;
    this.unlisten?.();
    for (const t of this.timers) clearInterval(t);
    this.wakeUp?.();
    await this.loopDone;
    const until = Date.now() + graceMs;
    while (this.running.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    clearInterval(this.heartbeatTimer);
    const left = [...this.running.values()].filter((r) => !r.settled);
    for (const r of left) {
      r.released = true;
      r.controller.abort(new Error('the worker is shutting down'));
    }
    await this.flush();
    if (left.length > 0) {
      const n = await this.o.queue.release(left.map((r) => ({ id: r.row.id, fence: r.row.fence }))).catch((err) => {
        this.o.log.warn({ err: (err as Error).message }, 'could not release running jobs; their leases will expire');
        return 0;
      });
      this.o.log.info({ released: n }, 'released unfinished jobs to other workers');
    }
    clearTimeout(this.flushTimer);
    await this.flush();
    this.o.log.info('job worker stopped');
  }
}
