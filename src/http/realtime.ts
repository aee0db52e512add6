/**
 * The realtime endpoints: WebSocket at `/api/v{1,2}/realtime` and Server-Sent Events at
 * `/api/v{1,2}/realtime/events`. Both go through the server's request hooks first (rate
 * limits, app-version policy, draining), then hand a Peer to the hub.
 *
 * WebSocket protocol (JSON text frames; see docs/realtime.md):
 *   client → server: auth, subscribe, unsubscribe, resume, join, leave, publish, ping
 *   server → client: welcome, authenticated, token_expiring, subscribed, unsubscribed, event,
 *                    notification, resync, joined, left, presence, message, pong, error
 * Close codes: 1001 server going away, 1008 too many messages, 1009 frame too large, 4001 token
 * expired or session ended, 4003 re-authenticated as someone else, 4008 slow consumer, 4029 too
 * many connections.
 */
import { randomBytes } from 'node:crypto';
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import type { Guard } from '../auth/guard.js';
import type { RealtimeConfig } from '../core/config-realtime.js';
import { RampartError } from '../core/errors.js';
import type { Channels } from '../realtime/channels.js';
import type { Peer, RealtimeHub, SubscribeSpec } from '../realtime/hub.js';
import type { RealtimeMetrics } from '../realtime/metrics.js';
import type { Principal } from '../records/access.js';

export interface RealtimeRouteDeps {
  hub: RealtimeHub;
  channels: Channels;
  config: RealtimeConfig;
  metrics: RealtimeMetrics;
  guard: Guard;
  /** Verify an access token given in a message or a query parameter. */
  authenticate(token: string): Promise<{ principal: Principal; expiresAt: number }>;
  /** Whether the session of this principal has ended. */
  isRevoked(p: Principal): boolean;
  /** When the token of this request expires (epoch ms), if it carried one. */
  expiryOf(req: FastifyRequest): Promise<number | undefined>;
}

interface Conn {
  peer: Peer;
  expiresAt: number | undefined;
  timers: NodeJS.Timeout[];
  limitKey: string;
  alive: boolean;
  revocationCheck(): void;
}

/** Send options of every message: a text frame (also when given bytes), never compressed. */
const TEXT = { binary: false, compress: false };
const CLOSE = { expired: 4001, otherUser: 4003, slow: 4008, tooMany: 4029 } as const;
/** Warn a client this long before its token expires (or at half its life, if shorter). */
const EXPIRY_WARNING_MS = 60_000;

export class RealtimeRoutes {
  private readonly conns = new Set<Conn>();
  private readonly perKey = new Map<string, number>();
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly counts = { ws: 0, sse: 0 };

  constructor(private readonly d: RealtimeRouteDeps) {}

  /** Open connections by transport. */
  connections(): Record<string, number> {
    return { ...this.counts };
  }

  /** The endpoints under each API root (`/api/v1`, …). */
  async register(app: FastifyInstance, roots: string[]): Promise<void> {
    await app.register(websocket, {
      options: { maxPayload: this.d.config.maxFrameBytes, perMessageDeflate: false, clientTracking: false },
    });
    for (const root of roots) {
      app.get(`${root}/realtime`, { websocket: true, preHandler: (req) => this.admit(req) }, (socket, req) => this.acceptWs(socket, req));
      app.get(`${root}/realtime/events`, { preHandler: (req) => this.admit(req) }, (req, reply) => this.acceptSse(req, reply));
    }
    this.heartbeat = setInterval(() => this.beat(), this.d.config.heartbeatMs);
    this.heartbeat.unref();
  }

  close(): void {
    clearInterval(this.heartbeat);
  }

  /** Before the upgrade (or the event stream): who it is, and whether they may open one more. */
  private async admit(req: FastifyRequest): Promise<void> {
    const q = req.query as Record<string, string | undefined>;
    let principal = await this.d.guard(req);
    let expiresAt = await this.d.expiryOf(req);
    // EventSource cannot send headers: the token may come as a query parameter there.
    if (principal.kind === 'anonymous' && typeof q.access_token === 'string' && req.url.includes('/realtime/events')) {
      ({ principal, expiresAt } = await this.d.authenticate(q.access_token));
    }
    const key = principal.kind === 'user' ? `u:${principal.id}` : `ip:${req.ip}`;
    if ((this.perKey.get(key) ?? 0) >= this.d.config.maxConnectionsPerUser) {
      throw new RampartError('E_TOO_MANY_CONNECTIONS', `at most ${this.d.config.maxConnectionsPerUser} realtime connections per user`, {
        headers: { 'Retry-After': '5' },
      });
    }
    (req as RealtimeRequest).realtime = { principal, expiresAt, key };
  }

  private open(peer: Peer, admitted: Admitted): Conn {
    const conn: Conn = {
      peer,
      expiresAt: undefined,
      timers: [],
      limitKey: admitted.key,
      alive: true,
      revocationCheck: () => {
        if (this.d.isRevoked(peer.principal)) {
          this.d.metrics.dropped.inc({ reason: 'session-ended' });
          peer.close(CLOSE.expired, 'session ended');
        }
      },
    };
    this.conns.add(conn);
    this.perKey.set(conn.limitKey, (this.perKey.get(conn.limitKey) ?? 0) + 1);
    this.counts[peer.transport]++;
    this.d.hub.connect(peer);
    this.armExpiry(conn, admitted.expiresAt);
    return conn;
  }

  private closed(conn: Conn): void {
    if (!this.conns.delete(conn)) return;
    for (const t of conn.timers) clearTimeout(t);
    const n = (this.perKey.get(conn.limitKey) ?? 1) - 1;
    if (n <= 0) this.perKey.delete(conn.limitKey);
    else this.perKey.set(conn.limitKey, n);
    this.counts[conn.peer.transport]--;
    this.d.hub.disconnect(conn.peer);
    this.d.channels.disconnect(conn.peer);
  }

  /** Warn before the token expires; close when it has, unless the client re-authenticated. */
  private armExpiry(conn: Conn, expiresAt: number | undefined): void {
    for (const t of conn.timers) clearTimeout(t);
    conn.timers = [];
    conn.expiresAt = expiresAt;
    if (expiresAt === undefined) return;
    const left = expiresAt - Date.now();
    const warnIn = Math.max(0, left - Math.min(EXPIRY_WARNING_MS, left / 2));
    conn.timers.push(
      setTimeout(() => {
        conn.peer.send('token_expiring', JSON.stringify({ type: 'token_expiring', expires_at: new Date(expiresAt).toISOString() }));
      }, warnIn),
      setTimeout(
        () => {
          this.d.metrics.dropped.inc({ reason: 'token-expired' });
          conn.peer.close(CLOSE.expired, 'token expired');
        },
        Math.max(0, left),
      ),
    );
    for (const t of conn.timers) t.unref();
  }

  /** Heartbeats: a peer that did not answer the last ping is dropped; ended sessions are closed. */
  private beat(): void {
    for (const conn of this.conns) {
      conn.revocationCheck();
      const ws = (conn.peer as WsPeer).ws;
      if (ws) {
        if (!conn.alive) {
          this.d.metrics.dropped.inc({ reason: 'heartbeat' });
          ws.terminate();
          continue;
        }
        conn.alive = false;
        ws.ping();
      } else conn.peer.send('ping', '', undefined);
    }
  }

  // --- WebSocket ----------------------------------------------------------------------------------

  private acceptWs(ws: WebSocket, req: FastifyRequest): void {
    const admitted = (req as RealtimeRequest).realtime as Admitted;
    const cap = this.d.config.sendBufferBytes;
    const metrics = this.d.metrics;
    let closing = false;
    const peer: WsPeer = {
      id: randomBytes(9).toString('base64url'),
      transport: 'ws',
      principal: admitted.principal,
      ws,
      send(_type, json) {
        if (closing || ws.readyState !== 1) return;
        if (ws.bufferedAmount > cap) {
          // The client does not read: stop queueing for it (memory stays bounded) and hang up.
          closing = true;
          metrics.dropped.inc({ reason: 'slow-consumer' });
          ws.close(CLOSE.slow, 'slow consumer');
          setTimeout(() => ws.terminate(), 1000).unref();
          return;
        }
        ws.send(json, TEXT);
      },
      close(code, reason) {
        if (closing) return;
        closing = true;
        ws.close(code, reason);
        setTimeout(() => ws.terminate(), 2000).unref();
      },
    };
    const conn = this.open(peer, admitted);
    // Inbound messages: a token bucket per connection (a burst of twice the rate).
    const rate = this.d.config.messagesPerSecond;
    let tokens = rate * 2;
    let counted = Date.now();
    ws.on('pong', () => {
      conn.alive = true;
    });
    ws.on('close', () => this.closed(conn));
    ws.on('error', () => {});
    ws.on('message', (data, binary) => {
      if (closing) return;
      const now = Date.now();
      tokens = Math.min(rate * 2, tokens + ((now - counted) / 1000) * rate);
      counted = now;
      if (tokens < 1) {
        metrics.dropped.inc({ reason: 'too-many-messages' });
        peer.close(1008, 'too many messages');
        return;
      }
      tokens -= 1;
      if (binary) return this.reply(peer, undefined, new RampartError('E_INVALID_MESSAGE', 'messages are JSON text'));
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(data.toString());
        if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw new Error('not an object');
      } catch {
        return this.reply(peer, undefined, new RampartError('E_INVALID_MESSAGE', 'a message is a JSON object with a type'));
      }
      this.handle(conn, msg).catch((err) => this.reply(peer, msg.id, err));
    });
    peer.send(
      'welcome',
      JSON.stringify({
        type: 'welcome',
        connection: peer.id,
        user: admitted.principal.kind === 'user' ? admitted.principal.id : null,
        last_event_id: this.d.hub.position(),
        heartbeat_ms: this.d.config.heartbeatMs,
        max_frame_bytes: this.d.config.maxFrameBytes,
      }),
    );
  }

  private reply(peer: Peer, id: unknown, err: unknown): void {
    const e = err instanceof RampartError ? err : new RampartError('E_INTERNAL', 'the message could not be handled', { cause: err });
    peer.send('error', JSON.stringify({ type: 'error', id: typeof id === 'string' ? id : undefined, code: e.code, message: e.message }));
  }

  private async handle(conn: Conn, msg: Record<string, unknown>): Promise<void> {
    const peer = conn.peer;
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    switch (msg.type) {
      case 'auth': {
        if (typeof msg.token !== 'string') throw new RampartError('E_INVALID_MESSAGE', 'auth needs a token');
        const { principal, expiresAt } = await this.d.authenticate(msg.token);
        const before = peer.principal;
        if (before.kind === 'user' && principal.kind === 'user' && before.id !== principal.id) {
          peer.close(CLOSE.otherUser, 're-authenticated as another user');
          return;
        }
        if (before.kind !== 'user' && principal.kind === 'user') {
          const key = `u:${principal.id}`;
          if ((this.perKey.get(key) ?? 0) >= this.d.config.maxConnectionsPerUser) {
            peer.close(CLOSE.tooMany, 'too many connections');
            return;
          }
          this.perKey.set(conn.limitKey, (this.perKey.get(conn.limitKey) ?? 1) - 1);
          conn.limitKey = key;
          this.perKey.set(key, (this.perKey.get(key) ?? 0) + 1);
        }
        peer.principal = principal;
        this.d.hub.reauthenticated(peer);
        this.armExpiry(conn, expiresAt);
        peer.send(
          'authenticated',
          JSON.stringify({ type: 'authenticated', user: (principal as { id: string }).id, expires_at: new Date(expiresAt).toISOString() }),
        );
        return;
      }
      case 'subscribe':
        await this.d.hub.subscribe(peer, msg as unknown as SubscribeSpec);
        return;
      case 'resume': {
        const subs = msg.subscriptions;
        if (!Array.isArray(subs)) throw new RampartError('E_INVALID_MESSAGE', 'resume needs last_event_id and subscriptions');
        const since = msg.last_event_id as number;
        for (const s of subs) {
          await this.d.hub
            .subscribe(peer, { ...(s as SubscribeSpec), since })
            .catch((err) => this.reply(peer, (s as SubscribeSpec)?.id, err));
        }
        return;
      }
      case 'unsubscribe':
        if (!this.d.hub.unsubscribe(peer, String(msg.id))) throw new RampartError('E_INVALID_MESSAGE', 'no such subscription');
        peer.send('unsubscribed', JSON.stringify({ type: 'unsubscribed', id }));
        return;
      case 'join': {
        const presence = await this.d.channels.join(peer, msg.channel as string, msg.meta);
        peer.send('joined', JSON.stringify({ type: 'joined', id, channel: msg.channel, presence }));
        return;
      }
      case 'leave':
        if (!this.d.channels.leave(peer, msg.channel as string)) throw new RampartError('E_INVALID_MESSAGE', 'not in that channel');
        peer.send('left', JSON.stringify({ type: 'left', id, channel: msg.channel }));
        return;
      case 'publish':
        this.d.channels.publish(peer, msg.channel as string, msg.event as string, msg.data);
        return;
      case 'ping':
        peer.send('pong', JSON.stringify({ type: 'pong', id }));
        return;
      default:
        throw new RampartError('E_INVALID_MESSAGE', `unknown message type ${JSON.stringify(String(msg.type).slice(0, 32))}`);
    }
  }

  // --- Server-Sent Events -----------------------------------------------------------------------

  private async acceptSse(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const admitted = (req as RealtimeRequest).realtime as Admitted;
    const q = req.query as Record<string, string | undefined>;
    const header = req.headers['last-event-id'];
    const resumeFrom = typeof header === 'string' && header !== '' ? header : q.last_event_id;
    if (resumeFrom !== undefined && !/^\d{1,15}$/.test(resumeFrom)) {
      throw new RampartError('E_INVALID_QUERY', 'Last-Event-ID must be an event id');
    }
    const spec: SubscribeSpec = {
      id: 'sse',
      collection: q.collection,
      record: q.record,
      filter: q.filter,
      notifications: q.notifications === 'true' || q.notifications === '1',
      since: resumeFrom === undefined ? undefined : Number(resumeFrom),
    };
    this.d.hub.check(admitted.principal, spec);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    const cap = this.d.config.sendBufferBytes;
    const metrics = this.d.metrics;
    let closed = false;
    const peer: Peer = {
      id: randomBytes(9).toString('base64url'),
      transport: 'sse',
      principal: admitted.principal,
      send(type, json, eventId) {
        if (closed) return;
        if (res.writableLength > cap) {
          closed = true;
          metrics.dropped.inc({ reason: 'slow-consumer' });
          res.destroy();
          return;
        }
        if (type === 'ping') res.write(': ping\n\n');
        else res.write(`${eventId === undefined ? '' : `id: ${eventId}\n`}event: ${type}\ndata: ${json}\n\n`);
      },
      close(code, reason) {
        if (closed) return;
        closed = true;
        res.end(`event: close\ndata: ${JSON.stringify({ type: 'close', code, reason })}\n\n`);
      },
    };
    const conn = this.open(peer, admitted);
    res.on('close', () => {
      closed = true;
      this.closed(conn);
    });
    await this.d.hub.subscribe(peer, spec).catch((err) => {
      this.reply(peer, 'sse', err);
      peer.close(1011, 'subscription failed');
    });
  }
}

type Admitted = { principal: Principal; expiresAt: number | undefined; key: string };
type RealtimeRequest = FastifyRequest & { realtime?: Admitted };
type WsPeer = Peer & { ws: WebSocket };
