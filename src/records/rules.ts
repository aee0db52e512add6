/**
 * The access-rule language. A rule is an expression over the caller's identity and the
 * record's fields; it compiles into SQL (rules-sql.ts), so a list returns only permitted rows.
 *
 *   owner = @auth.id || @auth.role = "admin"
 *   published && room.owner != @auth.id                 (a relation path: room's owner)
 *   exists(members, room = @record.room && user = @auth.id)
 *   @auth.id != "" && !(status = "archived")
 *
 * Operands: string (quotes as in filters, with backslash escapes), number, true, false, null; `@auth.id`, `@auth.role`, `@auth.email`,
 * `@auth.verified` (an anonymous caller has id, role and email "" and verified false);
 * `@now`; a field of the record, optionally through relations (`room.owner.email`). Inside
 * `exists(collection, condition)` bare names are fields of that collection and `@record.x` is
 * the record the rule is about. Comparisons: = != < <= > >=; a lone boolean operand means
 * `= true`. Combined with && / and, || / or, ! / not and parentheses.
 *
 * This module parses and type-checks against the collections; every rule is checked when
 * the app starts, so a typo stops startup with the collection, the operation and the position.
 */
import type { ValueKind } from './codec.js';
import { kindOf } from './codec.js';
import { scanString } from './filter.js';
import type { CollectionSchema, RuleOp } from './schema.js';

export type RuleCmp = '=' | '!=' | '<' | '<=' | '>' | '>=';
export type AuthAttr = 'id' | 'role' | 'email' | 'verified';

/** Where a field path starts: the record the rule is about, or the row of an enclosing `exists`. */
export type FieldScope = 'record' | 'row';

export type Operand =
  | { k: 'lit'; value: string | number | boolean | null }
  | { k: 'auth'; attr: AuthAttr }
  | { k: 'now' }
  | { k: 'field'; scope: FieldScope; path: string[] };

export type RuleExpr =
  | { k: 'and' | 'or'; items: RuleExpr[] }
  | { k: 'not'; item: RuleExpr }
  | { k: 'cmp'; op: RuleCmp; left: Operand; right: Operand }
  | { k: 'exists'; collection: string; where: RuleExpr }
  | { k: 'const'; value: boolean };

/** A rule that failed to parse or check; the message says where. */
export class RuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RuleError';
  }
}

type Tok = { t: 'str' | 'num' | 'word' | 'at' | 'op' | 'punct'; v: string; pos: number };

const MAX_RULE_LENGTH = 2000;

function tokenize(src: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  const fail = (m: string): never => {
    throw new RuleError(m);
  };
  while (i < src.length) {
    const c = src[i] as string;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '"' || c === "'") {
      const str = scanString(src, i);
      if (!str) return fail(`unterminated string at position ${i}`);
      toks.push({ t: 'str', v: str.value, pos: i });
      i = str.next;
      continue;
    }
    const m =
      /^(-?\d+(?:\.\d+)?)/.exec(src.slice(i)) ??
      /^(&&|\|\||!=|<=|>=|=|<|>|!)/.exec(src.slice(i)) ??
      /^(@[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)/.exec(src.slice(i)) ??
      /^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)/.exec(src.slice(i)) ??
      /^([(),])/.exec(src.slice(i));
    if (!m) return fail(`unexpected character ${JSON.stringify(c)} at position ${i}`);
    const v = m[1] as string;
    const t: Tok['t'] = /^-?\d/.test(v)
      ? 'num'
      : v.startsWith('@')
        ? 'at'
        : /^[A-Za-z_]/.test(v)
          ? 'word'
          : /^[(),]$/.test(v)
            ? 'punct'
            : 'op';
    toks.push({ t, v, pos: i });
    i += v.length;
  }
  return toks;
}

/** Parse a rule into its tree (syntax only; `checkRule` resolves the names). */
export function parseRule(src: string): RuleExpr {
  if (src.length > MAX_RULE_LENGTH) throw new RuleError(`rule is longer than ${MAX_RULE_LENGTH} characters`);
  const toks = tokenize(src);
  if (toks.length === 0) throw new RuleError('rule is empty');
  let pos = 0;
  const peek = () => toks[pos];
  const at = (tok: Tok | undefined) => (tok ? `at position ${tok.pos}` : 'at the end');
  const fail = (m: string): never => {
    throw new RuleError(m);
  };
  const isWord = (tok: Tok | undefined, w: string) => tok?.t === 'word' && tok.v.toLowerCase() === w;

  const operand = (): Operand => {
    const tok = toks[pos++];
    if (!tok) return fail('expected a value at the end');
    if (tok.t === 'str') return { k: 'lit', value: tok.v };
    if (tok.t === 'num') return { k: 'lit', value: Number(tok.v) };
    if (isWord(tok, 'true') || isWord(tok, 'false')) return { k: 'lit', value: tok.v.toLowerCase() === 'true' };
    if (isWord(tok, 'null')) return { k: 'lit', value: null };
    if (tok.t === 'word') return { k: 'field', scope: 'row', path: tok.v.split('.') };
    if (tok.t === 'at') {
      const [head, ...rest] = tok.v.slice(1).split('.');
      if (head === 'now' && rest.length === 0) return { k: 'now' };
      if (head === 'auth' && rest.length === 1 && ['id', 'role', 'email', 'verified'].includes(rest[0] as string)) {
        return { k: 'auth', attr: rest[0] as AuthAttr };
      }
      if (head === 'record' && rest.length > 0) return { k: 'field', scope: 'record', path: rest };
      return fail(`unknown name ${tok.v} ${at(tok)} (use @auth.id, @auth.role, @auth.email, @auth.verified, @now or @record.<field>)`);
    }
    return fail(`expected a value ${at(tok)}`);
  };

  const comparison = (): RuleExpr => {
    const left = operand();
    const op = peek();
    if (op?.t === 'op' && op.v !== '&&' && op.v !== '||' && op.v !== '!') {
      pos++;
      return { k: 'cmp', op: op.v as RuleCmp, left, right: operand() };
    }
    if (left.k === 'lit' && typeof left.value === 'boolean') return { k: 'const', value: left.value };
    return { k: 'cmp', op: '=', left, right: { k: 'lit', value: true } };
  };

  const unary = (depth: number): RuleExpr => {
    if (depth > 32) fail('rule nests too deeply');
    const tok = peek();
    if (tok?.v === '!' || isWord(tok, 'not')) {
      pos++;
      return { k: 'not', item: unary(depth + 1) };
    }
    if (tok?.v === '(') {
      pos++;
      const e = or(depth + 1);
      if (toks[pos++]?.v !== ')') fail(`expected ")" ${at(toks[pos - 1])}`);
      return e;
    }
    if (isWord(tok, 'exists') && toks[pos + 1]?.v === '(') {
      pos += 2;
      const name = toks[pos++];
      if (name?.t !== 'word' || name.v.includes('.')) return fail(`expected a collection name ${at(name)}`);
      if (toks[pos++]?.v !== ',') fail(`expected "," after the collection of exists ${at(toks[pos - 1])}`);
      const where = or(depth + 1);
      if (toks[pos++]?.v !== ')') fail(`expected ")" to close exists ${at(toks[pos - 1])}`);
      return { k: 'exists', collection: name.v, where };
    }
    return comparison();
  };
  const chain = (kind: 'and' | 'or', sym: string, next: (d: number) => RuleExpr, depth: number): RuleExpr => {
    const items = [next(depth)];
    while (peek()?.v === sym || isWord(peek(), kind)) {
      pos++;
      items.push(next(depth));
    }
    return items.length === 1 ? (items[0] as RuleExpr) : { k: kind, items };
  };
  const and = (d: number) => chain('and', '&&', unary, d);
  const or = (d: number): RuleExpr => chain('or', '||', and, d);
  const expr = or(0);
  if (pos < toks.length) fail(`unexpected ${JSON.stringify(toks[pos]?.v)} at position ${toks[pos]?.pos}`);
  return expr;
}

type Family = 'text' | 'number' | 'boolean' | 'time' | 'json' | 'null';

function family(kind: ValueKind): Family {
  if (kind === 'number' || kind === 'integer') return 'number';
  if (kind === 'boolean') return 'boolean';
  if (kind === 'datetime' || kind === 'timestamp') return 'time';
  if (kind === 'json') return 'json';
  return 'text';
}

/**
 * Resolve a field path to the kind of its last field. Every segment but the last must be a
 * relation; it is followed into the referenced collection.
 */
export function resolvePath(byName: Map<string, CollectionSchema>, start: CollectionSchema, path: string[]): ValueKind {
  let schema = start;
  for (const [i, name] of path.entries()) {
    const kind = kindOf(schema, name);
    if (!kind) throw new RuleError(`${schema.name} has no field ${JSON.stringify(name)}`);
    if (i === path.length - 1) return kind;
    const def = schema.fields[name];
    if (def?.type !== 'relation') throw new RuleError(`${schema.name}.${name} is not a relation, so ${path.join('.')} cannot follow it`);
    schema = byName.get(def.collection) as CollectionSchema;
  }
  throw new RuleError('empty field path');
}

/** Parse and type-check a rule of `collection`; throws RuleError naming the problem. */
export function checkRule(byName: Map<string, CollectionSchema>, collection: CollectionSchema, src: string): RuleExpr {
  const expr = parseRule(src);
  const famOf = (o: Operand, row: CollectionSchema): Family => {
    switch (o.k) {
      case 'lit':
        return o.value === null ? 'null' : typeof o.value === 'number' ? 'number' : typeof o.value === 'boolean' ? 'boolean' : 'text';
      case 'auth':
        return o.attr === 'verified' ? 'boolean' : 'text';
      case 'now':
        return 'time';
      case 'field':
        return family(resolvePath(byName, o.scope === 'record' ? collection : row, o.path));
    }
  };
  const visit = (e: RuleExpr, row: CollectionSchema): void => {
    switch (e.k) {
      case 'and':
      case 'or':
        for (const i of e.items) visit(i, row);
        return;
      case 'not':
        visit(e.item, row);
        return;
      case 'const':
        return;
      case 'exists': {
        const inner = byName.get(e.collection);
        if (!inner) throw new RuleError(`exists refers to unknown collection ${JSON.stringify(e.collection)}`);
        visit(e.where, inner);
        return;
      }
      case 'cmp': {
        const [l, r] = [famOf(e.left, row), famOf(e.right, row)];
        const ordered = ['<', '<=', '>', '>='].includes(e.op);
        if (l === 'null' || r === 'null') {
          if (ordered) throw new RuleError(`"${e.op}" cannot compare with null`);
          return;
        }
        const timeText = (a: Family, b: Family) => a === 'time' && b === 'text';
        if (l !== r && !timeText(l, r) && !timeText(r, l)) throw new RuleError(`cannot compare a ${l} value with a ${r} value`);
        if (l === 'json') throw new RuleError('JSON fields can only be compared with null');
        if (ordered && l === 'boolean') throw new RuleError(`"${e.op}" cannot compare booleans`);
        return;
      }
    }
  };
  visit(expr, collection);
  return expr;
}

/** Every rule of every collection, checked; throws one error listing all problems. */
export function compileRules(collections: CollectionSchema[]): Map<string, Partial<Record<RuleOp, RuleExpr>>> {
  const byName = new Map(collections.map((c) => [c.name, c]));
  const out = new Map<string, Partial<Record<RuleOp, RuleExpr>>>();
  const problems: string[] = [];
  for (const c of collections) {
    const rules: Partial<Record<RuleOp, RuleExpr>> = {};
    for (const [op, src] of Object.entries(c.rules) as Array<[RuleOp, string]>) {
      try {
        rules[op] = checkRule(byName, c, src);
      } catch (err) {
        if (!(err instanceof RuleError)) throw err;
        problems.push(`collection "${c.name}", rule ${op} (${JSON.stringify(src.slice(0, 120))}): ${err.message}`);
      }
    }
    out.set(c.name, rules);
  }
  if (problems.length > 0) throw new RuleError(`Invalid access rules:\n  ${problems.join('\n  ')}`);
  return out;
}

/** What a rule's answer depends on besides the record itself. */
export interface RuleFootprint {
  /** Collections whose rows the rule reads (its own, those its paths follow, those `exists` looks into). */
  collections: Set<string>;
  /** Whether it reads `auth.*` (so its answer differs between callers). */
  usesAuth: boolean;
  /** Whether it reads `@now` (so its answer changes with time alone). */
  usesNow: boolean;
  /** Fields of the record itself it reads (first names of its record paths): with the caller and the collections above, all it depends on. */
  recordFields: Set<string>;
  /** Collections other than the record's own row that it reads (relation paths, `exists`). */
  related: Set<string>;
}

/**
 * The footprint of a rule of `collection` (undefined: no rule, only admins): read caches key
 * on it, so a cached answer is used only by callers the rule treats alike and is dropped when
 * any collection it reads is written.
 */
export function ruleFootprint(byName: Map<string, CollectionSchema>, collection: string, expr: RuleExpr | undefined): RuleFootprint {
  const out: RuleFootprint = {
    collections: new Set([collection]),
    usesAuth: false,
    usesNow: false,
    recordFields: new Set(),
    related: new Set(),
  };
  const follow = (start: string, path: string[]) => {
    let schema = byName.get(start);
    for (const name of path.slice(0, -1)) {
      const def = schema?.fields[name];
      if (def?.type !== 'relation') return;
      out.collections.add(def.collection);
      out.related.add(def.collection);
      schema = byName.get(def.collection);
    }
  };
  const operand = (o: Operand, row: string) => {
    if (o.k === 'auth') out.usesAuth = true;
    else if (o.k === 'now') out.usesNow = true;
    else if (o.k === 'field') {
      if (o.scope === 'record') out.recordFields.add(o.path[0] as string);
      follow(o.scope === 'row' ? row : collection, o.path);
    }
  };
  const walk = (e: RuleExpr, row: string): void => {
    if (e.k === 'and' || e.k === 'or') for (const i of e.items) walk(i, row);
    else if (e.k === 'not') walk(e.item, row);
    else if (e.k === 'cmp') {
      operand(e.left, row);
      operand(e.right, row);
    } else if (e.k === 'exists') {
      out.collections.add(e.collection);
      out.related.add(e.collection);
      walk(e.where, e.collection);
    }
  };
  if (expr) walk(expr, collection);
  return out;
}
