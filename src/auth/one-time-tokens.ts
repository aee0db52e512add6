/**
 * Single-use, expiring tokens sent by mail (email verification, password reset, email change)
 * and handed out after an OAuth login. Only their SHA-256 hash is stored; consuming one is a
 * single conditional UPDATE, so a token works once even when presented twice at the same time.
 * Issuing a new token of a purpose cancels the user's earlier unused ones of that purpose.
 */
import type { Clock } from '../core/clock.js';
import type { Storage } from '../storage/types.js';
import { randomToken, tokenHash } from './sessions.js';

const TABLE = '_rampart_one_time_tokens';

export type TokenPurpose = 'verify_email' | 'reset_password' | 'change_email' | 'oauth_login';

export class OneTimeTokens {
  constructor(
    private readonly storage: Storage,
    private readonly clock: Clock,
  ) {}

  async issue(purpose: TokenPurpose, userId: string, ttlMs: number, data?: unknown): Promise<string> {
    const now = this.clock.now();
    const token = randomToken('ot_');
    await this.storage.transaction(async (db) => {
      await db.deleteFrom(TABLE).where('user_id', '=', userId).where('purpose', '=', purpose).where('used_at', 'is', null).execute();
      await db
        .insertInto(TABLE)
        .values({
          hash: tokenHash(token),
          purpose,
          user_id: userId,
          data: data === undefined ? null : JSON.stringify(data),
          created_at: now,
          expires_at: now + ttlMs,
        })
        .execute();
    });
    return token;
  }

  /** Use a token once; undefined when it is unknown, used, expired or of another purpose. */
  async consume(purpose: TokenPurpose, token: string): Promise<{ userId: string; data: unknown } | undefined> {
    if (typeof token !== 'string' || !token.startsWith('ot_') || token.length > 100) return undefined;
    const now = this.clock.now();
    const row = await this.storage.db
      .updateTable(TABLE)
      .set({ used_at: now })
      .where('hash', '=', tokenHash(token))
      .where('purpose', '=', purpose)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .returning(['user_id', 'data'])
      .executeTakeFirst();
    return row ? { userId: row.user_id, data: row.data === null ? undefined : JSON.parse(row.data) } : undefined;
  }

  /** Drop expired and used tokens. */
  async cleanup(): Promise<void> {
    const now = this.clock.now();
    await this.storage.db
      .deleteFrom(TABLE)
      .where((eb) => eb.or([eb('expires_at', '<', now), eb('used_at', 'is not', null)]))
      .execute();
  }
}
