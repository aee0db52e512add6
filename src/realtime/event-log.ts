/**
 * The realtime event log: every record change (and every notification) gets an id, written in
 * the same transaction as the change, so an event exists exactly when its change committed.
 *
 * Ids come from one counter row updated in the writing transaction. Its row lock is held until
 * commit, so ids become visible in id order: once event N can be read, every event below N has
 * committed or was rolled back, and a rolled-back append gives its number back (no gaps left by
 * failed writes). A client that knows the last id it saw can therefore be given exactly what
 * came after it. The price is that transactions that append events commit one at a time; on
 * SQLite that is the case anyway.
 */
import { type CompiledQuery, type Kysely, sql } from 'kysely';
import type { Clock } from '../core/clock.js';
import type { Storage } from '../storage/types.js';

/** One logged event. */
export interface RtEvent {
  /** Position in the log: increasing, in commit order. */
  id: number;
  /** The collection, or `_notifications`. */
  stream: string;
  /** `created`, `updated`, `deleted`, or `notification`. */
  action: string;
  /** The user a targeted event (a notification) is for. */
  target: string | null;
  /** The record (or notification) as JSON text. */
  payload: string;
  /** When it was logged, epoch ms. */
  createdAt: number;
}

/** An event before it has an id. */
export type NewEvent = Pick<RtEvent, 'stream' | 'action' | 'target' | 'payload'>;

const EVENTS = '_rampart_events';
const COUNTERS = '_rampart_counters';

export class EventLog {
  /** The two statements of an append, compiled once (every write runs them; only the values change). */
  private readonly bump: CompiledQuery;
  private readonly insert: CompiledQuery;

  constructor(
    private readonly storage: Storage,
    private readonly clock: Clock,
  ) {
    this.bump = storage.db
      .updateTable(COUNTERS)
      .set({ value: sql`value + ${0}` })
      .where('name', '=', 'events')
      .returning('value')
      .compile();
    this.insert = storage.db
      .insertInto(EVENTS)
      .values({ id: 0, stream: '', action: '', target: null, payload: '', created_at: 0 })
      .compile();
  }

  /** Append events inside the transaction `trx`; they get consecutive ids. */
  async append(trx: Kysely<any>, items: NewEvent[]): Promise<RtEvent[]> {
    if (items.length === 0) return [];
    const { rows } = await trx.executeQuery<{ value: unknown }>({ ...this.bump, parameters: [items.length, 'events'] });
    const last = Number(rows[0]?.value);
    const createdAt = this.clock.now();
    const events = items.map((e, i) => ({ ...e, id: last - items.length + 1 + i, createdAt }));
    for (const e of events) {
      await trx.executeQuery({ ...this.insert, parameters: [e.id, e.stream, e.action, e.target, e.payload, e.createdAt] });
    }
    return events;
  }

  /** Up to `limit` events after `id`, in order. */
  async after(id: number, limit: number): Promise<RtEvent[]> {
    const rows = await this.storage.reader.selectFrom(EVENTS).selectAll().where('id', '>', id).orderBy('id').limit(limit).execute();
    return rows.map((r) => ({
      id: Number(r.id),
      stream: r.stream as string,
      action: r.action as string,
      target: (r.target as string | null) ?? null,
      payload: r.payload as string,
      createdAt: Number(r.created_at),
    }));
  }

  /** The id of the last event ever appended (0 before the first). */
  async head(): Promise<number> {
    const row = await this.storage.reader.selectFrom(COUNTERS).select('value').where('name', '=', 'events').executeTakeFirst();
    return Number(row?.value ?? 0);
  }

  /**
   * Whether every event after `id` is still in the log (a client that saw `id` can resume):
   * nothing after it was pruned.
   */
  async covers(id: number): Promise<boolean> {
    const row = await this.storage.reader
      .selectFrom(EVENTS)
      .select((eb) => eb.fn.min('id').as('first'))
      .executeTakeFirst();
    const first = row?.first === null || row?.first === undefined ? undefined : Number(row.first);
    if (first === undefined) return id >= (await this.head());
    return id >= first - 1;
  }

  /** Drop events logged before `beforeMs`; returns how many. */
  async prune(beforeMs: number): Promise<number> {
    const r = await this.storage.db.deleteFrom(EVENTS).where('created_at', '<', beforeMs).executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}
