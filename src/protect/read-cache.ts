/**
 * A read cache for record reads and lists: an in-process LRU in front of an optional shared
 * Redis cache. Entries are keyed by the request URL, by who asks (the caller, or only their
 * access level when the collection's rule does not read `auth.*`), and by the current
 * *generation* of every collection the answer depends on (its own and those its rule reads).
 *
 * A committed write gives each collection it touched a new random generation: at once on the
 * writing node (before the write is answered, so a client reads its own write), and on every
 * other node through the database's notification at commit (PostgreSQL NOTIFY). Old entries
 * are then simply never looked up again; shared Redis entries carry the generations in their
 * key, so nodes that agree on generations share them and nothing in Redis needs deleting. A
 * node only uses Redis for collections whose generation it learnt from a write's notification
 * (not those it has not seen written since it started), and a node whose notification
 * connection was lost forgets every generation when it returns.
 *
 * An entry older than the TTL is not served, except when the database read fails (stale if
 * error): then an entry up to `staleMs` old is served, marked as stale.
 */
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../core/clock.js';

/** A cached answer. */
export interface CachedAnswer {
  body: string;
  etag: string;
  /**
   * Served, not kept: it came from a read replica, which may be behind the generations the
   * entry would be stamped with (a later reader, the writer included, would get the past).
   */
  noStore?: boolean;
}

interface Entry extends CachedAnswer {
  /** Generations of the dependencies when the read began. */
  gens: string;
  storedAt: number;
}

/** The shared second level (Redis). */
export interface SharedCache {
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ttlMs: number): Promise<unknown>;
}

export interface ReadCacheOptions {
  /** How long an entry is served fresh, in ms. */
  ttlMs: number;
  /** How old an entry may be to be served when the database fails, in ms. */
  staleMs: number;
  /** Entries kept in this process. */
  maxEntries: number;
  /** Largest answer cached, in bytes of JSON. */
  maxBodyBytes: number;
}

/** How a read was answered. */
export type CacheOutcome = 'hit' | 'shared-hit' | 'miss' | 'stale';

const newGeneration = () => randomBytes(6).toString('base64url');

export class ReadCache {
  private readonly lru: LRUCache<string, Entry>;
  private readonly gens = new Map<string, string>();
  /** Bumped when every generation is reset, so entries from before cannot match. */
  private epoch = newGeneration();

  constructor(
    private readonly opts: ReadCacheOptions,
    private readonly clock: Clock,
    private readonly shared?: SharedCache,
    private readonly onOutcome?: (outcome: CacheOutcome) => void,
  ) {
    this.lru = new LRUCache<string, Entry>({ max: opts.maxEntries, ttl: opts.staleMs, ttlAutopurge: false });
  }

  /**
   * The generation stamp of a set of collections, right now: for this node's entries, and for
   * shared ones (undefined while a generation is unknown here, as nodes may disagree on it).
   */
  stamp(collections: Iterable<string>): { local: string; shared: string | undefined } {
    let s = '';
    let known = true;
    for (const c of collections) {
      const g = this.gens.get(c);
      if (g === undefined) known = false;
      s += `.${g ?? '-'}`;
    }
    return { local: `${this.epoch}${s}`, shared: known ? s : undefined };
  }

  /** A new generation for each collection (a write to them committed); returns the tokens set. */
  bump(collections: string[], token = newGeneration()): string {
    for (const c of collections) this.gens.set(c, token);
    return token;
  }

  /** Forget every generation (notifications may have been missed). */
  reset(): void {
    this.gens.clear();
    this.epoch = newGeneration();
  }

  /**
   * The answer for `key`: a fresh cached one, else `produce()`'s (stored), else — when
   * `produce` fails with an error `isOutage` accepts — a stale one if there is one.
   */
  async read(
    key: string,
    dependsOn: Iterable<string>,
    produce: () => Promise<CachedAnswer>,
    isOutage: (err: unknown) => boolean,
  ): Promise<{ answer: CachedAnswer; outcome: CacheOutcome; ageS: number }> {
    const { local: gens, shared: sharedGens } = this.stamp(dependsOn);
    const now = this.clock.now();
    const entry = this.lru.get(key);
    if (entry && entry.gens === gens && now - entry.storedAt < this.opts.ttlMs) {
      return this.done({ answer: entry, outcome: 'hit', ageS: Math.floor((now - entry.storedAt) / 1000) });
    }
    const sharedKey = sharedGens === undefined ? undefined : `rc:${sharedGens}:${key}`;
    if (this.shared && sharedKey) {
      const hit = await this.shared.get(sharedKey).catch(() => null);
      if (hit) {
        const answer = JSON.parse(hit) as CachedAnswer & { at: number };
        this.lru.set(key, { ...answer, gens, storedAt: answer.at });
        return this.done({ answer, outcome: 'shared-hit', ageS: Math.max(0, Math.floor((now - answer.at) / 1000)) });
      }
    }
    let answer: CachedAnswer;
    try {
      answer = await produce();
    } catch (err) {
      if (entry && isOutage(err) && now - entry.storedAt < this.opts.staleMs) {
        return this.done({ answer: entry, outcome: 'stale', ageS: Math.floor((now - entry.storedAt) / 1000) });
      }
      throw err;
    }
    if (!answer.noStore && answer.body.length <= this.opts.maxBodyBytes) {
      // Stamped with the generations from before the read: a write that committed meanwhile has
      // bumped them, so this entry is never served as fresh.
      this.lru.set(key, { ...answer, gens, storedAt: now });
      if (sharedKey) this.shared?.set(sharedKey, JSON.stringify({ ...answer, at: now }), this.opts.ttlMs).catch(() => {});
    }
    return this.done({ answer, outcome: 'miss', ageS: 0 });
  }

  private done<T extends { outcome: CacheOutcome }>(r: T): T {
    this.onOutcome?.(r.outcome);
    return r;
  }
}
