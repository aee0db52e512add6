/**
 * The filter language of `?filter=`:
 *
 *   room = "0193…" && (created_at >= "2026-01-01T00:00:00Z" || body contains "hello")
 *   topic is null or name prefix "gen"     kind in ("a", "b")     count != 3
 *
 * Comparisons: = != < <= > >= contains prefix in, `is null`, `is not null`; combined with
 * `&&`/`and`, `||`/`or` and parentheses. The left side is a field name, the right a literal
 * (string, number, true, false, null). This module only parses; `query.ts` checks names and
 * types against the collection and binds every literal as a parameter.
 */
import { RampartError } from '../core/errors.js';

export type Literal = string | number | boolean | null;
export type CmpOp = '=' | '!=' | '<' | '<=' | '>' | '>=' | 'contains' | 'prefix' | 'in' | 'is null' | 'is not null';
export type FilterExpr =
  | { kind: 'and' | 'or'; items: FilterExpr[] }
  | { kind: 'cmp'; field: string; op: CmpOp; value: Literal | Literal[] };

/** Bounds that keep a hostile filter cheap to parse and to run. */
export const FILTER_LIMITS = { length: 4096, depth: 16, comparisons: 64, inValues: 100 };

type Tok = { t: 'ident' | 'str' | 'num' | 'op' | 'punct'; v: string; pos: number };

const fail = (message: string): never => {
  throw new RampartError('E_INVALID_FILTER', message);
};

/**
 * The quoted string starting at `src[i]` (either quote; backslash escapes `\n`, `\t`, and any
 * other character as itself): its value and the index after its closing quote, or undefined
 * when it is not closed. Shared by the filter and the rule languages.
 */
export function scanString(src: string, i: number): { value: string; next: number } | undefined {
  const quote = src[i];
  let j = i + 1;
  let value = '';
  while (j < src.length && src[j] !== quote) {
    if (src[j] === '\\') {
      const n = src[j + 1];
      if (n === undefined) return undefined;
      value += n === 'n' ? '\n' : n === 't' ? '\t' : n;
      j += 2;
    } else {
      value += src[j];
      j++;
    }
  }
  return j < src.length ? { value, next: j + 1 } : undefined;
}

function tokenize(src: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i] as string;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '"' || c === "'") {
      const str = scanString(src, i);
      if (!str) return fail(`unterminated string starting at position ${i}`);
      toks.push({ t: 'str', v: str.value, pos: i });
      i = str.next;
      continue;
    }
    const num = /^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(src.slice(i, i + 64));
    if (num && (c === '-' || /\d/.test(c))) {
      toks.push({ t: 'num', v: num[0], pos: i });
      i += num[0].length;
      continue;
    }
    const op = /^(?:&&|\|\||!=|<=|>=|=|<|>)/.exec(src.slice(i, i + 2));
    if (op) {
      toks.push({ t: 'op', v: op[0], pos: i });
      i += op[0].length;
      continue;
    }
    if ('(),'.includes(c)) {
      toks.push({ t: 'punct', v: c, pos: i });
      i++;
      continue;
    }
    const id = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i, i + 128));
    if (id) {
      toks.push({ t: 'ident', v: id[0], pos: i });
      i += id[0].length;
      continue;
    }
    fail(`unexpected character ${JSON.stringify(c)} at position ${i}`);
  }
  return toks;
}

/** Parse a filter string into an expression tree, or throw E_INVALID_FILTER saying where. */
export function parseFilter(src: string): FilterExpr {
  if (src.length > FILTER_LIMITS.length) fail(`filter is longer than ${FILTER_LIMITS.length} characters`);
  const toks = tokenize(src);
  if (toks.length === 0) fail('filter is empty');
  let pos = 0;
  let comparisons = 0;
  const peek = (): Tok | undefined => toks[pos];
  const word = (tok: Tok | undefined, w: string): boolean => tok?.t === 'ident' && tok.v.toLowerCase() === w;
  const where = (tok: Tok | undefined): string => (tok ? `at position ${tok.pos}` : 'at the end');

  const literal = (): Literal => {
    const tok = toks[pos++];
    if (!tok) return fail('expected a value at the end');
    if (tok.t === 'str') return tok.v;
    if (tok.t === 'num') {
      const n = Number(tok.v);
      return Number.isFinite(n) ? n : fail(`number out of range at position ${tok.pos}`);
    }
    if (word(tok, 'true')) return true;
    if (word(tok, 'false')) return false;
    if (word(tok, 'null')) return null;
    return fail(`expected a value (string, number, true, false or null) ${where(tok)}`);
  };

  const comparison = (): FilterExpr => {
    const field = toks[pos++];
    if (field?.t !== 'ident') return fail(`expected a field name ${where(field)}`);
    if (++comparisons > FILTER_LIMITS.comparisons) fail(`filter has more than ${FILTER_LIMITS.comparisons} comparisons`);
    const opTok = toks[pos++];
    if (opTok?.t === 'op' && !['&&', '||'].includes(opTok.v)) {
      return { kind: 'cmp', field: field.v, op: opTok.v as CmpOp, value: literal() };
    }
    if (word(opTok, 'contains') || word(opTok, 'prefix')) {
      return { kind: 'cmp', field: field.v, op: opTok?.v.toLowerCase() as CmpOp, value: literal() };
    }
    if (word(opTok, 'is')) {
      const negated = word(peek(), 'not');
      if (negated) pos++;
      if (!word(toks[pos++], 'null')) fail(`expected "null" after "is" ${where(toks[pos - 1])}`);
      return { kind: 'cmp', field: field.v, op: negated ? 'is not null' : 'is null', value: null };
    }
    if (word(opTok, 'in')) {
      if (toks[pos++]?.v !== '(') fail(`expected "(" after "in" ${where(toks[pos - 1])}`);
      const values: Literal[] = [literal()];
      while (peek()?.v === ',') {
        pos++;
        values.push(literal());
        if (values.length > FILTER_LIMITS.inValues) fail(`"in" takes at most ${FILTER_LIMITS.inValues} values`);
      }
      if (toks[pos++]?.v !== ')') fail(`expected ")" to close "in" ${where(toks[pos - 1])}`);
      return { kind: 'cmp', field: field.v, op: 'in', value: values };
    }
    return fail(`expected an operator after ${JSON.stringify(field.v)} ${where(opTok)}`);
  };

  const primary = (depth: number): FilterExpr => {
    if (depth > FILTER_LIMITS.depth) fail(`filter nests deeper than ${FILTER_LIMITS.depth} levels`);
    if (peek()?.v === '(') {
      pos++;
      const e = or(depth + 1);
      if (toks[pos++]?.v !== ')') fail(`expected ")" ${where(toks[pos - 1])}`);
      return e;
    }
    return comparison();
  };
  const chain = (kind: 'and' | 'or', sym: string, next: (d: number) => FilterExpr, depth: number): FilterExpr => {
    const items = [next(depth)];
    while (peek()?.v === sym || word(peek(), kind)) {
      pos++;
      items.push(next(depth));
    }
    return items.length === 1 ? (items[0] as FilterExpr) : { kind, items };
  };
  const and = (depth: number): FilterExpr => chain('and', '&&', primary, depth);
  const or = (depth: number): FilterExpr => chain('or', '||', and, depth);

  const expr = or(0);
  if (pos < toks.length) fail(`unexpected ${JSON.stringify(toks[pos]?.v)} at position ${toks[pos]?.pos}`);
  return expr;
}
