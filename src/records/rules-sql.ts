/**
 * Rules into SQL, in two steps like filters: `bindRule` folds everything known at request time
 * (the caller's identity, `@now`, literals and, on create, the new record's values) into
 * constants or bound slots; `ruleSql` turns the bound tree into a Kysely expression. The bound
 * tree has no values in it, so it is the cache key of the compiled query: a list under a rule
 * costs one cached statement, not a rule evaluation per row.
 *
 * After folding, every comparison left for SQL has a column on at least one side, so each
 * bound value takes its column's type (PostgreSQL never compares two untyped parameters).
 */
import { type Expression, type ExpressionBuilder, type SqlBool, sql } from 'kysely';
import { isUuid } from '../core/ids.js';
import type { StorageCapabilities } from '../storage/types.js';
import { encodeValue, type ValueKind } from './codec.js';
import { Slot } from './query.js';
import { type AuthAttr, type Operand, type RuleCmp, type RuleExpr, resolvePath } from './rules.js';
import type { CollectionSchema } from './schema.js';
import { normalizeDateTime } from './validate.js';

/** The caller as rules see it; anonymous callers have empty strings and `verified` false. */
export interface RuleAuth {
  id: string;
  role: string;
  email: string;
  verified: boolean;
}

/** What a rule is evaluated against. */
export interface RuleEnv {
  caps: StorageCapabilities;
  byName: Map<string, CollectionSchema>;
  auth: RuleAuth;
  /** `@now`, ISO 8601. */
  now: string;
  /** The record's values when it is not in the database yet (create); else it is the row being queried. */
  values?: Record<string, unknown>;
}

type Col = { k: 'col'; scope: 'record' | 'row'; path: string[]; depth: number; from?: number };
type BoundOperand = { k: 'slot'; i: number } | Col;
/** A rule with every request-time value folded or replaced by a slot number. */
export type BoundRule =
  | { k: 'and' | 'or'; items: BoundRule[] }
  | { k: 'not'; item: BoundRule }
  | { k: 'cmp'; op: RuleCmp; left: BoundOperand; right: BoundOperand }
  | { k: 'null'; not: boolean; col: Col }
  | { k: 'exists'; collection: string; depth: number; where: BoundRule };

type Known = { known: true; value: unknown; kind?: ValueKind };
type Term = Known | { known: false; col: Col; kind: ValueKind };

function compareJs(op: RuleCmp, a: unknown, b: unknown): boolean {
  if (op === '=') return a === b;
  if (op === '!=') return a !== b;
  if (a === null || b === null) return false;
  const x = a as string | number;
  const y = b as string | number;
  return op === '<' ? x < y : op === '<=' ? x <= y : op === '>' ? x > y : x >= y;
}

const flip: Record<RuleCmp, RuleCmp> = { '=': '=', '!=': '!=', '<': '>', '<=': '>=', '>': '<', '>=': '<=' };

/**
 * Fold a checked rule for one request. Returns `true`/`false` when the outcome does not depend
 * on any row, else a bound tree; its values are appended to `values`.
 */
export function bindRule(rule: RuleExpr, env: RuleEnv, record: CollectionSchema, values: unknown[]): BoundRule | boolean {
  const term = (o: Operand, row: CollectionSchema, depth: number): Term => {
    switch (o.k) {
      case 'lit':
        return { known: true, value: o.value };
      case 'auth':
        return { known: true, value: env.auth[o.attr as AuthAttr] };
      case 'now':
        return { known: true, value: env.now, kind: 'timestamp' };
      case 'field': {
        const start = o.scope === 'record' ? record : row;
        const kind = resolvePath(env.byName, start, o.path);
        const first = o.path[0] as string;
        // The record of a create is not stored yet: its own fields are known values.
        if (o.scope === 'record' || depth === 0) {
          if (env.values) {
            const v = env.values[first] ?? null;
            if (o.path.length === 1) return { known: true, value: v, kind };
            if (v === null) return { known: true, value: null, kind };
            const from = values.push(v) - 1;
            return { known: false, kind, col: { k: 'col', scope: 'record', path: o.path, depth: 0, from } };
          }
          return { known: false, kind, col: { k: 'col', scope: 'record', path: o.path, depth: 0 } };
        }
        return { known: false, kind, col: { k: 'col', scope: 'row', path: o.path, depth } };
      }
    }
  };

  /** A known value as it must be bound against a column of `kind`, or undefined when it can never match. */
  const encode = (kind: ValueKind, v: unknown): unknown => {
    if (kind === 'uuid' || kind === 'relation') return typeof v === 'string' && isUuid(v) ? v : undefined;
    if (kind === 'datetime' || kind === 'timestamp') return normalizeDateTime(v);
    return encodeValue(env.caps, kind, v);
  };

  const visit = (e: RuleExpr, row: CollectionSchema, depth: number): BoundRule | boolean => {
    switch (e.k) {
      case 'const':
        return e.value;
      case 'not': {
        const inner = visit(e.item, row, depth);
        return typeof inner === 'boolean' ? !inner : { k: 'not', item: inner };
      }
      case 'and':
      case 'or': {
        const items: BoundRule[] = [];
        for (const item of e.items) {
          const b = visit(item, row, depth);
          if (b === (e.k === 'or')) return b; // short-circuit: true in an or, false in an and
          if (typeof b !== 'boolean') items.push(b);
        }
        if (items.length === 0) return e.k === 'and';
        return items.length === 1 ? (items[0] as BoundRule) : { k: e.k, items };
      }
      case 'exists': {
        const inner = env.byName.get(e.collection) as CollectionSchema;
        const where = visit(e.where, inner, depth + 1);
        if (where === false) return false;
        return { k: 'exists', collection: e.collection, depth: depth + 1, where: where === true ? { k: 'and', items: [] } : where };
      }
      case 'cmp': {
        let l = term(e.left, row, depth);
        let r = term(e.right, row, depth);
        let op = e.op;
        if (l.known && r.known) {
          const norm = (t: Known) => (t.kind === 'timestamp' || t.kind === 'datetime' ? (normalizeDateTime(t.value) ?? t.value) : t.value);
          return compareJs(op, norm(l), norm(r));
        }
        if (l.known) {
          [l, r] = [r, l];
          op = flip[op];
        }
        const col = (l as Extract<Term, { known: false }>).col;
        if (r.known) {
          if (r.value === null) {
            if (op === '=' || op === '!=') return { k: 'null', not: op === '!=', col };
            return false;
          }
          const v = encode((l as { kind: ValueKind }).kind, r.value);
          // A value the column can never hold: "=" never matches, "!=" matches every non-null value.
          if (v === undefined) return op === '!=' ? { k: 'null', not: true, col } : false;
          return { k: 'cmp', op, left: col, right: { k: 'slot', i: values.push(v) - 1 } };
        }
        return { k: 'cmp', op, left: col, right: r.col };
      }
    }
  };
  return visit(rule, record, 0);
}

type EB = ExpressionBuilder<any, any>;

/**
 * The SQL of a bound rule. `table` is how the record's table is named in the query; `exists`
 * subqueries and relation paths get their own aliases, so a rule may refer to the same
 * collection at several levels.
 */
export function ruleSql(
  eb: EB,
  rule: BoundRule,
  env: Pick<RuleEnv, 'byName'>,
  record: CollectionSchema,
  table: string,
): Expression<SqlBool> {
  let aliases = 0;
  const rows: Array<{ alias: string; schema: CollectionSchema }> = [{ alias: table, schema: record }];
  const colExpr = (c: Col): Expression<unknown> => {
    let schema = c.scope === 'record' ? record : (rows[c.depth] as (typeof rows)[number]).schema;
    let current: Expression<unknown> =
      c.from !== undefined
        ? (new Slot(c.from) as unknown as Expression<unknown>)
        : sql.ref(`${c.scope === 'record' ? table : rows[c.depth]?.alias}.${c.path[0]}`);
    // With `from`, the first field's value is a bound value (a create's record is not stored yet).
    let prevField = c.path[0] as string;
    for (const field of c.path.slice(1)) {
      const target = schema.fields[prevField];
      const next = env.byName.get(target?.type === 'relation' ? target.collection : '') as CollectionSchema;
      const alias = `_r${++aliases}`;
      current = eb
        .selectFrom(`${next.name} as ${alias}`)
        .select(sql.ref(`${alias}.${field}`).as('v'))
        .where(sql.ref(`${alias}.id`), '=', current)
        .where(sql.ref(`${alias}.deleted_at`), 'is', null);
      schema = next;
      prevField = field;
    }
    return current;
  };
  const operand = (o: BoundOperand) => (o.k === 'slot' ? new Slot(o.i) : colExpr(o));
  const visit = (r: BoundRule): Expression<SqlBool> => {
    switch (r.k) {
      case 'and':
        return r.items.length === 0 ? sql<SqlBool>`1 = 1` : eb.and(r.items.map(visit));
      case 'or':
        return eb.or(r.items.map(visit));
      case 'not':
        // A comparison with a null column is unknown, not false; under "not" it must count as false first.
        return sql<SqlBool>`not coalesce(${visit(r.item)}, false)`;
      case 'null':
        return eb(colExpr(r.col), r.not ? 'is not' : 'is', null);
      case 'cmp':
        return eb(operand(r.left) as Expression<unknown>, r.op === '!=' ? '<>' : r.op, operand(r.right));
      case 'exists': {
        const alias = `_e${++aliases}`;
        rows[r.depth] = { alias, schema: env.byName.get(r.collection) as CollectionSchema };
        const sub = eb
          .selectFrom(`${r.collection} as ${alias}`)
          .select(sql.lit(1).as('one'))
          .where(sql.ref(`${alias}.deleted_at`), 'is', null)
          .where(visit(r.where));
        return eb.exists(sub);
      }
    }
  };
  return visit(rule);
}
