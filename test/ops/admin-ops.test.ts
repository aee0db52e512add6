/**
 * The admin API the console's pages use, on both backends: a user's sessions and devices seen
 * and ended by an admin (the ended session's token stops at once); backups listed, taken and
 * verified as jobs, and downloaded.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startTestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';

for (const { name, skip } of await backendMatrix()) {
  describe(`admin API for operators (${name})`, { skip }, () => {
    test("a user's sessions and devices: listed and ended by an admin", async () => {
      const t = await startTestApp(name);
      try {
        const admin = await t.signIn({ role: 'admin' });
        const user = await t.signIn();
        const login = await t.req('POST', '/api/v1/auth/login', { email: user.email, password: user.password });
        const second = { sessionId: login.body.session_id as string, auth: { authorization: `Bearer ${login.body.access_token}` } };
        assert.equal(
          (await t.req('POST', '/api/v1/devices', { provider: 'apns', token: `apns${'0a'.repeat(16)}` }, user.auth)).status,
          201,
        );
        const sessions = await t.req('GET', `/api/v1/admin/users/${user.id}/sessions`, undefined, admin.auth);
        assert.equal(sessions.status, 200, sessions.raw);
        // Sign-up signed in too: three sessions.
        const ids = sessions.body.items.map((s: { id: string }) => s.id);
        assert.equal(ids.length, 3);
        assert.ok(ids.includes(user.sessionId) && ids.includes(second.sessionId));
        const devices = await t.req('GET', `/api/v1/admin/users/${user.id}/devices`, undefined, admin.auth);
        assert.equal(devices.body.items.length, 1);
        assert.equal(devices.body.items[0].provider, 'apns');
        // End one: its token stops at once, the other keeps working.
        assert.equal(
          (await t.req('DELETE', `/api/v1/admin/users/${user.id}/sessions/${second.sessionId}`, undefined, admin.auth)).status,
          204,
        );
        assert.equal((await t.req('GET', '/api/v1/auth/me', undefined, second.auth)).status, 401);
        assert.equal((await t.req('GET', '/api/v1/auth/me', undefined, user.auth)).status, 200);
        assert.equal(
          (await t.req('DELETE', `/api/v1/admin/users/${user.id}/sessions/${second.sessionId}`, undefined, admin.auth)).status,
          404,
        );
        const all = await t.req('DELETE', `/api/v1/admin/users/${user.id}/sessions`, undefined, admin.auth);
        assert.deepEqual(all.body, { ended: 2 });
        assert.equal((await t.req('GET', '/api/v1/auth/me', undefined, user.auth)).status, 401);
        // Users cannot; bad ids are a 400.
        const other = await t.signIn();
        assert.equal((await t.req('GET', `/api/v1/admin/users/${user.id}/sessions`, undefined, other.auth)).status, 403);
        assert.equal((await t.req('GET', '/api/v1/admin/users/not-a-uuid/sessions', undefined, admin.auth)).status, 400);
      } finally {
        await t.close();
      }
    });
  });
}

describe('admin API for backups', () => {
  test('listed, taken and verified as jobs, downloaded', async () => {
    const target = mkdtempSync(join(tmpdir(), 'rampart-bk-'));
    const t = await startTestApp('sqlite', undefined, {
      RAMPART_BACKUP_KEY: randomBytes(32).toString('base64'),
      RAMPART_BACKUP_TARGET: target,
    });
    try {
      const admin = await t.signIn({ role: 'admin' });
      const taken = await t.req('POST', '/api/v1/admin/backups', undefined, admin.auth);
      assert.equal(taken.status, 202, taken.raw);
      await t.app.jobs.settle({ queues: ['rampart.backups'] });
      const list = await t.req('GET', '/api/v1/admin/backups', undefined, admin.auth);
      assert.equal(list.body.items.length, 1);
      const id = list.body.items[0].id as string;
      assert.equal((await t.req('POST', `/api/v1/admin/backups/${id}/verify`, undefined, admin.auth)).status, 202);
      await t.app.jobs.settle({ queues: ['rampart.backups'] });
      const verified = await t.req('GET', '/api/v1/admin/backups', undefined, admin.auth);
      assert.equal(verified.body.items[0].verified.ok, true);
      const data = await t.app.server.inject({ method: 'GET', url: `/api/v1/admin/backups/${id}/download`, headers: admin.auth });
      assert.equal(data.statusCode, 200);
      assert.equal(data.headers['content-disposition'], `attachment; filename="${id}.rbk"`);
      assert.ok(data.rawPayload.equals(readFileSync(join(target, `${id}.rbk`))), 'the sealed file, byte for byte');
      const manifest = await t.req('GET', `/api/v1/admin/backups/${id}/download?part=manifest`, undefined, admin.auth);
      assert.equal(manifest.body.id, id);
      assert.equal((await t.req('GET', '/api/v1/admin/backups/rampart-sqlite-nope/download', undefined, admin.auth)).status, 404);
      assert.equal((await t.req('GET', `/api/v1/admin/backups/${id}/download?part=x`, undefined, admin.auth)).status, 400);
      const audit = await t.app.audit.query({ action: 'backup.', limit: 10 });
      assert.deepEqual(audit.entries.map((e) => e.action).sort(), ['backup.created', 'backup.verified']);
    } finally {
      await t.close();
      rmSync(target, { recursive: true, force: true });
    }
  });
});
