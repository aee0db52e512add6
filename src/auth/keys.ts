/**
 * Signing keys of access tokens (Ed25519, EdDSA), kept in the database so every node signs and
 * verifies with the same set. The newest key without `retire_at` signs. `rampart keys rotate`
 * adds a key and gives the previous ones a `retire_at` after the longest access token they may
 * still have signed: they keep verifying until then, and leave the JWKS after.
 * Nodes reload the set periodically and when a token names a key id they do not know.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { uuidv7 } from '../core/ids.js';
import type { Storage } from '../storage/types.js';

export const TOKEN_ALG = 'EdDSA';
const TABLE = '_rampart_signing_keys';
/** How often a node reloads the key set (a rotation elsewhere reaches it within this). */
export const KEY_RELOAD_MS = 30_000;
/** Shortest interval between reloads caused by unknown key ids (so forged kids cannot hammer the database). */
const UNKNOWN_KID_RELOAD_MS = 1_000;

type Key = Awaited<ReturnType<typeof importJWK>>;
interface LoadedKey {
  kid: string;
  publicJwk: JWK;
  verify: Key;
  /** The private key for node:crypto's one-shot Ed25519 signing (see tokens.ts). */
  sign?: KeyObject;
  createdAt: number;
  retireAt: number | null;
}

/** A stored key as `keys list` shows it. */
export interface KeyInfo {
  kid: string;
  created_at: string;
  retire_at: string | null;
  state: 'signing' | 'verifying' | 'retired';
}

async function newKeyRow(now: number) {
  const { publicKey, privateKey } = await generateKeyPair(TOKEN_ALG, { extractable: true, crv: 'Ed25519' });
  return {
    kid: uuidv7(now),
    alg: TOKEN_ALG,
    public_jwk: JSON.stringify(await exportJWK(publicKey)),
    private_jwk: JSON.stringify(await exportJWK(privateKey)),
    created_at: now,
    retire_at: null,
  };
}

export class SigningKeys {
  private keys = new Map<string, LoadedKey>();
  private active: LoadedKey | undefined;
  private lastLoad = 0;
  private loading: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly storage: Storage,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Load the key set, creating the first key when there is none; then reload periodically. */
  async start(): Promise<void> {
    const existing = await this.storage.db.selectFrom(TABLE).select('kid').where('retire_at', 'is', null).executeTakeFirst();
    if (!existing) {
      await this.storage.db
        .insertInto(TABLE)
        .values(await newKeyRow(this.clock.now()))
        .execute();
      this.log.info('created the first token signing key');
    }
    await this.reload();
    this.timer = setInterval(() => {
      this.reload().catch((err) =>
        this.log.warn({ err: (err as Error).message }, 'could not reload signing keys (keeping the current set)'),
      );
    }, KEY_RELOAD_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Reload keys from the database (one load at a time). */
  reload(): Promise<void> {
    this.loading ??= (async () => {
      try {
        const now = this.clock.now();
        const rows = await this.storage.db
          .selectFrom(TABLE)
          .selectAll()
          .where((eb) => eb.or([eb('retire_at', 'is', null), eb('retire_at', '>', now)]))
          .orderBy('created_at', 'desc')
          .execute();
        const next = new Map<string, LoadedKey>();
        for (const r of rows) {
          const known = this.keys.get(r.kid);
          const publicJwk = JSON.parse(r.public_jwk) as JWK;
          next.set(r.kid, {
            kid: r.kid,
            publicJwk,
            verify: known?.verify ?? (await importJWK(publicJwk, TOKEN_ALG)),
            sign: r.retire_at === null ? (known?.sign ?? createPrivateKey({ key: JSON.parse(r.private_jwk), format: 'jwk' })) : undefined,
            createdAt: Number(r.created_at),
            retireAt: r.retire_at === null ? null : Number(r.retire_at),
          });
        }
        this.keys = next;
        this.active = [...next.values()].find((k) => k.sign !== undefined);
        this.lastLoad = this.clock.now();
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  /** The key that signs new tokens. */
  signing(): { kid: string; key: KeyObject } {
    if (!this.active?.sign) throw new Error('no active signing key (was start() called?)');
    return { kid: this.active.kid, key: this.active.sign };
  }

  /** The public key for `kid`, or undefined for an unknown or retired key. */
  async verifying(kid: string): Promise<Key | undefined> {
    const now = this.clock.now();
    let k = this.keys.get(kid);
    if (!k && now - this.lastLoad > UNKNOWN_KID_RELOAD_MS) {
      await this.reload();
      k = this.keys.get(kid);
    }
    if (!k || (k.retireAt !== null && k.retireAt <= now)) return undefined;
    return k.verify;
  }

  /** The JSON Web Key Set of every key that may still verify a token. */
  jwks(): { keys: JWK[] } {
    const now = this.clock.now();
    return {
      keys: [...this.keys.values()]
        .filter((k) => k.retireAt === null || k.retireAt > now)
        .map((k) => ({ ...k.publicJwk, kid: k.kid, alg: TOKEN_ALG, use: 'sig' })),
    };
  }

  /**
   * Add a signing key; keys that were signing retire after `graceMs` (the access token
   * lifetime plus the reload interval and some clock skew). Long-retired keys are removed.
   */
  static async rotate(storage: Storage, clock: Clock, graceMs: number): Promise<string> {
    const now = clock.now();
    const row = await newKeyRow(now);
    await storage.transaction(async (db) => {
      await db
        .deleteFrom(TABLE)
        .where('retire_at', '<', now - 86_400_000)
        .execute();
      await db
        .updateTable(TABLE)
        .set({ retire_at: now + graceMs })
        .where('retire_at', 'is', null)
        .execute();
      await db.insertInto(TABLE).values(row).execute();
    });
    return row.kid;
  }

  /** Every stored key with its state. */
  static async list(storage: Storage, clock: Clock): Promise<KeyInfo[]> {
    const now = clock.now();
    const rows = await storage.db.selectFrom(TABLE).select(['kid', 'created_at', 'retire_at']).orderBy('created_at', 'desc').execute();
    let signing = false;
    return rows.map((r) => {
      const retire = r.retire_at === null ? null : Number(r.retire_at);
      const state = retire === null ? (signing ? 'verifying' : 'signing') : retire > now ? 'verifying' : 'retired';
      if (retire === null) signing = true;
      return {
        kid: r.kid,
        created_at: new Date(Number(r.created_at)).toISOString(),
        retire_at: retire === null ? null : new Date(retire).toISOString(),
        state,
      };
    });
  }
}
