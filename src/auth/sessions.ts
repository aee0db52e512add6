/**
 * Sessions and their refresh tokens. A session is one sign-in on one device. Its refresh tokens
 * form a chain: the first is random; each next one is `HMAC(rotation key, previous token)`.
 * The session row keeps only the current token's generation and SHA-256 hash, so:
 *
 *  - rotating is one conditional UPDATE of one row (`… WHERE generation = g`): of concurrent
 *    refreshes with the same token exactly one advances the chain, and nothing accumulates;
 *  - any earlier token of the chain can be *proven* genuine by hashing forward to the current
 *    hash (a forged token, even with a known session id, proves nothing and just fails);
 *  - presenting a genuine earlier token is reuse (RFC 9700 §4.14) and ends the session —
 *    except within `graceS` seconds of a rotation, for the token just before the current one:
 *    then it returns the current token (derivable, so never stored in plain text). A client
 *    that fires several refreshes at once (tabs, retries) stays signed in.
 *
 * A database dump reveals neither the tokens nor how to make them: a hash and a key derive
 * nothing without a token in plain text. Tokens read `rt_<session id>.<generation>.<secret>`.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { CompiledQuery, Kysely } from 'kysely';
import type { Clock } from '../core/clock.js';
import type { AuthConfig } from '../core/config.js';
import { isUuid, uuidv7 } from '../core/ids.js';
import type { Storage } from '../storage/types.js';

const SESSIONS = '_rampart_sessions';
const PREFIX = 'rt_';
/** How far back a presented token is followed to prove it belongs to the chain. */
const MAX_CHAIN_WALK = 100_000;

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

/** A session with its user's state, as the refresh path reads it. */
interface Row {
  id: string;
  user_id: string;
  expires_at: number;
  revoked_at: number | null;
  revoked_reason: string | null;
  generation: number;
  current_hash: string;
  rotated_at: number;
  rotation_key: string;
  user_found: string | null;
  disabled: unknown;
  user_deleted: unknown;
}

const truthy = (v: unknown) => v === true || v === 1;
const sameHash = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/** `rt_<session>.<generation>.<secret>` → its parts, or undefined when it cannot be one of ours. */
function parse(token: string): { sessionId: string; generation: number } | undefined {
  if (!token.startsWith(PREFIX) || token.length > 200) return undefined;
  const [sessionId, gen, secret] = token.slice(PREFIX.length).split('.');
  if (!sessionId || !isUuid(sessionId) || !gen || !/^[1-9]\d{0,8}$/.test(gen) || !secret || !/^[A-Za-z0-9_-]{43}$/.test(secret))
    return undefined;
  return { sessionId, generation: Number(gen) };
}

export class SessionStore {
  /** The refresh path's statements, compiled once. */
  private readonly q: Record<'lookup' | 'rotate', CompiledQuery>;

  constructor(
    private readonly storage: Storage,
    private readonly config: Pick<AuthConfig, 'refreshTtlS' | 'sessionMaxAgeS' | 'refreshGraceS'>,
    private readonly clock: Clock,
    /** The accounts table (a disabled or deleted user's sessions cannot refresh). */
    users: string,
  ) {
    const p = '' as string;
    const n = 0 as number;
    this.q = {
      lookup: storage.reader
        .selectFrom(`${SESSIONS} as s`)
        .leftJoin(`${users} as u`, 'u.id', 's.user_id')
        .select([
          's.id',
          's.user_id',
          's.expires_at',
          's.revoked_at',
          's.revoked_reason',
          's.generation',
          's.current_hash',
          's.rotated_at',
          's.rotation_key',
          'u.id as user_found',
          'u.disabled',
          'u.deleted_at as user_deleted',
        ])
        .where('s.id', '=', p)
        .compile(),
      // Parameters in order: generation + 1, hash, now (rotated), now (used), id, generation.
      rotate: storage.db
        .updateTable(SESSIONS)
        .set({ generation: n, current_hash: p, rotated_at: n, last_used_at: n })
        .where('id', '=', p)
        .where('generation', '=', n)
        .where('revoked_at', 'is', null)
        .compile(),
    };
  }

  /** The token after `token` (generation `generation`) in a session's chain. */
  private next(key: string, sessionId: string, generation: number, token: string): string {
    return `${PREFIX}${sessionId}.${generation}.${createHmac('sha256', key).update(token).digest('base64url')}`;
  }

  /** Start a session; returns its id and first refresh token. Runs in `db` when given (a caller's transaction). */
  async create(
    userId: string,
    meta: { method: string; userAgent?: string; ip?: string },
    db: Kysely<any> = this.storage.db,
  ): Promise<{ sessionId: string; refreshToken: string }> {
    const now = this.clock.now();
    const sessionId = uuidv7(now);
    const refreshToken = `${PREFIX}${sessionId}.1.${randomBytes(32).toString('base64url')}`;
    await db
      .insertInto(SESSIONS)
      .values({
        id: sessionId,
        user_id: userId,
        created_at: now,
        last_used_at: now,
        expires_at: now + this.config.sessionMaxAgeS * 1000,
        generation: 1,
        current_hash: tokenHash(refreshToken),
        rotated_at: now,
        rotation_key: randomBytes(32).toString('base64url'),
        method: meta.method,
        user_agent: meta.userAgent?.slice(0, 256) ?? null,
        ip: meta.ip ?? null,
      })
      .execute();
    return { sessionId, refreshToken };
  }

  /** Rotate a refresh token: one read and, on the common path, one conditional write. */
  async rotate(token: string): Promise<RefreshOutcome> {
    const parsed = parse(token);
    if (!parsed) return { kind: 'invalid' };
    const now = this.clock.now();
    for (let attempt = 0; attempt < 3; attempt++) {
      const [row] = await this.storage.read<Row>(this.q.lookup, [parsed.sessionId]);
      if (!row) return { kind: 'invalid' };
      const generation = Number(row.generation);
      if (parsed.generation > generation) return { kind: 'invalid' };
      // Prove the token belongs to the chain: hash forward from it to the current token.
      const steps = generation - parsed.generation;
      if (steps > MAX_CHAIN_WALK) return { kind: 'invalid' };
      let current = token;
      for (let g = parsed.generation + 1; g <= generation; g++) current = this.next(row.rotation_key, row.id, g, current);
      if (!sameHash(tokenHash(current), row.current_hash)) return { kind: 'invalid' };
      if (row.revoked_at !== null) return { kind: 'revoked', reason: row.revoked_reason ?? 'revoked' };
      const idleExpired = Number(row.rotated_at) + this.config.refreshTtlS * 1000 <= now;
      if (Number(row.expires_at) <= now || (steps === 0 && idleExpired)) return { kind: 'invalid' };
      const blocked =
        row.user_found === null || row.user_deleted !== null ? 'account_deleted' : truthy(row.disabled) ? 'account_disabled' : undefined;
      if (blocked) {
        await this.revokeIn(this.storage.db, row.id, blocked, now);
        return { kind: 'revoked', reason: blocked };
      }
      if (steps === 1 && now - Number(row.rotated_at) <= this.config.refreshGraceS * 1000) {
        // The token just before the current one, moments after its rotation: a concurrent retry.
        return { kind: 'ok', sessionId: row.id, userId: row.user_id, refreshToken: current };
      }
      if (steps > 0) {
        await this.revokeIn(this.storage.db, row.id, 'refresh_token_reuse', now);
        return { kind: 'reused', sessionId: row.id };
      }
      const next = this.next(row.rotation_key, row.id, generation + 1, token);
      const res = await this.storage.db.executeQuery({
        ...this.q.rotate,
        parameters: [generation + 1, tokenHash(next), now, now, row.id, generation],
      });
      if (Number(res.numAffectedRows ?? 0) === 1) return { kind: 'ok', sessionId: row.id, userId: row.user_id, refreshToken: next };
      // Another request rotated (or revoked) between the read and the write: read again.
    }
    return { kind: 'invalid' };
  }

  private async revokeIn(db: Kysely<any>, sessionId: string, reason: string, now: number): Promise<void> {
    await db
      .updateTable(SESSIONS)
      .set({ revoked_at: now, revoked_reason: reason })
      .where('id', '=', sessionId)
      .where('revoked_at', 'is', null)
      .execute();
  }

  /** End one session of a user; false when it is not theirs or already ended. */
  async revoke(userId: string, sessionId: string, reason: string): Promise<boolean> {
    if (!isUuid(sessionId)) return false;
    const res = await this.storage.db
      .updateTable(SESSIONS)
      .set({ revoked_at: this.clock.now(), revoked_reason: reason })
      .where('id', '=', sessionId)
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) > 0;
  }

  /** End every session of a user except `keep`; returns how many ended. */
  async revokeAll(userId: string, reason: string, keep?: string, db: Kysely<any> = this.storage.db): Promise<number> {
    let q = db
      .updateTable(SESSIONS)
      .set({ revoked_at: this.clock.now(), revoked_reason: reason })
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null);
    if (keep) q = q.where('id', '<>', keep);
    return Number((await q.executeTakeFirst()).numUpdatedRows);
  }

  /** The user's live sessions, most recently used first. */
  async list(userId: string, current?: string): Promise<SessionInfo[]> {
    const now = this.clock.now();
    const rows = await this.storage.db
      .selectFrom(SESSIONS)
      .selectAll()
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .where('expires_at', '>', now)
      .where('rotated_at', '>', now - this.config.refreshTtlS * 1000)
      .orderBy('last_used_at', 'desc')
      .limit(200)
      .execute();
    const iso = (ms: unknown) => new Date(Number(ms)).toISOString();
    return rows.map((r) => ({
      id: r.id,
      created_at: iso(r.created_at),
      last_used_at: iso(r.last_used_at),
      expires_at: iso(Math.min(Number(r.expires_at), Number(r.rotated_at) + this.config.refreshTtlS * 1000)),
      method: r.method,
      user_agent: r.user_agent,
      ip: r.ip,
      current: r.id === current,
    }));
  }

  /** Sessions ended after `since` (ms), for the revocation set of every node. */
  async revokedSince(since: number): Promise<Array<{ id: string; at: number }>> {
    const rows = await this.storage.db.selectFrom(SESSIONS).select(['id', 'revoked_at']).where('revoked_at', '>', since).execute();
    return rows.map((r) => ({ id: r.id, at: Number(r.revoked_at) }));
  }

  /**
   * Remove sessions that can no longer be used: past their maximum age, or idle longer than a
   * refresh token lives. Ended sessions stay as long as their tokens could still be presented
   * (so a late reuse is still recognized as one), then go too.
   */
  async cleanup(): Promise<number> {
    const now = this.clock.now();
    const res = await this.storage.db
      .deleteFrom(SESSIONS)
      .where((eb) => eb.or([eb('expires_at', '<', now), eb('rotated_at', '<', now - this.config.refreshTtlS * 1000)]))
      .executeTakeFirst();
    return Number(res.numDeletedRows);
  }
}
