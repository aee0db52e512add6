/**
 * The console's static files through the real server: the page and its assets with their own
 * policy and caching, a missing file a 404 problem (not a 405 for a method the route takes),
 * `/_` sent to `/_/`, an unbuilt console a clear 503; and callback-style handlers (static files,
 * the /docs page's assets) answer with their bodies.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify from 'fastify';
import { registerConsole } from '../../src/http/console.js';
import { startTestApp, type TestApp } from '../helpers/app.js';

describe('admin console files', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp('sqlite');
  });
  after(() => t.close());

  test('the page, an asset, a missing file, the bare prefix and the docs assets', async () => {
    const page = await fetch(`${t.url}/_/`);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.match(html, /<div id="app"><\/div>/);
    assert.equal(page.headers.get('cache-control'), 'no-cache');
    const asset = /src="(\/_\/assets\/[^"]+\.js)"/.exec(html)?.[1] as string;
    const js = await fetch(`${t.url}${asset}`);
    assert.equal(js.status, 200);
    assert.ok((await js.arrayBuffer()).byteLength > 10_000, 'the bundle has a body');
    assert.equal(js.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    const missing = await fetch(`${t.url}/_/assets/nothing-here.js`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { code: string }).code, 'E_ROUTE_NOT_FOUND');
    const bare = await fetch(`${t.url}/_`, { redirect: 'manual' });
    assert.equal(bare.status, 302);
    assert.equal(bare.headers.get('location'), '/_/');
    const css = await fetch(`${t.url}/docs/static/swagger-ui.css`);
    assert.equal(css.status, 200);
    assert.ok((await css.text()).length > 10_000, 'the docs stylesheet has a body');
  });

  test('an unbuilt console answers 503 E_CONSOLE_NOT_BUILT with the command to run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rampart-console-'));
    const app = Fastify();
    try {
      await registerConsole(app, dir);
      const res = await app.inject('/_/');
      assert.equal(res.statusCode, 503);
      const body = JSON.parse(res.body) as { code: string; detail: string };
      assert.equal(body.code, 'E_CONSOLE_NOT_BUILT');
      assert.match(body.detail, /npm run build/);
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
