/**
 * List queries: the filter tree, sort keys and keyset cursor become Kysely expressions.
 * Names are checked against the collection (only declared and base fields, quoted by Kysely)
 * and every literal is a bound parameter, so nothing from the client reaches the SQL text.
 */
import { type Expression, type ExpressionBuilder, type SqlBool, sql } from 'kysely';
import { RampartError } from '../core/errors.js';
import { isUuid } from '../core/ids.js';
import type { StorageCapabilities } from '../storage/types.js';
import { encodeValue, kindOf, type ValueKind } from './codec.js';
import type { CmpOp, FilterExpr, Literal } from './filter.js';
import type { CollectionSchema } from './schema.js';
import { normalizeDateTime } from './validate.js';

type EB = ExpressionBuilder<any, any>;
type Cond = Expression<SqlBool>;

const TEXTUAL: ValueKind[] = ['text', 'email', 'url', 'select'];
const ORDERED_OPS: CmpOp[] = ['=', '!=', '<', '<=', '>', '>=', 'in', 'is null', 'is not null'];

function allowedOps(kind: ValueKind): CmpOp[] {
  if (TEXTUAL.includes(kind)) return [...ORDERED_OPS, 'contains', 'prefix'];
  if (kind === 'number' || kind === 'integer' || kind === 'datetime' || kind === 'timestamp') return ORDERED_OPS;
  if (kind === 'boolean' || kind === 'uuid' || kind === 'relation') return ['=', '!=', 'in', 'is null', 'is not null'];
  return ['is null', 'is not null']; // json
}

/** Check a filter literal (or cursor value) against a field's kind and encode it for binding. */
export function bindLiteral(caps: StorageCapabilities, kind: ValueKind, value: Literal, what: string): unknown {
  const bad = (expected: string): never => {
    throw new RampartError('E_INVALID_FILTER', `${what} must be ${expected}`);
  };
  if (value === null) return null;
  if (TEXTUAL.includes(kind)) return typeof value === 'string' ? value : bad('a string');
  if (kind === 'number' || kind === 'integer') return typeof value === 'number' ? value : bad('a number');
  if (kind === 'boolean') return typeof value === 'boolean' ? encodeValue(caps, kind, value) : bad('true or false');
  if (kind === 'uuid' || kind === 'relation') return isUuid(value) ? value : bad('a record id (UUID)');
  if (kind === 'datetime' || kind === 'timestamp') return normalizeDateTime(value) ?? bad('an ISO 8601 date-time');
  return bad('null (JSON fields can only be tested with "is null")');
}

const escapeLike = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`);

/** Compile a parsed filter for a collection into a WHERE expression. */
export function compileFilter(eb: EB, caps: StorageCapabilities, schema: CollectionSchema, expr: FilterExpr): Cond {
  if (expr.kind !== 'cmp') {
    const items = expr.items.map((e) => compileFilter(eb, caps, schema, e));
    return expr.kind === 'and' ? eb.and(items) : eb.or(items);
  }
  const kind = kindOf(schema, expr.field);
  if (!kind) throw new RampartError('E_INVALID_FILTER', `unknown field ${JSON.stringify(expr.field)} in filter`);
  let op = expr.op;
  if (expr.value === null && (op === '=' || op === '!=')) op = op === '=' ? 'is null' : 'is not null';
  if (!allowedOps(kind).includes(op)) {
    throw new RampartError('E_INVALID_FILTER', `operator "${op}" cannot be used on ${kind} field ${JSON.stringify(expr.field)}`);
  }
  const col = sql.ref(expr.field);
  const what = `the value compared with ${JSON.stringify(expr.field)}`;
  switch (op) {
    case 'is null':
      return eb(col, 'is', null);
    case 'is not null':
      return eb(col, 'is not', null);
    case 'in': {
      const values = (expr.value as Literal[]).map((v) => {
        if (v === null) throw new RampartError('E_INVALID_FILTER', `"in" cannot list null; use "is null"`);
        return bindLiteral(caps, kind, v, what);
      });
      return eb(col, 'in', values);
    }
    case 'contains':
    case 'prefix': {
      const v = bindLiteral(caps, kind, expr.value as Literal, what) as string;
      const pattern = op === 'contains' ? `%${escapeLike(v)}%` : `${escapeLike(v)}%`;
      return sql<SqlBool>`${col} ${sql.raw(caps.caseInsensitiveLike)} ${pattern} escape '\\'`;
    }
    default:
      return eb(col, op === '!=' ? '<>' : op, bindLiteral(caps, kind, expr.value as Literal, what));
  }
}

/** One sort key: a field and its direction. */
export interface SortKey {
  field: string;
  desc: boolean;
  /** The column may hold nulls, so ordering uses a null flag first (nulls last ascending). */
  nullable: boolean;
}

const MAX_SORT_KEYS = 4;

/** Parse `-created_at,name` into sort keys, ending with `id` as the unique tie-breaker. */
export function parseSort(schema: CollectionSchema, raw: string | undefined): SortKey[] {
  const spec = raw === undefined || raw === '' ? '-created_at' : raw;
  const parts = spec.split(',').map((p) => p.trim());
  if (parts.length > MAX_SORT_KEYS) throw new RampartError('E_INVALID_SORT', `sort takes at most ${MAX_SORT_KEYS} fields`);
  const keys: SortKey[] = [];
  for (const part of parts) {
    const desc = part.startsWith('-');
    const field = part.replace(/^[-+]/, '');
    const kind = kindOf(schema, field);
    if (!kind) throw new RampartError('E_INVALID_SORT', `unknown field ${JSON.stringify(field)} in sort`);
    if (kind === 'json') throw new RampartError('E_INVALID_SORT', `JSON field ${JSON.stringify(field)} cannot be sorted`);
    if (keys.some((k) => k.field === field)) throw new RampartError('E_INVALID_SORT', `field ${JSON.stringify(field)} is sorted twice`);
    const nullable = !['id', 'created_at', 'updated_at', 'version'].includes(field);
    keys.push({ field, desc, nullable });
  }
  if (!keys.some((k) => k.field === 'id')) keys.push({ field: 'id', desc: keys[0]?.desc ?? false, nullable: false });
  return keys;
}

/** The sort spec in canonical form; a cursor is only valid for the sort that made it. */
export const sortSignature = (keys: SortKey[]) => keys.map((k) => `${k.desc ? '-' : ''}${k.field}`).join(',');

const nullFlag = (field: string) => sql<number>`(case when ${sql.ref(field)} is null then 1 else 0 end)`;

/** ORDER BY terms for the keys (null flag, then value). */
export function orderTerms(keys: SortKey[]): Array<{ expr: Expression<unknown>; desc: boolean }> {
  const out: Array<{ expr: Expression<unknown>; desc: boolean }> = [];
  for (const k of keys) {
    if (k.nullable) out.push({ expr: nullFlag(k.field), desc: k.desc });
    out.push({ expr: sql.ref(k.field), desc: k.desc });
  }
  return out;
}

/**
 * The keyset condition "strictly after this row in sort order": for terms t1..tn,
 * (t1 > v1) OR (t1 = v1 AND t2 > v2) OR … with > flipped to < for descending terms.
 * A null value is only equal to null and never greater or smaller (the flag orders nulls).
 */
export function afterCursor(eb: EB, keys: SortKey[], values: unknown[]): Cond {
  const terms: Array<{ expr: Expression<unknown>; desc: boolean; value: unknown }> = [];
  keys.forEach((k, i) => {
    const v = values[i];
    if (k.nullable) terms.push({ expr: nullFlag(k.field), desc: k.desc, value: v === null ? 1 : 0 });
    terms.push({ expr: sql.ref(k.field), desc: k.desc, value: v });
  });
  const never = sql<SqlBool>`1 = 0`;
  const ors: Cond[] = [];
  for (let i = 0; i < terms.length; i++) {
    const ands: Cond[] = [];
    for (let j = 0; j < i; j++) {
      const t = terms[j] as (typeof terms)[number];
      ands.push(t.value === null ? eb(t.expr, 'is', null) : eb(t.expr, '=', t.value));
    }
    const t = terms[i] as (typeof terms)[number];
    ands.push(t.value === null ? never : eb(t.expr, t.desc ? '<' : '>', t.value));
    ors.push(eb.and(ands));
  }
  return eb.or(ors);
}

/** Opaque cursor: the sort signature and the last row's sort values, base64url JSON. */
export function encodeCursor(keys: SortKey[], row: Record<string, unknown>): string {
  const values = keys.map((k) => {
    const v = row[k.field];
    return v instanceof Date ? v.toISOString() : (v ?? null);
  });
  return Buffer.from(JSON.stringify({ s: sortSignature(keys), v: values })).toString('base64url');
}

/** Decode and check a cursor against the current sort; the values come back bound-ready. */
export function decodeCursor(caps: StorageCapabilities, schema: CollectionSchema, keys: SortKey[], raw: string): unknown[] {
  const invalid = (why: string): never => {
    throw new RampartError('E_INVALID_CURSOR', `cursor is invalid: ${why}`);
  };
  if (raw.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(raw)) invalid('not a cursor returned by this API');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    return invalid('not a cursor returned by this API');
  }
  const c = parsed as { s?: unknown; v?: unknown };
  if (typeof c !== 'object' || c === null || typeof c.s !== 'string' || !Array.isArray(c.v)) return invalid('malformed');
  if (c.s !== sortSignature(keys)) invalid('it was made for a different sort order');
  if (c.v.length !== keys.length) invalid('malformed');
  return keys.map((k, i) => {
    const v = (c.v as unknown[])[i];
    const kind = kindOf(schema, k.field) as ValueKind;
    if (v === null) return k.nullable ? null : invalid('malformed');
    // Stored booleans may be 0/1 on backends without a native boolean.
    const lit = kind === 'boolean' && (v === 0 || v === 1) ? v === 1 : v;
    if (typeof lit !== 'string' && typeof lit !== 'number' && typeof lit !== 'boolean') return invalid('malformed');
    try {
      return bindLiteral(caps, kind, lit, k.field);
    } catch {
      return invalid('malformed');
    }
  });
}
