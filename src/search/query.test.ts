import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RampartError } from '../core/errors.js';
import { SqliteDatabase } from '../storage/sqlite/driver.js';
import { MAX_QUERY_LENGTH, parseSearch, toFts5, toTsquery } from './query.js';

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
