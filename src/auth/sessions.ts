/**
 * Sessions and refresh tokens. A session is one sign-in on one device; its refresh tokens are
 * opaque random strings, stored only as SHA-256 hashes, and rotated on every use.
 *
 * Reuse detection (RFC 9700 §4.14): presenting a token that was already rotated revokes the
 * whole session. Concurrent refreshes: a client that fires several refreshes with the same
 * token at once (tabs, retries) must not sign itself out, so within `graceS` seconds of a
 * rotation the old token returns the *same* successor, as long as that successor is unused.
 * The successor is derived (HMAC of the old token under the session's rotation key), so it
 * can be handed out again without ever being stored in plain text.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { CompiledQuery, Kysely } from 'kysely';
import type { Clock } from '../core/clock.js';
import type { AuthConfig } from '../core/config.js';
import { uuidv7 } from '../core/ids.js';
import type { Storage } from '../storage/types.js';

const SESSIONS = '_rampart_sessions';
const TOKENS = '_rampart_refresh_tokens';
const PREFIX = 'rt_';

/** SHA-256 of a high-entropy token, base64url: what the database stores. */
export const tokenHash = (token: string) => createHash('sha256').update(token).digest('base64url');
/** A new random opaque token with a readable prefix. */
export const randomToken = (prefix: string) => `${prefix}${randomBytes(32).toString('base64url')}`;

/** A session as its owner sees it. */
export interface SessionInfo {
  id: string;
  created_at: string;
  last_used_at: string;
  expires_at: string;
  method: string;
  user_agent: string | null;
  ip: string | null;
  current: boolean;
}

/** The outcome of presenting a refresh token. */
export type RefreshOutcome =
  | { kind: 'ok'; sessionId: string; userId: string; refreshToken: string }
  | { kind: 'invalid' }
  | { kind: 'revoked'; reason: string }
  | { kind: 'reused'; sessionId: string };

/** A refresh token with its session and the session's user, as the lookup reads it. */
interface LookupRow {
  generation: number;
  expires_at: number;
  used_at: number | null;
  session_id: string;
  user_id: string;
  session_expires: number;
  last_used_at: number;
  revoked_at: number | null;
  revoked_reason: string | null;
  rotation_key: string;
  user_id_found: string | null;
  disabled: unknown;
  user_deleted: unknown;
}

const truthy = (v: unknown) => v === true || v === 1;

export class SessionStore {
  /** The refresh path's statements, compiled once (markers stand for the parameters, in order). */
  private readonly q: Record<'lookup' | 'insert' | 'claim' | 'usedAt', CompiledQuery>;

  constructor(
    private readonly storage: Storage,
    private readonly config: Pick<AuthConfig, 'refreshTtlS' | 'sessionMaxAgeS' | 'refreshGraceS'>,
    private readonly clock: Clock,
    /** The accounts table (a disabled or deleted user's sessions cannot refresh). */
    users = 'users',
  ) {
    const p = '' as string;
    const n = 0 as number;
    this.q = {
      lookup: storage.reader
        .selectFrom(`${TOKENS} as t`)
        .innerJoin(`${SESSIONS} as s`, 's.id', 't.session_id')
        .leftJoin(`${users} as u`, 'u.id', 's.user_id')
        .select([
          't.generation',
          't.expires_at',
          't.used_at',
          's.id as session_id',
          's.user_id',
          's.expires_at as session_expires',
          's.last_used_at',
          's.revoked_at',
          's.revoked_reason',
          's.rotation_key',
          'u.id as user_id_found',
          'u.disabled',
          'u.deleted_at as user_deleted',
        ])
        .where('t.hash', '=', p)
        .compile(),
      insert: storage.db
        .insertInto(TOKENS)
        .values({ hash: p, session_id: p, generation: n, created_at: n, expires_at: n })
        .onConflict((oc) => oc.column('hash').doNothing())
        .compile(),
      claim: storage.db.updateTable(TOKENS).set({ used_at: n }).where('hash', '=', p).where('used_at', 'is', null).compile(),
      usedAt: storage.reader.selectFrom(TOKENS).select('used_at').where('hash', '=', p).compile(),
    };
  }

  private successor(rotationKey: string, token: string): string {
    return `${PREFIX}${createHmac('sha256', rotationKey).update(token).digest('base64url')}`;
  }

  /** Start a session; returns its id and first refresh token. Runs in `db` when given (a caller's transaction). */
  async create(
    userId: string,
    meta: { method: string; userAgent?: string; ip?: string },
    db: Kysely<any> = this.storage.db,
  ): Promise<{ sessionId: string; refreshToken: string }> {
    const now = this.clock.now();
    const sessionId = uuidv7(now);
    const expires = now + this.config.sessionMaxAgeS * 1000;
    const refreshToken = randomToken(PREFIX);
    await db
      .insertInto(SESSIONS)
      .values({
        id: sessionId,
        user_id: userId,
        created_at: now,
        last_used_at: now,
        expires_at: expires,
        rotation_key: randomBytes(32).toString('base64url'),
        method: meta.method,
        user_agent: meta.userAgent?.slice(0, 256) ?? null,
        ip: meta.ip ?? null,
      })
      .execute();
    await this.insertToken(db, refreshToken, sessionId, 1, now, expires);
    return { sessionId, refreshToken };
  }

  private insertToken(db: Kysely<any>, token: string, sessionId: string, generation: number, now: number, sessionExpires: number) {
    return db
      .insertInto(TOKENS)
      .values({
        hash: tokenHash(token),
        session_id: sessionId,
        generation,
        created_at: now,
        expires_at: Math.min(now + this.config.refreshTtlS * 1000, sessionExpires),
      })
      .execute();
  }

  /**
   * Rotate a refresh token, in as few statements as possible (this is the hot path of every
   * client): one read of the token with its session and user, then an insert of the successor
   * and a conditional claim of the token. The successor is derived from the token, so racing
   * requests insert the same row (the second insert is a no-op) and exactly one claim wins;
   * the others find the token claimed moments ago and, inside the grace window, are handed
   * the same successor. Outside the window a used token means theft, and the session ends.
   */
  async rotate(token: string): Promise<RefreshOutcome> {
    if (!token.startsWith(PREFIX) || token.length > 100) return { kind: 'invalid' };
    const now = this.clock.now();
    const hash = tokenHash(token);
    const [row] = await this.storage.read<LookupRow>(this.q.lookup, [hash]);
    if (!row) return { kind: 'invalid' };
    if (row.revoked_at !== null) return { kind: 'revoked', reason: row.revoked_reason ?? 'revoked' };
    if (Number(row.expires_at) <= now || Number(row.session_expires) <= now) return { kind: 'invalid' };
    const blocked =
      row.user_deleted !== null || row.user_id_found === null ? 'account_deleted' : truthy(row.disabled) ? 'account_disabled' : undefined;
    if (blocked) {
      await this.storage.transaction((db) => this.revokeIn(db, row.session_id, blocked, now));
      return { kind: 'revoked', reason: blocked };
    }
    const next = this.successor(row.rotation_key, token);
    const nextHash = tokenHash(next);
    if (row.used_at === null) {
      const expires = Math.min(now + this.config.refreshTtlS * 1000, Number(row.session_expires));
      // Two single-statement writes, no transaction around them: measured faster on both backends
      // (no BEGIN/COMMIT round trips), and the order (successor first, then the claim) keeps
      // every interleaving safe.
      const db = this.storage.db;
      await db.executeQuery({ ...this.q.insert, parameters: [nextHash, row.session_id, Number(row.generation) + 1, now, expires] });
      const claimed = await db.executeQuery({ ...this.q.claim, parameters: [now, hash] });
      if (Number(claimed.numAffectedRows ?? 0) === 1) {
        // The session's "last used" moves at most once a minute: one write fewer per refresh.
        if (now - Number(row.last_used_at) > 60_000) {
          await db.updateTable(SESSIONS).set({ last_used_at: now }).where('id', '=', row.session_id).execute();
        }
        return { kind: 'ok', sessionId: row.session_id, userId: row.user_id, refreshToken: next };
      }
    }
    // Already rotated: the same successor within the grace window while it is unused, else theft is assumed.
    const [used] = await this.storage.read<{ used_at: number | null }>(this.q.usedAt, [hash]);
    const [succ] = await this.storage.read<{ used_at: number | null }>(this.q.usedAt, [nextHash]);
    const usedAt = Number(used?.used_at ?? now);
    if (now - usedAt <= this.config.refreshGraceS * 1000 && succ && succ.used_at === null) {
      return { kind: 'ok', sessionId: row.session_id, userId: row.user_id, refreshToken: next };
    }
    await this.storage.transaction((tx) => this.revokeIn(tx, row.session_id, 'refresh_token_reuse', now));
    return { kind: 'reused', sessionId: row.session_id };
  }

  private async revokeIn(db: Kysely<any>, sessionId: string, reason: string, now: number): Promise<void> {
    await db
      .updateTable(SESSIONS)
      .set({ revoked_at: now, revoked_reason: reason })
      .where('id', '=', sessionId)
      .where('revoked_at', 'is', null)
      .execute();
    await db.deleteFrom(TOKENS).where('session_id', '=', sessionId).where('used_at', 'is', null).execute();
  }

  /** End one session of a user; false when it is not theirs or already ended. */
  async revoke(userId: string, sessionId: string, reason: string): Promise<boolean> {
    const now = this.clock.now();
    return this.storage.transaction(async (db) => {
      const res = await db
        .updateTable(SESSIONS)
        .set({ revoked_at: now, revoked_reason: reason })
        .where('id', '=', sessionId)
        .where('user_id', '=', userId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      await db.deleteFrom(TOKENS).where('session_id', '=', sessionId).where('used_at', 'is', null).execute();
      return Number(res.numUpdatedRows) > 0;
    });
  }

  /** End every session of a user except `keep`; returns how many ended. */
  async revokeAll(userId: string, reason: string, keep?: string, db: Kysely<any> = this.storage.db): Promise<number> {
    const now = this.clock.now();
    let q = db
      .updateTable(SESSIONS)
      .set({ revoked_at: now, revoked_reason: reason })
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null);
    if (keep) q = q.where('id', '<>', keep);
    const res = await q.executeTakeFirst();
    let tokens = db
      .deleteFrom(TOKENS)
      .where('used_at', 'is', null)
      .where('session_id', 'in', db.selectFrom(SESSIONS).select('id').where('user_id', '=', userId).where('revoked_at', 'is not', null));
    if (keep) tokens = tokens.where('session_id', '<>', keep);
    await tokens.execute();
    return Number(res.numUpdatedRows);
  }

  /** The user's live sessions, newest first. */
  async list(userId: string, current?: string): Promise<SessionInfo[]> {
    const now = this.clock.now();
    const rows = await this.storage.db
      .selectFrom(SESSIONS)
      .selectAll()
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', now)
      .orderBy('last_used_at', 'desc')
      .limit(200)
      .execute();
    const iso = (ms: unknown) => new Date(Number(ms)).toISOString();
    return rows.map((r) => ({
      id: r.id,
      created_at: iso(r.created_at),
      last_used_at: iso(r.last_used_at),
      expires_at: iso(r.expires_at),
      method: r.method,
      user_agent: r.user_agent,
      ip: r.ip,
      current: r.id === current,
    }));
  }

  /** Ids of sessions revoked after `since` (ms), for the revocation cache of every node. */
  async revokedSince(since: number): Promise<Array<{ id: string; at: number }>> {
    const rows = await this.storage.db.selectFrom(SESSIONS).select(['id', 'revoked_at']).where('revoked_at', '>', since).execute();
    return rows.map((r) => ({ id: r.id, at: Number(r.revoked_at) }));
  }

  /** Remove expired sessions and tokens (ended ones are kept as long as a token of theirs could still be presented). */
  async cleanup(): Promise<number> {
    const now = this.clock.now();
    const res = await this.storage.db.deleteFrom(TOKENS).where('expires_at', '<', now).executeTakeFirst();
    const s = await this.storage.db.deleteFrom(SESSIONS).where('expires_at', '<', now).executeTakeFirst();
    return Number(res.numDeletedRows) + Number(s.numDeletedRows);
  }
}
