/**
 * Realtime over one WebSocket: follow collections, records, filters and your notifications;
 * join channels for messages and presence. The connection is opened on first use, authenticated
 * with the session's access token (renewed when the server says it is expiring), and reopened
 * after any loss with jittered exponential backoff; then every subscription is resumed from the
 * last event id this client saw, so nothing committed meanwhile is missed (each subscription drops
 * events it already delivered), and channels are joined again. When the server no longer has the
 * events since then, the subscription's `onResync` is called: fetch the current state over REST.
 */
import type { Auth } from './auth.js';
import type { RecordBase } from './collections.js';
import { SignedOutError } from './errors.js';
import type { Transport } from './http.js';

/** The part of the WebSocket API the client uses (the browser's, React Native's, or `ws` in Node). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type WebSocketCtor = new (url: string) => WebSocketLike;

/** A change of a record. */
export interface RecordEvent<T = Record<string, unknown>> {
  /** The event's position in the server's log. */
  id: number;
  collection: string;
  action: 'created' | 'updated' | 'deleted';
  record: RecordBase & T;
}

/** A notification for the signed-in user. */
export interface NotificationEvent {
  id: number;
  notification: { id: string; title: string; body: string | null; data: Record<string, unknown> | null; created_at: string } & Record<
    string,
    unknown
  >;
}

export type SubscribeTarget = { collection: string; record?: string; filter?: string } | { notifications: true };

export interface SubscriptionHandlers<E> {
  onEvent(e: E): void;
  /** The server no longer has every event since this client's last one: reload the state over REST. */
  onResync?(): void;
  /** Live from here (after a connect, a reconnect, or a resync). */
  onSubscribed?(): void;
  /** The server refused the subscription (a bad filter, no access). */
  onError?(err: { code: string; message: string }): void;
}

export interface Subscription {
  readonly id: string;
  unsubscribe(): void;
}

export interface Member {
  user: string;
  meta?: unknown;
}

export interface ChannelHandlers {
  onMessage?(m: { event: string; from: string | null; data: unknown }): void;
  /** Members joined or left (`members` is everyone present now). */
  onPresence?(p: { joins: Member[]; leaves: Member[]; members: Member[] }): void;
  onError?(err: { code: string; message: string }): void;
}

export interface Channel {
  readonly name: string;
  members(): Member[];
  publish(event: string, data?: unknown): void;
  leave(): void;
}

export type RealtimeState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

interface Sub {
  id: string;
  target: SubscribeTarget;
  handlers: SubscriptionHandlers<any>;
  /** Events up to here were delivered to it. */
  seen: number;
}

interface Chan {
  name: string;
  meta?: unknown;
  handlers: ChannelHandlers;
  members: Map<string, unknown>;
}

export interface RealtimeOptions {
  /** The WebSocket implementation (default the global one; in Node 20 pass `ws`'s). */
  WebSocket?: WebSocketCtor;
  /** First reconnect delay, ms (doubling, full jitter; default 500). */
  reconnectBaseMs?: number;
  /** Longest reconnect delay, ms (default 30000). */
  reconnectMaxMs?: number;
}

const OPEN = 1;

export class Realtime {
  private ws?: WebSocketLike;
  private readonly subs = new Map<string, Sub>();
  private readonly channels = new Map<string, Chan>();
  private seq = 0;
  private attempt = 0;
  private stateNow: RealtimeState = 'idle';
  private retryTimer?: ReturnType<typeof setTimeout>;
  private pingTimer?: ReturnType<typeof setInterval>;
  private lastHeard = 0;
  private ready = false;
  private readonly stateListeners = new Set<(s: RealtimeState) => void>();
  /** The newest event id this client received (the resume point). */
  lastEventId?: number;
  /** Connections opened so far. */
  connections = 0;

  constructor(
    private readonly http: Transport,
    private readonly auth: Auth | undefined,
    private readonly o: RealtimeOptions = {},
  ) {}

  get state(): RealtimeState {
    return this.stateNow;
  }

  onState(fn: (s: RealtimeState) => void): () => void {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }

  private setState(s: RealtimeState): void {
    if (s === this.stateNow) return;
    this.stateNow = s;
    for (const fn of this.stateListeners) fn(s);
  }

  /** Follow changes of a collection (optionally one record or a filter), or your notifications. */
  subscribe<T = Record<string, unknown>>(
    target: { collection: string; record?: string; filter?: string },
    h: SubscriptionHandlers<RecordEvent<T>>,
  ): Subscription;
  subscribe(target: { notifications: true }, h: SubscriptionHandlers<NotificationEvent>): Subscription;
  subscribe(target: SubscribeTarget, handlers: SubscriptionHandlers<any>): Subscription {
    const id = `s${++this.seq}`;
    const sub: Sub = { id, target, handlers, seen: this.lastEventId ?? 0 };
    this.subs.set(id, sub);
    if (this.ready) this.send({ type: 'subscribe', id, ...target });
    else this.ensure();
    return {
      id,
      unsubscribe: () => {
        if (!this.subs.delete(id)) return;
        if (this.ready) this.send({ type: 'unsubscribe', id });
        this.idleCheck();
      },
    };
  }

  /** Enter a channel (`room:42`); `meta` is what others see of you in its presence. */
  join(name: string, handlers: ChannelHandlers = {}, meta?: unknown): Channel {
    const chan: Chan = { name, meta, handlers, members: new Map() };
    this.channels.set(name, chan);
    if (this.ready) this.send({ type: 'join', id: `j:${name}`, channel: name, meta });
    else this.ensure();
    return {
      name,
      members: () => [...chan.members].map(([user, m]) => ({ user, meta: m })),
      publish: (event, data) => {
        if (this.ready) this.send({ type: 'publish', channel: name, event, data });
      },
      leave: () => {
        if (this.channels.get(name) !== chan) return;
        this.channels.delete(name);
        if (this.ready) this.send({ type: 'leave', id: `l:${name}`, channel: name });
        this.idleCheck();
      },
    };
  }

  /** Close for good (until the next subscribe or join). */
  close(): void {
    this.subs.clear();
    this.channels.clear();
    this.shutdown();
  }

  private shutdown(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    clearInterval(this.pingTimer);
    const ws = this.ws;
    this.ws = undefined;
    this.ready = false;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      ws.onerror = null;
      try {
        ws.close(1000, 'client closed');
      } catch {}
    }
    this.setState('closed');
  }

  private idleCheck(): void {
    if (this.subs.size === 0 && this.channels.size === 0) this.shutdown();
  }

  private send(msg: Record<string, unknown>): void {
    if (this.ws?.readyState === OPEN) this.ws.send(JSON.stringify(msg));
  }

  private ensure(): void {
    if (this.ws || this.retryTimer) return;
    this.open();
  }

  private url(): string {
    return `${this.http.base.replace(/^http/, 'ws')}/realtime`;
  }

  private open(): void {
    const Ctor = this.o.WebSocket ?? (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
    if (!Ctor) throw new Error('no WebSocket here: pass `WebSocket` in the options (in Node 20: the `ws` package)');
    this.setState(this.connections === 0 ? 'connecting' : 'reconnecting');
    const ws = new Ctor(this.url());
    this.ws = ws;
    this.ready = false;
    this.lastHeard = Date.now();
    ws.onmessage = (ev) => {
      this.lastHeard = Date.now();
      let msg: Record<string, any>;
      try {
        msg = JSON.parse(String(ev.data));
      } catch {
        return;
      }
      void this.receive(ws, msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      void this.lost(ev.code);
    };
    ws.onerror = () => {};
  }

  private async receive(ws: WebSocketLike, msg: Record<string, any>): Promise<void> {
    if (this.ws !== ws) return;
    switch (msg.type) {
      case 'welcome': {
        this.connections++;
        const beat = typeof msg.heartbeat_ms === 'number' ? msg.heartbeat_ms : 30_000;
        clearInterval(this.pingTimer);
        // The server's pings are protocol frames a browser answers unseen; this client pings too,
        // so it notices a connection that died without a close (a suspended laptop, a lost route).
        this.pingTimer = setInterval(() => {
          if (Date.now() - this.lastHeard > 2.5 * beat) ws.close(4000, 'no answer');
          else this.send({ type: 'ping' });
        }, beat);
        const token = await this.auth?.token().catch(() => undefined);
        if (token) this.send({ type: 'auth', token });
        else this.start();
        return;
      }
      case 'authenticated':
        if (!this.ready) this.start();
        return;
      case 'token_expiring': {
        const s = await this.auth?.refresh().catch(() => undefined);
        if (s) this.send({ type: 'auth', token: s.accessToken });
        return;
      }
      case 'event':
      case 'notification': {
        const id = msg.id as number;
        if (this.lastEventId === undefined || id > this.lastEventId) this.lastEventId = id;
        for (const sid of (msg.subs as string[]) ?? []) {
          const sub = this.subs.get(sid);
          if (!sub || id <= sub.seen) continue;
          sub.seen = id;
          const e =
            msg.type === 'event'
              ? { id, collection: msg.collection, action: msg.action, record: msg.record }
              : { id, notification: msg.notification };
          try {
            sub.handlers.onEvent(e);
          } catch {}
        }
        return;
      }
      case 'subscribed': {
        const sub = this.subs.get(msg.id);
        const mark = msg.last_event_id as number;
        if (sub) {
          if (mark > sub.seen) sub.seen = mark;
          sub.handlers.onSubscribed?.();
        }
        if (this.lastEventId === undefined || mark > this.lastEventId) this.lastEventId = mark;
        this.attempt = 0;
        return;
      }
      case 'resync': {
        const sub = this.subs.get(msg.id);
        if (sub) {
          sub.seen = msg.last_event_id as number;
          sub.handlers.onResync?.();
        }
        return;
      }
      case 'joined': {
        const chan = this.channels.get(msg.channel);
        if (!chan) return;
        chan.members = new Map(((msg.presence as Member[] | undefined) ?? []).map((m) => [m.user, m.meta]));
        chan.handlers.onPresence?.({
          joins: [...chan.members].map(([user, meta]) => ({ user, meta })),
          leaves: [],
          members: this.membersOf(chan),
        });
        this.attempt = 0;
        return;
      }
      case 'presence': {
        const chan = this.channels.get(msg.channel);
        if (!chan) return;
        for (const j of (msg.joins as Member[]) ?? []) chan.members.set(j.user, j.meta);
        for (const l of (msg.leaves as Member[]) ?? []) chan.members.delete(l.user);
        chan.handlers.onPresence?.({ joins: msg.joins ?? [], leaves: msg.leaves ?? [], members: this.membersOf(chan) });
        return;
      }
      case 'message': {
        this.channels.get(msg.channel)?.handlers.onMessage?.({ event: msg.event, from: msg.from ?? null, data: msg.data });
        return;
      }
      case 'error': {
        const err = { code: String(msg.code), message: String(msg.message) };
        const sub = typeof msg.id === 'string' ? this.subs.get(msg.id) : undefined;
        if (sub) {
          this.subs.delete(sub.id);
          sub.handlers.onError?.(err);
          return;
        }
        const chan = typeof msg.id === 'string' ? this.channels.get(msg.id.replace(/^[jl]:/, '')) : undefined;
        if (chan) {
          this.channels.delete(chan.name);
          chan.handlers.onError?.(err);
          return;
        }
        // A refused token (expired in between): refresh once and authenticate again.
        if (!this.ready && (err.code === 'E_INVALID_TOKEN' || err.code === 'E_SESSION_REVOKED')) {
          const s = await this.auth?.refresh().catch(() => undefined);
          if (s) this.send({ type: 'auth', token: s.accessToken });
          else this.start();
        }
        return;
      }
      default:
        return;
    }
  }

  private membersOf(chan: Chan): Member[] {
    return [...chan.members].map(([user, meta]) => ({ user, meta }));
  }

  /** Authenticated (or anonymous): resume or start every subscription, join every channel. */
  private start(): void {
    this.ready = true;
    this.setState('open');
    const specs = [...this.subs.values()].map((s) => ({ id: s.id, ...s.target }));
    if (specs.length > 0) {
      if (this.lastEventId !== undefined) this.send({ type: 'resume', last_event_id: this.lastEventId, subscriptions: specs });
      else for (const s of specs) this.send({ type: 'subscribe', ...s });
    }
    for (const c of this.channels.values()) this.send({ type: 'join', id: `j:${c.name}`, channel: c.name, meta: c.meta });
  }

  private async lost(code: number): Promise<void> {
    this.ws = undefined;
    this.ready = false;
    clearInterval(this.pingTimer);
    if (this.subs.size === 0 && this.channels.size === 0) return this.setState('closed');
    this.setState('reconnecting');
    let delay = Math.random() * Math.min(this.o.reconnectMaxMs ?? 30_000, (this.o.reconnectBaseMs ?? 500) * 2 ** this.attempt++);
    if (code === 4001 && this.auth) {
      // The token expired or the session ended: a refresh tells which.
      try {
        await this.auth.refresh();
        delay = 0;
      } catch (err) {
        if (err instanceof SignedOutError) {
          this.close();
          return;
        }
      }
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.open();
    }, delay);
  }
}
