/**
 * A subscription's `filter` (the same language as `?filter=` on lists) checked once against the
 * collection, then evaluated in memory against each event's record: a change is matched without
 * a query, and with the meaning SQL gives it (a comparison with a missing value is false;
 * `contains` and `prefix` ignore case).
 */
import { RampartError } from '../core/errors.js';
import { parseFilter } from '../records/filter.js';
import { type BoundFilter, bindFilter } from '../records/query.js';
import type { CollectionSchema } from '../records/schema.js';
import type { StorageCapabilities } from '../storage/types.js';

/** Values as they are in a decoded record: booleans as booleans, times as ISO text. */
const MEMORY: StorageCapabilities = {
  nativeBoolean: true,
  nativeJson: true,
  nativeTimestamp: false,
  caseInsensitiveLike: 'ilike',
  separateReader: false,
  skipLocked: false,
  crossProcessNotify: false,
};

export type RecordMatcher = (record: Record<string, unknown>) => boolean;

/** A field the filter requires to equal one value: subscriptions are indexed by it. */
export interface MatchKey {
  field: string;
  value: string;
}

/** The index key of a value (typed, so `1` and `"1"` differ). */
export const keyOf = (v: unknown): string => `${typeof v}:${String(v)}`;

/** Check `filter` against the collection as its callers see it; throws E_INVALID_FILTER. */
export function compileMatcher(schema: CollectionSchema, filter: string): { match: RecordMatcher; key?: MatchKey } {
  if (typeof filter !== 'string') throw new RampartError('E_INVALID_FILTER', 'filter must be a string');
  const values: unknown[] = [];
  const bound = bindFilter(MEMORY, schema, parseFilter(filter), values);
  const eq = [bound, ...(bound.kind === 'and' ? bound.items : [])].find((f) => f.kind === 'cmp' && f.op === '=');
  const key = eq?.kind === 'cmp' ? { field: eq.field, value: keyOf(values[eq.slots[0] as number]) } : undefined;
  return { match: (record) => evaluate(bound, values, record), key };
}

function evaluate(f: BoundFilter, values: unknown[], record: Record<string, unknown>): boolean {
  if (f.kind !== 'cmp')
    return f.kind === 'and' ? f.items.every((i) => evaluate(i, values, record)) : f.items.some((i) => evaluate(i, values, record));
  const v = record[f.field];
  const missing = v === null || v === undefined;
  if (f.op === 'is null') return missing;
  if (f.op === 'is not null') return !missing;
  if (missing) return false;
  if (f.op === 'in') return f.slots.some((i) => values[i] === v);
  const want = values[f.slots[0] as number];
  if (f.op === 'like') {
    const pattern = String(want);
    const text = String(v).toLowerCase();
    const inner = unescapeLike(pattern.replace(/^%/, '').replace(/%$/, '')).toLowerCase();
    return pattern.startsWith('%') ? text.includes(inner) : text.startsWith(inner);
  }
  const a = v as string | number | boolean;
  const b = want as string | number | boolean;
  switch (f.op) {
    case '=':
      return a === b;
    case '!=':
      return a !== b;
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '>':
      return a > b;
    default:
      return a >= b;
  }
}

const unescapeLike = (s: string) => s.replace(/\\([\\%_])/g, '$1');
