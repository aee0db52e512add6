/**
 * API versions side by side: v1 and v2 serve the same routes from the same core, v2's lists have
 * their own shape, a deprecated version says so on every answer, and requests are counted per
 * version.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../helpers/app.js';

describe('API versions', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp('sqlite', undefined, {
      RAMPART_API_DEPRECATIONS: JSON.stringify({ v1: { deprecated: '2026-12-01', sunset: '2027-06-30T00:00:00Z' } }),
    });
    for (const name of ['alpha', 'beta', 'gamma']) {
      assert.equal((await t.req('POST', '/api/v2/collections/rooms/records', { name })).status, 201);
    }
  });
  after(async () => t?.close());

  test('v2 lists are { data, page }; v1 lists keep { items, next_cursor, total }; cursors work across both', async () => {
    const v1 = await t.req('GET', '/api/v1/collections/rooms/records?limit=2&count=true&sort=name');
    assert.deepEqual(Object.keys(v1.body).sort(), ['items', 'next_cursor', 'total']);
    const v2 = await t.req('GET', '/api/v2/collections/rooms/records?limit=2&count=true&sort=name');
    assert.deepEqual(Object.keys(v2.body).sort(), ['data', 'page']);
    assert.deepEqual(
      v2.body.data.map((r: { name: string }) => r.name),
      ['alpha', 'beta'],
    );
    assert.deepEqual(v2.body.data, v1.body.items);
    assert.equal(v2.body.page.total, 3);
    assert.equal(v2.body.page.next_cursor, v1.body.next_cursor);
    const rest = await t.req('GET', `/api/v2/collections/rooms/records?limit=2&sort=name&cursor=${v1.body.next_cursor}`);
    assert.deepEqual(
      rest.body.data.map((r: { name: string }) => r.name),
      ['gamma'],
    );
    assert.deepEqual(rest.body.page, { next_cursor: null });
    // Everything else is the same route: a record, a problem, a batch.
    const one = await t.req('GET', `/api/v2/collections/rooms/records/${v1.body.items[0].id}`);
    assert.deepEqual(one.body, v1.body.items[0]);
    const bad = await t.req('GET', '/api/v2/collections/rooms/records?limit=0');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'E_INVALID_QUERY');
    assert.equal((await t.req('GET', '/api/v2/collections/nope/records')).body.code, 'E_COLLECTION_NOT_FOUND');
  });

  test('a deprecated version carries Deprecation, Sunset and a Link to the changelog on every answer', async () => {
    for (const url of ['/api/v1/collections/rooms/records', '/api/v1/collections/nope/records', '/api/v1/auth/me']) {
      const r = await t.req('GET', url);
      assert.equal(r.headers.deprecation, `@${Date.parse('2026-12-01') / 1000}`, url);
      assert.equal(r.headers.sunset, 'Wed, 30 Jun 2027 00:00:00 GMT', url);
      assert.equal(
        r.headers.link,
        '</api/changelog>; rel="deprecation"; type="text/markdown", </api/changelog>; rel="sunset"; type="text/markdown"',
      );
    }
    const v2 = await t.req('GET', '/api/v2/collections/rooms/records');
    assert.equal(v2.headers.deprecation, undefined);
    assert.equal(v2.headers.sunset, undefined);
    const log = await t.req('GET', '/api/changelog');
    assert.equal(log.status, 200);
    assert.match(String(log.headers['content-type']), /text\/markdown/);
    assert.match(log.raw, /## v2[\s\S]*Breaking: list answers are/);
  });

  test('requests are counted per version', async () => {
    const text = (await t.req('GET', '/metrics')).raw;
    const count = (v: string) => Number(new RegExp(`rampart_api_requests_total\\{version="${v}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
    assert.ok(count('v1') >= 4, `v1 ${count('v1')}`);
    assert.ok(count('v2') >= 8, `v2 ${count('v2')}`);
  });
});
