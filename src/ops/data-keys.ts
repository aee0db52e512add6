/**
 * Encryption at rest of fields declared `encrypted`: envelope encryption. Data keys (random
 * 32 bytes) are stored in `_rampart_data_keys` wrapped with RAMPART_MASTER_KEY (AES-256-GCM, the
 * key id as additional data); values are stored as
 *
 *   rpe1:<key id>:<base64(nonce 12 | ciphertext | tag 16)>
 *
 * with a random nonce per value and the field's collection.field as additional data, so a
 * value copied into another field does not decrypt. Rotation adds a key; every node loads it
 * (reload every RAMPART_DATA_KEY_RELOAD_MS, or at once when a value names a key it lacks) but
 * encrypts with it only once it is two reload intervals old, so no node writes a value another
 * cannot read yet. The re-encrypt job then moves every value to the active key; a key that no
 * value uses any more can be retired (its wrapped copy is destroyed).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { RampartError } from '../core/errors.js';
import type { FieldCipher } from '../records/codec.js';
import type { CollectionSchema } from '../records/schema.js';
import type { Storage } from '../storage/types.js';

const T = '_rampart_data_keys';
const PREFIX = 'rpe1:';

function seal(key: Buffer, plain: Buffer, aad: string): string {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(Buffer.from(aad));
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([nonce, body, c.getAuthTag()]).toString('base64');
}

function unseal(key: Buffer, sealed: string, aad: string): Buffer {
  const raw = Buffer.from(sealed, 'base64');
  if (raw.length < 28) throw new Error('too short');
  const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(raw.subarray(raw.length - 16));
  return Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]);
}

interface LoadedKey {
  id: string;
  key: Buffer;
  createdAt: number;
}

/** A data key as listed by `rampart keys data-keys`. */
export interface DataKeyInfo {
  id: string;
  state: 'active' | 'retired';
  createdAt: string;
  /** The key new values are encrypted with. */
  current: boolean;
  /** Stored values encrypted with it. */
  values: number;
}

export class DataKeys {
  private keys = new Map<string, LoadedKey>();
  private timer?: NodeJS.Timeout;
  private loading?: Promise<void>;

  constructor(
    private readonly storage: Storage,
    private readonly master: Buffer,
    private readonly clock: Clock,
    private readonly log: Logger,
    /** How often keys are reloaded; a new key is used for encryption after twice this. */
    private readonly reloadMs: number,
  ) {}

  /** Load the keys (creating the first one), then reload them periodically. */
  async start(): Promise<void> {
    await this.load();
    if (this.keys.size === 0) {
      // Several nodes starting at once on an empty table: the fixed first id lets one insert win.
      await this.storage.db
        .insertInto(T)
        .values({ id: 'dk-1', wrapped: seal(this.master, randomBytes(32), 'dk-1'), state: 'active', created_at: 0 })
        .onConflict((oc) => oc.column('id').doNothing())
        .execute();
      await this.load();
    }
    this.timer = setInterval(
      () => void this.load().catch((err) => this.log.warn({ err: err.message }, 'reloading data keys failed')),
      this.reloadMs,
    );
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Read and unwrap the active keys; a key that does not unwrap means the master key is wrong. */
  load(): Promise<void> {
    this.loading ??= (async () => {
      try {
        const rows = await this.storage.db.selectFrom(T).selectAll().where('state', '=', 'active').execute();
        const next = new Map<string, LoadedKey>();
        for (const r of rows) {
          const id = String(r.id);
          try {
            next.set(id, { id, key: unseal(this.master, String(r.wrapped), id), createdAt: Number(r.created_at) });
          } catch {
            throw new RampartError(
              'E_INTERNAL',
              `data key ${id} does not unwrap with RAMPART_MASTER_KEY: is it the master key this database was set up with?`,
            );
          }
        }
        this.keys = next;
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  /** The key new values are encrypted with: the newest one old enough that every node has it. */
  current(): LoadedKey {
    const all = [...this.keys.values()].sort((a, b) => b.createdAt - a.createdAt || b.id.localeCompare(a.id));
    const settled = all.find((k) => k.createdAt <= this.clock.now() - 2 * this.reloadMs);
    const key = settled ?? all[all.length - 1];
    if (!key) throw new RampartError('E_DEPENDENCY_UNAVAILABLE', 'no data key is loaded yet', { headers: { 'Retry-After': '1' } });
    return key;
  }

  /** The cipher of one collection's field (the field's name is authenticated with each value). */
  cipher(collection: string, field: string): FieldCipher {
    const aad = `${collection}.${field}`;
    return {
      encrypt: (plain) => {
        const k = this.current();
        return `${PREFIX}${k.id}:${seal(k.key, Buffer.from(plain, 'utf8'), aad)}`;
      },
      decrypt: (stored) => {
        if (!stored.startsWith(PREFIX)) return stored; // Written before the field was encrypted.
        const sep = stored.indexOf(':', PREFIX.length);
        const id = stored.slice(PREFIX.length, sep);
        const k = this.keys.get(id);
        if (!k) {
          // A key added on another node moments ago: load it for the retry.
          void this.load().catch(() => {});
          throw new RampartError('E_DEPENDENCY_UNAVAILABLE', `data key ${id} is not loaded on this node yet; retry`, {
            headers: { 'Retry-After': '1' },
          });
        }
        try {
          return unseal(k.key, stored.slice(sep + 1), aad).toString('utf8');
        } catch {
          throw new RampartError('E_INTERNAL', `an encrypted value of ${aad} does not decrypt (altered, or moved from another field)`);
        }
      },
    };
  }

  /** Add a data key; nodes start encrypting with it after two reload intervals. Returns its id. */
  async rotate(): Promise<{ id: string; usableAt: number }> {
    const now = this.clock.now();
    const id = `dk-${now.toString(36)}-${randomBytes(2).toString('hex')}`;
    await this.storage.db
      .insertInto(T)
      .values({ id, wrapped: seal(this.master, randomBytes(32), id), state: 'active', created_at: now })
      .execute();
    await this.load();
    return { id, usableAt: now + 2 * this.reloadMs };
  }

  private encryptedColumns(collections: CollectionSchema[]): Array<{ table: string; column: string }> {
    return collections.flatMap((c) =>
      Object.entries(c.fields)
        .filter(([, d]) => d.encrypted)
        .map(([column]) => ({ table: c.name, column })),
    );
  }

  /** Values per key id (`plaintext` for values written before a field was encrypted). */
  async usage(collections: CollectionSchema[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const db = this.storage.db;
    for (const { table, column } of this.encryptedColumns(collections)) {
      let after: string | undefined;
      for (;;) {
        let q = db.selectFrom(table).select(['id', column]).where(column, 'is not', null).orderBy('id').limit(2000);
        if (after !== undefined) q = q.where('id', '>', after);
        const rows = await q.execute();
        for (const r of rows) {
          const v = String(r[column]);
          const id = v.startsWith(PREFIX) ? v.slice(PREFIX.length, v.indexOf(':', PREFIX.length)) : 'plaintext';
          out.set(id, (out.get(id) ?? 0) + 1);
        }
        if (rows.length < 2000) break;
        after = String(rows[rows.length - 1]?.id);
      }
    }
    return out;
  }

  /** Every key, with how many values use it. */
  async list(collections: CollectionSchema[]): Promise<DataKeyInfo[]> {
    const usage = await this.usage(collections);
    const current = this.keys.size > 0 ? this.current().id : undefined;
    const rows = await this.storage.db.selectFrom(T).selectAll().orderBy('created_at').execute();
    return rows.map((r) => ({
      id: String(r.id),
      state: r.state as 'active' | 'retired',
      createdAt: new Date(Number(r.created_at)).toISOString(),
      current: r.id === current,
      values: usage.get(String(r.id)) ?? 0,
    }));
  }

  /**
   * Re-encrypt every value not under the current key (including values stored before their
   * field was encrypted), in batches; each row is updated only if it still holds what was read,
   * so a concurrent write is never overwritten. Returns how many values moved.
   */
  async reencrypt(collections: CollectionSchema[], progress: (done: number, total: number) => void = () => {}): Promise<number> {
    const target = this.current().id;
    const keep = `${PREFIX}${target}:%`;
    const db = this.storage.db;
    const columns = this.encryptedColumns(collections);
    let total = 0;
    for (const { table, column } of columns) {
      const r = await db
        .selectFrom(table)
        .select((eb) => eb.fn.countAll().as('n'))
        .where(column, 'is not', null)
        .where(column, 'not like', keep)
        .executeTakeFirstOrThrow();
      total += Number(r.n);
    }
    let done = 0;
    progress(0, total);
    for (const { table, column } of columns) {
      const cipher = this.cipher(table, column);
      let after: string | undefined;
      for (;;) {
        let q = db
          .selectFrom(table)
          .select(['id', column])
          .where(column, 'is not', null)
          .where(column, 'not like', keep)
          .orderBy('id')
          .limit(200);
        if (after !== undefined) q = q.where('id', '>', after);
        const rows = await q.execute();
        if (rows.length === 0) break;
        for (const row of rows) {
          const old = String(row[column]);
          await db
            .updateTable(table)
            .set({ [column]: cipher.encrypt(cipher.decrypt(old)) })
            .where('id', '=', row.id)
            .where(column, '=', old)
            .execute();
          done++;
        }
        after = String(rows[rows.length - 1]?.id);
        progress(done, total);
      }
    }
    this.log.info({ values: done, key: target }, 'encrypted values moved to the current data key');
    return done;
  }

  /** Retire a key no value uses: its wrapped copy is destroyed. */
  async retire(id: string, collections: CollectionSchema[]): Promise<void> {
    const row = await this.storage.db.selectFrom(T).selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new RampartError('E_BAD_REQUEST', `no data key ${id}`);
    if (row.state === 'retired') return;
    if (this.current().id === id) throw new RampartError('E_CONFLICT', `data key ${id} is the current key: rotate first`);
    const n = (await this.usage(collections)).get(id) ?? 0;
    if (n > 0)
      throw new RampartError(
        'E_CONFLICT',
        `data key ${id} still encrypts ${n} values: run the re-encryption first (rampart keys reencrypt)`,
      );
    await this.storage.db
      .updateTable(T)
      .set({ state: 'retired', wrapped: '', retired_at: this.clock.now() })
      .where('id', '=', id)
      .execute();
    await this.load();
  }
}
