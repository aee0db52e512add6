/**
 * The realtime component of a node: the event log, the fan-out chosen by configuration, the hub,
 * channels with presence and the online registry, with the record hooks that log every change.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Clock } from '../core/clock.js';
import type { RealtimeConfig } from '../core/config-realtime.js';
import type { HookRegistry, RecordData } from '../records/hooks.js';
import type { RecordsService } from '../records/service.js';
import type { RedisHandle } from '../storage/redis.js';
import type { Storage } from '../storage/types.js';
import { type ChannelDef, Channels } from './channels.js';
import { EventLog, type NewEvent } from './event-log.js';
import { DatabaseFanout, type Fanout, RedisFanout } from './fanout.js';
import { RealtimeHub } from './hub.js';
import { type RealtimeMetrics, realtimeMetrics } from './metrics.js';
import { OnlineUsers } from './online.js';

export interface Realtime {
  hub: RealtimeHub;
  channels: Channels;
  online: OnlineUsers;
  log: EventLog;
  metrics: RealtimeMetrics;
  /** This node's name in presence and the online registry. */
  node: string;
  /** Log events in the transaction `trx` (they are announced when its write commits). */
  append(trx: Kysely<any>, events: NewEvent[]): Promise<void>;
  /** Where open connections are counted (set by the HTTP layer). */
  countConnections: () => Record<string, number>;
  start(): Promise<void>;
  /** Close every client connection (1001) while events keep flowing (a draining node). */
  dropClients(): void;
  stop(): Promise<void>;
}

export interface RealtimeDeps {
  config: RealtimeConfig;
  storage: Storage;
  records: RecordsService;
  hooks: HookRegistry;
  clock: Clock;
  logger: Logger;
  registry: Registry;
  redis: RedisHandle | undefined;
  channels: Record<string, ChannelDef>;
  nodeName: string | undefined;
  /** What identifies the cluster's data (the database URL or data directory): Redis channel names derive from it. */
  clusterIdentity: string;
}

const ACTIONS = { Create: 'created', Update: 'updated', Delete: 'deleted' } as const;

export function createRealtime(d: RealtimeDeps): Realtime {
  // Unique per start, even for two apps in one process or a node restarted under the same name.
  const node = `${d.nodeName ?? `${hostname()}:${process.pid}`}:${randomBytes(3).toString('hex')}`;
  const log = new EventLog(d.storage, d.clock);
  const onError = (err: unknown) => d.logger.warn({ err: (err as Error).message }, 'realtime fan-out error');
  const kind = d.config.fanout === 'auto' ? (d.redis ? 'redis' : 'database') : d.config.fanout;
  if (kind === 'redis' && !d.redis) throw new Error('RAMPART_REALTIME_FANOUT=redis needs REDIS_URL');
  const fanout: Fanout =
    kind === 'redis'
      ? new RedisFanout(d.redis as RedisHandle, namespaceOf(d.clusterIdentity), onError)
      : new DatabaseFanout(d.storage, onError);
  const out: Realtime = {
    node,
    log,
    countConnections: () => ({}),
  } as Realtime;
  const metrics = realtimeMetrics(d.registry, () => out.countConnections());
  const online = new OnlineUsers(d.storage, node, d.logger);
  const hub = new RealtimeHub({
    storage: d.storage,
    log,
    fanout,
    records: d.records,
    config: d.config,
    logger: d.logger,
    metrics,
    onNotificationsFollowed: (user, delta) => online.change(user, delta),
  });
  const channels = new Channels(
    d.channels,
    fanout,
    d.records,
    node,
    { syncMs: d.config.presenceSyncMs, publishPerSecond: d.config.publishPerSecond },
    d.logger,
  );
  // Every change of every collection is logged in its own transaction, after the app's hooks.
  for (const c of d.records.collections()) {
    const hidden = new Set(d.records.hiddenFields(c.name));
    for (const event of ['Create', 'Update', 'Delete'] as const) {
      d.hooks.add(c.name, `on${event}`, {
        id: `rampart.realtime.${event}`,
        priority: 20_000,
        fn: async (record: RecordData, ctx) => {
          const visible = hidden.size === 0 ? record : Object.fromEntries(Object.entries(record).filter(([k]) => !hidden.has(k)));
          await hub.append(ctx.db, [{ stream: c.name, action: ACTIONS[event], target: null, payload: JSON.stringify(visible) }]);
        },
      });
    }
  }
  return Object.assign(out, {
    hub,
    channels,
    online,
    metrics,
    append: (trx: Kysely<any>, events: NewEvent[]) => hub.append(trx, events),
    async start() {
      await hub.start((msg) => channels.receive(msg));
      channels.start();
      online.start();
    },
    dropClients: () => hub.dropClients(),
    async stop() {
      channels.stop();
      await hub.stop();
      await online.stop();
    },
  });
}

/** A short stable name for a cluster, without the credentials its database URL may hold. */
function namespaceOf(identity: string): string {
  let text = identity;
  try {
    const u = new URL(identity);
    u.username = '';
    u.password = '';
    text = u.toString();
  } catch {}
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}
