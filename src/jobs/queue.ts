/**
 * The job queue's storage operations. Every state change is one conditional statement judged
 * by the database's clock, so any number of workers on any number of nodes can share a queue:
 *  - a fetch moves due `waiting` jobs to `active`, raising each one's fencing token (`fence`)
 *    and leasing it to the worker (`FOR UPDATE SKIP LOCKED` where the backend has row locks;
 *    SQLite's write transaction already excludes every other writer);
 *  - a worker finishes an attempt only while it still holds that fence in `active`: after its
 *    lease expired and the job was taken back (or it was cancelled), its late result is refused;
 *  - expired leases are taken back by whichever worker looks first (the reaper).
 */
import { type Kysely, type RawBuilder, sql } from 'kysely';
import { RampartError } from '../core/errors.js';
import { uuidv7 } from '../core/ids.js';
import { currentTraceparent, inSpan, SpanKind, tracingEnabled } from '../observability/tracing.js';
import type { Storage } from '../storage/types.js';
import { backoffDelay, type EnqueuedJob, type EnqueueOptions, type JobRegistry, type JobsClient } from './define.js';

const T = '_rampart_jobs';
/** Channel workers listen on; the payload is the queue name. */
export const JOBS_CHANNEL = 'rampart_jobs';
/** Largest payload, as JSON. */
const MAX_PAYLOAD = 256 * 1024;
/** Largest stored result, as JSON (a larger one is dropped, with a note). */
const MAX_RESULT = 16 * 1024;
/** Error entries kept per job (the latest). */
const MAX_ERRORS = 25;

export type JobState = 'waiting' | 'active' | 'completed' | 'dead' | 'cancelled';
export const JOB_STATES: JobState[] = ['waiting', 'active', 'completed', 'dead', 'cancelled'];

/** A job row as stored (times are epoch ms by the database clock). */
export interface JobRow {
  /** UUIDv7. */
  id: string;
  /** Queue it runs in. */
  queue: string;
  /** Name of its declared job. */
  name: string;
  /** The payload as JSON (`null` once a sensitive job finished). */
  payload: string;
  /** waiting, active, completed, dead or cancelled. */
  state: JobState;
  /** Higher runs first. */
  priority: number;
  /** When it is due (next attempt). */
  run_at: number;
  /** Attempts started. */
  attempts: number;
  /** Attempts it has in all. */
  max_attempts: number;
  /** Time one attempt may take. */
  timeout_ms: number;
  /** Backoff base delay. */
  backoff_base_ms: number;
  /** Backoff cap. */
  backoff_cap_ms: number;
  /** Unique while waiting or active. */
  unique_key: string | null;
  /** Fencing token of the current attempt (raised by every fetch). */
  fence: number;
  /** End of the current lease while active. */
  lease_until: number | null;
  /** Node that ran the latest attempt. */
  worker: string | null;
  /** Error history as JSON (JobErrorEntry[]). */
  errors: string;
  /** The handler's result as JSON. */
  result: string | null;
  /** 1 when the payload is secret. */
  sensitive: number;
  /** Schedule that enqueued it, if any. */
  schedule: string | null;
  /** The tick it was enqueued for. */
  tick: number | null;
  /** The trace context of the enqueue (W3C traceparent), when tracing. */
  trace: string | null;
  /** When it was enqueued. */
  created_at: number;
  /** When the latest attempt started. */
  started_at: number | null;
  /** When it completed, died or was cancelled. */
  finished_at: number | null;
}

/** One failed attempt, kept with the job. */
export interface JobErrorEntry {
  /** The attempt's number. */
  attempt: number;
  /** The error's message. */
  message: string;
  /** The error's stack (trimmed). */
  stack?: string;
  /** ISO time of the failure. */
  at: string;
  /** Node that ran the attempt. */
  worker: string | null;
}

/** An attempt a worker holds: the job and the fence it was fetched with. */
export interface Held {
  /** The job. */
  id: string;
  /** The fence it was fetched with. */
  fence: number;
}

/** What a fetch asks for. */
export interface ClaimRequest {
  /** The queue. */
  queue: string;
  /** At most this many jobs. */
  limit: number;
}

/** Per-queue figures (admin API, metrics). */
export interface QueueStats {
  /** The queue. */
  queue: string;
  /** Paused for every worker. */
  paused: boolean;
  /** Jobs by state. */
  counts: Record<JobState, number>;
  /** Due jobs waiting to start. */
  due: number;
  /** Age of the oldest due waiting job, in ms (0 when none). */
  oldestDueMs: number;
}

/** One job to enqueue. */
export interface EnqueueItem {
  /** The declared job. */
  name: string;
  /** Its payload (JSON-serializable). */
  payload?: unknown;
  /** Per-enqueue options. */
  opts?: EnqueueOptions;
  /** Set by the scheduler. */
  origin?: { schedule: string; tick: number; id: string };
}

const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** Rows from either backend with integer columns as numbers. */
function decode(r: Record<string, unknown>): JobRow {
  return {
    ...(r as unknown as JobRow),
    priority: num(r.priority),
    run_at: num(r.run_at),
    attempts: num(r.attempts),
    max_attempts: num(r.max_attempts),
    timeout_ms: num(r.timeout_ms),
    backoff_base_ms: num(r.backoff_base_ms),
    backoff_cap_ms: num(r.backoff_cap_ms),
    fence: num(r.fence),
    lease_until: numOrNull(r.lease_until),
    sensitive: num(r.sensitive),
    tick: numOrNull(r.tick),
    created_at: num(r.created_at),
    started_at: numOrNull(r.started_at),
    finished_at: numOrNull(r.finished_at),
  };
}

export class JobQueue {
  private readonly now: RawBuilder<number>;

  constructor(
    private readonly storage: Storage,
    private readonly registry: JobRegistry,
  ) {
    this.now = storage.nowMs;
  }

  /** A client that enqueues on `db`: a transaction (the job commits with it) or the database. */
  client(db: Kysely<any>): JobsClient {
    return { enqueue: async (name, payload, opts) => (await this.enqueueMany(db, [{ name, payload, opts }]))[0] as EnqueuedJob };
  }

  /**
   * Insert jobs. Inside a transaction they exist exactly when it commits (the outbox); on the
   * plain database they get their own transaction. A job whose unique key is already held by a
   * waiting or active job is not added: that job is returned instead.
   */
  async enqueueMany(db: Kysely<any>, items: EnqueueItem[]): Promise<EnqueuedJob[]> {
    if (items.length === 0) return [];
    if (db === this.storage.db) return this.storage.transaction((trx) => this.enqueueMany(trx, items));
    if (!tracingEnabled()) return this.insertMany(db, items);
    // A span for the enqueue; each job carries its context, so the job's run continues the trace.
    const names = [...new Set(items.map((it) => it.name))].join(',');
    return inSpan(
      `enqueue ${names}`,
      { 'messaging.system': 'rampart', 'messaging.operation.type': 'send', 'messaging.batch.message_count': items.length },
      () => this.insertMany(db, items),
      {
        kind: SpanKind.PRODUCER,
      },
    );
  }

  private async insertMany(db: Kysely<any>, items: EnqueueItem[]): Promise<EnqueuedJob[]> {
    const rows = items.map((it) => this.row(it));
    const inserted = new Set<string>();
    const CHUNK = 200;
    for (let i = 0; i < rows.length; i += CHUNK) {
      const out = await db
        .insertInto(T)
        .values(rows.slice(i, i + CHUNK))
        .onConflict((oc) =>
          oc.column('unique_key').where(sql<boolean>`unique_key is not null and state in ('waiting', 'active')`).doNothing(),
        )
        .returning('id')
        .execute();
      for (const r of out) inserted.add(String(r.id));
    }
    const result: EnqueuedJob[] = [];
    for (const r of rows) {
      if (inserted.has(r.id)) {
        result.push({ id: r.id, existing: false });
        continue;
      }
      const other = await db
        .selectFrom(T)
        .select('id')
        .where('unique_key', '=', r.unique_key)
        .where('state', 'in', ['waiting', 'active'])
        .executeTakeFirst();
      // Only a unique key can make an insert a no-op; if that job finished in between, add ours.
      if (other) result.push({ id: String(other.id), existing: true });
      else result.push((await this.insertMany(db, [items[rows.indexOf(r)] as EnqueueItem]))[0] as EnqueuedJob);
    }
    for (const queue of new Set(rows.map((r) => r.queue))) await this.storage.notify(db, JOBS_CHANNEL, queue);
    return result;
  }

  private row(it: EnqueueItem) {
    const def = this.registry.job(it.name);
    if (!def) throw new Error(`no job named ${JSON.stringify(it.name)} is declared`);
    const payload = def.def.validate ? def.def.validate(it.payload) : it.payload;
    const text = JSON.stringify(payload ?? null);
    if (text === undefined) throw new Error(`job ${it.name}: the payload must be JSON-serializable`);
    if (text.length > MAX_PAYLOAD) throw new Error(`job ${it.name}: payload is ${text.length} bytes as JSON; the limit is ${MAX_PAYLOAD}`);
    const o = it.opts ?? {};
    if (o.delayMs !== undefined && !(Number.isFinite(o.delayMs) && o.delayMs >= 0))
      throw new Error('delayMs must be a non-negative number');
    const runAt =
      o.runAt !== undefined
        ? sql<number>`${typeof o.runAt === 'number' ? Math.floor(o.runAt) : o.runAt.getTime()}`
        : o.delayMs
          ? sql<number>`${this.now} + ${Math.floor(o.delayMs)}`
          : this.now;
    return {
      id: it.origin?.id ?? uuidv7(),
      queue: def.queue,
      name: def.name,
      payload: text,
      state: 'waiting',
      priority: o.priority ?? def.priority,
      run_at: runAt,
      attempts: 0,
      max_attempts: def.maxAttempts,
      timeout_ms: def.timeoutMs,
      backoff_base_ms: def.baseMs,
      backoff_cap_ms: def.capMs,
      unique_key: o.uniqueKey ?? null,
      fence: 0,
      errors: '[]',
      sensitive: def.sensitive ? 1 : 0,
      schedule: it.origin?.schedule ?? null,
      tick: it.origin?.tick ?? null,
      trace: currentTraceparent() ?? null,
      created_at: this.now,
    };
  }

  /**
   * Fetch up to `limit` due jobs of each requested queue that this worker can run (`names`),
   * in priority then due-time order, leased for `leaseMs`. Paused queues give nothing; a
   * rate-limited queue gives at most what its window has left (`blockedUntil` says when more).
   */
  async claim(
    requests: ClaimRequest[],
    names: string[],
    worker: string,
    leaseMs: number,
  ): Promise<{ rows: JobRow[]; blockedUntil: Map<string, number> }> {
    const blockedUntil = new Map<string, number>();
    if (
      this.writeLockIsGlobal &&
      !(await this.anyDue(
        requests.map((r) => r.queue),
        names,
      ))
    )
      return { rows: [], blockedUntil };
    const rows = await this.storage.transaction(async (trx) => {
      const out: JobRow[] = [];
      for (const req of requests) {
        if (req.limit <= 0) continue;
        let limit = req.limit;
        const rate = this.registry.queues.get(req.queue)?.rateLimit;
        if (rate) {
          // Starts of a rate-limited queue are counted under one lock, across every worker.
          await this.storage.lockNames(trx, [`rampart.queue.${req.queue}`]);
          await trx
            .deleteFrom('_rampart_queue_starts')
            .where('queue', '=', req.queue)
            .where('at', '<=', sql<number>`${this.now} - ${rate.perMs}`)
            .execute();
          const w = await trx
            .selectFrom('_rampart_queue_starts')
            .select((eb) => [eb.fn.countAll().as('n'), eb.fn.min('at').as('first')])
            .where('queue', '=', req.queue)
            .executeTakeFirstOrThrow();
          limit = Math.min(limit, rate.max - Number(w.n));
          if (limit <= 0) {
            blockedUntil.set(req.queue, Number(w.first) + rate.perMs);
            continue;
          }
        }
        let pick = trx
          .selectFrom(T)
          .select('id')
          .where('state', '=', 'waiting')
          .where('queue', '=', req.queue)
          .where('run_at', '<=', this.now)
          .where('name', 'in', names)
          // In the same statement as the fetch: a pause that committed before it is always seen.
          .where('queue', 'not in', trx.selectFrom('_rampart_queues').select('name').where('paused', '=', 1))
          .orderBy('priority', 'desc')
          .orderBy('run_at')
          .orderBy('id')
          .limit(limit);
        if (this.storage.capabilities.skipLocked) pick = pick.forUpdate().skipLocked();
        const got = await trx
          .updateTable(T)
          .set((eb) => ({
            state: 'active',
            attempts: eb('attempts', '+', 1),
            fence: eb('fence', '+', 1),
            lease_until: sql`${this.now} + ${leaseMs}`,
            worker,
            started_at: this.now,
          }))
          .where('id', 'in', pick)
          .returningAll()
          .execute();
        if (rate && got.length > 0) {
          await trx
            .insertInto('_rampart_queue_starts')
            // The same instant as the job's started_at, so the window and the record agree.
            .values(got.map((r) => ({ queue: req.queue, at: Number(r.started_at) })))
            .execute();
        }
        for (const r of got) out.push(decode(r));
      }
      return out;
    });
    return { rows, blockedUntil };
  }

  /**
   * On SQLite a write transaction locks the whole database (BEGIN IMMEDIATE): workers that poll
   * or reap with nothing to do look first on the read connection, so an idle worker takes no
   * write lock (and a worker frozen between two polls cannot be holding one).
   */
  private get writeLockIsGlobal(): boolean {
    return !this.storage.capabilities.skipLocked;
  }

  /** Whether any of these queues has a due job this worker can run (a lock-free look before claiming). */
  private async anyDue(queues: string[], names: string[]): Promise<boolean> {
    if (queues.length === 0 || names.length === 0) return false;
    const r = await this.storage.reader
      .selectFrom(T)
      .select('id')
      .where('state', '=', 'waiting')
      .where('queue', 'in', queues)
      .where('run_at', '<=', this.now)
      .where('name', 'in', names)
      .limit(1)
      .executeTakeFirst();
    return r !== undefined;
  }

  private heldIn(held: Held[]) {
    return sql<boolean>`(id, fence) in (values ${sql.join(held.map((h) => sql`(${h.id}, cast(${h.fence} as bigint))`))})`;
  }

  /** Extend the leases this worker still holds; returns the ids it still holds (the rest were lost or cancelled). */
  async heartbeat(held: Held[], leaseMs: number): Promise<Set<string>> {
    if (held.length === 0) return new Set();
    const rows = await this.storage.transaction((trx) =>
      trx
        .updateTable(T)
        .set({ lease_until: sql`${this.now} + ${leaseMs}` })
        .where('state', '=', 'active')
        .where(this.heldIn(held))
        .returning('id')
        .execute(),
    );
    return new Set(rows.map((r) => String(r.id)));
  }

  /**
   * Complete attempts, in one transaction. Only attempts whose fence is still current are
   * accepted (returned); a late completion by a worker that lost its lease changes nothing.
   */
  async complete(items: Array<Held & { result?: unknown }>): Promise<Set<string>> {
    if (items.length === 0) return new Set();
    return this.storage.transaction(async (trx) => {
      const rows = await trx
        .updateTable(T)
        .set({
          state: 'completed',
          finished_at: this.now,
          lease_until: null,
          payload: sql`case when sensitive = 1 then 'null' else payload end`,
        })
        .where('state', '=', 'active')
        .where(this.heldIn(items))
        .returning('id')
        .execute();
      const accepted = new Set(rows.map((r) => String(r.id)));
      for (const it of items) {
        if (it.result === undefined || !accepted.has(it.id)) continue;
        let text = JSON.stringify(it.result) ?? null;
        if (text !== null && text.length > MAX_RESULT) text = JSON.stringify({ note: `result of ${text.length} bytes not kept` });
        await trx.updateTable(T).set({ result: text }).where('id', '=', it.id).execute();
      }
      return accepted;
    });
  }

  /**
   * Fail an attempt: the job waits for its next attempt after a backoff, or is dead-lettered
   * when its attempts are used up (or `permanent`). Refused (undefined) when the fence is stale.
   */
  async fail(
    held: Held,
    err: { message: string; stack?: string },
    worker: string,
    permanent = false,
    /** Run again no sooner than `delayMs`; `free`: without counting this attempt. */
    later?: { delayMs: number; free: boolean },
  ): Promise<{ dead: boolean; delayMs: number; row: JobRow } | undefined> {
    return this.storage.transaction(async (trx) => {
      const found = await trx
        .selectFrom(T)
        .selectAll()
        .where('id', '=', held.id)
        .where('fence', '=', held.fence)
        .where('state', '=', 'active')
        .executeTakeFirst();
      if (!found) return undefined;
      const row = decode(found);
      return { ...(await this.recordFailure(trx, row, err, worker, permanent, later)), row };
    });
  }

  /** Record a failed attempt of `row` (at its current fence): wait out the backoff, or dead-letter. */
  private async recordFailure(
    trx: Kysely<any>,
    row: JobRow,
    err: { message: string; stack?: string },
    worker: string | null,
    permanent: boolean,
    later?: { delayMs: number; free: boolean },
  ): Promise<{ dead: boolean; delayMs: number }> {
    const dead = !later?.free && (permanent || row.attempts >= row.max_attempts);
    const backoff = later?.free ? 0 : backoffDelay(row.attempts, row.backoff_base_ms, row.backoff_cap_ms);
    const delayMs = dead ? 0 : Math.max(backoff, Math.round(later?.delayMs ?? 0));
    await trx
      .updateTable(T)
      .set({
        ...(later?.free ? { attempts: Math.max(0, row.attempts - 1) } : {}),
        state: dead ? 'dead' : 'waiting',
        errors: appendError(row, err, worker),
        lease_until: null,
        run_at: dead ? row.run_at : sql`${this.now} + ${delayMs}`,
        finished_at: dead ? this.now : null,
      })
      .where('id', '=', row.id)
      .where('fence', '=', row.fence)
      .execute();
    return { dead, delayMs };
  }

  /** Give attempts back without counting them (a stopping worker): they run again at once elsewhere. */
  async release(held: Held[]): Promise<number> {
    if (held.length === 0) return 0;
    return this.storage.transaction(async (trx) => {
      const rows = await trx
        .updateTable(T)
        .set((eb) => ({ state: 'waiting', attempts: eb('attempts', '-', 1), lease_until: null, run_at: this.now }))
        .where('state', '=', 'active')
        .where(this.heldIn(held))
        .returning('queue')
        .execute();
      for (const q of new Set(rows.map((r) => String(r.queue)))) await this.storage.notify(trx, JOBS_CHANNEL, q);
      return rows.length;
    });
  }

  /**
   * Take back jobs whose lease expired (their worker crashed, froze or was cut off): each lost
   * attempt is recorded as a failure, then the job waits out its backoff or is dead-lettered.
   */
  async reap(limit = 100): Promise<Array<{ row: JobRow; dead: boolean }>> {
    if (this.writeLockIsGlobal) {
      const any = await this.storage.reader
        .selectFrom(T)
        .select('id')
        .where('state', '=', 'active')
        .where('lease_until', '<', this.now)
        .limit(1)
        .executeTakeFirst();
      if (!any) return [];
    }
    return this.storage.transaction(async (trx) => {
      let q = trx.selectFrom(T).selectAll().where('state', '=', 'active').where('lease_until', '<', this.now).limit(limit);
      if (this.storage.capabilities.skipLocked) q = q.forUpdate().skipLocked();
      const expired = (await q.execute()).map(decode);
      const out: Array<{ row: JobRow; dead: boolean }> = [];
      for (const row of expired) {
        const error = { message: `lease expired: worker ${row.worker} stopped renewing it (crashed, paused or cut off)` };
        const { dead } = await this.recordFailure(trx, row, error, row.worker, false);
        out.push({ row, dead });
      }
      for (const queue of new Set(out.filter((o) => !o.dead).map((o) => o.row.queue))) await this.storage.notify(trx, JOBS_CHANNEL, queue);
      return out;
    });
  }

  /**
   * When the next delayed job of these queues becomes due (epoch ms, database clock), if any.
   * Jobs already due are not counted: a worker that did not fetch them (a paused queue, a job
   * it has no handler for) must not wake up for them again and again.
   */
  async nextDue(queues: string[]): Promise<number | undefined> {
    if (queues.length === 0) return undefined;
    const r = await this.storage.db
      .selectFrom(T)
      .select((eb) => eb.fn.min('run_at').as('next'))
      .where('state', '=', 'waiting')
      .where('queue', 'in', queues)
      .where('run_at', '>', this.now)
      .executeTakeFirst();
    return r?.next === null || r?.next === undefined ? undefined : Number(r.next);
  }

  // ---- operators ----

  /** Jobs by queue and state, newest first, keyset-paged by id. */
  async list(o: { queue?: string; state?: JobState; limit: number; before?: string }): Promise<JobRow[]> {
    let q = this.storage.db.selectFrom(T).selectAll().orderBy('id', 'desc').limit(o.limit);
    if (o.queue) q = q.where('queue', '=', o.queue);
    if (o.state) q = q.where('state', '=', o.state);
    if (o.before) q = q.where('id', '<', o.before);
    return (await q.execute()).map(decode);
  }

  async get(id: string): Promise<JobRow> {
    const r = await this.storage.db.selectFrom(T).selectAll().where('id', '=', id).executeTakeFirst();
    if (!r) throw new RampartError('E_JOB_NOT_FOUND', `no job ${id}`);
    return decode(r);
  }

  /** Run a job again now: a dead or cancelled job gets its attempts back (redrive); a waiting one runs at once. */
  async retry(id: string): Promise<JobRow> {
    return this.changeState(id, ['dead', 'cancelled', 'waiting'], {
      state: 'waiting',
      attempts: 0,
      run_at: this.now,
      finished_at: null,
      lease_until: null,
    });
  }

  /** Cancel a waiting or running job; a running attempt is told through its signal at the next heartbeat. */
  async cancel(id: string): Promise<JobRow> {
    return this.changeState(id, ['waiting', 'active'], { state: 'cancelled', finished_at: this.now, lease_until: null });
  }

  /** Delete a finished job (dead, completed or cancelled). */
  async discard(id: string): Promise<void> {
    const r = await this.storage.transaction((trx) =>
      trx.deleteFrom(T).where('id', '=', id).where('state', 'in', ['dead', 'completed', 'cancelled']).executeTakeFirst(),
    );
    if (Number(r.numDeletedRows) === 1) return;
    const row = await this.get(id);
    throw new RampartError('E_JOB_STATE', `job ${id} is ${row.state}; cancel it before discarding it`);
  }

  /** Set `changes` on a job that is in one of the `from` states (else 409, naming its state). */
  private async changeState(id: string, from: JobState[], changes: Record<string, unknown>): Promise<JobRow> {
    try {
      const changed = await this.storage.transaction(async (trx) => {
        const r = await trx
          .updateTable(T)
          .set(changes)
          .where('id', '=', id)
          .where('state', 'in', from)
          .returning('queue')
          .executeTakeFirst();
        if (r) await this.storage.notify(trx, JOBS_CHANNEL, String(r.queue));
        return !!r;
      });
      if (!changed) {
        const row = await this.get(id);
        throw new RampartError('E_JOB_STATE', `job ${id} is ${row.state}; this needs one of: ${from.join(', ')}`);
      }
    } catch (err) {
      if (this.storage.classifyError(err).kind === 'unique') {
        throw new RampartError('E_JOB_STATE', `another job with the same unique key is waiting or running`);
      }
      throw err;
    }
    return this.get(id);
  }

  /** Redrive every dead job of a queue (each gets its attempts back); returns how many. */
  async redrive(queue: string): Promise<number> {
    const dead = await this.storage.db.selectFrom(T).select('id').where('queue', '=', queue).where('state', '=', 'dead').execute();
    let n = 0;
    for (const r of dead) {
      try {
        await this.retry(String(r.id));
        n++;
      } catch (err) {
        // Another job holds its unique key, or it changed in between: leave it dead.
        if (!(err instanceof RampartError)) throw err;
      }
    }
    return n;
  }

  /** Pause or resume a queue for every worker. */
  async setPaused(queue: string, paused: boolean): Promise<void> {
    await this.storage.transaction(async (trx) => {
      await trx
        .insertInto('_rampart_queues')
        .values({ name: queue, paused: paused ? 1 : 0, updated_at: this.now })
        .onConflict((oc) => oc.column('name').doUpdateSet({ paused: paused ? 1 : 0, updated_at: this.now }))
        .execute();
      if (!paused) await this.storage.notify(trx, JOBS_CHANNEL, queue);
    });
  }

  /**
   * Age of the oldest due job of each queue that has one, in ms: the lag. Reads only due
   * waiting jobs (a partial index), not the whole history, so readiness probes stay cheap.
   */
  async lag(): Promise<Array<{ queue: string; due: number; oldestDueMs: number }>> {
    const rows = await this.storage.db
      .selectFrom(T)
      .select(['queue', (eb) => eb.fn.countAll().as('n'), (eb) => eb.fn.min('run_at').as('oldest'), sql<number>`${this.now}`.as('now')])
      .where('state', '=', 'waiting')
      .where('run_at', '<=', this.now)
      .groupBy('queue')
      .execute();
    return rows.map((r) => ({ queue: String(r.queue), due: Number(r.n), oldestDueMs: Math.max(0, Number(r.now) - Number(r.oldest)) }));
  }

  /** Whether a queue is declared or holds jobs (operators' actions refuse unknown queues). */
  async knows(queue: string): Promise<boolean> {
    if (this.registry.queueNames().includes(queue)) return true;
    return (await this.storage.db.selectFrom(T).select('id').where('queue', '=', queue).limit(1).executeTakeFirst()) !== undefined;
  }

  /** Figures per queue: every declared queue, and any other that has jobs. */
  async stats(): Promise<QueueStats[]> {
    const db = this.storage.db;
    const counts = await db
      .selectFrom(T)
      .select(['queue', 'state', (eb) => eb.fn.countAll().as('n')])
      .groupBy(['queue', 'state'])
      .execute();
    const due = await this.lag();
    const paused = await db.selectFrom('_rampart_queues').select(['name', 'paused']).execute();
    const names = new Set([...this.registry.queueNames(), ...counts.map((c) => String(c.queue)), ...paused.map((p) => String(p.name))]);
    return [...names].sort().map((queue) => {
      const c = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
      for (const r of counts) if (r.queue === queue) c[r.state as JobState] = Number(r.n);
      const d = due.find((r) => r.queue === queue);
      return {
        queue,
        paused: paused.some((p) => p.name === queue && Number(p.paused) === 1),
        counts: c,
        due: d?.due ?? 0,
        oldestDueMs: d?.oldestDueMs ?? 0,
      };
    });
  }

  /** Delete finished jobs past their retention, in batches; returns how many. */
  async cleanup(keepCompletedMs: number, keepDeadMs: number): Promise<number> {
    let total = 0;
    for (const [states, keep] of [
      [['completed', 'cancelled'], keepCompletedMs],
      [['dead'], keepDeadMs],
    ] as const) {
      for (;;) {
        const n = await this.storage.transaction(async (trx) => {
          const ids = trx
            .selectFrom(T)
            .select('id')
            .where('state', 'in', [...states])
            .where('finished_at', '<', sql<number>`${this.now} - ${keep}`)
            .limit(1000);
          const r = await trx.deleteFrom(T).where('id', 'in', ids).executeTakeFirst();
          return Number(r.numDeletedRows);
        });
        total += n;
        if (n < 1000) break;
      }
    }
    await this.storage.transaction((trx) =>
      trx
        .deleteFrom('_rampart_cron_ticks')
        .where('fired_at', '<', sql<number>`${this.now} - ${Math.max(keepCompletedMs, keepDeadMs)}`)
        .execute(),
    );
    return total;
  }
}

function appendError(row: JobRow, err: { message: string; stack?: string }, worker: string | null): string {
  let list: JobErrorEntry[] = [];
  try {
    list = JSON.parse(row.errors) as JobErrorEntry[];
  } catch {
    list = [];
  }
  list.push({
    attempt: row.attempts,
    message: String(err.message).slice(0, 2000),
    ...(err.stack ? { stack: err.stack.slice(0, 4000) } : {}),
    at: new Date().toISOString(),
    worker,
  });
  return JSON.stringify(list.slice(-MAX_ERRORS));
}
