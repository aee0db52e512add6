/**
 * Conversion between API values and database values. The differences between backends are
 * read from the storage's capabilities: SQLite stores booleans as 0/1, JSON and date-times
 * as text; PostgreSQL has native types that the driver returns as JS values.
 */
import type { StorageCapabilities } from '../storage/types.js';
import type { RecordData } from './hooks.js';
import type { CollectionSchema, FieldDef } from './schema.js';

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

  constructor(
    private readonly caps: StorageCapabilities,
    private readonly schema: CollectionSchema,
  ) {
    this.columns = [
      ...(Object.entries(BASE_KINDS) as Array<[string, ValueKind]>),
      ...Object.entries(schema.fields).map(([name, def]): [string, ValueKind] => [name, def.type]),
    ];
  }

  /** A database row as the API record, keys in a stable order (base fields first). */
  decode(row: Record<string, unknown>, only?: ReadonlySet<string>): RecordData {
    const out: Record<string, unknown> = {};
    for (const [name, kind] of this.columns) {
      if ((!only || only.has(name)) && name in row) out[name] = decodeValue(this.caps, kind, row[name]);
    }
    return out as RecordData;
  }

  /** A validated data object (declared fields only) as bound parameters. */
  encode(data: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(data)) out[k] = encodeValue(this.caps, kindOf(this.schema, k) ?? 'text', v);
    return out;
  }
}
