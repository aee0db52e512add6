/**
 * The search query language of `?q=`: words (all must match), `"a phrase"`, `prefix*`, and
 * `-excluded` words or phrases. Parsed once into terms, then written for each backend's full-text
 * syntax from those terms only — the user's text never reaches FTS5's MATCH or PostgreSQL's
 * tsquery parser as syntax, so no input can produce a syntax error (a 5xx) there.
 *
 * Words are runs of letters and digits (any script); everything else separates them. An
 * unclosed quote runs to the end (as search boxes do). A query must look for at least one word.
 */
import { RampartError } from '../core/errors.js';

/** One term of a query. */
export interface SearchTerm {
  /** `word`, `prefix` (`resil*`) or `phrase` (`"a b"`). */
  kind: 'word' | 'prefix' | 'phrase';
  /** The words, lower-cased (one, except in phrases). */
  words: string[];
  /** `-word`: records containing it are left out. */
  negated: boolean;
}

/** A parsed query. */
export interface SearchQuery {
  terms: SearchTerm[];
}

/** Longest `q` accepted, in characters. */
export const MAX_QUERY_LENGTH = 200;
/** Most terms in one query. */
export const MAX_TERMS = 16;
/** Shortest prefix (`ab*` would match too much to be useful, and is slow). */
export const MIN_PREFIX = 2;

const WORD = /[\p{L}\p{N}]+/gu;

const invalid = (detail: string) => new RampartError('E_INVALID_QUERY', `q: ${detail}`);

function wordsOf(text: string): string[] {
  return (text.normalize('NFKC').toLowerCase().match(WORD) ?? []).map((w) => w.slice(0, 64));
}

/** Parse `q`; throws a 400 `E_INVALID_QUERY` naming the problem. */
export function parseSearch(q: string): SearchQuery {
  if (typeof q !== 'string') throw invalid('must be a string');
  if (q.length > MAX_QUERY_LENGTH) throw invalid(`is longer than ${MAX_QUERY_LENGTH} characters`);
  const terms: SearchTerm[] = [];
  let i = 0;
  while (i < q.length) {
    const ch = q[i] as string;
    if (/\s/u.test(ch)) {
      i++;
      continue;
    }
    let negated = false;
    if (ch === '-') {
      negated = true;
      i++;
    }
    if (q[i] === '"') {
      const end = q.indexOf('"', i + 1);
      const body = end === -1 ? q.slice(i + 1) : q.slice(i + 1, end);
      i = end === -1 ? q.length : end + 1;
      const words = wordsOf(body);
      if (words.length === 1) terms.push({ kind: 'word', words, negated });
      else if (words.length > 1) terms.push({ kind: 'phrase', words, negated });
      continue;
    }
    // A bare token runs to the next space or quote.
    let j = i;
    while (j < q.length && !/\s/u.test(q[j] as string) && q[j] !== '"') j++;
    const token = q.slice(i, j);
    i = j;
    const prefix = token.endsWith('*');
    const words = wordsOf(token);
    if (words.length === 0) continue;
    // `e-mail` or `don't` are several words: the last one may carry the prefix star.
    for (const [k, w] of words.entries()) {
      const isPrefix = prefix && k === words.length - 1;
      if (isPrefix && w.length < MIN_PREFIX) throw invalid(`a prefix needs at least ${MIN_PREFIX} letters before the *`);
      terms.push({ kind: isPrefix ? 'prefix' : 'word', words: [w], negated });
    }
  }
  if (terms.length > MAX_TERMS) throw invalid(`has more than ${MAX_TERMS} terms`);
  if (!terms.some((t) => !t.negated)) throw invalid('needs at least one word to look for (exclusions alone match nothing)');
  return { terms };
}

const fts5Quote = (w: string) => `"${w.replace(/"/g, '""')}"`;

/** The query as an FTS5 MATCH expression (every word quoted). */
export function toFts5(query: SearchQuery): string {
  const one = (t: SearchTerm) =>
    t.kind === 'phrase'
      ? fts5Quote(t.words.join(' '))
      : t.kind === 'prefix'
        ? `${fts5Quote(t.words[0] as string)}*`
        : fts5Quote(t.words[0] as string);
  const positive = query.terms.filter((t) => !t.negated).map(one);
  const negative = query.terms.filter((t) => t.negated).map(one);
  return [positive.join(' AND '), ...negative.map((n) => `NOT ${n}`)].join(' ');
}

const tsQuote = (w: string) => `'${w.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;

/** The query as `to_tsquery` text (every lexeme quoted; the text search configuration stems them). */
export function toTsquery(query: SearchQuery): string {
  const one = (t: SearchTerm) => {
    if (t.kind === 'phrase') return `(${t.words.map(tsQuote).join(' <-> ')})`;
    return t.kind === 'prefix' ? `${tsQuote(t.words[0] as string)}:*` : tsQuote(t.words[0] as string);
  };
  return query.terms.map((t) => (t.negated ? `!${one(t)}` : one(t))).join(' & ');
}

/** Words that typo-tolerant matching may look for (plain positive words long enough to misspell). */
export function fuzzyWords(query: SearchQuery, minLength = 4): string[] {
  return query.terms
    .filter((t) => !t.negated && t.kind === 'word' && (t.words[0] as string).length >= minLength)
    .map((t) => t.words[0] as string);
}
