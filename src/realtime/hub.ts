/**
 * A node's realtime hub: it takes events from the log in id order and hands each to the
 * subscriptions it matches, after the subscriber's view rule allowed it.
 *
 * Ordering and completeness: events arrive from this node's own commits, from the fan-out and
 * from reads of the log. The hub keeps `last`, the id up to which it has delivered; an event
 * that does not follow `last` waits a moment for the ones before it, then the gap is read from the
 * log (where, by the log's construction, a visible id means every id below it is settled). The
 * log is also read when the fan-out comes back after a loss and when the periodic look at the
 * log's head finds it ahead. So a lost notification delays delivery; it never loses an event.
 *
 * Access: each event is checked against the subscriber's view rule with the record's values.
 * Answers are cached per caller and per the record fields the rule reads, and the cache of a
 * collection is dropped when an event arrives for any collection its rule reads (membership
 * tables), in log order, so a removed member stops receiving from the next event on.
 */

import type { Kysely } from 'kysely';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { RealtimeConfig } from '../core/config-realtime.js';
import { RampartError } from '../core/errors.js';
import { isUuid } from '../core/ids.js';
import { accessOf, denied, type Principal } from '../records/access.js';
import type { RuleFootprint } from '../records/rules.js';
import type { RecordsService } from '../records/service.js';
import type { Storage } from '../storage/types.js';
import type { EventLog, NewEvent, RtEvent } from './event-log.js';
import type { EventsMessage, Fanout } from './fanout.js';
import { compileMatcher, keyOf, type MatchKey, type RecordMatcher } from './match.js';
import type { RealtimeMetrics } from './metrics.js';

/** The stream of notifications (targeted at one user each). */
export const NOTIFICATIONS = '_notifications';

/** A client connection, whatever its transport. */
export interface Peer {
  readonly id: string;
  readonly transport: 'ws' | 'sse';
  /** Who is connected (changes when the client re-authenticates). */
  principal: Principal;
  /** Send one message (JSON text, or its UTF-8 bytes); `eventId` for transports that carry event ids (SSE). */
  send(type: string, json: string | Buffer, eventId?: number): void;
  /** Close the connection with a code and reason. */
  close(code: number, reason: string): void;
}

/** What a client asks to follow. */
export interface SubscribeSpec {
  /** The client's name for the subscription (echoed on its events). */
  id: string;
  /** A collection's changes… */
  collection?: string;
  /** …of one record only. */
  record?: string;
  /** …matching this filter (the list filter language). */
  filter?: string;
  /** The caller's own notifications instead of a collection. */
  notifications?: boolean;
  /** Resume: send what came after this event id first (or `resync` when it is no longer in the log). */
  since?: number;
}

interface Sub {
  id: string;
  peer: Peer;
  stream: string;
  recordId?: string;
  match?: RecordMatcher;
  /** A field that must equal one value (the record id, or an equality in the filter): the index. */
  key?: MatchKey;
  /** Events held while the subscription replays the log. */
  buffer?: RtEvent[];
  /** Events up to here were sent already (a client resuming from a node further ahead). */
  skipUpTo: number;
}

/** A stream's subscriptions: those with a key by field and value, the others in `all`. */
interface StreamSubs {
  all: Set<Sub>;
  byKey: Map<string, Map<string, Set<Sub>>>;
}

interface PeerState {
  subs: Map<string, Sub>;
  key: string;
}

/** How long an out-of-order event waits for those before it before the log is read. */
const GAP_WAIT_MS = 30;
const LOG_PAGE = 500;
/** Longest wait for this node's turn at the event counter (see flush). */
const TURN_WAIT_MS = 1000;

export interface HubDeps {
  storage: Storage;
  log: EventLog;
  fanout: Fanout;
  records: RecordsService;
  config: RealtimeConfig;
  logger: Logger;
  metrics: RealtimeMetrics;
  /** Told when a user starts (+1) or stops (−1) following their notifications on this node: who counts as online. */
  onNotificationsFollowed?: (user: string, delta: 1 | -1) => void;
}

export class RealtimeHub {
  private last = 0;
  private readonly held = new Map<number, RtEvent>();
  private fillTimer: NodeJS.Timeout | undefined;
  private filling = false;
  private fillAgain = false;
  private readonly queue: RtEvent[] = [];
  private draining = false;
  private readonly peers = new Map<Peer, PeerState>();
  private readonly byStream = new Map<string, StreamSubs>();
  private readonly notificationSubs = new Map<string, Set<Sub>>();
  private readonly captured = new WeakMap<Kysely<any>, RtEvent[]>();
  /** Events of open transactions, logged as their last statements before commit. */
  private readonly pending = new WeakMap<Kysely<any>, NewEvent[]>();
  /** The end of the last event-logging transaction of this node that has taken its turn. */
  private sequencer: Promise<void> = Promise.resolve();
  private readonly decisions = new Map<string, LRUCache<string, boolean>>();
  /** For each collection, the collections whose view-rule answers change when it is written. */
  private readonly dependents = new Map<string, Set<string>>();
  /** What each collection's view rule reads (undefined: no rule, admins only). */
  private readonly footprints = new Map<string, RuleFootprint | undefined>();
  private poll: NodeJS.Timeout | undefined;
  private prune: NodeJS.Timeout | undefined;
  private fanoutLost = false;
  private started = false;
  private stopped = false;

  constructor(private readonly d: HubDeps) {
    for (const c of d.records.collections()) {
      const fp = d.records.viewFootprint(c.name);
      this.footprints.set(c.name, fp);
      if (!fp || fp.usesNow) continue;
      this.decisions.set(c.name, new LRUCache({ max: 20_000 }));
      for (const r of fp.related) {
        const set = this.dependents.get(r) ?? new Set();
        set.add(c.name);
        this.dependents.set(r, set);
      }
    }
  }

  /** The id up to which this node has delivered. */
  position(): number {
    return this.last;
  }

  /** For /readyz: the fan-out, whether it is connected, this node's position and open connections. */
  status(): { fanout: string; up: boolean; position: number; connections: number } {
    return { fanout: this.d.fanout.kind, up: this.started && !this.fanoutLost, position: this.last, connections: this.peers.size };
  }

  async start(onEphemeral: (msg: Record<string, unknown>) => void): Promise<void> {
    this.last = await this.d.log.head();
    this.started = true;
    await this.d.fanout.start({
      onEvents: (msg) => this.receive(msg, 'fanout'),
      onEphemeral,
      onState: (up) => {
        this.d.metrics.fanoutUp.set(up ? 1 : 0);
        if (!up) {
          if (!this.fanoutLost)
            this.d.logger.warn({ fanout: this.d.fanout.kind }, 'realtime fan-out lost: reading the event log until it is back');
          this.fanoutLost = true;
        } else if (this.fanoutLost) {
          this.fanoutLost = false;
          this.d.logger.info({ fanout: this.d.fanout.kind }, 'realtime fan-out back: catching up from the event log');
          this.scheduleFill(0);
        }
      },
    });
    this.poll = setInterval(() => {
      this.d.log
        .head()
        .then((head) => {
          if (head > this.last) this.scheduleFill(0);
        })
        .catch((err) => this.d.logger.debug({ err: (err as Error).message }, 'realtime: reading the log head failed'));
    }, this.d.config.pollMs);
    this.poll.unref();
    const retentionMs = this.d.config.retentionS * 1000;
    this.prune = setInterval(
      () => {
        this.d.log
          .prune(Date.now() - retentionMs)
          .catch((err) => this.d.logger.warn({ err: (err as Error).message }, 'realtime: pruning the log failed'));
      },
      Math.min(retentionMs / 4, 600_000),
    );
    this.prune.unref();
  }

  /** Tell every client to go (1001): they reconnect elsewhere and resume from their last event id. */
  dropClients(): void {
    for (const peer of [...this.peers.keys()]) peer.close(1001, 'server shutting down');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.poll);
    clearInterval(this.prune);
    clearTimeout(this.fillTimer);
    this.dropClients();
    await this.d.fanout.stop();
  }

  // --- the write side -------------------------------------------------------------------------

  /**
   * Log events with the writing transaction `trx` (a record hook, a notification). They are
   * written as its last statements before commit (`flush`), so the counter row that orders the
   * log is held only from then until the commit, not while the rest of the write runs.
   */
  async append(trx: Kysely<any>, events: NewEvent[]): Promise<void> {
    if (events.length === 0) return;
    if (trx === this.d.storage.db) {
      // Not in a transaction: the append commits by itself.
      this.capture(trx, await this.d.log.append(trx, events));
      return;
    }
    const list = this.pending.get(trx);
    if (list) {
      list.push(...events);
      return;
    }
    this.pending.set(trx, [...events]);
    this.d.storage.beforeCommit(trx, () => this.flush(trx));
  }

  private capture(trx: Kysely<any>, logged: RtEvent[]): void {
    const list = this.captured.get(trx);
    if (list) list.push(...logged);
    else this.captured.set(trx, logged);
  }

  /**
   * Write a transaction's pending events. This node's event-logging transactions take the
   * counter one at a time, each keeping its turn until it has ended: a node that freezes
   * (SIGSTOP, a VM pause) then holds the counter in one transaction only, which PostgreSQL
   * ends after RAMPART_DB_IDLE_IN_TRANSACTION_MS, instead of in every write it had waiting.
   * Nothing runs between taking the counter and the commit that could wait on this node's
   * other transactions, so the turn cannot deadlock. A transaction waits for its turn at most
   * TURN_WAIT_MS (it is idle in its transaction meanwhile, which PostgreSQL would end), then
   * queues for the counter in the database like any other.
   */
  private async flush(trx: Kysely<any>): Promise<void> {
    const items = this.pending.get(trx);
    if (!items || items.length === 0) return;
    this.pending.delete(trx);
    let release: () => void = () => {};
    const turn = new Promise<void>((r) => {
      release = r;
    });
    const previous = this.sequencer;
    this.sequencer = previous.then(() => turn);
    this.d.storage.afterEnd(trx, release);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([previous, new Promise((r) => (timer = setTimeout(r, TURN_WAIT_MS)))]);
    clearTimeout(timer);
    this.capture(trx, await this.d.log.append(trx, items));
  }

  /**
   * Called once per writing transaction before its commit: announce what it logged; what it
   * returns runs after the commit (publish, and deliver on this node without a round trip).
   */
  async beforeCommit(trx: Kysely<any>): Promise<() => void> {
    await this.flush(trx);
    const events = this.captured.get(trx);
    if (!events || events.length === 0) return () => {};
    this.captured.delete(trx);
    await this.d.fanout.announce(trx, events);
    return () => {
      this.d.fanout.published(events);
      this.receive({ events, head: events.at(-1)?.id ?? 0 }, 'local');
    };
  }

  // --- ordering ---------------------------------------------------------------------------------

  private receive(msg: EventsMessage, source: 'local' | 'fanout'): void {
    // A process without the hub (a worker) only writes events.
    if (!this.started || this.stopped) return;
    this.d.metrics.received.inc({ source });
    for (const e of msg.events ?? []) if (e.id > this.last) this.held.set(e.id, e);
    this.advance();
    if (msg.head > this.last) this.scheduleFill(msg.events ? GAP_WAIT_MS : 0);
  }

  private advance(): void {
    for (let e = this.held.get(this.last + 1); e; e = this.held.get(this.last + 1)) {
      this.held.delete(e.id);
      this.last = e.id;
      this.enqueue(e);
    }
  }

  private scheduleFill(delayMs: number): void {
    if (this.filling) {
      this.fillAgain = true;
      return;
    }
    if (this.fillTimer) return;
    this.fillTimer = setTimeout(() => {
      this.fillTimer = undefined;
      void this.fill();
    }, delayMs);
  }

  /** Read what follows `last` from the log: a settled prefix, delivered as it is. */
  private async fill(): Promise<void> {
    if (this.stopped) return;
    this.filling = true;
    let retry = false;
    try {
      for (;;) {
        const rows = await this.d.log.after(this.last, LOG_PAGE);
        if (rows.length > 0) this.d.metrics.logReads.inc();
        for (const e of rows) {
          if (e.id <= this.last) continue;
          this.held.delete(e.id);
          this.last = e.id;
          this.enqueue(e);
        }
        if (rows.length < LOG_PAGE) break;
      }
      for (const id of this.held.keys()) if (id <= this.last) this.held.delete(id);
      this.advance();
    } catch (err) {
      this.d.logger.warn({ err: (err as Error).message }, 'realtime: reading the event log failed; retrying');
      retry = true;
    } finally {
      this.filling = false;
    }
    if (retry) this.scheduleFill(1000);
    else if (this.fillAgain || this.held.size > 0) {
      this.fillAgain = false;
      this.scheduleFill(this.held.size > 0 ? GAP_WAIT_MS : 0);
    }
  }

  private enqueue(e: RtEvent): void {
    this.queue.push(e);
    if (!this.draining) void this.drain();
  }

  /** Deliver events one after another: a subscriber sees them in log order. */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.queue.length);
        for (const e of batch) {
          try {
            const pending = this.deliver(e);
            if (pending) await pending;
          } catch (err) {
            this.d.logger.error({ err, event: e.id }, 'realtime: delivering an event failed');
          }
        }
      }
    } finally {
      this.draining = false;
    }
  }

  // --- delivery ---------------------------------------------------------------------------------

  private deliver(e: RtEvent): Promise<void> | undefined {
    const affected = this.dependents.get(e.stream);
    if (affected) for (const c of affected) this.decisions.get(c)?.clear();
    if (e.stream === NOTIFICATIONS) {
      const subs = e.target ? this.notificationSubs.get(e.target) : undefined;
      if (subs) for (const sub of subs) this.sendTo(sub.peer, [sub], e);
      return undefined;
    }
    const stream = this.byStream.get(e.stream);
    if (!stream || (stream.all.size === 0 && stream.byKey.size === 0)) return undefined;
    const record = JSON.parse(e.payload) as Record<string, unknown>;
    const perPeer = new Map<Peer, Sub[]>();
    const candidates: Iterable<Sub>[] = [stream.all];
    for (const [field, byValue] of stream.byKey) {
      const hit = byValue.get(keyOf(record[field]));
      if (hit) candidates.push(hit);
    }
    for (const subs of candidates)
      for (const sub of subs) {
        if (!this.matches(sub, e, record)) continue;
        if (sub.buffer) {
          sub.buffer.push(e);
          continue;
        }
        const list = perPeer.get(sub.peer);
        if (list) list.push(sub);
        else perPeer.set(sub.peer, [sub]);
      }
    const waits: Array<Promise<void>> = [];
    // Most peers get the same text (same subscription ids): build each variant once.
    const texts = new Map<string, Buffer>();
    for (const [peer, list] of perPeer) {
      const ok = this.allowed(peer, e.stream, record);
      if (ok === true) this.sendTo(peer, list, e, texts);
      else if (ok !== false) waits.push(ok.then((yes) => (yes ? this.sendTo(peer, list, e, texts) : undefined)));
    }
    return waits.length > 0 ? Promise.all(waits).then(() => undefined) : undefined;
  }

  private matches(sub: Sub, e: RtEvent, record: Record<string, unknown>): boolean {
    if (e.id <= sub.skipUpTo) return false;
    if (sub.recordId !== undefined && sub.recordId !== record.id) return false;
    return !sub.match || sub.match(record);
  }

  /** The view rule's answer for this peer and record: at once when cached or not needed. */
  private allowed(peer: Peer, collection: string, record: Record<string, unknown>): boolean | Promise<boolean> {
    if (accessOf(peer.principal) !== 'client') return true;
    const fp = this.footprints.get(collection);
    if (!fp) return false;
    const cache = this.decisions.get(collection);
    const state = this.peers.get(peer);
    if (!state) return false;
    let key: string | undefined;
    if (cache) {
      key = state.key;
      for (const f of fp.recordFields) key += `\u0002${String(record[f])}`;
      const hit = cache.get(key);
      if (hit !== undefined) return hit;
    }
    return this.d.records
      .as(peer.principal)
      .mayView(collection, record)
      .then((yes) => {
        if (key !== undefined) cache?.set(key, yes);
        return yes;
      })
      .catch((err) => {
        this.d.logger.warn({ err: (err as Error).message, collection }, 'realtime: access check failed; event withheld');
        this.d.metrics.dropped.inc({ reason: 'access-check-failed' });
        return false;
      });
  }

  private sendTo(peer: Peer, subs: Sub[], e: RtEvent, texts?: Map<string, Buffer>): void {
    if (!this.peers.has(peer)) return;
    const ids = JSON.stringify(subs.map((s) => s.id));
    // Encoded once for every peer that gets the same text (not once per socket).
    let text = texts?.get(ids);
    if (text === undefined) {
      text = Buffer.from(
        e.stream === NOTIFICATIONS
          ? `{"type":"notification","id":${e.id},"subs":${ids},"notification":${e.payload}}`
          : `{"type":"event","id":${e.id},"subs":${ids},"collection":${JSON.stringify(e.stream)},"action":"${e.action}","record":${e.payload}}`,
      );
      texts?.set(ids, text);
    }
    peer.send(e.stream === NOTIFICATIONS ? 'notification' : e.action, text, e.id);
    this.d.metrics.deliveries.inc();
  }

  // --- peers and subscriptions ----------------------------------------------------------------

  connect(peer: Peer): void {
    this.peers.set(peer, { subs: new Map(), key: principalKey(peer.principal) });
  }

  /** The peer re-authenticated (as the same user). */
  reauthenticated(peer: Peer): void {
    const state = this.peers.get(peer);
    if (state) state.key = principalKey(peer.principal);
  }

  disconnect(peer: Peer): void {
    const state = this.peers.get(peer);
    if (!state) return;
    for (const sub of state.subs.values()) this.unindex(sub);
    this.peers.delete(peer);
  }

  connections(): number {
    return this.peers.size;
  }

  /** Start a subscription: replay from `since` when asked, then tell the client it is live. */
  async subscribe(peer: Peer, spec: SubscribeSpec): Promise<void> {
    const state = this.peers.get(peer);
    if (!state) return;
    const sub = this.parse(peer, spec);
    if (state.subs.has(sub.id)) throw new RampartError('E_INVALID_MESSAGE', `subscription ${JSON.stringify(sub.id)} exists already`);
    if (state.subs.size >= this.d.config.maxSubscriptions) {
      throw new RampartError('E_TOO_MANY_SUBSCRIPTIONS', `at most ${this.d.config.maxSubscriptions} subscriptions per connection`);
    }
    const since = spec.since;
    if (since !== undefined && (!Number.isSafeInteger(since) || since < 0)) {
      throw new RampartError('E_INVALID_MESSAGE', 'since must be an event id (a non-negative integer)');
    }
    state.subs.set(sub.id, sub);
    // Live from here: later events are held in the buffer while the log is replayed.
    const mark = this.last;
    sub.buffer = [];
    this.index(sub);
    try {
      if (since !== undefined && since < mark) {
        if (!(await this.d.log.covers(since))) {
          peer.send(
            'resync',
            JSON.stringify({ type: 'resync', id: sub.id, last_event_id: mark, reason: 'the events after since are no longer kept' }),
          );
          this.d.metrics.resyncs.inc();
        } else await this.replay(sub, since, mark);
      }
      // Events up to here were replayed, or came before the subscription (some may still be queued).
      sub.skipUpTo = Math.max(mark, since ?? 0);
    } catch (err) {
      this.unindex(sub);
      state.subs.delete(sub.id);
      throw err;
    }
    if (!state.subs.has(sub.id)) return;
    peer.send('subscribed', JSON.stringify({ type: 'subscribed', id: sub.id, last_event_id: Math.max(mark, since ?? 0) }));
    const held = sub.buffer;
    sub.buffer = undefined;
    for (const e of held) await this.sendChecked(sub, e);
  }

  /** Check a subscription request without starting it: throws what `subscribe` would. */
  check(principal: Principal, spec: SubscribeSpec): void {
    this.parse({ id: '', transport: 'sse', principal, send() {}, close() {} }, spec);
  }

  unsubscribe(peer: Peer, id: string): boolean {
    const state = this.peers.get(peer);
    const sub = state?.subs.get(id);
    if (!state || !sub) return false;
    this.unindex(sub);
    state.subs.delete(id);
    return true;
  }

  private async replay(sub: Sub, since: number, mark: number): Promise<void> {
    let after = since;
    while (after < mark) {
      const rows = await this.d.log.after(after, LOG_PAGE);
      if (rows.length === 0) break;
      for (const e of rows) {
        if (e.id > mark) return;
        if (e.stream === sub.stream) await this.sendChecked(sub, e);
      }
      after = rows.at(-1)?.id ?? mark;
    }
  }

  /** One event to one subscription, with every check (replays and held events). */
  private async sendChecked(sub: Sub, e: RtEvent): Promise<void> {
    if (e.stream === NOTIFICATIONS) {
      if (e.target === (sub.peer.principal as { id?: string }).id) this.sendTo(sub.peer, [sub], e);
      return;
    }
    const record = JSON.parse(e.payload) as Record<string, unknown>;
    if (!this.matches(sub, e, record)) return;
    if (await this.allowed(sub.peer, e.stream, record)) this.sendTo(sub.peer, [sub], e);
  }

  private parse(peer: Peer, spec: SubscribeSpec): Sub {
    if (typeof spec.id !== 'string' || spec.id === '' || spec.id.length > 64) {
      throw new RampartError('E_INVALID_MESSAGE', 'a subscription needs an id (a string of 1 to 64 characters)');
    }
    if (spec.notifications === true) {
      if (peer.principal.kind !== 'user') throw denied(peer.principal, 'receive notifications (sign in first)');
      return { id: spec.id, peer, stream: NOTIFICATIONS, skipUpTo: 0 };
    }
    if (typeof spec.collection !== 'string') throw new RampartError('E_INVALID_MESSAGE', 'subscribe to a collection or to notifications');
    const schema = this.d.records.visibleSchema(spec.collection);
    if (accessOf(peer.principal) === 'client' && !this.d.records.viewFootprint(spec.collection)) {
      throw denied(peer.principal, `read ${spec.collection} records (admins only)`);
    }
    if (spec.record !== undefined && (typeof spec.record !== 'string' || !isUuid(spec.record))) {
      throw new RampartError('E_INVALID_MESSAGE', 'record must be a record id');
    }
    const sub: Sub = { id: spec.id, peer, stream: schema.name, skipUpTo: 0 };
    if (spec.filter !== undefined && spec.filter !== '') {
      const m = compileMatcher(schema, spec.filter);
      sub.match = m.match;
      sub.key = m.key;
    }
    if (spec.record !== undefined) {
      sub.recordId = spec.record;
      sub.key = { field: 'id', value: keyOf(spec.record) };
    }
    return sub;
  }

  private index(sub: Sub): void {
    if (sub.stream === NOTIFICATIONS) {
      const user = (sub.peer.principal as { id: string }).id;
      const set = this.notificationSubs.get(user) ?? new Set();
      set.add(sub);
      this.notificationSubs.set(user, set);
      this.d.onNotificationsFollowed?.(user, 1);
      return;
    }
    let stream = this.byStream.get(sub.stream);
    if (!stream) {
      stream = { all: new Set(), byKey: new Map() };
      this.byStream.set(sub.stream, stream);
    }
    if (!sub.key) {
      stream.all.add(sub);
      return;
    }
    let byValue = stream.byKey.get(sub.key.field);
    if (!byValue) {
      byValue = new Map();
      stream.byKey.set(sub.key.field, byValue);
    }
    const set = byValue.get(sub.key.value) ?? new Set();
    set.add(sub);
    byValue.set(sub.key.value, set);
  }

  private unindex(sub: Sub): void {
    if (sub.stream === NOTIFICATIONS) {
      // Indexed under the principal's id, which re-authentication cannot change (same user only).
      const user = (sub.peer.principal as { id: string }).id;
      const set = this.notificationSubs.get(user);
      if (!set?.delete(sub)) return;
      if (set.size === 0) this.notificationSubs.delete(user);
      this.d.onNotificationsFollowed?.(user, -1);
      return;
    }
    const stream = this.byStream.get(sub.stream);
    if (!stream) return;
    if (!sub.key) {
      stream.all.delete(sub);
      return;
    }
    const byValue = stream.byKey.get(sub.key.field);
    const set = byValue?.get(sub.key.value);
    if (!set?.delete(sub) || set.size > 0) return;
    byValue?.delete(sub.key.value);
    if (byValue?.size === 0) stream.byKey.delete(sub.key.field);
  }
}

/** What the rules see of a caller, as one string (the decision cache's key prefix). */
function principalKey(p: Principal): string {
  if (p.kind !== 'user') return p.kind;
  return `${p.id}\u0001${p.role}\u0001${p.email}\u0001${p.verified}`;
}
