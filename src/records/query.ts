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

/**
 * A bound parameter's place in a cached query. Queries are compiled once per shape with these
 * markers as values; each request swaps them for its own values by identity, so the binding
 * never depends on the order in which the SQL builder emits parameters.
 */
export class Slot {
  constructor(readonly index: number) {}
}

/** A checked filter: the tree of the request with every literal replaced by a slot number. */
export type BoundFilter =
  | { kind: 'and' | 'or'; items: BoundFilter[] }
  | { kind: 'cmp'; field: string; op: Exclude<CmpOp, 'contains' | 'prefix'> | 'like'; slots: number[] };

/**
 * Check a parsed filter against a collection (names, operators, literal types) and append the
 * bound values to `values`. The result has no literals, so it identifies the query's shape.
 */
export function bindFilter(caps: StorageCapabilities, schema: CollectionSchema, expr: FilterExpr, values: unknown[]): BoundFilter {
  if (expr.kind !== 'cmp') return { kind: expr.kind, items: expr.items.map((e) => bindFilter(caps, schema, e, values)) };
  const kind = kindOf(schema, expr.field);
  if (!kind) throw new RampartError('E_INVALID_FILTER', `unknown field ${JSON.stringify(expr.field)} in filter`);
  if (schema.fields[expr.field]?.encrypted) {
    throw new RampartError('E_INVALID_FILTER', `field ${JSON.stringify(expr.field)} is encrypted: encrypted fields cannot be filtered`);
  }
  let op = expr.op;
  if (expr.value === null && (op === '=' || op === '!=')) op = op === '=' ? 'is null' : 'is not null';
  if (!allowedOps(kind).includes(op)) {
    throw new RampartError('E_INVALID_FILTER', `operator "${op}" cannot be used on ${kind} field ${JSON.stringify(expr.field)}`);
  }
  const what = `the value compared with ${JSON.stringify(expr.field)}`;
  const slot = (v: unknown) => values.push(v) - 1;
  if (op === 'is null' || op === 'is not null') return { kind: 'cmp', field: expr.field, op, slots: [] };
  if (op === 'in') {
    const slots = (expr.value as Literal[]).map((v) => {
      if (v === null) throw new RampartError('E_INVALID_FILTER', `"in" cannot list null; use "is null"`);
      return slot(bindLiteral(caps, kind, v, what));
    });
    return { kind: 'cmp', field: expr.field, op, slots };
  }
  if (op === 'contains' || op === 'prefix') {
    const v = escapeLike(bindLiteral(caps, kind, expr.value as Literal, what) as string);
    return { kind: 'cmp', field: expr.field, op: 'like', slots: [slot(op === 'contains' ? `%${v}%` : `${v}%`)] };
  }
  return { kind: 'cmp', field: expr.field, op, slots: [slot(bindLiteral(caps, kind, expr.value as Literal, what))] };
}

/** The WHERE expression of a bound filter, with slot markers as values. */
export function filterExpression(eb: EB, caps: StorageCapabilities, f: BoundFilter): Cond {
  if (f.kind !== 'cmp') {
    const items = f.items.map((e) => filterExpression(eb, caps, e));
    return f.kind === 'and' ? eb.and(items) : eb.or(items);
  }
  const col = sql.ref(f.field);
  const slots = f.slots.map((i) => new Slot(i));
  switch (f.op) {
    case 'is null':
      return eb(col, 'is', null);
    case 'is not null':
      return eb(col, 'is not', null);
    case 'in':
      return eb(col, 'in', slots);
    case 'like':
      return sql<SqlBool>`${col} ${sql.raw(caps.caseInsensitiveLike)} ${slots[0]} escape '\\'`;
    default:
      return eb(col, f.op === '!=' ? '<>' : f.op, slots[0]);
  }
}

/** Bound on each cache of compiled queries: clients choose shapes, so the caches must not grow without end. */
const SHAPE_CACHE = 256;

/** Get a cached value, or make and store it (in a bounded cache: oldest entry out). */
export function cached<V>(cache: Map<string, V>, key: string, make: () => V): V {
  let value = cache.get(key);
  if (value === undefined) {
    value = make();
    cache.set(key, value);
    if (cache.size > SHAPE_CACHE) cache.delete(cache.keys().next().value as string);
  }
  return value;
}

/** Swap a cached query's slot markers for this request's values. */
export function bindParameters(parameters: readonly unknown[], values: readonly unknown[]): unknown[] {
  return parameters.map((p) => (p instanceof Slot ? values[p.index] : p));
}

/** One sort key: a field and its direction. */
export interface SortKey {
  field: string;
  desc: boolean;
  /** The column may hold nulls, so ordering uses a null flag first (nulls last ascending). */
  nullable: boolean;
}

const MAX_SORT_KEYS = 4;
/** The relevance of a search result: a sort key (descending by default) and a cursor value. */
export const SCORE = '_score';

/**
 * Parse `-created_at,name` into sort keys, ending with `id` as the unique tie-breaker. With
 * `scored` (a search), `_score` may be sorted on too, and is the default: best match first.
 */
export function parseSort(schema: CollectionSchema, raw: string | undefined, scored = false): SortKey[] {
  const spec = raw === undefined || raw === '' ? (scored ? `-${SCORE}` : '-created_at') : raw;
  const parts = spec.split(',').map((p) => p.trim());
  if (parts.length > MAX_SORT_KEYS) throw new RampartError('E_INVALID_SORT', `sort takes at most ${MAX_SORT_KEYS} fields`);
  const keys: SortKey[] = [];
  for (const part of parts) {
    const desc = part.startsWith('-');
    const field = part.replace(/^[-+]/, '');
    const kind = scored && field === SCORE ? 'number' : kindOf(schema, field);
    if (!kind) throw new RampartError('E_INVALID_SORT', `unknown field ${JSON.stringify(field)} in sort`);
    if (kind === 'json') throw new RampartError('E_INVALID_SORT', `JSON field ${JSON.stringify(field)} cannot be sorted`);
    if (schema.fields[field]?.encrypted) {
      throw new RampartError('E_INVALID_SORT', `field ${JSON.stringify(field)} is encrypted: encrypted fields cannot be sorted`);
    }
    if (keys.some((k) => k.field === field)) throw new RampartError('E_INVALID_SORT', `field ${JSON.stringify(field)} is sorted twice`);
    const nullable = !['id', 'created_at', 'updated_at', 'version', SCORE].includes(field);
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
export function afterCursor(eb: EB, keys: SortKey[], slots: Array<Slot | null>): Cond {
  const terms: Array<{ expr: Expression<unknown>; desc: boolean; value: unknown }> = [];
  keys.forEach((k, i) => {
    const v = slots[i] ?? null;
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
    const kind = (k.field === SCORE ? 'number' : kindOf(schema, k.field)) as ValueKind;
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
