/**
 * Ended sessions, as every node knows them. Access tokens are verified without the database;
 * this set is how a logout, a revoked session, a password change or a disabled account stops
 * access tokens before they expire: at once on the node that ended the session, and within
 * one poll interval on the others. Entries are dropped once every access token they could
 * stop has expired.
 */
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { SessionStore } from './sessions.js';

export const REVOCATION_POLL_MS = 2_000;

export class RevokedSessions {
  private readonly ended = new Map<string, number>();
  private since = 0;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;

  constructor(
    private readonly sessions: SessionStore,
    private readonly clock: Clock,
    private readonly accessTtlMs: number,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.since = this.clock.now() - this.accessTtlMs;
    await this.refreshNow();
    this.timer = setInterval(() => {
      this.refreshNow().catch((err) => this.log.warn({ err: (err as Error).message }, 'could not poll ended sessions'));
    }, REVOCATION_POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Record a session ended on this node. */
  add(sessionId: string): void {
    this.ended.set(sessionId, this.clock.now());
  }

  has(sessionId: string): boolean {
    return this.ended.has(sessionId);
  }

  /** Load sessions ended since the last poll (on any node). */
  refreshNow(): Promise<void> {
    this.polling ??= (async () => {
      try {
        const now = this.clock.now();
        // Overlap the previous poll a little: a revocation committed late by another node is still seen.
        const rows = await this.sessions.revokedSince(this.since - 5_000);
        for (const r of rows) this.ended.set(r.id, r.at);
        this.since = now;
        for (const [id, at] of this.ended) if (at < now - this.accessTtlMs - 60_000) this.ended.delete(id);
      } finally {
        this.polling = undefined;
      }
    })();
    return this.polling;
  }
}
