/**
 * HTTP scenario table: method, url, headers, body → status and body fragments, for every
 * route and every error code a client can meet. Runs in-process (inject) on real SQLite.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createApp, type RampartApp } from '../../src/app.js';
import { RampartError } from '../../src/core/errors.js';
import { createLogger } from '../../src/observability/logger.js';
import { collection, defineApp, f } from '../../src/records/schema.js';
import { OPEN } from '../fixtures/open-chat.ts';
import { makeBackend, type TestBackend } from '../helpers/backends.js';

const logLines: string[] = [];
const sink = new Writable({
  write(chunk, _enc, cb) {
    logLines.push(...String(chunk).split('\n').filter(Boolean));
    cb();
  },
});

const app = defineApp({
  collections: {
    rooms: collection({ fields: { name: f.text({ required: true, max: 80 }) }, rules: OPEN }),
    traps: collection({
      fields: { mode: f.select(['ok', 'crash', 'veto', 'after']) },
      rules: OPEN,
      hooks: {
        beforeCreate: (data) => {
          if (data.mode === 'crash') throw new Error('secret internal detail at /srv/app.ts:42');
          if (data.mode === 'veto') throw new RampartError('E_CONFLICT', 'vetoed by a hook');
          return data;
        },
        afterCreate: (record) => {
          if (record.mode === 'after') throw new Error('after-hook exploded');
        },
      },
    }),
  },
});

interface Scenario {
  name: string;
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: string;
  status: number;
  code?: string;
  contains?: string[];
  header?: Record<string, RegExp>;
}

const R = '/api/v1/collections/rooms/records';
const json = { 'content-type': 'application/json' };

describe('HTTP scenarios', () => {
  let backend: TestBackend;
  let rampart: RampartApp;
  let roomId: string;
  before(async () => {
    backend = await makeBackend('sqlite', { RAMPART_BODY_LIMIT: '2048', LOG_LEVEL: 'info' });
    rampart = await createApp(backend.config, app, { logger: createLogger('info', sink) });
    await rampart.start();
    const res = await rampart.server.inject({ method: 'POST', url: R, headers: json, payload: '{"name":"lobby"}' });
    roomId = res.json().id;
  });
  after(async () => {
    await rampart?.stop();
    await backend?.cleanup();
  });

  const scenarios = (): Scenario[] => [
    { name: 'liveness', method: 'GET', url: '/healthz', status: 200, contains: ['"ok"'] },
    { name: 'readiness', method: 'GET', url: '/readyz', status: 200, contains: ['"database"'] },
    {
      name: 'metrics',
      method: 'GET',
      url: '/metrics',
      status: 200,
      contains: [
        'rampart_http_request_duration_seconds_bucket',
        'rampart_db_query_duration_seconds',
        'rampart_db_pool_connections',
        'nodejs_eventloop_lag_seconds',
        'process_resident_memory_bytes',
      ],
    },
    {
      name: 'openapi',
      method: 'GET',
      url: '/api/v1/openapi.json',
      status: 200,
      contains: ['"openapi":"3.1.0"', `"${R}/{id}"`, '"Problem"'],
    },
    { name: 'docs page, served locally', method: 'GET', url: '/docs/', status: 200, contains: ['swagger'] },
    { name: 'collections', method: 'GET', url: '/api/v1/collections', status: 200, contains: ['"rooms"'] },
    { name: 'list', method: 'GET', url: R, status: 200, contains: ['"items"', '"next_cursor"'] },
    { name: 'HEAD of a GET route', method: 'HEAD', url: R, status: 200 },
    {
      name: 'create',
      method: 'POST',
      url: R,
      headers: json,
      body: '{"name":"new"}',
      status: 201,
      header: { location: /^\/api\/v1\/collections\/rooms\/records\// },
    },
    { name: 'get', method: 'GET', url: `${R}/${roomId}`, status: 200, header: { etag: /^"\d+"$/ } },
    { name: 'unknown route', method: 'GET', url: '/api/v1/nothing', status: 404, code: 'E_ROUTE_NOT_FOUND' },
    { name: 'unknown method', method: 'PUT', url: R, status: 405, code: 'E_METHOD_NOT_ALLOWED', header: { allow: /GET, POST/ } },
    {
      name: 'unknown method on a record',
      method: 'POST',
      url: `${R}/${roomId}`,
      status: 405,
      code: 'E_METHOD_NOT_ALLOWED',
      header: { allow: /PATCH/ },
    },
    { name: 'unknown collection', method: 'GET', url: '/api/v1/collections/ghosts/records', status: 404, code: 'E_COLLECTION_NOT_FOUND' },
    {
      name: 'unknown collection create',
      method: 'POST',
      url: '/api/v1/collections/ghosts/records',
      headers: json,
      body: '{}',
      status: 404,
      code: 'E_COLLECTION_NOT_FOUND',
    },
    { name: 'malformed id', method: 'GET', url: `${R}/not-a-uuid`, status: 404, code: 'E_RECORD_NOT_FOUND' },
    { name: 'missing record', method: 'GET', url: `${R}/01900000-0000-7000-8000-000000000000`, status: 404, code: 'E_RECORD_NOT_FOUND' },
    {
      name: 'missing record patch',
      method: 'PATCH',
      url: `${R}/01900000-0000-7000-8000-000000000000`,
      headers: json,
      body: '{}',
      status: 404,
      code: 'E_RECORD_NOT_FOUND',
    },
    {
      name: 'missing record delete',
      method: 'DELETE',
      url: `${R}/01900000-0000-7000-8000-000000000000`,
      status: 404,
      code: 'E_RECORD_NOT_FOUND',
    },
    { name: 'restore a live record', method: 'POST', url: `${R}/${roomId}/restore`, status: 404, code: 'E_RECORD_NOT_FOUND' },
    {
      name: 'wrong content type',
      method: 'POST',
      url: R,
      headers: { 'content-type': 'text/plain' },
      body: 'name=x',
      status: 415,
      code: 'E_UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'form content type',
      method: 'POST',
      url: R,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'name=x',
      status: 415,
      code: 'E_UNSUPPORTED_MEDIA_TYPE',
    },
    { name: 'malformed JSON', method: 'POST', url: R, headers: json, body: '{"name":', status: 400, code: 'E_INVALID_JSON' },
    { name: 'empty JSON body', method: 'POST', url: R, headers: json, body: '', status: 400, code: 'E_INVALID_JSON' },
    {
      name: '__proto__ key',
      method: 'POST',
      url: R,
      headers: json,
      body: '{"name":"x","__proto__":{"admin":true}}',
      status: 400,
      code: 'E_INVALID_JSON',
    },
    {
      name: 'constructor.prototype key',
      method: 'POST',
      url: R,
      headers: json,
      body: '{"name":"x","constructor":{"prototype":{"admin":true}}}',
      status: 400,
      code: 'E_INVALID_JSON',
    },
    { name: 'array body', method: 'POST', url: R, headers: json, body: '[1,2]', status: 400, code: 'E_VALIDATION' },
    { name: 'null body', method: 'POST', url: R, headers: json, body: 'null', status: 400, code: 'E_VALIDATION' },
    {
      name: 'oversized body',
      method: 'POST',
      url: R,
      headers: json,
      body: JSON.stringify({ name: 'x'.repeat(5000) }),
      status: 413,
      code: 'E_PAYLOAD_TOO_LARGE',
    },
    {
      name: 'too long',
      method: 'POST',
      url: R,
      headers: json,
      body: JSON.stringify({ name: 'x'.repeat(81) }),
      status: 400,
      code: 'E_VALIDATION',
      contains: ['max_length'],
    },
    { name: 'unknown query parameter', method: 'GET', url: `${R}?colour=red`, status: 400, code: 'E_INVALID_QUERY' },
    { name: 'bad filter', method: 'GET', url: `${R}?filter=name%20%3D%3D`, status: 400, code: 'E_INVALID_FILTER' },
    { name: 'bad sort', method: 'GET', url: `${R}?sort=colour`, status: 400, code: 'E_INVALID_SORT' },
    { name: 'bad fields', method: 'GET', url: `${R}?fields=colour`, status: 400, code: 'E_INVALID_FIELDS' },
    { name: 'bad cursor', method: 'GET', url: `${R}?cursor=abc`, status: 400, code: 'E_INVALID_CURSOR' },
    {
      name: 'stale If-Match',
      method: 'PATCH',
      url: `${R}/${roomId}`,
      headers: { ...json, 'if-match': '"99"' },
      body: '{"name":"x"}',
      status: 412,
      code: 'E_PRECONDITION_FAILED',
    },
    { name: 'purge without credentials', method: 'DELETE', url: `${R}/${roomId}?purge=true`, status: 401, code: 'E_UNAUTHENTICATED' },
    { name: 'purge with a bad flag', method: 'DELETE', url: `${R}/${roomId}?purge=yes`, status: 400, code: 'E_INVALID_QUERY' },
    { name: 'get with a bad deleted flag', method: 'GET', url: `${R}/${roomId}?deleted=all`, status: 400, code: 'E_INVALID_QUERY' },
    {
      name: 'batch',
      method: 'POST',
      url: '/api/v1/batch',
      headers: json,
      body: '{"operations":[{"op":"create","collection":"rooms","data":{"name":"b"}}]}',
      status: 200,
      contains: ['"results"'],
    },
    { name: 'batch envelope', method: 'POST', url: '/api/v1/batch', headers: json, body: '{"ops":[]}', status: 400, code: 'E_VALIDATION' },
    {
      name: 'hook veto keeps its code',
      method: 'POST',
      url: '/api/v1/collections/traps/records',
      headers: json,
      body: '{"mode":"veto"}',
      status: 409,
      code: 'E_CONFLICT',
      contains: ['vetoed by a hook'],
    },
    {
      name: 'a failing after-hook does not fail the committed write',
      method: 'POST',
      url: '/api/v1/collections/traps/records',
      headers: json,
      body: '{"mode":"after"}',
      status: 201,
    },
    {
      name: 'unexpected error is a generic 500',
      method: 'POST',
      url: '/api/v1/collections/traps/records',
      headers: json,
      body: '{"mode":"crash"}',
      status: 500,
      code: 'E_INTERNAL',
    },
  ];

  test('every scenario answers as specified', async () => {
    for (const s of scenarios()) {
      const res = await rampart.server.inject({ method: s.method as 'GET', url: s.url, headers: s.headers, payload: s.body });
      const where = `${s.name}: ${s.method} ${s.url} -> ${res.statusCode} ${res.body.slice(0, 300)}`;
      assert.equal(res.statusCode, s.status, where);
      if (s.code) {
        assert.match(String(res.headers['content-type']), /^application\/problem\+json/, where);
        const p = res.json();
        assert.equal(p.code, s.code, where);
        assert.equal(p.status, s.status, where);
        assert.equal(p.type, `urn:rampart:problem:${s.code}`, where);
        assert.ok(p.title && p.detail && p.request_id, where);
        assert.doesNotMatch(res.body, /\bat \S+ \(|\.ts:\d+|node_modules|secret internal/, `${where}: no stack or internals`);
      }
      for (const c of s.contains ?? []) assert.ok(res.body.includes(c), `${where}: should contain ${c}`);
      for (const [h, re] of Object.entries(s.header ?? {})) assert.match(String(res.headers[h]), re, `${where}: header ${h}`);
    }
  });

  test('the docs page and OpenAPI load nothing from a CDN', async () => {
    const html = (await rampart.server.inject({ method: 'GET', url: '/docs/' })).body;
    assert.doesNotMatch(html, /(src|href)="https?:\/\//);
    const spec = JSON.parse((await rampart.server.inject({ method: 'GET', url: '/api/v1/openapi.json' })).body);
    assert.ok(spec.paths[R].post.requestBody, 'per-collection request bodies are documented');
    assert.deepEqual(spec.paths[R].post.requestBody.content['application/json'].schema.required, ['name']);
  });

  test('request ids: a sane X-Request-Id is kept and logged, a hostile one replaced', async () => {
    const kept = await rampart.server.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'trace-abc.123' } });
    assert.equal(kept.headers['x-request-id'], 'trace-abc.123');
    const replaced = await rampart.server.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': `x${'y'.repeat(300)}` } });
    assert.match(String(replaced.headers['x-request-id']), /^[A-Za-z0-9_-]{8}-[0-9a-z]+$/);
    await new Promise((r) => setTimeout(r, 50));
    const line = logLines.map((l) => JSON.parse(l)).find((l) => l.request_id === 'trace-abc.123');
    assert.ok(line, 'the request line carries the request id');
    assert.equal(line.route, '/healthz');
    assert.equal(line.status, 200);
  });

  test('an unexpected error is logged with its cause and request id', async () => {
    const crash = logLines.map((l) => JSON.parse(l)).find((l) => l.msg === 'unhandled error');
    assert.ok(crash, 'logged');
    assert.ok(crash.request_id);
    assert.match(crash.err.message, /secret internal detail/);
    assert.equal(crash.level, 'error');
  });

  test("the service's own log lines carry the request id", async () => {
    const line = logLines.map((l) => JSON.parse(l)).find((l) => l.msg === 'after-hook failed (the write is committed)');
    assert.ok(line, 'logged');
    assert.ok(line.request_id, 'with the request id');
    assert.match(line.err.message, /after-hook exploded/);
  });

  test('credentials are redacted from logs', async () => {
    rampart.logger.info(
      { req: { headers: { authorization: 'Bearer tok-123', cookie: 'sid=abc' } }, user: { password: 'hunter2', token: 'zzz' } },
      'probe',
    );
    await new Promise((r) => setTimeout(r, 50));
    const probe = logLines.find((l) => l.includes('"probe"'));
    assert.ok(probe);
    for (const secret of ['tok-123', 'sid=abc', 'hunter2', 'zzz']) assert.ok(!probe.includes(secret), `${secret} redacted`);
  });
});

describe('draining', () => {
  test('a request that still arrives while the node stops is served and closes its connection; realtime gets 503 E_SHUTTING_DOWN', async () => {
    const backend = await makeBackend('sqlite');
    const rampart = await createApp(backend.config, app);
    await rampart.start();
    const stopping = rampart.stop();
    const [res, rt] = await Promise.all([
      rampart.server.inject({ method: 'GET', url: R }),
      rampart.server.inject({ method: 'GET', url: '/api/v1/realtime/events' }),
    ]);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers.connection, 'close');
    assert.equal(rt.statusCode, 503);
    assert.equal(rt.json().code, 'E_SHUTTING_DOWN');
    assert.equal(rt.headers['retry-after'], '1');
    await stopping;
    await backend.cleanup();
  });
});

describe('busy database', () => {
  test('a write lock held elsewhere fails that write with 503 + Retry-After; reads go on; writes resume', async () => {
    const backend = await makeBackend('sqlite', { RAMPART_SQLITE_BUSY_TIMEOUT_MS: '200' });
    const rampart = await createApp(backend.config, app);
    await rampart.start();
    const { SqliteDatabase } = await import('../../src/storage/sqlite/driver.js');
    const other = new SqliteDatabase(`${backend.config.storage.dataDir}/rampart.db`);
    try {
      other.exec('begin immediate'); // another process holds the write lock past the busy timeout
      const blocked = await rampart.server.inject({ method: 'POST', url: R, headers: json, payload: '{"name":"waits"}' });
      assert.equal(blocked.statusCode, 503);
      assert.equal(blocked.json().code, 'E_DB_UNAVAILABLE');
      assert.ok(blocked.headers['retry-after']);
      // A busy lock is not a lost database: the node-wide fast-fail gate stays open for reads.
      const read = await rampart.server.inject({ method: 'GET', url: R });
      assert.equal(read.statusCode, 200);
      other.exec('commit');
      const after = await rampart.server.inject({ method: 'POST', url: R, headers: json, payload: '{"name":"goes"}' });
      assert.equal(after.statusCode, 201);
      const names = (await rampart.server.inject({ method: 'GET', url: R })).json().items.map((r: { name: string }) => r.name);
      assert.deepEqual(names, ['goes'], 'the refused write left nothing behind');
    } finally {
      if (other.inTransaction) other.exec('rollback');
      other.close();
      await rampart.stop();
      await backend.cleanup();
    }
  });
});
