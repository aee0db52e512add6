/**
 * Hostile input to the accounts routes, generated: wrong types, huge and odd strings, injection
 * probes, malformed and forged tokens, broken JSON, bad query strings. Invariants: never a 5xx,
 * every error is a problem document with a code, no stack trace or secret in a body, the
 * process keeps serving, and nothing was created.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { startTestApp, type TestApp } from '../helpers/app.js';

const RUNS = Number(process.env.AUTH_FUZZ_RUNS ?? 1_500);
const ROUTES = [
  ['POST', '/api/v1/auth/signup'],
  ['POST', '/api/v1/auth/login'],
  ['POST', '/api/v1/auth/refresh'],
  ['POST', '/api/v1/auth/logout'],
  ['POST', '/api/v1/auth/password'],
  ['POST', '/api/v1/auth/email'],
  ['POST', '/api/v1/auth/email/confirm'],
  ['POST', '/api/v1/auth/verify-email/request'],
  ['POST', '/api/v1/auth/verify-email'],
  ['POST', '/api/v1/auth/password-reset/request'],
  ['POST', '/api/v1/auth/password-reset'],
  ['POST', '/api/v1/auth/oauth/exchange'],
  ['GET', '/api/v1/auth/me'],
  ['DELETE', '/api/v1/auth/me'],
  ['GET', '/api/v1/auth/sessions'],
  ['DELETE', '/api/v1/auth/sessions'],
  ['DELETE', '/api/v1/auth/sessions/not-a-session'],
  ['GET', '/api/v1/auth/oauth/providers'],
  ['GET', '/api/v1/auth/oauth/nope/start'],
  ['GET', '/api/v1/auth/oauth/nope/callback'],
] as const;
const KEYS = [
  'email',
  'password',
  'refresh_token',
  'token',
  'code',
  'new_email',
  'new_password',
  'current_password',
  'role',
  '__proto__',
  'constructor',
];
const PROBES = [
  `' OR '1'='1`,
  'a@b.co',
  'A@B.CO ',
  'rt_x.1.y',
  `rt_${'0'.repeat(36)}.1.${'A'.repeat(43)}`,
  'ot_abc',
  '\u0000',
  '😀'.repeat(300),
  'x'.repeat(70_000),
];
const value = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom(...PROBES),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string(), { maxKeys: 3 }),
);
const body = fc.oneof(
  fc.dictionary(fc.constantFrom(...KEYS), value, { maxKeys: 5 }).map((o) => JSON.stringify(o)),
  fc.constantFrom('{', '[]', 'null', '"x"', '{"email":', '{"__proto__":{"role":"admin"}}', ''),
  fc.string({ maxLength: 200 }),
);
const authHeader = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom('Bearer', 'Bearer ', 'Basic abc', 'Bearer a.b.c', 'Bearer eyJhbGciOiJub25lIn0.e30.', `Bearer ${'x'.repeat(5000)}`),
  fc.string({ maxLength: 100 }).map((s) => `Bearer ${s}`),
);
const query = fc.oneof(
  fc.constant(''),
  fc.constantFrom(
    '?redirect_to=javascript:alert(1)',
    '?redirect_to=http://app.example/',
    '?include_current=maybe',
    '?x=1&x=2',
    '?code=a&state=b',
  ),
);

const contentType = fc.oneof(
  { arbitrary: fc.constant('application/json'), weight: 6 },
  { arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded'), weight: 1 },
);

describe('accounts routes under hostile input', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp('sqlite', undefined, { RAMPART_TRUST_PROXY: '127.0.0.1' });
  });
  after(async () => t?.close());

  test(`${RUNS} generated requests: never a 5xx, always a problem document, nothing created`, async () => {
    const statuses = new Map<number, number>();
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ROUTES), body, authHeader, query, contentType, async ([method, path], payload, auth, q, type) => {
        const headers: Record<string, string> = { 'content-type': type, 'x-forwarded-for': `10.9.${n % 250}.${(n++ >> 8) % 250}` };
        if (auth !== undefined) headers.authorization = auth;
        const res = await t.app.server.inject({ method, url: `${path}${q}`, headers, payload: method === 'GET' ? undefined : payload });
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        assert.ok(res.statusCode < 500, `${method} ${path}${q} -> ${res.statusCode} ${res.body.slice(0, 300)}`);
        if (res.statusCode >= 400) {
          const problem = res.json() as { code?: string };
          assert.match(problem.code ?? '', /^E_[A-Z_]+$/);
          assert.doesNotMatch(res.body, /\bat .*\.(ts|js):\d+|argon2id\$/);
        }
      }),
      { numRuns: RUNS },
    );
    process.stdout.write(`# auth fuzz: ${RUNS} requests, statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}\n`);
    const users = await t.app.records.list('users', { count: true, limit: 1 });
    assert.ok((users.total ?? 0) <= (statuses.get(201) ?? 0), 'an account exists only where a sign-up answered 201');
    assert.equal((await t.req('GET', '/healthz')).status, 200);
  });
});
