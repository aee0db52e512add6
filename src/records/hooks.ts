/**
 * Record hooks, in the order they run for one write:
 *  - "before" hooks run inside the write's transaction before the row is written: they may
 *    change the data (by returning a new object) or veto the write (by throwing; a
 *    RampartError keeps its code);
 *  - "on" hooks run inside the transaction after the row is written, with the stored record:
 *    what they write, and the jobs they enqueue (`ctx.jobs`), commits with it or not at all
 *    (the transactional outbox); a throw rolls the whole write back;
 *  - "after" hooks run once the transaction has committed; their failures are logged, never
 *    turned into a failed response, because the write is already durable.
 * A purge (admins only) runs `onPurge` inside its transaction with the record as it was.
 */

import type { Kysely } from 'kysely';
import type { JobsClient, NotifyFn } from '../jobs/define.js';
import type { HttpDependency } from '../resilience/http-client.js';
import type { Principal } from './access.js';

/** A stored record as the API returns it. */
export type RecordData = Record<string, unknown> & {
  id: string;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
  version: number;
};

/** The kind of write a hook runs for: a restore runs the update hooks, with `restore` here. */
export type WriteKind = 'create' | 'update' | 'delete' | 'restore' | 'purge';

/**
 * Emit a domain event (published to the brokers the app routes it to): in before and on hooks
 * it is written with the change and exists exactly when the change commits. `key` orders it
 * with the other events of that key (default: the record's id when emitted from a record hook).
 */
export type EmitFn = (type: string, data: unknown, opts?: { key?: string; subject?: string }) => Promise<void>;

/** What a hook gets besides the record. */
export interface HookContext {
  /** Collection the write is on. */
  collection: string;
  /** The open transaction (before hooks) or the database (after hooks). */
  db: Kysely<any>;
  /** Who made the write (`system` for app code). */
  auth: Principal;
  /** Enqueue jobs: in before and on hooks they commit with the write; in after hooks they get their own transaction. */
  jobs: JobsClient;
  /** A declared outbound HTTP dependency (`dependencies` in the app): fetch with timeout, retries, breaker, bulkhead. */
  http(name: string): HttpDependency;
  /** Notify a user (inbox, realtime, push): in before and on hooks it commits with the write. */
  notify: NotifyFn;
  /** Emit a domain event to the app's brokers: in before and on hooks it commits with the write. */
  emit: EmitFn;
  /** What kind of write this is (on and after hooks): a restore runs the update hooks with `restore`. */
  change?: WriteKind;
}

export type BeforeWriteHook = (
  data: Record<string, unknown>,
  ctx: HookContext & { existing?: RecordData },
) => Promise<Record<string, unknown> | undefined> | Record<string, unknown> | undefined;
export type BeforeDeleteHook = (record: RecordData, ctx: HookContext) => Promise<void> | void;
export type AfterHook = (record: RecordData, ctx: HookContext) => Promise<void> | void;

/** A hook with an id (for logs and removal) and a priority (lower runs first). */
export interface Registered<T> {
  id: string;
  priority: number;
  fn: T;
}

/** Hooks as an app declares them on a collection: a function, or `{ id, priority, fn }` entries. */
export interface RecordHooks {
  beforeCreate?: BeforeWriteHook | Array<Registered<BeforeWriteHook>>;
  beforeUpdate?: BeforeWriteHook | Array<Registered<BeforeWriteHook>>;
  beforeDelete?: BeforeDeleteHook | Array<Registered<BeforeDeleteHook>>;
  onCreate?: AfterHook | Array<Registered<AfterHook>>;
  onUpdate?: AfterHook | Array<Registered<AfterHook>>;
  onDelete?: AfterHook | Array<Registered<AfterHook>>;
  afterCreate?: AfterHook | Array<Registered<AfterHook>>;
  afterUpdate?: AfterHook | Array<Registered<AfterHook>>;
  afterDelete?: AfterHook | Array<Registered<AfterHook>>;
  /** In a purge's transaction, with the record as it was (admins purge; the trash sweep too). */
  onPurge?: AfterHook | Array<Registered<AfterHook>>;
}

export type HookName = keyof RecordHooks;
type HookFn<N extends HookName> = NonNullable<RecordHooks[N]> extends infer U ? (U extends Array<Registered<infer F>> ? F : U) : never;

/** Hooks of every collection, ordered by priority then registration. */
export class HookRegistry {
  private readonly hooks = new Map<string, Array<Registered<unknown>>>();

  /** Add a hook to a collection's event. */
  add<N extends HookName>(collection: string, name: N, hook: Registered<HookFn<N>>): void {
    const key = `${collection}:${name}`;
    const list = this.hooks.get(key) ?? [];
    if (list.some((h) => h.id === hook.id)) throw new Error(`hook ${hook.id} is already registered on ${key}`);
    list.push(hook);
    list.sort((a, b) => a.priority - b.priority);
    this.hooks.set(key, list);
  }

  /** Register everything a collection declares. */
  addDeclared(collection: string, declared: RecordHooks | undefined): void {
    for (const [name, value] of Object.entries(declared ?? {}) as Array<[HookName, unknown]>) {
      if (typeof value === 'function') {
        this.add(collection, name, { id: `${collection}.${name}`, priority: 0, fn: value as never });
      } else if (Array.isArray(value)) {
        for (const h of value) this.add(collection, name, h as never);
      }
    }
  }

  /** The hooks of one event, in run order. */
  get<N extends HookName>(collection: string, name: N): ReadonlyArray<Registered<HookFn<N>>> {
    return (this.hooks.get(`${collection}:${name}`) ?? []) as Array<Registered<HookFn<N>>>;
  }
}
