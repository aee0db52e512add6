import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkRule, compileRules, parseRule, RuleError } from './rules.js';
import { collection, defineApp, f, normalizeCollections } from './schema.js';

const cols = normalizeCollections(
  defineApp({
    collections: {
      users: collection({ fields: { email: f.email(), role: f.text() } }),
      rooms: collection({ fields: { owner: f.relation('users'), open: f.boolean(), stars: f.integer() } }),
      posts: collection({ fields: { room: f.relation('rooms'), body: f.text(), meta: f.json(), at: f.datetime() } }),
    },
  }),
);
const byName = new Map(cols.map((c) => [c.name, c]));
const posts = byName.get('posts')!;

test('parses comparisons, paths, exists, negation and constants', () => {
  assert.deepEqual(parseRule('true'), { k: 'const', value: true });
  assert.deepEqual(parseRule('room.open'), {
    k: 'cmp',
    op: '=',
    left: { k: 'field', scope: 'row', path: ['room', 'open'] },
    right: { k: 'lit', value: true },
  });
  const e = parseRule('!(body = "x") && exists(rooms, id = @record.room || owner = @auth.id) or @auth.role = \'admin\'');
  assert.equal(e.k, 'or');
  assert.deepEqual(parseRule('body = "say \\"hi\\""'), {
    k: 'cmp',
    op: '=',
    left: { k: 'field', scope: 'row', path: ['body'] },
    right: { k: 'lit', value: 'say "hi"' },
  });
  for (const ok of ['room.owner.email = @auth.email', 'at < @now', 'room.stars >= 3', 'meta = null', '@auth.verified'])
    checkRule(byName, posts, ok);
});

test('refuses bad rules with the reason and position', () => {
  const bad: Array<[string, RegExp]> = [
    ['', /empty/],
    ['body = ', /expected a value at the end/],
    ['body = "x" &&', /expected a value at the end/],
    ['(body = "x"', /expected "\)"/],
    ['body ~ "x"', /unexpected character "~" at position 5/],
    ['@auth.password = "x"', /unknown name @auth.password/],
    ['title = "x"', /posts has no field "title"/],
    ['body.owner = "x"', /posts.body is not a relation/],
    ['exists(ghosts, id = "x")', /unknown collection "ghosts"/],
    ['room.stars = "three"', /cannot compare a number value with a text value/],
    ['meta = "x"', /cannot compare a json value with a text value/],
    ['room.open > true', /cannot compare booleans/],
    ['body < null', /cannot compare with null/],
    ['body = "unterminated', /unterminated string/],
  ];
  for (const [src, re] of bad)
    assert.throws(
      () => checkRule(byName, posts, src),
      (e: Error) => e instanceof RuleError && re.test(e.message),
      src,
    );
});

test('every bad rule of an app is reported at once, naming collection and operation', () => {
  const app = normalizeCollections(
    defineApp({
      collections: {
        notes: collection({ fields: { owner: f.text() }, rules: { list: 'ownr = @auth.id', update: 'owner = ' } }),
      },
    }),
  );
  assert.throws(
    () => compileRules(app),
    (e: Error) =>
      /collection "notes", rule list \("ownr = @auth.id"\): notes has no field "ownr"/.test(e.message) &&
      /collection "notes", rule update/.test(e.message),
  );
});
