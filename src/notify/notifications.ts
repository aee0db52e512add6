/**
 * Notifications to users: `notify(user, { title, body, data, channels })` from app code, hooks
 * and jobs. Each notification is stored in the user's inbox and logged as a realtime event for
 * that user in the same transaction (so it exists exactly when the write that caused it
 * committed), and a job decides where else it goes: nowhere when the user is connected to any
 * node (the realtime event reached them), otherwise a push to each of their devices and, when
 * asked, an email.
 *
 * Every push is its own job: per-provider timeout and circuit breaker, retries with backoff that
 * honour `Retry-After`, a breaker that refuses the call does not use up an attempt (an outage
 * delays pushes, never drops them), and a token the provider reports invalid is removed.
 */
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { PushConfig } from '../core/config-realtime.js';
import { RampartError, validationError } from '../core/errors.js';
import { isUuid, uuidv7 } from '../core/ids.js';
import { MAIL_JOB } from '../jobs/builtins.js';
import {
  type JobDef,
  type JobsClient,
  job,
  type NotificationInput,
  PermanentJobError,
  type QueueDef,
  RetryLaterError,
  type ScheduleDef,
  schedule,
} from '../jobs/define.js';
import type { Realtime } from '../realtime/realtime.js';
import type { RecordsService } from '../records/service.js';
import type { OutboundHttp } from '../resilience/http-client.js';
import { OutboundError, outboundPolicy, type PolicyObserver } from '../resilience/policy.js';
import type { Storage } from '../storage/types.js';
import { ApnsProvider } from './push/apns.js';
import { FcmProvider } from './push/fcm.js';
import type { Device, ProviderName, PushProvider } from './push/types.js';
import { WebPushProvider } from './push/web-push.js';

export const NOTIFY_JOB = 'rampart.notify';
export const PUSH_JOB = 'rampart.push';
const NOTES = '_rampart_notifications';
const DEVICES = '_rampart_devices';
const CHANNELS = ['realtime', 'push', 'email'] as const;
const PROVIDERS: ProviderName[] = ['fcm', 'apns', 'webpush'];

/** A notification as the inbox shows it. */
export interface Notification {
  id: string;
  title: string;
  body: string | null;
  data: Record<string, unknown> | null;
  channels: string[];
  created_at: string;
  read_at: string | null;
}

export interface NotificationDeps {
  storage: Storage;
  records: RecordsService;
  realtime: Realtime;
  jobsFor: (db: Kysely<any>) => JobsClient;
  config: PushConfig;
  outbound: OutboundHttp;
  observer: PolicyObserver;
  registry: Registry;
  log: Logger;
}

export class Notifications {
  private readonly providers = new Map<ProviderName, PushProvider>();
  private readonly sends: Counter<'provider' | 'outcome'>;

  constructor(private readonly d: NotificationDeps) {
    const c = d.config;
    const policy = { timeoutMs: c.timeoutMs, retries: 0, breaker: { failures: c.breakerFailures }, halfOpenAfterMs: c.breakerOpenMs };
    if (c.fcmServiceAccount) {
      this.providers.set(
        'fcm',
        new FcmProvider(c.fcmServiceAccount, c.fcmUrl, d.outbound.add('push:fcm', { ...policy, concurrency: 50, queue: 1000 })),
      );
    }
    if (c.apnsKey && c.apnsKeyId && c.apnsTeamId && c.apnsTopic) {
      this.providers.set(
        'apns',
        new ApnsProvider(
          { key: c.apnsKey, keyId: c.apnsKeyId, teamId: c.apnsTeamId, topic: c.apnsTopic, url: c.apnsUrl },
          outboundPolicy(
            'push:apns',
            {
              timeoutMs: c.timeoutMs,
              breaker: { failures: c.breakerFailures },
              halfOpenAfterMs: c.breakerOpenMs,
              isFailureResult: (a) => (a as { status: number }).status >= 500 || (a as { status: number }).status === 429,
              bulkhead: { concurrency: 50, queue: 1000 },
            },
            d.observer,
          ),
        ),
      );
    }
    if (c.vapidPublicKey && c.vapidPrivateKey) {
      this.providers.set(
        'webpush',
        new WebPushProvider(
          { subject: c.vapidSubject, publicKey: c.vapidPublicKey, privateKey: c.vapidPrivateKey },
          d.outbound.add('push:webpush', { ...policy, concurrency: 50, queue: 1000 }),
          c.allowHttp,
        ),
      );
    }
    this.sends = new Counter({
      name: 'rampart_push_sends_total',
      help: 'Push sends by provider and outcome: ok, retry, invalid-token (device pruned), permanent, breaker-open, error',
      labelNames: ['provider', 'outcome'],
      registers: [d.registry],
    });
  }

  /** Providers with credentials. */
  configured(): ProviderName[] {
    return [...this.providers.keys()];
  }

  /** The `notify` of app code on `db` (a hook's transaction, or the database). */
  notifier(db: Kysely<any>): (user: string, n: NotificationInput) => Promise<{ id: string }> {
    return (user, n) => this.send(db, user, n);
  }

  async send(db: Kysely<any>, user: string, input: NotificationInput): Promise<{ id: string }> {
    const n = checkInput(input);
    if (typeof user !== 'string' || !isUuid(user)) throw validationError([{ field: 'user', code: 'type', message: 'must be a user id' }]);
    const id = uuidv7();
    const now = Date.now();
    const write = async (trx: Kysely<any>) => {
      await trx
        .insertInto(NOTES)
        .values({
          id,
          user_id: user,
          title: n.title,
          body: n.body,
          data: n.data === null ? null : JSON.stringify(n.data),
          channels: JSON.stringify(n.channels),
          created_at: now,
          read_at: null,
        })
        .execute();
      const shown: Notification = {
        id,
        title: n.title,
        body: n.body,
        data: n.data,
        channels: n.channels,
        created_at: new Date(now).toISOString(),
        read_at: null,
      };
      await this.d.realtime.append(trx, [
        { stream: '_notifications', action: 'notification', target: user, payload: JSON.stringify(shown) },
      ]);
      await this.d.jobsFor(trx).enqueue(NOTIFY_JOB, { notification: id });
    };
    if (db !== this.d.storage.db) {
      // In a write's transaction (a hook's): the write's commit announces the event.
      await write(db);
      return { id };
    }
    let announce: () => void = () => {};
    await this.d.storage.transaction(async (trx) => {
      await write(trx);
      announce = await this.d.realtime.hub.beforeCommit(trx);
    });
    announce();
    return { id };
  }

  // --- jobs ---------------------------------------------------------------------------------------

  jobs(): { jobs: Record<string, JobDef>; queues: Record<string, QueueDef>; schedules: Record<string, ScheduleDef> } {
    const c = this.d.config;
    return {
      queues: { 'rampart.push': { concurrency: 20 } },
      schedules: { 'rampart.clean-notifications': schedule('50 3 * * *', 'rampart.clean-notifications') },
      jobs: {
        'rampart.clean-notifications': job({ queue: 'rampart.push', handler: async () => ({ removed: await this.sweep() }) }),
        [NOTIFY_JOB]: job<{ notification: string }>({
          queue: 'rampart.push',
          retries: 10,
          handler: ({ notification }, ctx) => this.route(notification, ctx.jobs),
        }),
        [PUSH_JOB]: job<{ notification: string; device: string }>({
          queue: 'rampart.push',
          retries: c.retries,
          backoff: { baseMs: c.retryBaseMs, capMs: 15 * 60_000 },
          timeoutMs: c.timeoutMs * 2 + 5000,
          handler: (p) => this.push(p.notification, p.device),
        }),
      },
    };
  }

  /** Realtime reached a connected user; otherwise push to each device, and mail when asked. */
  private async route(id: string, jobs: JobsClient): Promise<unknown> {
    const n = await this.d.storage.db.selectFrom(NOTES).selectAll().where('id', '=', id).executeTakeFirst();
    if (!n) return { skipped: 'notification deleted' };
    const channels = JSON.parse(String(n.channels)) as string[];
    const user = String(n.user_id);
    if (channels.includes('realtime') && (await this.d.realtime.online.isOnline(user))) return { delivered: 'realtime' };
    let pushes = 0;
    if (channels.includes('push')) {
      const devices = await this.d.storage.db.selectFrom(DEVICES).select('id').where('user_id', '=', user).execute();
      for (const dev of devices) {
        await jobs.enqueue(PUSH_JOB, { notification: id, device: dev.id }, { uniqueKey: `push:${id}:${dev.id}` });
        pushes++;
      }
    }
    let mailed = false;
    if (channels.includes('email')) {
      const account = await this.d.records.get('users', user).catch(() => undefined);
      if (account?.email) {
        await jobs.enqueue(
          MAIL_JOB,
          { to: String(account.email), subject: String(n.title), text: `${n.body ?? ''}\n` },
          { uniqueKey: `notify-mail:${id}` },
        );
        mailed = true;
      }
    }
    return { pushes, mailed };
  }

  private async push(notification: string, deviceId: string): Promise<unknown> {
    const row = await this.d.storage.db.selectFrom(DEVICES).selectAll().where('id', '=', deviceId).executeTakeFirst();
    if (!row) return { skipped: 'device removed' };
    const n = await this.d.storage.db.selectFrom(NOTES).selectAll().where('id', '=', notification).executeTakeFirst();
    if (!n) return { skipped: 'notification deleted' };
    const device = deviceOf(row);
    const provider = this.providers.get(device.provider);
    if (!provider) throw new PermanentJobError(`no ${device.provider} credentials are configured`);
    let result: Awaited<ReturnType<PushProvider['send']>>;
    try {
      result = await provider.send(device, {
        id: notification,
        title: String(n.title),
        body: (n.body as string | null) ?? null,
        data: n.data ? (JSON.parse(String(n.data)) as Record<string, unknown>) : null,
      });
    } catch (err) {
      if (err instanceof OutboundError && (err.reason === 'open' || err.reason === 'bulkhead')) {
        this.sends.inc({ provider: device.provider, outcome: 'breaker-open' });
        // Nothing was sent: come back when the breaker may let a trial through, without using an attempt.
        const wait = err.reason === 'open' ? this.d.config.breakerOpenMs : 1000;
        throw new RetryLaterError(err.message, wait * (0.5 + Math.random() * 0.5), true);
      }
      this.sends.inc({ provider: device.provider, outcome: 'error' });
      throw err;
    }
    this.sends.inc({ provider: device.provider, outcome: result.outcome });
    switch (result.outcome) {
      case 'ok':
        return { sent: device.provider };
      case 'invalid-token':
        await this.d.storage.db.deleteFrom(DEVICES).where('id', '=', device.id).where('token', '=', device.token).execute();
        this.d.log.info({ device: device.id, provider: device.provider, reason: result.reason }, 'push token invalid: device removed');
        return { pruned: device.id, reason: result.reason };
      case 'permanent':
        throw new PermanentJobError(`${device.provider} refused the push: ${result.reason}`);
      case 'retry':
        throw new RetryLaterError(`${device.provider} failed: ${result.reason}`, result.retryAfterMs ?? 0);
    }
  }

  // --- inbox --------------------------------------------------------------------------------------

  /** A user's notifications, newest first; `cursor` is the last id of the previous page. */
  async list(
    user: string,
    opts: { unread?: boolean; cursor?: string; limit?: number },
  ): Promise<{ items: Notification[]; next_cursor: string | null; unread: number }> {
    const limit = opts.limit ?? 20;
    let q = this.d.storage.reader
      .selectFrom(NOTES)
      .selectAll()
      .where('user_id', '=', user)
      .orderBy('id', 'desc')
      .limit(limit + 1);
    if (opts.unread) q = q.where('read_at', 'is', null);
    if (opts.cursor) q = q.where('id', '<', opts.cursor);
    const rows = await q.execute();
    const unread = await this.d.storage.reader
      .selectFrom(NOTES)
      .select((eb) => eb.fn.countAll().as('n'))
      .where('user_id', '=', user)
      .where('read_at', 'is', null)
      .executeTakeFirst();
    const items = rows.slice(0, limit).map(noteOf);
    return { items, next_cursor: rows.length > limit ? (items.at(-1)?.id ?? null) : null, unread: Number(unread?.n ?? 0) };
  }

  /** Mark one as read (404 when it is not the user's). */
  async markRead(user: string, id: string): Promise<Notification> {
    if (!isUuid(id)) throw notFound();
    await this.d.storage.db
      .updateTable(NOTES)
      .set({ read_at: Date.now() })
      .where('id', '=', id)
      .where('user_id', '=', user)
      .where('read_at', 'is', null)
      .execute();
    const row = await this.d.storage.db.selectFrom(NOTES).selectAll().where('id', '=', id).where('user_id', '=', user).executeTakeFirst();
    if (!row) throw notFound();
    return noteOf(row);
  }

  async markAllRead(user: string): Promise<number> {
    const r = await this.d.storage.db
      .updateTable(NOTES)
      .set({ read_at: Date.now() })
      .where('user_id', '=', user)
      .where('read_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  async remove(user: string, id: string): Promise<void> {
    if (!isUuid(id)) throw notFound();
    const r = await this.d.storage.db.deleteFrom(NOTES).where('id', '=', id).where('user_id', '=', user).executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) throw notFound();
  }

  /** Drop notifications older than the configured days. */
  async sweep(): Promise<number> {
    const r = await this.d.storage.db
      .deleteFrom(NOTES)
      .where('created_at', '<', Date.now() - this.d.config.keepDays * 86_400_000)
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  // --- devices ------------------------------------------------------------------------------------

  /** Register (or move to this user, or refresh) a device token. */
  async register(user: string, body: unknown): Promise<Record<string, unknown>> {
    const b = (typeof body === 'object' && body !== null && !Array.isArray(body) ? body : {}) as Record<string, unknown>;
    const errors: Array<{ field: string; code: string; message: string }> = [];
    const provider = b.provider as ProviderName;
    if (!PROVIDERS.includes(provider)) errors.push({ field: 'provider', code: 'enum', message: 'must be fcm, apns or webpush' });
    let token = b.token;
    let keys: { p256dh: string; auth: string } | null = null;
    if (provider === 'webpush') {
      const sub = b.subscription as { endpoint?: unknown; keys?: { p256dh?: unknown; auth?: unknown } } | undefined;
      const endpoint = sub?.endpoint;
      if (typeof endpoint !== 'string' || !/^https?:\/\//.test(endpoint) || endpoint.length > 2048) {
        errors.push({ field: 'subscription/endpoint', code: 'type', message: 'must be the push subscription endpoint URL' });
      } else if (!this.d.config.allowHttp && !endpoint.startsWith('https://')) {
        errors.push({ field: 'subscription/endpoint', code: 'type', message: 'must be an https URL' });
      }
      if (typeof sub?.keys?.p256dh !== 'string' || typeof sub.keys.auth !== 'string') {
        errors.push({ field: 'subscription/keys', code: 'type', message: 'must hold p256dh and auth' });
      } else keys = { p256dh: sub.keys.p256dh, auth: sub.keys.auth };
      token = endpoint;
    } else if (typeof token !== 'string' || !/^[A-Za-z0-9_:.-]{8,4096}$/.test(token)) {
      errors.push({ field: 'token', code: 'type', message: 'must be the device token from the platform' });
    }
    for (const f of ['app_platform', 'app_version'] as const) {
      if (b[f] !== undefined && (typeof b[f] !== 'string' || (b[f] as string).length > 64))
        errors.push({ field: f, code: 'type', message: 'must be a short string' });
    }
    for (const k of Object.keys(b)) {
      if (!['provider', 'token', 'subscription', 'app_platform', 'app_version'].includes(k))
        errors.push({ field: k, code: 'unknown_field', message: 'is not a device field' });
    }
    if (errors.length > 0) throw validationError(errors);
    const now = Date.now();
    const values = {
      user_id: user,
      provider,
      keys: keys ? JSON.stringify(keys) : null,
      app_platform: (b.app_platform as string | undefined) ?? null,
      app_version: (b.app_version as string | undefined) ?? null,
      updated_at: now,
    };
    return this.d.storage.transaction(async (trx) => {
      const existing = await trx
        .selectFrom(DEVICES)
        .select('id')
        .where('token', '=', token as string)
        .executeTakeFirst();
      // A token names one install: registering it again moves it to whoever is signed in there now.
      if (existing) await trx.updateTable(DEVICES).set(values).where('id', '=', existing.id).execute();
      else
        await trx
          .insertInto(DEVICES)
          .values({ id: uuidv7(), token: token as string, created_at: now, ...values })
          .execute();
      const row = await trx
        .selectFrom(DEVICES)
        .selectAll()
        .where('token', '=', token as string)
        .executeTakeFirstOrThrow();
      return deviceView(row);
    });
  }

  async devices(user: string): Promise<Array<Record<string, unknown>>> {
    const rows = await this.d.storage.reader.selectFrom(DEVICES).selectAll().where('user_id', '=', user).orderBy('created_at').execute();
    return rows.map(deviceView);
  }

  async unregister(user: string, id: string): Promise<void> {
    const r = await this.d.storage.db.deleteFrom(DEVICES).where('id', '=', id).where('user_id', '=', user).executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) throw new RampartError('E_DEVICE_NOT_FOUND', 'you have no device with this id');
  }

  async close(): Promise<void> {
    for (const p of this.providers.values()) await p.close();
  }
}

function checkInput(input: NotificationInput): {
  title: string;
  body: string | null;
  data: Record<string, unknown> | null;
  channels: string[];
} {
  const errors: Array<{ field: string; code: string; message: string }> = [];
  const o = (input ?? {}) as unknown as Record<string, unknown>;
  if (typeof o.title !== 'string' || o.title.trim() === '' || o.title.length > 200)
    errors.push({ field: 'title', code: 'type', message: 'must be 1 to 200 characters' });
  if (o.body !== undefined && o.body !== null && (typeof o.body !== 'string' || o.body.length > 2000))
    errors.push({ field: 'body', code: 'type', message: 'must be at most 2000 characters' });
  if (
    o.data !== undefined &&
    o.data !== null &&
    (typeof o.data !== 'object' || Array.isArray(o.data) || JSON.stringify(o.data).length > 4096)
  ) {
    errors.push({ field: 'data', code: 'type', message: 'must be a JSON object of at most 4 KB' });
  }
  const channels = (o.channels ?? ['realtime', 'push']) as string[];
  if (!Array.isArray(channels) || channels.some((c) => !(CHANNELS as readonly string[]).includes(c))) {
    errors.push({ field: 'channels', code: 'enum', message: 'must list realtime, push and/or email' });
  }
  if (errors.length > 0) throw validationError(errors, 'The notification is invalid.');
  return {
    title: o.title as string,
    body: (o.body as string | undefined) ?? null,
    data: (o.data as Record<string, unknown> | undefined) ?? null,
    channels: [...new Set(channels)],
  };
}

function noteOf(r: Record<string, unknown>): Notification {
  return {
    id: String(r.id),
    title: String(r.title),
    body: (r.body as string | null) ?? null,
    data: r.data ? (JSON.parse(String(r.data)) as Record<string, unknown>) : null,
    channels: JSON.parse(String(r.channels)) as string[],
    created_at: new Date(Number(r.created_at)).toISOString(),
    read_at: r.read_at === null || r.read_at === undefined ? null : new Date(Number(r.read_at)).toISOString(),
  };
}

function deviceOf(r: Record<string, unknown>): Device {
  return {
    id: String(r.id),
    user_id: String(r.user_id),
    provider: r.provider as ProviderName,
    token: String(r.token),
    keys: r.keys ? (JSON.parse(String(r.keys)) as { p256dh: string; auth: string }) : null,
  };
}

function deviceView(r: Record<string, unknown>): Record<string, unknown> {
  return {
    id: r.id,
    provider: r.provider,
    // The token is the device's secret address: shown shortened.
    token: `${String(r.token).slice(0, 12)}…`,
    app_platform: r.app_platform ?? null,
    app_version: r.app_version ?? null,
    created_at: new Date(Number(r.created_at)).toISOString(),
    updated_at: new Date(Number(r.updated_at)).toISOString(),
  };
}

const notFound = () => new RampartError('E_NOTIFICATION_NOT_FOUND', 'you have no notification with this id');
