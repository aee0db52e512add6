/**
 * Hostile input, generated: malformed JSON, wrong types, huge strings and numbers, deep
 * nesting, __proto__/constructor keys, unknown and read-only fields, bad ids, cursors, filters,
 * sorts and headers, across every route. Each request is invalid by construction, so the
 * invariants are: never a 5xx, the process keeps serving, no prototype pollution, and the
 * data is byte-for-byte unchanged.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
const COLLECTIONS = ['rooms', 'members', 'messages', 'ghosts'];
const FIELDS = ['name', 'topic', 'room', 'body', 'author', 'user', 'role', 'edited_at', 'id', 'created_at', 'version', 'deleted_at'];
const INJECTION = [
  `' OR '1'='1`,
  `"; DROP TABLE rooms; --`,
  `1) OR (1=1`,
  `\\x00`,
  '%',
  '_',
  '\u0000',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a template-injection probe, on purpose
  '${7*7}',
  '../../etc/passwd',
  'name = "x" || 1=1',
  'id = "00000000-0000-0000-0000-000000000000\' OR 1=1 --"',
];

const hugeNumber = fc.constantFrom(1e308, -1e308, 2 ** 64, -(2 ** 63), Number.MAX_SAFE_INTEGER + 2, 1e-320, 0.1 + 0.2);
const hugeString = fc.nat({ max: 3 }).map((n) => 'x'.repeat([5_000, 70_000, 300_000, 900_000][n] ?? 10));
const scalar = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), hugeNumber, fc.constantFrom(...INJECTION));
/** JSON text of a value: built as text, so nesting far past the stack limit stays cheap to make. */
const valueText = fc.oneof(
  scalar.map((v) => JSON.stringify(v) ?? 'null'),
  hugeString.map((v) => JSON.stringify(v)),
  fc.nat({ max: 3 }).map((n) => {
    const depth = [40, 200, 2_000, 20_000][n] ?? 40;
    return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
  }),
  fc.array(scalar, { maxLength: 5 }).map((v) => JSON.stringify(v)),
  fc.dictionary(fc.string({ maxLength: 8 }), scalar, { maxKeys: 4 }).map((v) => JSON.stringify(v)),
);

/** A key that makes any write body invalid: unknown, read-only, or a prototype-polluting name. */
const poisonKey = fc.oneof(
  fc.constantFrom('id', 'version', 'created_at', 'updated_at', 'deleted_at', '__proto__', 'constructor', 'prototype'),
  fc.string({ minLength: 1, maxLength: 20 }).map((s) => `zz_${s}`),
);

const body = fc.oneof(
  // Well-formed JSON objects that always carry a poison key.
  fc
    .tuple(fc.dictionary(fc.constantFrom(...FIELDS), valueText, { maxKeys: 5 }), poisonKey, valueText)
    .map(
      ([obj, k, v]) => `{${[...Object.entries(obj).map(([a, b]) => `${JSON.stringify(a)}:${b}`), `${JSON.stringify(k)}:${v}`].join(',')}}`,
    ),
  // Not objects, or not JSON at all.
  fc.constantFrom('', 'null', '[]', '"x"', '42', '{', '{"a":1,}', "{'a':1}", '{"a":NaN}', '{"a":1e99999}', '\u0000', '[[[[[[[[', 'true'),
  fc.string({ maxLength: 200 }).map((s) => `{${s}`),
  fc.constantFrom('['.repeat(100_000), `${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}`),
);

const queryValue = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.constantFrom(...INJECTION),
  hugeString.map((s) => s.slice(0, 9000)),
);
const filterExpr = fc.oneof(
  queryValue,
  fc
    .tuple(
      fc.constantFrom(...FIELDS, 'nope', 'x.y'),
      fc.constantFrom('=', '!=', '<', '>=', 'contains', 'prefix', 'in', 'is', '~', '=='),
      fc.oneof(scalar, fc.constantFrom('("a",1)', 'null', 'not null')),
    )
    .map(([f, op, v]) => `${f} ${op} ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`),
  fc.nat({ max: 60 }).map((n) => `${'('.repeat(n)}name = "x"${')'.repeat(Math.max(0, n - 1))}`),
);
const allParams = fc
  .record(
    {
      filter: filterExpr,
      sort: fc.oneof(queryValue, fc.constantFrom('-', ',', '--name', 'name,name', 'body,-room,author,topic,id')),
      limit: fc.oneof(queryValue, fc.constantFrom('0', '-1', '201', '1e3', '99999999999999999999', ' 5')),
      cursor: fc.oneof(
        queryValue,
        fc.base64String({ maxLength: 200 }),
        fc.constantFrom(Buffer.from('{"s":"-created_at,-id","v":[1,2]}').toString('base64url')),
      ),
      count: queryValue,
      fields: queryValue,
      deleted: queryValue,
      purge: queryValue,
      extra: queryValue,
    },
    { requiredKeys: [] },
  )
  .map((q) => new URLSearchParams(q as Record<string, string>).toString());
// Mostly no query or a single parameter, so requests get past the query check to deeper layers.
const query = fc.oneof(
  { weight: 3, arbitrary: fc.constant('') },
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.constantFrom('filter', 'sort', 'cursor', 'limit', 'fields'), filterExpr)
      .map(([k, v]) => new URLSearchParams({ [k]: v }).toString()),
  },
  { weight: 1, arbitrary: allParams },
);

const badId = fc.oneof(fc.string({ maxLength: 80 }), fc.uuid(), fc.constantFrom(...INJECTION), fc.constant('%2e%2e'));
const headers = fc.record(
  {
    'content-type': fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom('application/json', 'application/json; charset=utf-8', 'application/merge-patch+json') },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          'text/plain',
          'application/xml',
          'multipart/form-data; boundary=x',
          'application/json; charset=latin1',
          '',
        ),
      },
    ),
    'if-match': fc.oneof(
      fc.constant(undefined),
      fc.string({ maxLength: 30 }),
      fc.constantFrom('"0"', '"99999999999999999999"', 'W/"1"', '*', '""'),
    ),
    'if-none-match': fc.string({ maxLength: 30 }),
    'x-request-id': fc.string({ maxLength: 200 }),
  },
  { requiredKeys: ['content-type'] },
);

for (const { name, skip } of await backendMatrix()) {
  describe(`hostile input (${name})`, { skip }, () => {
    let t: TestApp;
    let ids: string[] = [];
    const snapshot = async () => {
      const out: string[] = [];
      for (const c of ['rooms', 'members', 'messages']) {
        const r = await t.req('GET', `/api/v1/collections/${c}/records?deleted=include&limit=200&sort=id`);
        out.push(r.raw);
      }
      return out.join('\n');
    };
    before(async () => {
      t = await startTestApp(name);
      const room = (await t.req('POST', '/api/v1/collections/rooms/records', { name: 'fuzz' })).body.id;
      const msg = (await t.req('POST', '/api/v1/collections/messages/records', { room, body: 'hi', author: 'a' })).body.id;
      const mem = (await t.req('POST', '/api/v1/collections/members/records', { room, user: 'a' })).body.id;
      ids = [room, msg, mem];
    });
    after(async () => t?.close());

    test(`${RUNS} hostile requests: zero 5xx, no pollution, nothing written`, async () => {
      const before = await snapshot();
      const protoKeys = Object.getOwnPropertyNames(Object.prototype).sort().join();
      const statuses = new Map<number, number>();
      const existingId = fc.constantFrom(...ids);
      const request = fc.oneof(
        fc.record({ method: fc.constant('POST'), col: fc.constantFrom(...COLLECTIONS), id: fc.constant(''), q: query, body, headers }),
        fc.record({
          method: fc.constant('PATCH'),
          col: fc.constantFrom(...COLLECTIONS),
          id: fc.oneof(existingId, badId),
          q: query,
          body,
          headers,
        }),
        fc.record({
          method: fc.constantFrom('GET', 'HEAD'),
          col: fc.constantFrom(...COLLECTIONS),
          id: fc.oneof(fc.constant(''), existingId, badId),
          q: query,
          body: fc.constant(undefined),
          headers,
        }),
        // Deletes of existing records always carry a stale or malformed If-Match.
        fc.record({
          method: fc.constant('DELETE'),
          col: fc.constantFrom(...COLLECTIONS),
          id: fc.oneof(existingId, badId),
          q: query,
          body: fc.constant(undefined),
          headers: headers.map((h) => ({
            ...h,
            'if-match': h['if-match'] && !['*', 'W/"1"'].includes(h['if-match']) ? h['if-match'] : '"0"',
          })),
        }),
        fc.record({
          method: fc.constant('RESTORE'),
          col: fc.constantFrom(...COLLECTIONS),
          id: fc.oneof(existingId, badId),
          q: query,
          body: fc.constant(undefined),
          headers,
        }),
        fc.record({ method: fc.constant('BATCH'), col: fc.constant(''), id: fc.constant(''), q: query, body, headers }),
        fc.record({
          method: fc.constantFrom('PUT', 'OPTIONS', 'TRACE', 'PROPFIND'),
          col: fc.constantFrom(...COLLECTIONS),
          id: fc.oneof(fc.constant(''), badId),
          q: query,
          body: fc.constant(undefined),
          headers,
        }),
      );
      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          const path =
            r.method === 'BATCH'
              ? '/api/v1/batch'
              : `/api/v1/collections/${r.col}/records${r.id ? `/${encodeURIComponent(r.id)}` : ''}${r.method === 'RESTORE' ? '/restore' : ''}`;
          const method = r.method === 'BATCH' || r.method === 'RESTORE' ? 'POST' : r.method;
          const h = Object.fromEntries(
            Object.entries(r.headers).filter(([, v]) => v !== undefined && /^[\t\x20-\x7e]*$/.test(v as string)),
          ) as Record<string, string>;
          // A successful PATCH or DELETE would be a write: hostile PATCH bodies are always invalid,
          // and deletes carry a stale If-Match; GET of a collection list with `?purge` is refused.
          const res = await t.app.server.inject({ method: method as 'GET', url: `${path}?${r.q}`, headers: h, payload: r.body });
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          if (res.statusCode >= 500)
            throw new Error(`${method} ${path}?${r.q.slice(0, 200)} -> ${res.statusCode} ${res.body.slice(0, 300)}`);
        }),
        { numRuns: RUNS, seed: Number(process.env.FUZZ_SEED ?? 20261124), endOnFailure: true },
      );
      const summary = [...statuses.entries()]
        .sort(([a], [b]) => a - b)
        .map(([s, n]) => `${s}x${n}`)
        .join(' ');
      process.stdout.write(`# ${name}: ${RUNS} hostile requests -> ${summary}\n`);
      assert.equal(Object.getOwnPropertyNames(Object.prototype).sort().join(), protoKeys, 'Object.prototype unchanged');
      assert.equal(({} as Record<string, unknown>).admin, undefined);
      assert.equal(await snapshot(), before, 'nothing written');
      const alive = await fetch(`${t.url}/healthz`);
      assert.equal(alive.status, 200, 'still serving');
      assert.ok(![...statuses.keys()].some((s) => s >= 500));
    });
  });
}
