/**
 * Brute-force protection for password logins, shared by every node through the database.
 * Each attempt is counted *before* the password is checked, under a lock, so concurrent
 * attempts cannot slip past the limit: per account (keyed by the email's hash, so unknown and
 * known emails behave alike) and per client IP, within a one-hour window.
 *
 * After a few failures each further attempt must wait (1 s, 2 s, 4 s … up to 30 s), and at
 * the hourly limit the key is closed until its window ends. Nothing locks for good: the
 * window ends an hour after it began, a successful login clears the account's counter, and
 * a password reset (proof of the mailbox) clears it at once.
 */
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Clock } from '../core/clock.js';
import { RampartError } from '../core/errors.js';
import type { Storage } from '../storage/types.js';

const TABLE = '_rampart_login_throttle';
const WINDOW_MS = 3_600_000;
/** Attempts without any delay. */
const FREE = 5;
const MAX_DELAY_MS = 30_000;

/** The throttle key of an account, by normalized email. */
export const accountKey = (email: string) => `acct:${createHash('sha256').update(email).digest('base64url')}`;
/** The throttle key of a client address. */
export const ipKey = (ip: string) => `ip:${ip}`;

/** The wait imposed after the n-th counted attempt. */
export function delayAfter(n: number): number {
  return n <= FREE ? 0 : Math.min(1000 * 2 ** (n - FREE - 1), MAX_DELAY_MS);
}

/** A counter one login attempt is charged to. */
export interface ThrottleKey {
  key: string;
  /** Counted attempts per hour before the key closes. */
  max: number;
  /** Whether attempts beyond the first few must wait longer and longer. */
  progressive: boolean;
}

export class LoginThrottle {
  constructor(
    private readonly storage: Storage,
    private readonly clock: Clock,
    private readonly limits: { perAccount: number; perIp: number },
  ) {}

  /**
   * Count an attempt on every key, or refuse it (429 with Retry-After) when one of them is
   * waiting or at its limit. Nothing is counted for a refused attempt.
   */
  async claim(unordered: ThrottleKey[]): Promise<void> {
    const now = this.clock.now();
    // The keys are locked by name, in one global order, before their rows are read: row locks
    // taken by concurrent upserts of new rows deadlocked on PostgreSQL under bursts from one
    // address. Should the database still abort the transaction, it is run again (it has no other effect).
    const keys = [...unordered].sort((a, b) => (a.key < b.key ? -1 : 1));
    const run = () =>
      this.storage.transaction(async (db) => {
        const rows = new Map<string, { failures: number; window_start: number; next_allowed_at: number }>();
        await this.storage.lockNames(
          db,
          keys.map((k) => `login-throttle:${k.key}`),
        );
        for (const { key } of keys) {
          const r = await db.selectFrom(TABLE).selectAll().where('key', '=', key).executeTakeFirst();
          if (r && now - Number(r.window_start) < WINDOW_MS) {
            rows.set(key, {
              failures: Number(r.failures),
              window_start: Number(r.window_start),
              next_allowed_at: Number(r.next_allowed_at),
            });
          }
        }
        let wait = 0;
        for (const { key, max } of keys) {
          const r = rows.get(key);
          if (!r) continue;
          if (r.failures >= max) wait = Math.max(wait, r.window_start + WINDOW_MS - now);
          else if (r.next_allowed_at > now) wait = Math.max(wait, r.next_allowed_at - now);
        }
        if (wait > 0) return wait;
        for (const { key, progressive } of keys) {
          const r = rows.get(key);
          const failures = (r?.failures ?? 0) + 1;
          // 0 when no wait is due: requests race, and one that read the clock a moment earlier must not be refused.
          const delay = progressive ? delayAfter(failures) : 0;
          const values = { failures, window_start: r?.window_start ?? now, next_allowed_at: delay > 0 ? now + delay : 0 };
          await upsert(db, key, values);
        }
        return 0;
      });
    let retry = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        retry = await run();
        break;
      } catch (err) {
        const kind = this.storage.classifyError(err).kind;
        if (kind === 'other' || kind === 'unique' || kind === 'foreign_key') throw err;
        if (kind !== 'busy' || attempt >= 5) {
          throw new RampartError('E_DB_UNAVAILABLE', 'the database is busy; retry shortly', {
            headers: { 'Retry-After': '1' },
            cause: err,
          });
        }
        await new Promise((r) => setTimeout(r, Math.random() * 10 * attempt));
      }
    }
    if (retry > 0) {
      throw new RampartError('E_TOO_MANY_ATTEMPTS', 'too many sign-in attempts; wait before trying again, or reset the password', {
        headers: { 'Retry-After': String(Math.ceil(retry / 1000)) },
      });
    }
  }

  /** Forget the counter of a key (a successful login or a password reset). */
  async clear(key: string): Promise<void> {
    await this.storage.db.deleteFrom(TABLE).where('key', '=', key).execute();
  }

  /** Take back one counted attempt (a login that succeeded is not a failure). */
  async forgive(key: string): Promise<void> {
    await this.storage.db
      .updateTable(TABLE)
      .set((eb) => ({ failures: eb('failures', '-', 1) }))
      .where('key', '=', key)
      .where('failures', '>', 0)
      .execute();
  }

  /** The configured limits, for the keys of one login. */
  keysFor(email: string, ip: string): ThrottleKey[] {
    return [
      { key: accountKey(email), max: this.limits.perAccount, progressive: true },
      // Many people may share an address (offices, carrier NAT): an IP gets an hourly cap, no delays.
      { key: ipKey(ip), max: this.limits.perIp, progressive: false },
    ];
  }

  /** Drop windows that have ended. */
  async cleanup(): Promise<void> {
    await this.storage.db
      .deleteFrom(TABLE)
      .where('window_start', '<', this.clock.now() - WINDOW_MS)
      .execute();
  }
}

async function upsert(db: Kysely<any>, key: string, v: { failures: number; window_start: number; next_allowed_at: number }) {
  await db
    .insertInto(TABLE)
    .values({ key, ...v })
    .onConflict((oc) => oc.column('key').doUpdateSet(v))
    .execute();
}
