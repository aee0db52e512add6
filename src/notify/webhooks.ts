/**
 * Outgoing webhooks: admins subscribe URLs to record events (`messages.created`, `rooms.*`,
 * `*.deleted`, `*`). A write that matches a subscription records a delivery and enqueues its job
 * *in the write's transaction* (the outbox: an event exists exactly when its write committed);
 * the job POSTs the event, signed the Standard Webhooks way (`webhook-id`, `webhook-timestamp`,
 * `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the subscription's
 * `whsec_` secret), and retries with backoff. Each delivery's status, attempts, last answer and
 * error are kept (the delivery log). A subscription whose deliveries keep failing (after their
 * retries) is disabled, and its owner is mailed.
 *
 * Events carry the record as its collection's visible fields (hidden fields never leave).
 * Deliveries of one subscription may arrive out of order (each is its own job); receivers
 * deduplicate by `webhook-id`, the same on every retry.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { RampartError, validationError } from '../core/errors.js';
import { uuidv7 } from '../core/ids.js';
import { type JobDef, job } from '../jobs/define.js';
import type { HookRegistry, RecordData } from '../records/hooks.js';
import type { RecordsService } from '../records/service.js';
import type { HttpDependency } from '../resilience/http-client.js';
import type { Storage } from '../storage/types.js';

export const WEBHOOK_JOB = 'rampart.webhook';
const SUBS = '_rampart_webhooks';
const DELIVERIES = '_rampart_webhook_deliveries';
const CHANNEL = 'rampart_webhooks';
const REFRESH_MS = 30_000;
const EVENT_RE = /^(?:\*|(?:\*|[a-z_][a-z0-9_]{0,62})\.(?:\*|created|updated|deleted))$/;
const ACTIONS = { Create: 'created', Update: 'updated', Delete: 'deleted' } as const;

/** How webhooks behave (the configuration's slice). */
export interface WebhookSettings {
  /** Retries of a failed delivery (its job's). */
  retries: number;
  /** First retry delay, ms (doubling with jitter, up to an hour). */
  retryBaseMs: number;
  /** Failed deliveries in a row (after their retries) that disable a subscription. */
  disableAfter: number;
  /** Allow URLs that resolve to loopback, private or link-local addresses (development, tests). */
  allowPrivate: boolean;
}

/** A subscription as the API shows it (the secret only when it is created). */
export interface Webhook {
  id: string;
  url: string;
  events: string[];
  description: string | null;
  active: boolean;
  disabled_reason: string | null;
  consecutive_failures: number;
  owner: string | null;
  created_at: string;
  updated_at: string;
  secret?: string;
}

/** One delivery in the log. */
export interface Delivery {
  id: string;
  webhook: string;
  event: string;
  state: 'pending' | 'retrying' | 'succeeded' | 'failed' | 'cancelled';
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  last_duration_ms: number | null;
  created_at: string;
  finished_at: string | null;
}

export interface WebhookDeps {
  storage: Storage;
  records: RecordsService;
  clock: Clock;
  log: Logger;
  settings: WebhookSettings;
  /** The outbound dependency deliveries go through (its timeout and bulkhead). */
  http(): HttpDependency;
  /** Tell the owner their subscription was disabled (enqueues a mail in `db`'s transaction). */
  notifyOwner(db: Kysely<any>, ownerId: string, webhook: Webhook): Promise<void>;
  /** Count a delivery attempt's outcome. */
  onDelivery?(outcome: string): void;
}

const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(Number(ms)).toISOString());

function toWebhook(row: Record<string, unknown>): Webhook {
  return {
    id: row.id as string,
    url: row.url as string,
    events: JSON.parse(row.events as string),
    description: (row.description as string | null) ?? null,
    active: Number(row.active) === 1,
    disabled_reason: (row.disabled_reason as string | null) ?? null,
    consecutive_failures: Number(row.consecutive_failures),
    owner: (row.owner as string | null) ?? null,
    created_at: iso(row.created_at as number) as string,
    updated_at: iso(row.updated_at as number) as string,
  };
}

/** Whether an address is loopback, private, link-local or unspecified (not to be called by default). */
export function isPrivateAddress(ip: string): boolean {
  if (isIP(ip) === 4) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    return (
      a === 10 ||
      a === 127 ||
      a === 0 ||
      (a === 169 && b === 254) ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 100 && b >= 64 && b <= 127)
    );
  }
  const v = ip.toLowerCase();
  if (v.startsWith('::ffff:')) return isPrivateAddress(v.slice(7));
  return (
    v === '::1' ||
    v === '::' ||
    v.startsWith('fc') ||
    v.startsWith('fd') ||
    v.startsWith('fe8') ||
    v.startsWith('fe9') ||
    v.startsWith('fea') ||
    v.startsWith('feb')
  );
}

/** The Standard Webhooks signature header value. */
export function signWebhook(secret: string, id: string, timestampS: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampS}.${body}`).digest('base64')}`;
}

export class Webhooks {
  private subs: Array<Webhook & { secret: string }> = [];
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => void) | undefined;

  constructor(private readonly d: WebhookDeps) {}

  /** Load the subscriptions and keep them current on this node (notification on change, and a timer). */
  async start(): Promise<void> {
    await this.reload();
    this.unlisten = await this.d.storage.listen(
      CHANNEL,
      () => void this.reload().catch((err) => this.d.log.warn({ err: err.message }, 'reloading webhooks failed')),
      (up) => {
        if (up) void this.reload().catch(() => {});
      },
    );
    this.timer = setInterval(() => void this.reload().catch(() => {}), REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.unlisten?.();
  }

  private async reload(): Promise<void> {
    const rows = await this.d.storage.db.selectFrom(SUBS).selectAll().where('active', '=', 1).execute();
    this.subs = rows.map((r) => ({ ...toWebhook(r), secret: r.secret as string }));
  }

  /** Hook every collection's writes (in their transactions) to record and enqueue matching deliveries. */
  registerHooks(hooks: HookRegistry, collections: string[]): void {
    for (const collection of collections) {
      for (const event of ['Create', 'Update', 'Delete'] as const) {
        hooks.add(collection, `on${event}`, {
          id: `rampart.webhooks.${event}`,
          priority: 10_000,
          fn: async (record: RecordData, ctx) => this.emit(ctx.db, ctx.jobs, collection, ACTIONS[event], record),
        });
      }
    }
  }

  private async emit(
    db: Kysely<any>,
    jobs: { enqueue(name: string, payload: unknown): Promise<unknown> },
    collection: string,
    action: string,
    record: RecordData,
  ) {
    const type = `${collection}.${action}`;
    const matching = this.subs.filter((s) =>
      s.events.some((e) => e === '*' || e === type || e === `${collection}.*` || e === `*.${action}`),
    );
    if (matching.length === 0) return;
    const visible = Object.keys(this.d.records.visibleSchema(collection).fields);
    const data: Record<string, unknown> = {};
    for (const k of ['id', 'created_at', 'updated_at', 'version', 'deleted_at', ...visible]) if (k in record) data[k] = record[k];
    const now = this.d.clock.now();
    for (const s of matching) {
      const id = `msg_${uuidv7().replaceAll('-', '')}`;
      const payload = JSON.stringify({ type, timestamp: new Date(now).toISOString(), data: { collection, record: data } });
      await db
        .insertInto(DELIVERIES)
        .values({ id, webhook_id: s.id, event: type, payload, state: 'pending', attempts: 0, created_at: now })
        .execute();
      await jobs.enqueue(WEBHOOK_JOB, { delivery: id });
    }
  }

  /** The delivery job. */
  job(): JobDef<{ delivery: string }> {
    const s = this.d.settings;
    return job<{ delivery: string }>({
      queue: 'rampart.webhooks',
      retries: s.retries,
      backoff: { baseMs: s.retryBaseMs, capMs: Math.max(s.retryBaseMs, 3_600_000) },
      timeoutMs: 60_000,
      handler: async ({ delivery }, ctx) => {
        const db = this.d.storage.db;
        const row = await db
          .selectFrom(`${DELIVERIES} as d`)
          .innerJoin(`${SUBS} as s`, 's.id', 'd.webhook_id')
          .select(['d.id', 'd.payload', 'd.state', 's.id as sub', 's.url', 's.secret', 's.active'])
          .where('d.id', '=', delivery)
          .executeTakeFirst();
        if (!row) return { skipped: 'the subscription or delivery is gone' };
        if (Number(row.active) !== 1) {
          await db
            .updateTable(DELIVERIES)
            .set({ state: 'cancelled', last_error: 'subscription disabled', finished_at: this.d.clock.now() })
            .where('id', '=', delivery)
            .execute();
          this.d.onDelivery?.('cancelled');
          return { skipped: 'subscription disabled' };
        }
        const started = this.d.clock.now();
        let status: number | null = null;
        let error: string | null = null;
        try {
          await this.checkTarget(row.url as string);
          const ts = Math.floor(started / 1000);
          const res = await this.d.http().fetch(row.url as string, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              'user-agent': 'Rampart-Webhooks/1',
              'webhook-id': row.id as string,
              'webhook-timestamp': String(ts),
              'webhook-signature': signWebhook(row.secret as string, row.id as string, ts, row.payload as string),
            },
            body: row.payload as string,
            signal: ctx.signal,
            redirect: 'manual',
          });
          status = res.status;
          await res.body?.cancel().catch(() => {});
          if (status < 200 || status >= 300) error = `answered ${status}`;
        } catch (err) {
          error = (err as Error).message.slice(0, 500);
        }
        const ok = error === null;
        const final = !ok && ctx.attempt >= ctx.maxAttempts;
        const state = ok ? 'succeeded' : final ? 'failed' : 'retrying';
        const finishedAt = ok || final ? this.d.clock.now() : null;
        await this.d.storage.transaction(async (trx) => {
          await trx
            .updateTable(DELIVERIES)
            .set({
              state,
              attempts: ctx.attempt,
              last_status: status,
              last_error: error,
              last_duration_ms: this.d.clock.now() - started,
              finished_at: finishedAt,
            })
            .where('id', '=', delivery)
            .execute();
          if (ok) {
            await trx
              .updateTable(SUBS)
              .set({ consecutive_failures: 0 })
              .where('id', '=', row.sub)
              .where('consecutive_failures', '>', 0)
              .execute();
          } else if (final) {
            await this.countFailure(trx, row.sub as string, error as string);
          }
        });
        this.d.onDelivery?.(state);
        if (!ok) throw new Error(`webhook delivery ${delivery} to ${row.url}: ${error}`);
        return { status };
      },
    });
  }

  /** A delivery failed for good: count it, and disable the subscription at the limit. */
  private async countFailure(trx: Kysely<any>, id: string, error: string): Promise<void> {
    const now = this.d.clock.now();
    await trx
      .updateTable(SUBS)
      .set((eb) => ({ consecutive_failures: eb('consecutive_failures', '+', 1) }))
      .where('id', '=', id)
      .execute();
    const sub = await trx.selectFrom(SUBS).selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    if (Number(sub.active) !== 1 || Number(sub.consecutive_failures) < this.d.settings.disableAfter) return;
    const reason = `${sub.consecutive_failures} deliveries in a row failed (last: ${error.slice(0, 200)})`;
    await trx.updateTable(SUBS).set({ active: 0, disabled_reason: reason, updated_at: now }).where('id', '=', id).execute();
    await this.d.storage.notify(trx, CHANNEL, id);
    this.d.log.warn({ webhook: id, url: sub.url, reason }, 'webhook subscription disabled');
    this.d.onDelivery?.('subscription-disabled');
    if (sub.owner) await this.d.notifyOwner(trx, sub.owner as string, toWebhook({ ...sub, active: 0, disabled_reason: reason }));
  }

  /** Refuse URLs that resolve to this machine or a private network, unless allowed. */
  private async checkTarget(url: string): Promise<void> {
    if (this.d.settings.allowPrivate) return;
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    const addresses = isIP(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address);
    if (addresses.some(isPrivateAddress)) throw new Error(`${host} resolves to a private address (RAMPART_WEBHOOKS_ALLOW_PRIVATE is off)`);
  }

  // ---- administration ------------------------------------------------------------------------

  private parse(input: unknown, partial: boolean): { url?: string; events?: string[]; description?: string | null; active?: boolean } {
    const errors: Array<{ field: string; code: string; message: string }> = [];
    if (typeof input !== 'object' || input === null || Array.isArray(input))
      throw validationError([{ field: 'body', code: 'type', message: 'must be an object' }]);
    const o = input as Record<string, unknown>;
    const out: { url?: string; events?: string[]; description?: string | null; active?: boolean } = {};
    for (const k of Object.keys(o))
      if (!['url', 'events', 'description', 'active'].includes(k))
        errors.push({ field: k, code: 'unknown', message: 'is not a webhook field' });
    if (o.url !== undefined || !partial) {
      let ok = false;
      try {
        const u = new URL(String(o.url));
        ok =
          typeof o.url === 'string' &&
          o.url.length <= 2000 &&
          (u.protocol === 'https:' || u.protocol === 'http:') &&
          !u.username &&
          !u.password;
      } catch {}
      if (!ok) errors.push({ field: 'url', code: 'format', message: 'must be an http(s) URL without credentials' });
      else out.url = o.url as string;
    }
    if (o.events !== undefined || !partial) {
      const names = new Set(this.d.records.collections().map((c) => c.name));
      const ok =
        Array.isArray(o.events) &&
        o.events.length >= 1 &&
        o.events.length <= 50 &&
        o.events.every((e) => typeof e === 'string' && EVENT_RE.test(e) && (e.startsWith('*') || names.has(e.split('.')[0] as string)));
      if (!ok)
        errors.push({
          field: 'events',
          code: 'format',
          message: 'must list 1 to 50 events such as "messages.created", "rooms.*", "*.deleted" or "*" (of existing collections)',
        });
      else out.events = [...new Set(o.events as string[])];
    }
    if (o.description !== undefined) {
      if (o.description !== null && (typeof o.description !== 'string' || o.description.length > 500))
        errors.push({ field: 'description', code: 'type', message: 'must be text of at most 500 characters' });
      else out.description = o.description as string | null;
    }
    if (o.active !== undefined) {
      if (typeof o.active !== 'boolean' || !partial)
        errors.push({ field: 'active', code: 'type', message: 'must be true or false (when changing a subscription)' });
      else out.active = o.active;
    }
    if (errors.length > 0) throw validationError(errors);
    return out;
  }

  /** Create a subscription; the answer holds its secret (shown this once). */
  async create(owner: string | null, input: unknown): Promise<Webhook> {
    const v = this.parse(input, false);
    const now = this.d.clock.now();
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    const id = uuidv7();
    await this.d.storage.transaction(async (trx) => {
      await trx
        .insertInto(SUBS)
        .values({
          id,
          owner,
          url: v.url,
          events: JSON.stringify(v.events),
          description: v.description ?? null,
          secret,
          active: 1,
          consecutive_failures: 0,
          created_at: now,
          updated_at: now,
        })
        .execute();
      await this.d.storage.notify(trx, CHANNEL, id);
    });
    await this.reload();
    return { ...(await this.get(id)), secret };
  }

  async list(): Promise<Webhook[]> {
    return (await this.d.storage.db.selectFrom(SUBS).selectAll().orderBy('id').execute()).map(toWebhook);
  }

  async get(id: string): Promise<Webhook> {
    const row = await this.d.storage.db.selectFrom(SUBS).selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new RampartError('E_WEBHOOK_NOT_FOUND', `no webhook subscription ${JSON.stringify(id.slice(0, 64))}`);
    return toWebhook(row);
  }

  /** Change a subscription; `active: true` re-enables a disabled one (its failure count starts over). */
  async update(id: string, input: unknown): Promise<Webhook> {
    const v = this.parse(input, true);
    await this.get(id);
    await this.d.storage.transaction(async (trx) => {
      await trx
        .updateTable(SUBS)
        .set({
          ...(v.url !== undefined ? { url: v.url } : {}),
          ...(v.events !== undefined ? { events: JSON.stringify(v.events) } : {}),
          ...(v.description !== undefined ? { description: v.description } : {}),
          ...(v.active !== undefined
            ? { active: v.active ? 1 : 0, disabled_reason: v.active ? null : 'disabled by an admin', consecutive_failures: 0 }
            : {}),
          updated_at: this.d.clock.now(),
        })
        .where('id', '=', id)
        .execute();
      await this.d.storage.notify(trx, CHANNEL, id);
    });
    await this.reload();
    return this.get(id);
  }

  async remove(id: string): Promise<void> {
    await this.get(id);
    await this.d.storage.transaction(async (trx) => {
      await trx.deleteFrom(DELIVERIES).where('webhook_id', '=', id).execute();
      await trx.deleteFrom(SUBS).where('id', '=', id).execute();
      await this.d.storage.notify(trx, CHANNEL, id);
    });
    await this.reload();
  }

  /** The delivery log of a subscription, newest first. */
  async deliveries(id: string, opts: { limit: number; before?: string }): Promise<{ items: Delivery[]; next_cursor: string | null }> {
    await this.get(id);
    let q = this.d.storage.db.selectFrom(DELIVERIES).selectAll().where('webhook_id', '=', id);
    if (opts.before) q = q.where('id', '<', opts.before);
    const rows = await q
      .orderBy('id', 'desc')
      .limit(opts.limit + 1)
      .execute();
    const items = rows.slice(0, opts.limit).map(
      (r): Delivery => ({
        id: r.id,
        webhook: r.webhook_id,
        event: r.event,
        state: r.state,
        attempts: Number(r.attempts),
        last_status: r.last_status === null ? null : Number(r.last_status),
        last_error: r.last_error ?? null,
        last_duration_ms: r.last_duration_ms === null ? null : Number(r.last_duration_ms),
        created_at: iso(r.created_at) as string,
        finished_at: iso(r.finished_at),
      }),
    );
    return { items, next_cursor: rows.length > opts.limit ? (items.at(-1)?.id ?? null) : null };
  }

  /** Delete finished deliveries older than `olderThanMs`; returns how many. */
  async sweep(olderThanMs: number): Promise<number> {
    const res = await this.d.storage.db
      .deleteFrom(DELIVERIES)
      .where('created_at', '<', this.d.clock.now() - olderThanMs)
      .where('state', 'in', ['succeeded', 'failed', 'cancelled'])
      .executeTakeFirst();
    return Number(res.numDeletedRows);
  }
}
