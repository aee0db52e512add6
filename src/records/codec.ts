/**
 * Conversion between API values and database values. The differences between backends are
 * read from the storage's capabilities: SQLite stores booleans as 0/1, JSON and date-times
 * as text; PostgreSQL has native types that the driver returns as JS values.
 */
import type { StorageCapabilities } from '../storage/types.js';
import type { RecordData } from './hooks.js';
import type { CollectionSchema, FieldDef } from './schema.js';

/** Encrypts and decrypts the values of fields declared `encrypted` (see ops/data-keys.ts). */
export interface FieldCipher {
  /** The stored form of a plaintext value. */
  encrypt(plain: string): string;
  /** The plaintext of a stored value (a value stored before the field was encrypted comes back as it is). */
  decrypt(stored: string): string;
}

/** The cipher of a collection's field. */
export type CipherFactory = (collection: string, field: string) => FieldCipher;

/** The storage kind of a field or base field, which decides how its value is encoded. */
export type ValueKind = FieldDef['type'] | 'uuid' | 'timestamp';

export const BASE_KINDS: Record<string, ValueKind> = {
  id: 'uuid',
  created_at: 'timestamp',
  updated_at: 'timestamp',
  deleted_at: 'timestamp',
  version: 'integer',
};

/** The kind of a declared or base field, or undefined for an unknown name. */
export function kindOf(schema: CollectionSchema, name: string): ValueKind | undefined {
  if (Object.hasOwn(BASE_KINDS, name)) return BASE_KINDS[name];
  return Object.hasOwn(schema.fields, name) ? schema.fields[name]?.type : undefined;
}

/** An already-validated API value as a bound parameter. */
export function encodeValue(caps: StorageCapabilities, kind: ValueKind, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (kind === 'boolean') return caps.nativeBoolean ? value : value ? 1 : 0;
  if (kind === 'json') return JSON.stringify(value);
  return value;
}

function decodeValue(caps: StorageCapabilities, kind: ValueKind, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  switch (kind) {
    case 'boolean':
      return caps.nativeBoolean ? value : value === 1;
    case 'json':
      return caps.nativeJson ? value : JSON.parse(value as string);
    case 'datetime':
    case 'timestamp':
      return value instanceof Date ? value.toISOString() : value;
    case 'number':
    case 'integer':
      return Number(value);
    default:
      return value;
  }
}

/**
 * Rows of one collection to API records. The column list and each column's kind are worked
 * out once per collection, not per row: decoding is on the path of every read.
 */
export class RowCodec {
  private readonly columns: Array<[string, ValueKind]>;
  private readonly encrypted: Set<string>;

  constructor(
    private readonly caps: StorageCapabilities,
    private readonly schema: CollectionSchema,
    private readonly cipher: () => CipherFactory | undefined = () => undefined,
  ) {
    this.columns = [
      ...(Object.entries(BASE_KINDS) as Array<[string, ValueKind]>),
      ...Object.entries(schema.fields).map(([name, def]): [string, ValueKind] => [name, def.type]),
    ];
    this.encrypted = new Set(Object.keys(schema.fields).filter((n) => schema.fields[n]?.encrypted));
  }

  private requireCipher(field: string): FieldCipher {
    const c = this.cipher();
    if (!c) throw new Error(`collection ${this.schema.name} has encrypted fields, but no data keys are loaded (RAMPART_MASTER_KEY)`);
    return c(this.schema.name, field);
  }

  /** A database row as the API record, keys in a stable order (base fields first). */
  decode(row: Record<string, unknown>, only?: ReadonlySet<string>): RecordData {
    const out: Record<string, unknown> = {};
    for (const [name, kind] of this.columns) {
      if ((!only || only.has(name)) && name in row) {
        const v = row[name];
        out[name] =
          this.encrypted.has(name) && typeof v === 'string' ? this.requireCipher(name).decrypt(v) : decodeValue(this.caps, kind, v);
      }
    }
    return out as RecordData;
  }

  /** A validated data object (declared fields only) as bound parameters. */
  encode(data: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(data)) {
      out[k] =
        this.encrypted.has(k) && v !== null && v !== undefined
          ? this.requireCipher(k).encrypt(String(v))
          : encodeValue(this.caps, kindOf(this.schema, k) ?? 'text', v);
    }
    return out;
  }
}
