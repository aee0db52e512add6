/**
 * The audit log over HTTP on both backends: sign-ins and failed sign-ins, refresh-token reuse,
 * session revocation, a role change, admin actions; queried by admins with filters and pages,
 * refused to others; retention; rule changes recorded once per change.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { startTestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';

for (const { name, skip } of await backendMatrix()) {
  describe(`audit log (${name})`, { skip }, () => {
    test('security events and admin actions are recorded and queryable by admins only', async () => {
      const t = await startTestApp(name, undefined, { RAMPART_REFRESH_GRACE_S: '0' });
      try {
        const admin = await t.signIn({ role: 'admin' });
        const user = await t.signIn();
        // A failed sign-in, a refresh-token reuse, a session revoked, a role change, an admin action.
        assert.equal((await t.req('POST', '/api/v1/auth/login', { email: user.email, password: 'wrong password!' })).status, 401);
        const first = await t.req('POST', '/api/v1/auth/refresh', { refresh_token: user.refresh });
        assert.equal(first.status, 200);
        const reuse = await t.req('POST', '/api/v1/auth/refresh', { refresh_token: user.refresh });
        assert.equal(reuse.status, 401);
        const other = await t.signIn({ email: `x-${Date.now()}@example.com` });
        assert.equal((await t.req('DELETE', `/api/v1/auth/sessions/${other.sessionId}`, undefined, other.auth)).status, 204);
        const patch = await t.req('PATCH', `/api/v1/collections/users/records/${other.id}`, { role: 'admin' }, admin.auth);
        assert.equal(patch.status, 200, patch.raw);
        assert.equal((await t.req('POST', '/api/v1/admin/queues/rampart.mail/pause', undefined, admin.auth)).status < 300, true);

        // Entries are written after each answer went out: give the last one a moment.
        let all = await t.req('GET', '/api/v1/admin/audit?limit=100', undefined, admin.auth);
        for (let i = 0; i < 50 && !all.raw.includes('admin.queues.pause'); i++) {
          await new Promise((r) => setTimeout(r, 20));
          all = await t.req('GET', '/api/v1/admin/audit?limit=100', undefined, admin.auth);
        }
        assert.equal(all.status, 200, all.raw);
        const actions = all.body.items.map((e: { action: string; outcome: string }) => `${e.action}:${e.outcome}`);
        for (const expected of [
          'auth.login:success',
          'auth.login:failure',
          'auth.refresh_token_reused:failure',
          'session.revoked:success',
          'user.role_changed:success',
          'admin.queues.pause:success',
          'rules.changed:success',
        ]) {
          assert.ok(actions.includes(expected), `${expected} in ${actions.join(', ')}`);
        }
        const failed = all.body.items.find(
          (e: { action: string; outcome: string }) => e.action === 'auth.login' && e.outcome === 'failure',
        );
        assert.equal(failed.details.email, user.email.toLowerCase());
        assert.equal(failed.details.code, 'E_INVALID_CREDENTIALS');
        assert.ok(!JSON.stringify(all.body).includes('wrong password!'), 'no password in the audit log');
        const role = all.body.items.find((e: { action: string }) => e.action === 'user.role_changed');
        assert.deepEqual(role.target, { type: 'user', id: other.id });
        assert.equal(role.actor.id, admin.id);
        // Filters and pages.
        const auth = await t.req('GET', '/api/v1/admin/audit?action=auth.&limit=2', undefined, admin.auth);
        assert.equal(auth.body.items.length, 2);
        assert.ok(auth.body.items.every((e: { action: string }) => e.action.startsWith('auth.')));
        const page2 = await t.req('GET', `/api/v1/admin/audit?action=auth.&limit=2&cursor=${auth.body.next_cursor}`, undefined, admin.auth);
        assert.equal(page2.status, 200);
        assert.ok(page2.body.items[0].id < auth.body.items[1].id, 'the next page is older');
        const byActor = await t.req('GET', `/api/v1/admin/audit?actor=${user.id}`, undefined, admin.auth);
        assert.ok(byActor.body.items.length >= 1 && byActor.body.items.every((e: { actor: { id: string } }) => e.actor.id === user.id));
        // Not for users; bad input is a 400.
        assert.equal((await t.req('GET', '/api/v1/admin/audit', undefined, user.auth)).status, 401);
        assert.equal((await t.req('GET', '/api/v1/admin/audit?since=yesterday', undefined, admin.auth)).body.code, 'E_INVALID_QUERY');
        // Rules are recorded once: a restart with the same rules adds nothing.
        assert.equal(await t.app.audit.recordRules(Object.fromEntries(t.app.collections.map((c) => [c.name, c.rules ?? {}]))), false);
        // Retention: nothing here is older than a day.
        assert.equal(await t.app.audit.sweep(1), 0);
        process.stdout.write(`# ${name}: ${all.body.items.length} audit entries: ${[...new Set(actions)].join(', ')}\n`);
      } finally {
        await t.close();
      }
    });
  });
}
