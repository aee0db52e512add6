/**
 * Security headers, CORS and HSTS as a browser sees them: every API answer is nosniff, not
 * framable and runs nothing; HSTS only over HTTPS (a trusted proxy's X-Forwarded-Proto, never a
 * client's); CORS only for the configured origins.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../helpers/app.js';

const ROOMS = '/api/v1/collections/rooms/records';

describe('security headers', () => {
  let t: TestApp;
  let plain: TestApp;
  before(async () => {
    t = await startTestApp('sqlite', undefined, {
      RAMPART_CORS_ORIGINS: 'https://app.example.com,http://localhost:5173',
      RAMPART_TRUST_PROXY: '127.0.0.1',
    });
    plain = await startTestApp('sqlite');
  });
  after(async () => {
    await t?.close();
    await plain?.close();
  });

  test('API answers, successes and problems alike, carry the protective headers', async () => {
    for (const [method, url] of [
      ['GET', ROOMS],
      ['GET', `${ROOMS}/not-an-id`],
      ['DELETE', '/api/v1/nowhere'],
      ['GET', '/healthz'],
    ]) {
      const r = await plain.req(method as string, url as string);
      assert.equal(r.headers['x-content-type-options'], 'nosniff', url);
      assert.equal(r.headers['content-security-policy'], "default-src 'none';frame-ancestors 'none'", url);
      assert.equal(r.headers['x-frame-options'], 'DENY', url);
      assert.equal(r.headers['x-xss-protection'], undefined, 'no headers for old browsers');
      assert.equal(r.headers['cross-origin-resource-policy'], 'same-origin', url);
      assert.equal(r.headers['strict-transport-security'], undefined, `no HSTS over plain HTTP: ${url}`);
      assert.equal(r.headers['x-powered-by'], undefined);
    }
    const page = await plain.req('GET', '/auth/reset-password');
    assert.match(String(page.headers['content-security-policy']), /script-src 'sha256-/, 'a page keeps its own policy');
    assert.equal(page.headers['referrer-policy'], 'no-referrer', 'and its own referrer policy');
    for (const url of ['/docs', '/docs/static/swagger-ui.css']) {
      const docs = await plain.req('GET', url);
      assert.equal(docs.status, 200, url);
      const csp = String(docs.headers['content-security-policy']);
      assert.match(csp, /default-src 'self'/, 'the docs page allows its own assets only');
      assert.ok(!/https:|upgrade-insecure|validator/.test(csp), csp);
    }
  });

  test('HSTS only for HTTPS requests: a trusted proxy may say so, a client cannot', async () => {
    const viaProxy = await t.req('GET', ROOMS, undefined, { 'x-forwarded-proto': 'https' });
    assert.equal(viaProxy.headers['strict-transport-security'], 'max-age=15552000; includeSubDomains');
    const spoofed = await plain.req('GET', ROOMS, undefined, { 'x-forwarded-proto': 'https' });
    assert.equal(spoofed.headers['strict-transport-security'], undefined, 'no trusted proxy: the header is ignored');
    assert.equal((await t.req('GET', ROOMS)).headers['strict-transport-security'], undefined, 'plain HTTP through the proxy');
  });

  test('CORS: configured origins may call and read the API; others get no CORS headers', async () => {
    const preflight = await t.req('OPTIONS', ROOMS, undefined, {
      origin: 'https://app.example.com',
      'access-control-request-method': 'PATCH',
      'access-control-request-headers': 'authorization, content-type, if-match, x-app-version',
    });
    assert.equal(preflight.status, 204, preflight.raw);
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.match(String(preflight.headers['access-control-allow-methods']), /PATCH/);
    assert.match(String(preflight.headers['access-control-allow-headers']), /authorization.*if-match.*x-app-version/);
    assert.equal(preflight.headers['access-control-max-age'], '600');
    assert.equal(preflight.headers['access-control-allow-credentials'], undefined);
    const get = await t.req('GET', ROOMS, undefined, { origin: 'http://localhost:5173' });
    assert.equal(get.headers['access-control-allow-origin'], 'http://localhost:5173');
    assert.match(String(get.headers['access-control-expose-headers']), /etag.*location.*retry-after/);
    assert.match(String(get.headers.vary), /origin/i);
    assert.equal(get.headers['cross-origin-resource-policy'], 'cross-origin');
    const evil = await t.req('GET', ROOMS, undefined, { origin: 'https://evil.example' });
    assert.equal(evil.headers['access-control-allow-origin'], undefined);
    const none = await plain.req('GET', ROOMS, undefined, { origin: 'https://app.example.com' });
    assert.equal(none.headers['access-control-allow-origin'], undefined, 'no origins configured: no CORS');
  });
});
