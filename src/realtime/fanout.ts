/**
 * How events and ephemeral messages reach every node. Two backends with one contract:
 *  - `database`: the storage's own notifications. On PostgreSQL that is NOTIFY, sent inside the
 *    writing transaction, so it is delivered at commit and in commit order; on SQLite it is the
 *    in-process notifier (embedded mode: one serving process).
 *  - `redis`: Redis pub/sub, published by the writing node right after its commit.
 *
 * Neither is trusted to be complete: a node sees an event id it cannot place (a gap), notices the
 * transport came back after a loss, or finds the log's head ahead of it on its periodic look, and
 * then reads the missing events from the log. The transport only makes delivery fast.
 */
import type { Redis } from 'ioredis';
import type { Kysely } from 'kysely';
import type { RedisHandle } from '../storage/redis.js';
import type { Storage } from '../storage/types.js';
import type { RtEvent } from './event-log.js';

/** What travels: the events of one transaction, or just the head id when they are too big to carry. */
export interface EventsMessage {
  /** Events, in id order (absent: read them from the log up to `head`). */
  events?: RtEvent[];
  /** The highest id the message is about. */
  head: number;
}

/** The receiving side. */
export interface FanoutHandlers {
  onEvents(msg: EventsMessage): void;
  onEphemeral(msg: Record<string, unknown>): void;
  /** The transport is up (again) or lost; after a loss, whatever was sent meanwhile is unknown. */
  onState(up: boolean): void;
}

export interface Fanout {
  readonly kind: 'database' | 'redis';
  /** Inside the writing transaction, before commit. */
  announce(trx: Kysely<any>, events: RtEvent[]): Promise<void>;
  /** Right after the commit. */
  published(events: RtEvent[]): void;
  /** Send an ephemeral message (channels, presence) to every node, this one included. */
  broadcast(msg: Record<string, unknown>): void;
  start(handlers: FanoutHandlers): Promise<void>;
  stop(): Promise<void>;
}

const EVENTS_CHANNEL = 'rampart_rt';
const EPHEMERAL_CHANNEL = 'rampart_rt_eph';
/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more. */
const PG_PAYLOAD_MAX = 7900;
/** Redis carries more, but a node should not parse megabytes it may not need. */
const REDIS_PAYLOAD_MAX = 256 * 1024;

type Wire = [number, string, string, string | null, string, number];

export function encodeEvents(events: RtEvent[], max: number): string {
  const head = events.at(-1)?.id ?? 0;
  const full = JSON.stringify({ h: head, e: events.map((e): Wire => [e.id, e.stream, e.action, e.target, e.payload, e.createdAt]) });
  return full.length <= max ? full : JSON.stringify({ h: head });
}

export function decodeEvents(text: string): EventsMessage {
  const o = JSON.parse(text) as { h: number; e?: Wire[] };
  return {
    head: o.h,
    events: o.e?.map(([id, stream, action, target, payload, createdAt]) => ({ id, stream, action, target, payload, createdAt })),
  };
}

/** Fan-out through the storage's notifications (PostgreSQL NOTIFY, or in process on SQLite). */
export class DatabaseFanout implements Fanout {
  readonly kind = 'database' as const;
  private stops: Array<() => void> = [];

  constructor(
    private readonly storage: Storage,
    private readonly onError: (err: unknown) => void,
  ) {}

  async announce(trx: Kysely<any>, events: RtEvent[]): Promise<void> {
    await this.storage.notify(trx, EVENTS_CHANNEL, encodeEvents(events, PG_PAYLOAD_MAX));
  }

  published(): void {}

  broadcast(msg: Record<string, unknown>): void {
    const text = JSON.stringify(msg);
    if (text.length > PG_PAYLOAD_MAX) throw new Error('ephemeral message too large for the database fan-out');
    this.storage.notify(this.storage.db, EPHEMERAL_CHANNEL, text).catch(this.onError);
  }

  async start(h: FanoutHandlers): Promise<void> {
    let events = false;
    let eph = false;
    const state = () => h.onState(events && eph);
    this.stops.push(
      await this.storage.listen(
        EVENTS_CHANNEL,
        (p) => h.onEvents(decodeEvents(p)),
        (up) => {
          events = up;
          state();
        },
      ),
      await this.storage.listen(
        EPHEMERAL_CHANNEL,
        (p) => h.onEphemeral(JSON.parse(p)),
        (up) => {
          eph = up;
          state();
        },
      ),
    );
  }

  async stop(): Promise<void> {
    for (const s of this.stops) s();
    this.stops = [];
  }
}

/**
 * Fan-out through Redis pub/sub (a subscriber connection of its own). Channel names carry the
 * cluster's namespace (derived from its database), so clusters sharing a Redis never mix events.
 */
export class RedisFanout implements Fanout {
  readonly kind = 'redis' as const;
  private sub: Redis | undefined;
  private readonly events: string;
  private readonly ephemeral: string;

  constructor(
    private readonly redis: RedisHandle,
    namespace: string,
    private readonly onError: (err: unknown) => void,
  ) {
    this.events = `${EVENTS_CHANNEL}:${namespace}`;
    this.ephemeral = `${EPHEMERAL_CHANNEL}:${namespace}`;
  }

  async announce(): Promise<void> {}

  published(events: RtEvent[]): void {
    if (events.length === 0 || !this.redis.isUp()) return;
    this.redis.client.publish(this.events, encodeEvents(events, REDIS_PAYLOAD_MAX)).catch(this.onError);
  }

  broadcast(msg: Record<string, unknown>): void {
    if (!this.redis.isUp()) return;
    this.redis.client.publish(this.ephemeral, JSON.stringify(msg)).catch(this.onError);
  }

  async start(h: FanoutHandlers): Promise<void> {
    const sub = this.redis.client.duplicate({ enableOfflineQueue: true, autoResubscribe: false, connectionName: 'rampart-realtime' });
    this.sub = sub;
    let up = false;
    sub.on('message', (channel: string, text: string) => {
      try {
        if (channel === this.events) h.onEvents(decodeEvents(text));
        else h.onEphemeral(JSON.parse(text));
      } catch (err) {
        this.onError(err);
      }
    });
    // `subscribe` is re-sent by ioredis on every reconnect; only then is the node listening again.
    sub.on('ready', () => {
      sub
        .subscribe(this.events, this.ephemeral)
        .then(() => {
          up = true;
          h.onState(true);
        })
        .catch(this.onError);
    });
    sub.on('close', () => {
      if (up) h.onState(false);
      up = false;
    });
    sub.on('error', this.onError);
  }

  async stop(): Promise<void> {
    this.sub?.disconnect();
    this.sub = undefined;
  }
}
