/**
 * Stored answers of mutations sent with an `Idempotency-Key`, in the app's database (so every
 * node sees them). The first request with a key claims it (a row in `running` state with a
 * lock); its answer is stored when it is sent, and a retry with the same key and the same
 * request gets that answer again instead of a second effect. The same key with a different
 * request is refused (422); a retry while the first is still running gets 409. Answers that say
 * "nothing happened, try again" (5xx, 429) are not stored: the key is released for the retry.
 * A claim is a lease: the request holding it renews it while it runs (every third of
 * `lockMs`), so a claim whose node died is taken over within `lockMs`, and every claim carries its
 * owner's token (fencing): a request that lost its claim (a long pause) cannot apply its write
 * any more — the write's transaction checks the token and rolls back.
 *
 * The write itself marks the claim `applied` in its own transaction, with what it wrote (see
 * RecordsService's AppliedRecorder). So when a node dies after the commit but before the answer
 * was stored, a retry does not run the write again: it is answered at once from what was applied
 * (the records as they are now, with the original status), never applying it twice.
 *
 * Keys are scoped per caller (user id; anonymous callers share one scope, where keys are
 * random UUIDs in practice), so one user can never replay another's answer.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Clock } from '../core/clock.js';
import { RampartError } from '../core/errors.js';
import type { AppliedWrite } from '../records/service.js';
import type { Storage } from '../storage/types.js';

const TABLE = '_rampart_idempotency';
/** A key: 1 to 255 visible ASCII characters (a UUID, in practice). */
export const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e]{1,255}$/;

/** A stored answer. */
export interface StoredAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** What claiming a key found. */
export type Claim =
  | { kind: 'claimed'; owner: string }
  | { kind: 'replay'; answer: StoredAnswer }
  | { kind: 'applied'; applied: AppliedAnswer }
  | { kind: 'in-progress' }
  | { kind: 'mismatch' };

/** What a committed write applied, when its answer was never stored. */
export interface AppliedAnswer {
  kind: 'single' | 'batch';
  writes: AppliedWrite[];
}

export interface IdempotencyOptions {
  /** How long answers are kept, in ms. */
  ttlMs: number;
  /** How long a claim holds unless its request renews it (it does, every third of this, while it runs). */
  lockMs: number;
}

/** The fingerprint of a request: method, path and body. */
export function fingerprint(method: string, url: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method} ${url}\n`)
    .update(body === undefined ? '' : JSON.stringify(body))
    .digest('base64url');
}

export class IdempotencyStore {
  constructor(
    private readonly storage: Storage,
    private readonly clock: Clock,
    private readonly opts: IdempotencyOptions,
  ) {}

  /** How often a running request renews its claim. */
  get renewEveryMs(): number {
    return Math.max(100, Math.floor(this.opts.lockMs / 3));
  }

  private get db(): Kysely<any> {
    return this.storage.db;
  }

  /** Claim `key` for a request with this fingerprint, or say why not. */
  async claim(scope: string, key: string, print: string, again = true): Promise<Claim> {
    const now = this.clock.now();
    const owner = randomBytes(9).toString('base64url');
    const inserted = await this.db
      .insertInto(TABLE)
      .values({
        scope,
        key,
        fingerprint: print,
        state: 'running',
        owner,
        locked_until: now + this.opts.lockMs,
        created_at: now,
        expires_at: now + this.opts.ttlMs,
      })
      .onConflict((oc) => oc.columns(['scope', 'key']).doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 1) return { kind: 'claimed', owner };
    const row = await this.db
      .selectFrom(TABLE)
      .select(['fingerprint', 'state', 'locked_until', 'status', 'headers', 'body', 'expires_at'])
      .where('scope', '=', scope)
      .where('key', '=', key)
      .executeTakeFirst();
    // Released between the two statements (the first attempt failed): try once more.
    if (!row) return again ? this.claim(scope, key, print, false) : { kind: 'in-progress' };
    if (Number(row.expires_at) <= now) {
      // An expired answer is not replayed: the key starts afresh.
      await this.db.deleteFrom(TABLE).where('scope', '=', scope).where('key', '=', key).where('expires_at', '<=', now).execute();
      return again ? this.claim(scope, key, print, false) : { kind: 'in-progress' };
    }
    if (row.fingerprint !== print) return { kind: 'mismatch' };
    if (row.state === 'done') {
      return { kind: 'replay', answer: { status: Number(row.status), headers: JSON.parse(row.headers ?? '{}'), body: row.body ?? '' } };
    }
    // Committed, answer not stored yet (its node may have died after the commit): answer from what it applied.
    if (row.state === 'applied') return { kind: 'applied', applied: JSON.parse(row.body ?? '{}') as AppliedAnswer };
    if (Number(row.locked_until) > now) return { kind: 'in-progress' };
    // The node that claimed it died (or took too long): take it over, unless another retry just did.
    const taken = await this.db
      .updateTable(TABLE)
      .set({ locked_until: now + this.opts.lockMs, owner })
      .where('scope', '=', scope)
      .where('key', '=', key)
      .where('state', '=', 'running')
      .where('locked_until', '=', row.locked_until)
      .executeTakeFirst();
    return Number(taken.numUpdatedRows) === 1 ? { kind: 'claimed', owner } : { kind: 'in-progress' };
  }

  /** Extend a claim while its request runs; false when it was lost (taken over, or gone). */
  async renew(scope: string, key: string, owner: string): Promise<boolean> {
    const r = await this.db
      .updateTable(TABLE)
      .set({ locked_until: this.clock.now() + this.opts.lockMs })
      .where('scope', '=', scope)
      .where('key', '=', key)
      .where('owner', '=', owner)
      .where('state', '=', 'running')
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Store the answer of a claimed key (this owner's). */
  async complete(scope: string, key: string, owner: string, answer: StoredAnswer): Promise<void> {
    await this.db
      .updateTable(TABLE)
      .set({ state: 'done', status: answer.status, headers: JSON.stringify(answer.headers), body: answer.body })
      .where('scope', '=', scope)
      .where('key', '=', key)
      .where('owner', '=', owner)
      .execute();
  }

  /** In the write's own transaction `db`: the claimed key's write is applied (commits with it). */
  async markApplied(db: Kysely<any>, scope: string, key: string, owner: string, applied: AppliedAnswer): Promise<void> {
    const r = await db
      .updateTable(TABLE)
      .set({ state: 'applied', body: JSON.stringify(applied) })
      .where('scope', '=', scope)
      .where('key', '=', key)
      .where('owner', '=', owner)
      .where('state', '=', 'running')
      .executeTakeFirst();
    // Another request took the claim over (this one paused past its lease): this write must not apply.
    if (Number(r.numUpdatedRows) !== 1) {
      throw new RampartError('E_IDEMPOTENCY_IN_PROGRESS', 'another request with this Idempotency-Key took over; retry shortly', {
        headers: { 'Retry-After': '1' },
      });
    }
  }

  /** Give a claimed key back (nothing happened: the retry may run). */
  async release(scope: string, key: string, owner: string): Promise<void> {
    await this.db
      .deleteFrom(TABLE)
      .where('scope', '=', scope)
      .where('key', '=', key)
      .where('owner', '=', owner)
      .where('state', '=', 'running')
      .execute();
  }

  /** Delete expired answers; returns how many. */
  async sweep(): Promise<number> {
    const res = await this.db.deleteFrom(TABLE).where('expires_at', '<=', this.clock.now()).executeTakeFirst();
    return Number(res.numDeletedRows);
  }
}
