/**
 * Cron across a cluster. Every node may run a Scheduler; a lease row elects the one that fires
 * ticks (renewed at a quarter of its length, taken over by another node once it expires).
 *
 * A tick is fired by inserting the row (schedule, tick) together with its job in one
 * transaction: the primary key makes a tick fire once even if two nodes believe they lead (a
 * paused ex-leader waking up). Due ticks are judged by the database's clock, never the node's,
 * so a node with a skewed clock cannot fire early. The firing transaction also checks that the
 * lease is still this node's, with the fence it was granted.
 */
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import type { Logger } from 'pino';
import { uuidv7 } from '../core/ids.js';
import type { Storage } from '../storage/types.js';
import type { JobRegistry, ResolvedSchedule } from './define.js';
import type { JobQueue } from './queue.js';

const LEASE = 'rampart.scheduler';
/** Most ticks fired for one schedule in one pass (the rest follow in the next). */
const MAX_TICKS_PER_PASS = 100;

export interface SchedulerObserver {
  /** A tick was fired, skipped (missed under `skip`) or found already fired. */
  onTick(schedule: string, outcome: 'fired' | 'skipped' | 'duplicate'): void;
  /** This node became or stopped being the leader. */
  onLeader(leader: boolean): void;
}

/** A schedule as `GET /schedules` shows it. */
export interface ScheduleInfo {
  name: string;
  cron: string;
  tz: string;
  job: string;
  missed: string;
  last_tick: string | null;
  next_tick: string | null;
  last_fired_at: string | null;
  last_job_id: string | null;
  /** State of the last tick's job (waiting, active, completed, dead, cancelled; `unknown` once cleaned up). */
  last_status: string | null;
  last_node: string | null;
  skipped: number;
}

export class Scheduler {
  private stopped = false;
  private fence: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Database clock minus local clock. */
  private skewMs = 0;
  /** Next tick of each schedule as of this node's last pass; valid while it keeps the lease (it alone fires). */
  private readonly nextTick = new Map<string, number>();

  constructor(
    private readonly storage: Storage,
    private readonly queue: JobQueue,
    private readonly registry: JobRegistry,
    private readonly o: { node: string; leaseMs: number; log: Logger; observer: SchedulerObserver },
  ) {}

  /** Whether this node fires ticks now. */
  get leader(): boolean {
    return this.fence !== undefined;
  }

  /** Register the schedules (one row each, however many nodes start at once) and start. */
  async start(): Promise<void> {
    await this.register();
    this.loop();
  }

  private async register(): Promise<void> {
    const now = this.storage.nowMs;
    await this.storage.transaction(async (trx) => {
      for (const s of this.registry.schedules.values()) {
        // A new schedule starts from now: it never fires ticks from before it existed.
        await trx
          .insertInto('_rampart_schedules')
          .values({ name: s.name, cron: s.cron, tz: s.tz, job: s.job, last_tick: now, skipped: 0, updated_at: now })
          .onConflict((oc) => oc.column('name').doNothing())
          .execute();
        await trx
          .updateTable('_rampart_schedules')
          .set({ cron: s.cron, tz: s.tz, job: s.job, updated_at: now })
          .where('name', '=', s.name)
          .where((eb) => eb.or([eb('cron', '!=', s.cron), eb('tz', '!=', s.tz), eb('job', '!=', s.job)]))
          .execute();
      }
    });
  }

  private loop(): void {
    if (this.stopped) return;
    this.running = (async () => {
      let wait = Math.max(50, Math.floor(this.o.leaseMs / 4));
      try {
        await this.acquire();
        if (this.fence !== undefined) {
          const next = await this.fireDue();
          if (next !== undefined) wait = Math.min(wait, Math.max(5, next - (Date.now() + this.skewMs) + 5));
        }
      } catch (err) {
        this.o.log.warn({ err: (err as Error).message }, 'scheduler pass failed; retrying');
        this.setLeader(undefined);
      }
      if (!this.stopped) {
        this.timer = setTimeout(() => this.loop(), wait);
        this.timer.unref();
      }
    })();
  }

  private setLeader(fence: number | undefined): void {
    const was = this.fence !== undefined;
    this.fence = fence;
    const is = fence !== undefined;
    if (was !== is) this.nextTick.clear();
    if (was !== is) {
      this.o.log.info({ node: this.o.node, fence }, is ? 'this node now fires cron schedules' : 'this node no longer fires cron schedules');
      this.o.observer.onLeader(is);
    }
  }

  /** Take or renew the lease; an expired lease changes holder with a raised fence. */
  private async acquire(): Promise<void> {
    const now = this.storage.nowMs;
    const me = this.o.node;
    const local = Date.now();
    const row = await this.storage.transaction(async (trx) => {
      await trx
        .insertInto('_rampart_leases')
        .values({ name: LEASE, holder: me, fence: 1, expires_at: sql`${now} + ${this.o.leaseMs}` })
        .onConflict((oc) => oc.column('name').doNothing())
        .execute();
      return trx
        .updateTable('_rampart_leases')
        .set(() => ({
          fence: sql`case when holder = ${me} then fence else fence + 1 end`,
          holder: me,
          expires_at: sql`${now} + ${this.o.leaseMs}`,
        }))
        .where('name', '=', LEASE)
        .where((eb) => eb.or([eb('holder', '=', me), eb('expires_at', '<=', now)]))
        .returning(['fence', sql<number>`${now}`.as('now')])
        .executeTakeFirst();
    });
    if (row) {
      this.skewMs = Number(row.now) - (local + Date.now()) / 2;
      this.setLeader(Number(row.fence));
    } else {
      this.setLeader(undefined);
    }
  }

  /** Fire every due tick of every schedule; returns when the next tick is due (database clock). */
  private async fireDue(): Promise<number | undefined> {
    let next: number | undefined;
    for (const s of this.registry.schedules.values()) {
      if (this.fence === undefined || this.stopped) return undefined;
      // Not due yet by the last pass: no transaction for it (the firing one re-checks anyway).
      let n = this.nextTick.get(s.name);
      if (n === undefined || n <= Date.now() + this.skewMs) {
        n = await this.fireSchedule(s);
        if (n === undefined) this.nextTick.delete(s.name);
        else this.nextTick.set(s.name, n);
      }
      if (n !== undefined) next = next === undefined ? n : Math.min(next, n);
    }
    return next;
  }

  private async fireSchedule(s: ResolvedSchedule): Promise<number | undefined> {
    const fence = this.fence;
    const out = await this.storage.transaction(async (trx) => {
      const lease = await trx
        .selectFrom('_rampart_leases')
        .select(sql<number>`${this.storage.nowMs}`.as('now'))
        .where('name', '=', LEASE)
        .where('holder', '=', this.o.node)
        .where('fence', '=', fence as number)
        .where('expires_at', '>', this.storage.nowMs)
        .executeTakeFirst();
      if (!lease) return { lost: true as const };
      const now = Number(lease.now);
      const state = await trx.selectFrom('_rampart_schedules').select(['last_tick']).where('name', '=', s.name).executeTakeFirst();
      if (!state) return { lost: false as const, next: undefined };
      const due: number[] = [];
      let t = Number(state.last_tick);
      for (;;) {
        const d = s.cronner.nextRun(new Date(t));
        if (!d || d.getTime() > now || due.length >= 100_000) break;
        t = d.getTime();
        due.push(t);
      }
      if (due.length === 0) return { lost: false as const, next: s.cronner.nextRun(new Date(Number(state.last_tick)))?.getTime() };
      const late = due.filter((tick) => now - tick > s.lateAfterMs);
      const onTime = due.filter((tick) => now - tick <= s.lateAfterMs);
      let fire = onTime.slice(0, MAX_TICKS_PER_PASS);
      let skipped = 0;
      if (late.length > 0) {
        // Missed during an outage: drop them, or run one job for the latest.
        if (s.missed === 'catch-up') fire = [late[late.length - 1] as number, ...fire].slice(0, MAX_TICKS_PER_PASS);
        skipped = s.missed === 'catch-up' ? late.length - 1 : late.length;
      }
      const handledUpTo = onTime.length > MAX_TICKS_PER_PASS ? (fire[fire.length - 1] as number) : (due[due.length - 1] as number);
      const fired: Array<{ tick: number; id: string; duplicate: boolean }> = [];
      for (const tick of fire) fired.push({ tick, ...(await this.fireTick(trx, s, tick)) });
      const last = fired.filter((f) => !f.duplicate).pop();
      await trx
        .updateTable('_rampart_schedules')
        .set((eb) => ({
          last_tick: handledUpTo,
          next_tick: s.cronner.nextRun(new Date(handledUpTo))?.getTime() ?? null,
          skipped: eb('skipped', '+', skipped),
          updated_at: now,
          ...(last ? { last_fired_at: now, last_job_id: last.id, last_node: this.o.node } : {}),
        }))
        .where('name', '=', s.name)
        .execute();
      return { lost: false as const, fired, skipped, next: s.cronner.nextRun(new Date(handledUpTo))?.getTime() };
    });
    if (out.lost) {
      this.setLeader(undefined);
      return undefined;
    }
    for (const f of out.fired ?? []) {
      this.o.observer.onTick(s.name, f.duplicate ? 'duplicate' : 'fired');
      if (!f.duplicate) this.o.log.debug({ schedule: s.name, tick: new Date(f.tick).toISOString(), job_id: f.id }, 'cron tick fired');
    }
    for (let i = 0; i < (out.skipped ?? 0); i++) this.o.observer.onTick(s.name, 'skipped');
    if (out.skipped) this.o.log.warn({ schedule: s.name, skipped: out.skipped }, 'cron ticks missed during an outage were skipped');
    return out.next;
  }

  /** Insert the tick's row and its job; a tick already fired (another node) is left alone. */
  private async fireTick(trx: Kysely<any>, s: ResolvedSchedule, tick: number): Promise<{ id: string; duplicate: boolean }> {
    const id = uuidv7();
    const r = await trx
      .insertInto('_rampart_cron_ticks')
      .values({ schedule: s.name, tick, job_id: id, node: this.o.node, fired_at: this.storage.nowMs })
      .onConflict((oc) => oc.columns(['schedule', 'tick']).doNothing())
      .returning('job_id')
      .executeTakeFirst();
    if (!r) return { id, duplicate: true };
    await this.queue.enqueueMany(trx, [{ name: s.job, payload: s.payload, origin: { schedule: s.name, tick, id } }]);
    return { id, duplicate: false };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    if (this.fence !== undefined) {
      // Hand over at once instead of making the others wait out the lease.
      await this.storage
        .transaction((trx) =>
          trx
            .updateTable('_rampart_leases')
            .set({ expires_at: 0 })
            .where('name', '=', LEASE)
            .where('holder', '=', this.o.node)
            .where('fence', '=', this.fence as number)
            .execute(),
        )
        .catch(() => {});
      this.setLeader(undefined);
    }
  }
}

/** Every declared schedule with its state. */
export async function listSchedules(storage: Storage, registry: JobRegistry): Promise<ScheduleInfo[]> {
  const rows = await storage.db
    .selectFrom('_rampart_schedules as s')
    .leftJoin('_rampart_jobs as j', 'j.id', 's.last_job_id')
    .select(['s.name', 's.last_tick', 's.next_tick', 's.last_fired_at', 's.last_job_id', 's.last_node', 's.skipped', 'j.state'])
    .execute();
  const iso = (v: unknown) => (v === null || v === undefined ? null : new Date(Number(v)).toISOString());
  return [...registry.schedules.values()].map((s) => {
    const r = rows.find((x) => x.name === s.name);
    return {
      name: s.name,
      cron: s.cron,
      tz: s.tz,
      job: s.job,
      missed: s.missed,
      last_tick: r?.last_fired_at ? iso(r.last_tick) : null,
      next_tick: iso(r?.next_tick ?? s.cronner.nextRun()?.getTime()),
      last_fired_at: iso(r?.last_fired_at),
      last_job_id: (r?.last_job_id as string | null) ?? null,
      last_status: r?.last_job_id ? ((r.state as string | null) ?? 'unknown') : null,
      last_node: (r?.last_node as string | null) ?? null,
      skipped: Number(r?.skipped ?? 0),
    };
  });
}
