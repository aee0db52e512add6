/**
 * App-defined channels: ephemeral messages (typing indicators) and presence (who is in a room),
 * across every node. Nothing here is logged: a message reaches the members connected when it is
 * sent, and presence is rebuilt from the nodes' announcements.
 *
 * Presence: each node announces its own members' joins and leaves, and re-announces all of them
 * every `presenceSyncMs`; a node that has not been heard from for three rounds (it died) has its
 * members dropped. Clients see presence per user: `joins` when a user's first connection enters a
 * channel anywhere in the cluster, `leaves` when their last one is gone.
 */
import type { Logger } from 'pino';
import { RampartError } from '../core/errors.js';
import { denied, type Principal } from '../records/access.js';
import type { RecordsService } from '../records/service.js';
import type { Fanout } from './fanout.js';
import type { Peer } from './hub.js';

/** A channel family, declared by the app as `channels: { room: { … } }` for names `room:<param>`. */
export interface ChannelDef {
  /** Who may join `name:param` (default: any signed-in user). */
  authorize?: (ctx: { auth: Principal; param: string; records: RecordsService }) => boolean | Promise<boolean>;
  /** Track who is in the channel (default false). */
  presence?: boolean;
  /** Members may publish messages (default true); app code always may. */
  clientPublish?: boolean;
}

interface Entry {
  user: string;
  meta: unknown;
}

const NAME = /^([a-z][a-z0-9_-]{0,31})(?::([A-Za-z0-9_.:-]{1,128}))?$/;
const META_MAX = 1024;
const DATA_MAX = 8 * 1024;

export class Channels {
  /** Local members: channel → peers. */
  private readonly members = new Map<string, Set<Peer>>();
  /** Which channels each local peer joined. */
  private readonly joined = new Map<Peer, Set<string>>();
  /** Presence entries by node, channel, then connection id. */
  private readonly entries = new Map<string, Map<string, Map<string, Entry>>>();
  /** When each other node was last heard from. */
  private readonly heard = new Map<string, number>();
  /** The users (with their meta) each channel's local members were last told about. */
  private readonly told = new Map<string, Map<string, unknown>>();
  /** Publish allowance per peer: tokens and the time they were counted. */
  private readonly buckets = new WeakMap<Peer, { tokens: number; at: number }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly defs: Record<string, ChannelDef>,
    private readonly fanout: Fanout,
    private readonly records: RecordsService,
    private readonly node: string,
    private readonly opts: { syncMs: number; publishPerSecond: number },
    private readonly log: Logger,
  ) {
    this.entries.set(node, new Map());
  }

  start(): void {
    this.fanout.broadcast({ k: 'pq', n: this.node });
    this.timer = setInterval(() => {
      this.sync();
      this.expire();
    }, this.opts.syncMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    try {
      this.fanout.broadcast({ k: 'bye', n: this.node });
    } catch {}
  }

  /** A message from the fan-out. */
  receive(msg: Record<string, unknown>): void {
    const from = msg.n as string;
    if (from === this.node) return;
    this.heard.set(from, Date.now());
    switch (msg.k) {
      case 'msg':
        this.deliver(msg.c as string, msg.t as string, undefined);
        return;
      case 'pj':
        this.entriesOf(from, msg.c as string).set(msg.p as string, { user: msg.u as string, meta: msg.m ?? null });
        this.changed(msg.c as string);
        return;
      case 'pl':
        this.entries
          .get(from)
          ?.get(msg.c as string)
          ?.delete(msg.p as string);
        this.changed(msg.c as string);
        return;
      case 'ps': {
        // A full announcement of one channel (or, with `first`, the start of a full round).
        const channels = this.entries.get(from) ?? new Map<string, Map<string, Entry>>();
        this.entries.set(from, channels);
        const list = msg.e as Array<[string, string, string, unknown]>;
        const touched = new Set<string>();
        if (msg.first) for (const c of channels.keys()) touched.add(c);
        if (msg.first) channels.clear();
        for (const [c, p, u, m] of list) {
          this.entriesOf(from, c).set(p, { user: u, meta: m ?? null });
          touched.add(c);
        }
        for (const c of touched) this.changed(c);
        return;
      }
      case 'pq':
        this.sync();
        return;
      case 'bye':
        this.dropNode(from);
        return;
    }
  }

  /** Join a channel; resolves to its current presence (when it has presence). */
  async join(peer: Peer, channel: string, meta: unknown): Promise<Array<{ user: string; meta: unknown }> | undefined> {
    const { def, param } = this.resolve(channel);
    const auth = peer.principal;
    const allowed = def.authorize ? await def.authorize({ auth, param: param ?? '', records: this.records }) : auth.kind === 'user';
    if (!allowed) throw denied(auth, `join channel ${channel}`);
    if (meta !== undefined && JSON.stringify(meta).length > META_MAX) {
      throw new RampartError('E_INVALID_MESSAGE', `presence meta must be at most ${META_MAX} bytes of JSON`);
    }
    const set = this.members.get(channel) ?? new Set();
    set.add(peer);
    this.members.set(channel, set);
    const mine = this.joined.get(peer) ?? new Set();
    mine.add(channel);
    this.joined.set(peer, mine);
    if (!def.presence) return undefined;
    if (auth.kind === 'user') {
      this.entriesOf(this.node, channel).set(peer.id, { user: auth.id, meta: meta ?? null });
      this.fanout.broadcast({ k: 'pj', n: this.node, c: channel, p: peer.id, u: auth.id, m: meta ?? null });
    }
    const now = this.usersOf(channel);
    // The newcomer gets the full list; the others get the difference.
    this.changed(channel, peer);
    return [...now].map(([user, m]) => ({ user, meta: m }));
  }

  leave(peer: Peer, channel: string): boolean {
    const set = this.members.get(channel);
    if (!set?.delete(peer)) return false;
    if (set.size === 0) this.members.delete(channel);
    this.joined.get(peer)?.delete(channel);
    if (this.entries.get(this.node)?.get(channel)?.delete(peer.id)) {
      this.fanout.broadcast({ k: 'pl', n: this.node, c: channel, p: peer.id });
      this.changed(channel);
    }
    if (!this.members.has(channel)) this.told.delete(channel);
    return true;
  }

  /** A peer is gone: it leaves every channel. */
  disconnect(peer: Peer): void {
    for (const c of [...(this.joined.get(peer) ?? [])]) this.leave(peer, c);
    this.joined.delete(peer);
  }

  /** A member publishes to a channel it joined. */
  publish(peer: Peer, channel: string, event: string, data: unknown): void {
    if (!this.members.get(channel)?.has(peer)) throw new RampartError('E_INVALID_MESSAGE', `join ${channel} before publishing to it`);
    const { def } = this.resolve(channel);
    if (def.clientPublish === false) throw denied(peer.principal, `publish to ${channel}`);
    if (!this.take(peer)) throw new RampartError('E_RATE_LIMITED', `at most ${this.opts.publishPerSecond} messages a second`);
    const from = peer.principal.kind === 'user' ? peer.principal.id : null;
    this.send(channel, event, data, from, peer);
  }

  /** Whether anyone, on any node, is present in a channel with presence. */
  watched(channel: string): boolean {
    for (const channels of this.entries.values()) if ((channels.get(channel)?.size ?? 0) > 0) return true;
    return false;
  }

  /** App code publishes to a channel (no membership needed). */
  publishAsServer(channel: string, event: string, data: unknown): void {
    this.resolve(channel);
    this.send(channel, event, data, null, undefined);
  }

  private send(channel: string, event: string, data: unknown, from: string | null, sender: Peer | undefined): void {
    if (typeof event !== 'string' || event === '' || event.length > 64)
      throw new RampartError('E_INVALID_MESSAGE', 'event must be a short string');
    const text = JSON.stringify({ type: 'message', channel, event, from, data: data ?? null });
    if (text.length > DATA_MAX) throw new RampartError('E_INVALID_MESSAGE', `a channel message must be at most ${DATA_MAX} bytes`);
    this.deliver(channel, text, sender);
    this.fanout.broadcast({ k: 'msg', n: this.node, c: channel, t: text });
  }

  private deliver(channel: string, text: string, except: Peer | undefined): void {
    for (const peer of this.members.get(channel) ?? []) if (peer !== except) peer.send('message', text);
  }

  private resolve(channel: unknown): { def: ChannelDef; param: string | undefined } {
    const m = typeof channel === 'string' ? NAME.exec(channel) : null;
    const def = m ? this.defs[m[1] as string] : undefined;
    if (!m || !def || !Object.hasOwn(this.defs, m[1] as string)) {
      throw new RampartError('E_CHANNEL_NOT_FOUND', `there is no channel ${JSON.stringify(String(channel).slice(0, 64))}`);
    }
    return { def, param: m[2] };
  }

  private take(peer: Peer): boolean {
    const now = Date.now();
    const rate = this.opts.publishPerSecond;
    const b = this.buckets.get(peer) ?? { tokens: rate, at: now };
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
    this.buckets.set(peer, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private entriesOf(node: string, channel: string): Map<string, Entry> {
    let channels = this.entries.get(node);
    if (!channels) {
      channels = new Map();
      this.entries.set(node, channels);
    }
    let m = channels.get(channel);
    if (!m) {
      m = new Map();
      channels.set(channel, m);
    }
    return m;
  }

  private usersOf(channel: string): Map<string, unknown> {
    const out = new Map<string, unknown>();
    for (const channels of this.entries.values()) for (const e of channels.get(channel)?.values() ?? []) out.set(e.user, e.meta);
    return out;
  }

  /** Tell local members of `channel` who came and went since they were last told. */
  private changed(channel: string, newcomer?: Peer): void {
    const local = this.members.get(channel);
    if (!local || local.size === 0) return;
    const now = this.usersOf(channel);
    const before = this.told.get(channel) ?? new Map<string, unknown>();
    const joins = [...now].filter(([u, m]) => !before.has(u) || JSON.stringify(before.get(u)) !== JSON.stringify(m));
    const leaves = [...before.keys()].filter((u) => !now.has(u));
    this.told.set(channel, now);
    if (joins.length === 0 && leaves.length === 0) return;
    const text = JSON.stringify({
      type: 'presence',
      channel,
      joins: joins.map(([user, meta]) => ({ user, meta })),
      leaves: leaves.map((user) => ({ user })),
    });
    for (const peer of local) if (peer !== newcomer) peer.send('presence', text);
  }

  /** Announce this node's entries, channel by channel, in messages small enough for NOTIFY. */
  private sync(): void {
    const mine = this.entries.get(this.node) ?? new Map();
    let batch: Array<[string, string, string, unknown]> = [];
    let size = 0;
    let first = true;
    const flush = () => {
      this.fanout.broadcast({ k: 'ps', n: this.node, first, e: batch });
      first = false;
      batch = [];
      size = 0;
    };
    try {
      for (const [c, m] of mine) {
        for (const [p, e] of m) {
          const item: [string, string, string, unknown] = [c, p, e.user, e.meta];
          const len = JSON.stringify(item).length;
          if (size + len > 6000 && batch.length > 0) flush();
          batch.push(item);
          size += len;
        }
      }
      flush();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'realtime: presence announcement failed');
    }
  }

  private expire(): void {
    const cutoff = Date.now() - this.opts.syncMs * 3;
    for (const [node, at] of this.heard) if (at < cutoff) this.dropNode(node);
  }

  private dropNode(node: string): void {
    this.heard.delete(node);
    const channels = this.entries.get(node);
    this.entries.delete(node);
    for (const c of channels?.keys() ?? []) this.changed(c);
  }
}
