/**
 * Who is online, cluster-wide, in the database (`_rampart_online`): a row per user and node with
 * the number of its connections there that follow the user's notifications (a connection that
 * does not would never show one), and when the node last confirmed it. Notifications look here to
 * choose between realtime and push, from any process (a worker has no connections of its own).
 * Changes are written in one small transaction a second; a node refreshes its rows every
 * `refreshMs`, and rows a node stopped refreshing (it died) stop counting after three rounds.
 */
import type { Logger } from 'pino';
import type { Storage } from '../storage/types.js';

const T = '_rampart_online';

export class OnlineUsers {
  private readonly counts = new Map<string, number>();
  private readonly dirty = new Set<string>();
  private flushTimer: NodeJS.Timeout | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly storage: Storage,
    private readonly node: string,
    private readonly log: Logger,
    private readonly refreshMs = 30_000,
  ) {}

  start(): void {
    this.flushTimer = setInterval(() => void this.flush(), 1000);
    this.flushTimer.unref();
    this.refreshTimer = setInterval(() => {
      this.storage.db
        .updateTable(T)
        .set({ seen_at: Date.now() })
        .where('node', '=', this.node)
        .execute()
        .catch((err) => this.log.warn({ err: (err as Error).message }, 'realtime: refreshing who is online failed'));
    }, this.refreshMs);
    this.refreshTimer.unref();
  }

  /** A connection of `user` started (+1) or stopped (−1) following the user's notifications on this node. */
  change(user: string, delta: 1 | -1): void {
    this.counts.set(user, (this.counts.get(user) ?? 0) + delta);
    this.dirty.add(user);
  }

  /** Connections `user` has on this node. */
  local(user: string): number {
    return this.counts.get(user) ?? 0;
  }

  /** Write pending changes (also at once, for tests and shutdown). */
  flush(): Promise<void> {
    if (this.flushing || this.dirty.size === 0) return this.flushing ?? Promise.resolve();
    const users = [...this.dirty];
    this.dirty.clear();
    this.flushing = this.storage
      .transaction(async (trx) => {
        const now = Date.now();
        for (const user of users) {
          const n = this.counts.get(user) ?? 0;
          await trx.deleteFrom(T).where('user_id', '=', user).where('node', '=', this.node).execute();
          if (n > 0) await trx.insertInto(T).values({ user_id: user, node: this.node, connections: n, seen_at: now }).execute();
          else this.counts.delete(user);
        }
      })
      .catch((err) => {
        for (const u of users) this.dirty.add(u);
        this.log.warn({ err: (err as Error).message }, 'realtime: recording who is online failed; retrying');
      })
      .finally(() => {
        this.flushing = undefined;
      });
    return this.flushing;
  }

  /** Whether `user` follows their notifications on a connection to any live node. */
  async isOnline(user: string): Promise<boolean> {
    const row = await this.storage.reader
      .selectFrom(T)
      .select('node')
      .where('user_id', '=', user)
      .where('connections', '>', 0)
      .where('seen_at', '>', Date.now() - this.refreshMs * 3)
      .executeTakeFirst();
    return row !== undefined;
  }

  async stop(): Promise<void> {
    clearInterval(this.flushTimer);
    clearInterval(this.refreshTimer);
    await this.flushing;
    await this.storage.db
      .deleteFrom(T)
      .where('node', '=', this.node)
      .execute()
      .catch(() => {});
  }
}
