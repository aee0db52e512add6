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
  /** Known words close to a misspelled `word` (typo tolerance): any of them matches too. */
  alternatives?: string[];
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

/** Shortest word that typo tolerance looks at; one typo from 5 letters, two from 9. */
export const TYPO_MIN_LENGTH = 5;
/** Typos tolerated in a word of this length. */
export const typosFor = (length: number) => (length >= 9 ? 2 : length >= TYPO_MIN_LENGTH ? 1 : 0);
/** Longest word kept in a collection's vocabulary (longer ones are codes and hashes, not words). */
const VOCABULARY_MAX = 40;

/**
 * The distinct words of some text that belong in a collection's vocabulary: those a typo
 * could be corrected to (a word within reach of a misspelling at least TYPO_MIN_LENGTH long).
 */
export function vocabularyOf(texts: Iterable<unknown>, into = new Set<string>()): Set<string> {
  for (const text of texts) {
    if (typeof text !== 'string') continue;
    for (const w of wordsOf(text)) {
      if (w.length >= TYPO_MIN_LENGTH - 1 && w.length <= VOCABULARY_MAX && !/^\p{N}+$/u.test(w)) into.add(w);
    }
  }
  return into;
}

/**
 * Edit distance with adjacent transpositions (optimal string alignment), giving up once it
 * exceeds `max` (returns max + 1).
 */
export function editDistance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  const x = [...a];
  const y = [...b];
  let prev2: number[] = [];
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const cur = [i];
    let best = i;
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      let d = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) d = Math.min(d, (prev2[j - 2] as number) + 1);
      cur.push(d);
      best = Math.min(best, d);
    }
    if (best > max) return max + 1;
    prev2 = prev;
    prev = cur;
  }
  return Math.min(prev[y.length] as number, max + 1);
}

/** Most spellings a misspelled word is widened to. */
const MAX_ALTERNATIVES = 3;

/**
 * The vocabulary words a misspelled `word` may have meant: within its typo budget, closest
 * first, then alphabetical (so every backend picks the same ones from the same candidates).
 */
export function closestWords(word: string, candidates: Iterable<string>): string[] {
  const max = typosFor([...word].length);
  const scored: Array<[string, number]> = [];
  for (const c of new Set(candidates)) {
    if (c === word) continue;
    const d = editDistance(word, c, max);
    if (d <= max) scored.push([c, d]);
  }
  scored.sort((p, q) => p[1] - q[1] || (p[0] < q[0] ? -1 : 1));
  return scored.slice(0, MAX_ALTERNATIVES).map(([c]) => c);
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
        : t.alternatives?.length
          ? `(${[t.words[0] as string, ...t.alternatives].map(fts5Quote).join(' OR ')})`
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
    if (t.kind === 'prefix') return `${tsQuote(t.words[0] as string)}:*`;
    if (t.alternatives?.length) return `(${[t.words[0] as string, ...t.alternatives].map(tsQuote).join(' | ')})`;
    return tsQuote(t.words[0] as string);
  };
  return query.terms.map((t) => (t.negated ? `!${one(t)}` : one(t))).join(' & ');
}

/** Words that typo-tolerant matching may look for (plain positive words long enough to misspell). */
export function fuzzyWords(query: SearchQuery): string[] {
  return query.terms
    .filter((t) => !t.negated && t.kind === 'word' && typosFor([...(t.words[0] as string)].length) > 0)
    .map((t) => t.words[0] as string);
}

/** The query with misspelled words widened to the known words they may mean. */
export function withAlternatives(query: SearchQuery, alternatives: Map<string, string[]>): SearchQuery {
  return {
    terms: query.terms.map((t) => {
      const alt = !t.negated && t.kind === 'word' ? alternatives.get(t.words[0] as string) : undefined;
      return alt?.length ? { ...t, alternatives: alt } : t;
    }),
  };
}

/**
 * English stop words (PostgreSQL's list): PostgreSQL's English configuration leaves them out of
 * documents and queries; they are left out of queries on every backend, so a query matches
 * the same records everywhere.
 */
const STOPWORDS: Record<string, Set<string>> = {
  english: new Set(
    (
      'i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it its ' +
      'itself they them their theirs themselves what which who whom this that these those am is are was were be been being ' +
      'have has had having do does did doing a an the and but if or because as until while of at by for with about against ' +
      'between into through during before after above below to from up down in out on off over under again further then once ' +
      'here there when where why how all any both each few more most other some such no nor not only own same so than too ' +
      'very s t can will just don should now'
    ).split(' '),
  ),
};

/**
 * The query without the language's stop words (single words and prefixes; phrases keep theirs).
 * Undefined when nothing is left to look for: such a query matches no record.
 */
export function withoutStopwords(query: SearchQuery, language: string): SearchQuery | undefined {
  const stop = STOPWORDS[language];
  const terms = stop ? query.terms.filter((t) => t.kind === 'phrase' || !stop.has(t.words[0] as string)) : query.terms;
  return terms.some((t) => !t.negated) ? { terms } : undefined;
}

/** Markers a backend puts around a match in a snippet; stripped from the text before it is marked. */
export const MARK_START = '\u0002';
export const MARK_END = '\u0003';

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * A backend's snippet as HTML: the record's text escaped, each match in `<mark>…</mark>`.
 * Undefined when nothing in it matched.
 */
export function snippetHtml(raw: string): string | undefined {
  if (!raw.includes(MARK_START)) return undefined;
  let out = '';
  let open = false;
  for (const ch of raw) {
    if (ch === MARK_START && !open) {
      out += '<mark>';
      open = true;
    } else if (ch === MARK_END && open) {
      out += '</mark>';
      open = false;
    } else if (ch !== MARK_START && ch !== MARK_END) {
      out += HTML_ESCAPES[ch] ?? ch;
    }
  }
  return open ? `${out}</mark>` : out;
}
