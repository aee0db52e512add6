/**
 * App-version policy on every backend: the version matrix (below the minimum, between, at and
 * past the latest, pre-releases, short versions, missing and bad headers), the admin API with
 * its validation, and a change applied by another node at once (PostgreSQL NOTIFY).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createApp } from '../../src/app.js';
import { type SignedIn, startTestApp, type TestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';

const ROOMS = '/api/v1/collections/rooms/records';
const POLICY = '/api/v1/admin/app-versions';

for (const { name, skip } of await backendMatrix()) {
  describe(`app-version policy (${name})`, { skip }, () => {
    let t: TestApp;
    let admin: SignedIn;
    before(async () => {
      t = await startTestApp(name);
      admin = await t.signIn({ role: 'admin' });
      const r = await t.req(
        'PUT',
        `${POLICY}/ios`,
        { latest: '2.3.0', minimum: '2.0.0', store_url: 'itms-apps://apps.apple.com/app/id123', message: 'Please update Rampart Chat.' },
        admin.auth,
      );
      assert.equal(r.status, 200, r.raw);
    });
    after(async () => t?.close());

    const call = (platform: string | undefined, version: string | undefined, path = ROOMS) =>
      t.req('GET', path, undefined, {
        ...(platform === undefined ? {} : { 'x-app-platform': platform }),
        ...(version === undefined ? {} : { 'x-app-version': version }),
      });

    test('the version matrix: below the minimum 426, below the latest a soft header, else nothing', async () => {
      const cases: Array<[string, 'hard' | 'soft' | 'none']> = [
        ['1.9.9', 'hard'],
        ['2.0.0-rc.1', 'hard'],
        ['1', 'hard'],
        ['2.0.0', 'soft'],
        ['2.2', 'soft'],
        ['v2.1.0', 'soft'],
        ['2.3.0-beta.1', 'soft'],
        ['2.3.0-beta.1+build.7', 'soft'],
        ['2.3.0', 'none'],
        ['2.3.0+build.9', 'none'],
        ['2.3.1', 'none'],
        ['10.0.0', 'none'],
      ];
      for (const [version, expected] of cases) {
        const r = await call('ios', version);
        const check = await t.req('GET', `/api/v1/app/version-check?platform=ios&version=${encodeURIComponent(version)}`);
        assert.equal(check.status, 200, check.raw);
        assert.equal(check.body.status, expected, `version-check ${version}`);
        if (expected === 'hard') {
          assert.equal(r.status, 426, `${version}: ${r.raw}`);
          assert.equal(r.body.code, 'E_UPGRADE_REQUIRED');
          assert.equal(r.body.store_url, 'itms-apps://apps.apple.com/app/id123');
          assert.equal(r.body.minimum, '2.0.0');
          assert.equal(r.body.latest, '2.3.0');
          assert.equal(r.body.detail, 'Please update Rampart Chat.');
          assert.match(String(r.headers['content-type']), /problem\+json/);
        } else {
          assert.equal(r.status, 200, `${version}: ${r.raw}`);
          assert.equal(r.headers['x-app-update'], expected === 'soft' ? 'soft' : undefined, version);
          if (expected === 'soft') assert.equal(r.headers['x-app-latest-version'], '2.3.0');
        }
      }
      process.stdout.write(`# ${name}: ${cases.length} versions checked through the API and version-check\n`);
    });

    test('without both headers, for other platforms and off the API nothing changes; a malformed version is a 400', async () => {
      assert.equal((await call(undefined, undefined)).status, 200);
      assert.equal((await call('ios', undefined)).status, 200, 'platform alone');
      assert.equal((await call(undefined, '1.0.0')).status, 200, 'version alone');
      assert.equal((await call('android', '0.0.1')).status, 200, 'no policy for android');
      assert.equal((await call('windows', '0.0.1')).status, 200, 'unknown platform: no policy');
      assert.equal((await call('ios', '1.0.0', '/healthz')).status, 200, 'health is not the API');
      const hardCheck = await call('ios', '1.0.0', '/api/v1/app/version-check?platform=ios&version=1.0.0');
      assert.equal(hardCheck.status, 200, 'the version check answers an outdated app');
      for (const bad of ['abc', '1.2.3.4', '01.2.3', '', '1.2.3-', 'x'.repeat(70)]) {
        const r = await call('ios', bad);
        assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${r.raw}`);
        assert.equal(r.body.code, 'E_BAD_REQUEST');
      }
      for (const q of ['platform=ios', 'platform=ios&version=abc', 'platform=windows&version=1.0.0', 'version=1.0.0']) {
        const r = await t.req('GET', `/api/v1/app/version-check?${q}`);
        assert.equal(r.status, 400, q);
        assert.equal(r.body.code, 'E_INVALID_QUERY');
      }
      const android = await t.req('GET', '/api/v1/app/version-check?platform=android&version=1.0.0');
      assert.deepEqual(android.body, { status: 'none', latest: null, minimum: null, store_url: null, message: null });
    });

    test('admins set, list and remove policies; input is checked; others are refused', async () => {
      const user = await t.signIn();
      assert.equal((await t.req('PUT', `${POLICY}/web`, { latest: '1.0.0', minimum: '1.0.0' }, user.auth)).status, 403);
      assert.equal((await t.req('GET', POLICY, undefined, user.auth)).status, 403);
      assert.equal((await t.req('PUT', `${POLICY}/web`, { latest: '1.0.0', minimum: '1.0.0' })).status, 401);
      const bad = await t.req(
        'PUT',
        `${POLICY}/web`,
        { latest: '1.0.0', minimum: '1.2.0', store_url: 'javascript:alert(1)', message: 7, extra: true },
        admin.auth,
      );
      assert.equal(bad.status, 400);
      assert.deepEqual(bad.body.errors.map((e: { field: string }) => e.field).sort(), ['extra', 'message', 'minimum', 'store_url']);
      const notVersions = await t.req('PUT', `${POLICY}/web`, { latest: 'latest', minimum: null }, admin.auth);
      assert.deepEqual(notVersions.body.errors.map((e: { field: string }) => e.field).sort(), ['latest', 'minimum']);
      assert.equal((await t.req('PUT', `${POLICY}/windows`, { latest: '1.0.0', minimum: '1.0.0' }, admin.auth)).status, 404);
      const web = await t.req(
        'PUT',
        `${POLICY}/web`,
        { latest: '3.1', minimum: '3.0.0-beta.1', store_url: 'https://app.example.com' },
        admin.auth,
      );
      assert.equal(web.status, 200, web.raw);
      assert.equal(web.body.latest, '3.1.0', 'normalized');
      assert.equal(web.body.updated_by, admin.id);
      const list = await t.req('GET', POLICY, undefined, admin.auth);
      assert.deepEqual(
        list.body.items.map((p: { platform: string }) => p.platform),
        ['ios', 'web'],
      );
      assert.equal((await call('web', '3.0.0-alpha')).status, 426);
      assert.equal((await t.req('DELETE', `${POLICY}/web`, undefined, admin.auth)).status, 204);
      assert.equal((await call('web', '3.0.0-alpha')).status, 200, 'removed: no prompt');
      const again = await t.req('DELETE', `${POLICY}/web`, undefined, admin.auth);
      assert.equal(again.status, 404);
      assert.equal(again.body.code, 'E_POLICY_NOT_FOUND');
    });

    test('metrics count requests by platform and update status', async () => {
      const text = (await t.req('GET', '/metrics')).raw;
      assert.match(text, /rampart_app_version_requests_total\{platform="ios",status="hard"\} [1-9]/);
      assert.match(text, /rampart_app_version_requests_total\{platform="ios",status="soft"\} [1-9]/);
    });

    test('a change on one node applies on another at once', { skip: name === 'sqlite' && 'one node per SQLite file' }, async () => {
      const other = await createApp(t.backend.config, (await import('../fixtures/open-chat.ts')).default);
      await other.start();
      try {
        const ask = async () =>
          (await other.server.inject({ method: 'GET', url: ROOMS, headers: { 'x-app-platform': 'android', 'x-app-version': '1.0.0' } }))
            .statusCode;
        assert.equal(await ask(), 200);
        const started = Date.now();
        assert.equal((await t.req('PUT', `${POLICY}/android`, { latest: '2.0.0', minimum: '1.5.0' }, admin.auth)).status, 200);
        while ((await ask()) !== 426) {
          assert.ok(Date.now() - started < 5000, 'the other node did not apply the policy within 5 s');
          await new Promise((r) => setTimeout(r, 20));
        }
        process.stdout.write(`# ${name}: the other node applied the new policy after ${Date.now() - started} ms\n`);
      } finally {
        await other.stop();
      }
    });
  });
}
