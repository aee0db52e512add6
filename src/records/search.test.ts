import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RampartError } from '../core/errors.js';
import { SqliteDatabase } from '../storage/sqlite/driver.js';
import { type AppDef, f, normalizeCollections, SchemaError } from './schema.js';
import {
  closestWords,
  editDistance,
  MARK_END,
  MARK_START,
  MAX_QUERY_LENGTH,
  parseSearch,
  snippetHtml,
  toFts5,
  toTsquery,
  vocabularyOf,
  withAlternatives,
  withoutStopwords,
} from './search.js';

test('words, phrases, prefixes and exclusions', () => {
  const q = parseSearch('Resilient "circuit  breaker" retr* -flaky -"cold start"');
  assert.deepEqual(q.terms, [
    { kind: 'word', words: ['resilient'], negated: false },
    { kind: 'phrase', words: ['circuit', 'breaker'], negated: false },
    { kind: 'prefix', words: ['retr'], negated: false },
    { kind: 'word', words: ['flaky'], negated: true },
    { kind: 'phrase', words: ['cold', 'start'], negated: true },
  ]);
  assert.equal(toFts5(q), '"resilient" AND "circuit breaker" AND "retr"* NOT "flaky" NOT "cold start"');
  assert.equal(toTsquery(q), "'resilient' & ('circuit' <-> 'breaker') & 'retr':* & !'flaky' & !('cold' <-> 'start')");
});

test('an unclosed quote runs to the end; punctuation separates words; non-Latin scripts are words', () => {
  assert.deepEqual(parseSearch('"open ended').terms, [{ kind: 'phrase', words: ['open', 'ended'], negated: false }]);
  assert.deepEqual(
    parseSearch("e-mail don't").terms.map((t) => t.words[0]),
    ['e', 'mail', 'don', 't'],
  );
  assert.deepEqual(
    parseSearch('Straße 東京 café').terms.map((t) => t.words[0]),
    ['straße', '東京', 'café'],
  );
});

test('bad queries are a 400 naming the problem', () => {
  for (const [q, re] of [
    ['', /at least one word/],
    ['-only -exclusions', /at least one word/],
    ['" * - ()', /at least one word/],
    ['a*', /prefix needs at least 2/],
    ['x'.repeat(MAX_QUERY_LENGTH + 1), /longer than/],
    [Array.from({ length: 17 }, (_, i) => `w${i}`).join(' '), /more than 16 terms/],
  ] as const) {
    assert.throws(
      () => parseSearch(q),
      (e: unknown) => e instanceof RampartError && e.code === 'E_INVALID_QUERY' && re.test(e.message),
      q.slice(0, 40),
    );
  }
});

test('any input either parses into a query FTS5 and PostgreSQL-syntax accept, or is a 400', () => {
  // The same SQLite build the app uses (the driver picks the right one for this Node).
  const db = new SqliteDatabase(':memory:');
  db.exec("create virtual table t using fts5(body); insert into t values ('a resilient circuit breaker')");
  const match = db.prepare('select count(*) as n from t where t match ?');
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 60 }), fc.stringMatching(/^[-"* a-zé()'\\:&|!<>]{0,40}$/)), (q) => {
      let parsed: ReturnType<typeof parseSearch>;
      try {
        parsed = parseSearch(q);
      } catch (e) {
        return e instanceof RampartError && e.code === 'E_INVALID_QUERY';
      }
      match.get(toFts5(parsed));
      const ts = toTsquery(parsed);
      // Every lexeme is quoted: nothing outside quotes but operators, parentheses and spaces.
      return /^[\s()&!<\->:*]*$/.test(ts.replace(/'(?:[^']|'')*'/g, ''));
    }),
    { numRuns: 2000 },
  );
  db.close();
});

test('edit distance counts insertions, deletions, substitutions and adjacent swaps, and stops past the limit', () => {
  assert.equal(editDistance('resilent', 'resilient', 2), 1);
  assert.equal(editDistance('expreiments', 'experiments', 2), 1, 'a swap is one edit');
  assert.equal(editDistance('kitten', 'sitting', 5), 3);
  assert.equal(editDistance('kitten', 'sitting', 1), 2, 'max + 1 once over the limit');
  assert.equal(editDistance('café', 'cafe', 1), 1, 'letters, not UTF-16 units');
  assert.equal(editDistance('same', 'same', 0), 0);
});

test('typo corrections: within one typo from 5 letters and two from 9, closest first, at most three', () => {
  assert.deepEqual(closestWords('resilent', ['resilient', 'resilience', 'silent', 'president']), ['resilient']);
  assert.deepEqual(closestWords('recieve', ['receive', 'relieve', 'recife']), ['receive', 'relieve']);
  assert.deepEqual(closestWords('infrastructre', ['infrastructure', 'infrastructures']), ['infrastructure', 'infrastructures']);
  assert.deepEqual(closestWords('cats', ['cat', 'hats']), [], 'four letters: no tolerance');
  assert.deepEqual(closestWords('bater', ['baker', 'later', 'water', 'bates', 'hater']), ['baker', 'bates', 'hater']);
  const typed = withAlternatives(parseSearch('resilent "circuit breaker" -resilent'), new Map([['resilent', ['resilient']]]));
  assert.equal(toFts5(typed), '("resilent" OR "resilient") AND "circuit breaker" NOT "resilent"', 'an exclusion is never widened');
  assert.equal(toTsquery(typed), "('resilent' | 'resilient') & ('circuit' <-> 'breaker') & !'resilent'");
});

test('vocabulary: distinct words long enough to be a correction, no numbers', () => {
  assert.deepEqual([...vocabularyOf(['The Résilient résilient API, v2 2026 ok', null, 42, 'tools'])].sort(), ['résilient', 'tools'].sort());
});

test('stop words leave queries (single words only); a query of stop words alone is nothing to look for', () => {
  const q = withoutStopwords(parseSearch('the circuit -of "out of the box" an*'), 'english');
  assert.deepEqual(
    q?.terms.map((t) => t.words.join(' ')),
    ['circuit', 'out of the box'],
  );
  assert.equal(withoutStopwords(parseSearch('the and -circuit'), 'english'), undefined);
  assert.equal(withoutStopwords(parseSearch('the'), 'simple')?.terms.length, 1, 'only languages with a stop list');
});

test('snippets become HTML: text escaped, markers become <mark>, unbalanced markers closed', () => {
  assert.equal(snippetHtml(`a ${MARK_START}<b>${MARK_END} & "q"`), 'a <mark>&lt;b&gt;</mark> &amp; &quot;q&quot;');
  assert.equal(snippetHtml('no match here'), undefined);
  assert.equal(snippetHtml(`${MARK_START}open`), '<mark>open</mark>');
});

test('search declarations are checked at startup, naming each problem', () => {
  const app = (fields: Record<string, unknown>, search?: unknown) =>
    ({ collections: { posts: { fields, ...(search === undefined ? {} : { search }) } } }) as unknown as AppDef;
  assert.deepEqual(normalizeCollections(app({ title: f.text({ search: true }), body: f.text({ search: 'C' }) }))[0]?.search, {
    table: 'posts',
    language: 'english',
    fields: [
      { name: 'title', weight: 'A' },
      { name: 'body', weight: 'C' },
    ],
  });
  assert.throws(
    () =>
      normalizeCollections(
        app(
          { n: { type: 'integer', search: 'A' }, t: { type: 'text', search: 'E' }, h: { type: 'text', hidden: true, search: 'B' } },
          { language: 'klingon' },
        ),
      ),
    (e: Error) =>
      e instanceof SchemaError &&
      /field "n": only text, email and url fields can be searchable/.test(e.message) &&
      /field "t": search must be true or a weight A, B, C or D/.test(e.message) &&
      /field "h": a hidden field cannot be searchable/.test(e.message) &&
      /search language "klingon" is not one of/.test(e.message),
  );
  assert.throws(() => normalizeCollections(app({ t: f.text() }, {})), /search settings, but no field is marked searchable/);
});
