/** Accounts, sessions and tokens on every backend, through the HTTP API, with a hand-moved clock. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { importJWK, type JWK, SignJWT } from 'jose';
import { SigningKeys } from '../../src/auth/keys.js';
import { startTestApp, type TestApp, TestClock } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';

const A = '/api/v1/auth';
const USERS = '/api/v1/collections/users/records';
const tokenIn = (mail: string) => /token=(ot_[A-Za-z0-9_-]+)/.exec(mail)?.[1] as string;

for (const { name, skip } of await backendMatrix()) {
  describe(`accounts and sessions (${name})`, { skip }, () => {
    let t: TestApp;
    const clock = new TestClock();
    // A fresh admin each time: tests move the clock past access token lifetimes.
    const admin = async () => (await t.signIn({ role: 'admin' })).auth;
    before(async () => {
      t = await startTestApp(name, undefined, { RAMPART_REFRESH_GRACE_S: '10', RAMPART_ACCOUNT_RETENTION_DAYS: '30' }, { clock });
    });
    after(async () => t?.close());

    test('sign-up, me, and the password hash is never returned', async () => {
      const email = `Mixed.Case-${name}@Example.com`;
      const r = await t.req('POST', `${A}/signup`, { email, password: 'a good password' });
      assert.equal(r.status, 201);
      assert.equal(r.headers['cache-control'], 'no-store');
      assert.equal(r.body.user.email, email.toLowerCase());
      assert.equal(r.body.user.role, 'user');
      assert.equal(r.body.user.email_verified, false);
      assert.equal(r.body.token_type, 'Bearer');
      assert.equal(r.body.expires_in, 900);
      assert.match(r.body.refresh_token, /^rt_/);
      const auth = { authorization: `Bearer ${r.body.access_token}` };
      const me = await t.req('GET', `${A}/me`, undefined, auth);
      assert.equal(me.body.id, r.body.user.id);
      const own = await t.req('GET', `${USERS}/${r.body.user.id}`, undefined, auth);
      const asAdmin = await t.req(
        'GET',
        `${USERS}?filter=${encodeURIComponent(`email = "${email.toLowerCase()}"`)}`,
        undefined,
        await admin(),
      );
      for (const body of [r.raw, me.raw, own.raw, asAdmin.raw]) assert.doesNotMatch(body, /password_hash|argon2/);
      assert.equal(asAdmin.body.items.length, 1);
      const sneaky = await t.req('GET', `${USERS}?filter=${encodeURIComponent('password_hash != null')}`, undefined, await admin());
      assert.equal(sneaky.status, 400, 'hidden fields cannot be filtered on either');
      const again = await t.req('POST', `${A}/signup`, { email: email.toUpperCase(), password: 'another password' });
      assert.equal(again.status, 409);
      assert.equal(again.body.code, 'E_UNIQUE_VIOLATION');
      const weak = await t.req('POST', `${A}/signup`, { email: `weak-${name}@example.com`, password: 'short' });
      assert.equal(weak.status, 400);
      assert.equal(weak.body.errors[0].code, 'min_length');
      const bad = await t.req('POST', `${A}/signup`, { email: 'not an email', password: 'long enough' });
      assert.equal(bad.status, 400);
    });

    test('login: wrong password and unknown email give the same answer', async () => {
      const u = await t.signIn();
      const wrong = await t.req('POST', `${A}/login`, { email: u.email, password: 'not the password' });
      const unknown = await t.req('POST', `${A}/login`, { email: `nobody-${name}@example.com`, password: 'not the password' });
      assert.equal(wrong.status, 401);
      const strip = (b: Record<string, unknown>) => ({ ...b, request_id: undefined });
      assert.deepEqual(strip(wrong.body), strip(unknown.body));
      assert.equal(wrong.body.code, 'E_INVALID_CREDENTIALS');
    });

    test('refresh rotates; a rotated token inside the grace window returns the same successor; after it, reuse ends the session', async () => {
      const u = await t.signIn();
      const first = await t.req('POST', `${A}/refresh`, { refresh_token: u.refresh });
      assert.equal(first.status, 200);
      assert.notEqual(first.body.refresh_token, u.refresh);
      const again = await t.req('POST', `${A}/refresh`, { refresh_token: u.refresh });
      assert.equal(again.status, 200, 'a concurrent retry within the grace window');
      assert.equal(again.body.refresh_token, first.body.refresh_token, 'the same successor');
      clock.advance(11_000);
      const reuse = await t.req('POST', `${A}/refresh`, { refresh_token: u.refresh });
      assert.equal(reuse.status, 401);
      assert.equal(reuse.body.code, 'E_SESSION_REVOKED');
      const successor = await t.req('POST', `${A}/refresh`, { refresh_token: first.body.refresh_token });
      assert.equal(successor.status, 401, 'the whole family is revoked, the successor too');
      const access = await t.req('GET', `${A}/me`, undefined, { authorization: `Bearer ${first.body.access_token}` });
      assert.equal(access.status, 401, "the session's access tokens stop at once");
      assert.equal(access.body.code, 'E_SESSION_REVOKED');
    });

    test('a forged refresh token with a known session id proves nothing and ends nothing', async () => {
      const u = await t.signIn();
      const rotated = (await t.req('POST', `${A}/refresh`, { refresh_token: u.refresh })).body.refresh_token as string;
      const [, sid] = /^rt_([^.]+)\./.exec(rotated) as RegExpExecArray;
      for (const forged of [
        `rt_${sid}.1.${'A'.repeat(43)}`,
        `rt_${sid}.2.${'B'.repeat(43)}`,
        `rt_${sid}.9.${'C'.repeat(43)}`,
        `rt_${sid}.1`,
        'rt_garbage',
      ]) {
        const r = await t.req('POST', `${A}/refresh`, { refresh_token: forged });
        assert.equal(r.status, 401);
        assert.equal(r.body.code, 'E_INVALID_TOKEN', forged);
      }
      assert.equal((await t.req('POST', `${A}/refresh`, { refresh_token: rotated })).status, 200, 'the session lives on');
    });

    test('reuse of a token several rotations old is recognized and ends the session', async () => {
      const u = await t.signIn();
      let token = u.refresh;
      for (let i = 0; i < 5; i++) token = (await t.req('POST', `${A}/refresh`, { refresh_token: token })).body.refresh_token;
      const old = await t.req('POST', `${A}/refresh`, { refresh_token: u.refresh });
      assert.equal(old.status, 401);
      assert.equal(old.body.code, 'E_SESSION_REVOKED');
      assert.equal((await t.req('POST', `${A}/refresh`, { refresh_token: token })).status, 401, "the thief's newest token is dead too");
    });

    test('50 parallel refreshes with one token: all succeed with the same successor, one rotation', async () => {
      const u = await t.signIn();
      const results = await Promise.all(Array.from({ length: 50 }, () => t.req('POST', `${A}/refresh`, { refresh_token: u.refresh })));
      const statuses = results.map((r) => r.status);
      const successors = new Set(results.map((r) => r.body.refresh_token));
      process.stdout.write(
        `# ${name}: 50 parallel refreshes -> ${statuses.filter((s) => s === 200).length}x 200, ${successors.size} distinct successor(s)\n`,
      );
      assert.deepEqual([...new Set(statuses)], [200]);
      assert.equal(successors.size, 1);
      const session = await t.app.storage.db
        .selectFrom('_rampart_sessions')
        .select('generation')
        .where('id', '=', u.sessionId)
        .executeTakeFirstOrThrow();
      assert.equal(Number(session.generation), 2, 'the chain advanced exactly once');
      const next = await t.req('POST', `${A}/refresh`, { refresh_token: [...successors][0] });
      assert.equal(next.status, 200, 'the successor works, and the client stayed signed in');
    });

    test('sessions are listed and revocable; logout ends the current one', async () => {
      const u = await t.signIn();
      const second = await t.req('POST', `${A}/login`, { email: u.email, password: u.password }, { 'user-agent': 'phone/1.0' });
      const list = await t.req('GET', `${A}/sessions`, undefined, u.auth);
      assert.equal(list.body.items.length, 3, 'sign-up, sign-in and the phone');
      assert.equal(list.body.items.find((s: { current: boolean }) => s.current).id, u.sessionId);
      assert.equal(list.body.items.find((s: { id: string }) => s.id === second.body.session_id).user_agent, 'phone/1.0');
      const other = await t.signIn();
      assert.equal(
        (await t.req('DELETE', `${A}/sessions/${second.body.session_id}`, undefined, other.auth)).status,
        404,
        "not another user's",
      );
      assert.equal((await t.req('DELETE', `${A}/sessions/${second.body.session_id}`, undefined, u.auth)).status, 204);
      assert.equal((await t.req('POST', `${A}/refresh`, { refresh_token: second.body.refresh_token })).status, 401);
      assert.equal((await t.req('GET', `${A}/me`, undefined, { authorization: `Bearer ${second.body.access_token}` })).status, 401);
      assert.equal((await t.req('POST', `${A}/logout`, {}, u.auth)).status, 204);
      assert.equal((await t.req('GET', `${A}/me`, undefined, u.auth)).status, 401);
      assert.equal((await t.req('POST', `${A}/refresh`, { refresh_token: u.refresh })).status, 401);
    });

    test('a password change ends the other sessions; a disabled account stops refreshing at once', async () => {
      const u = await t.signIn();
      const phone = await t.req('POST', `${A}/login`, { email: u.email, password: u.password });
      const wrong = await t.req('POST', `${A}/password`, { current_password: 'nope nope', new_password: 'brand new password' }, u.auth);
      assert.equal(wrong.status, 401);
      const ok = await t.req('POST', `${A}/password`, { current_password: u.password, new_password: 'brand new password' }, u.auth);
      assert.equal(ok.status, 204);
      assert.equal((await t.req('POST', `${A}/refresh`, { refresh_token: phone.body.refresh_token })).status, 401);
      assert.equal((await t.req('GET', `${A}/me`, undefined, u.auth)).status, 200, 'the current session goes on');
      assert.equal((await t.req('POST', `${A}/login`, { email: u.email, password: u.password })).status, 401);
      const relog = await t.req('POST', `${A}/login`, { email: u.email, password: 'brand new password' });
      assert.equal(relog.status, 200);

      const selfDisable = await t.req('PATCH', `${USERS}/${u.id}`, { disabled: true }, u.auth);
      assert.equal(selfDisable.status, 400, 'disabled is read-only for the user');
      const dis = await t.req('PATCH', `${USERS}/${u.id}`, { disabled: true }, await admin());
      assert.equal(dis.status, 200);
      const refresh = await t.req('POST', `${A}/refresh`, { refresh_token: relog.body.refresh_token });
      assert.equal(refresh.status, 401);
      assert.equal((await t.req('GET', `${A}/me`, undefined, { authorization: `Bearer ${relog.body.access_token}` })).status, 401);
      const login = await t.req('POST', `${A}/login`, { email: u.email, password: 'brand new password' });
      assert.equal(login.status, 403);
      assert.equal(login.body.code, 'E_ACCOUNT_DISABLED');
    });

    test('email verification, password reset and email change by single-use mailed links', async () => {
      const email = `mailer-${name}@example.com`;
      const s = await t.req('POST', `${A}/signup`, { email, password: 'first password' });
      const verify = (await t.mails(email)).at(-1) as string;
      assert.match(verify, /Subject: Confirm your email address/);
      assert.equal((await t.req('POST', `${A}/verify-email`, { token: tokenIn(verify) })).status, 204);
      assert.equal((await t.req('POST', `${A}/verify-email`, { token: tokenIn(verify) })).status, 401, 'single use');
      assert.equal(
        (await t.req('GET', `${A}/me`, undefined, { authorization: `Bearer ${s.body.access_token}` })).body.email_verified,
        true,
      );

      const unknown = await t.req('POST', `${A}/password-reset/request`, { email: `ghost-${name}@example.com` });
      const known = await t.req('POST', `${A}/password-reset/request`, { email });
      assert.equal(unknown.status, 202);
      assert.deepEqual(unknown.body, known.body);
      assert.equal((await t.mails(`ghost-${name}@example.com`)).length, 0);
      const reset = (await t.mails(email)).at(-1) as string;
      assert.match(reset, /Subject: Reset your password/);
      clock.advance(2 * 3_600_000);
      assert.equal(
        (await t.req('POST', `${A}/password-reset`, { token: tokenIn(reset), password: 'second password' })).status,
        401,
        'expired',
      );
      await t.req('POST', `${A}/password-reset/request`, { email });
      const reset2 = (await t.mails(email)).at(-1) as string;
      assert.equal((await t.req('POST', `${A}/password-reset`, { token: tokenIn(reset2), password: 'second password' })).status, 204);
      assert.equal((await t.req('POST', `${A}/refresh`, { refresh_token: s.body.refresh_token })).status, 401, 'sessions ended');
      const login = await t.req('POST', `${A}/login`, { email, password: 'second password' });
      assert.equal(login.status, 200);

      const auth = { authorization: `Bearer ${login.body.access_token}` };
      const newEmail = `moved-${name}@example.com`;
      assert.equal((await t.req('POST', `${A}/email`, { new_email: newEmail, password: 'second password' }, auth)).status, 202);
      const confirm = (await t.mails(newEmail)).at(-1) as string;
      const done = await t.req('POST', `${A}/email/confirm`, { token: tokenIn(confirm) });
      assert.equal(done.status, 200);
      assert.equal(done.body.email, newEmail);
      assert.match((await t.mails(email)).at(-1) as string, /was changed to/);
      assert.equal((await t.req('POST', `${A}/login`, { email: newEmail, password: 'second password' })).status, 200);
    });

    test('deleting the account is soft; the retention sweep purges it', async () => {
      const u = await t.signIn();
      assert.equal((await t.req('DELETE', `${A}/me`, { password: 'wrong password' }, u.auth)).status, 401);
      assert.equal((await t.req('DELETE', `${A}/me`, { password: u.password }, u.auth)).status, 204);
      assert.equal((await t.req('POST', `${A}/login`, { email: u.email, password: u.password })).status, 401);
      assert.equal((await t.req('GET', `${USERS}/${u.id}?deleted=only`, undefined, await admin())).status, 200, 'restorable by an admin');
      await t.app.auth.sweep();
      assert.equal((await t.req('GET', `${USERS}/${u.id}?deleted=only`, undefined, await admin())).status, 200, 'kept within retention');
      clock.advance(31 * 86_400_000);
      await t.app.auth.sweep();
      assert.equal((await t.req('GET', `${USERS}/${u.id}?deleted=only`, undefined, await admin())).status, 404, 'purged');
      const left = await t.app.storage.db.selectFrom('_rampart_sessions').select('id').where('user_id', '=', u.id).execute();
      assert.equal(left.length, 0);
    });

    test('keys rotate: old tokens verify until the old key retires; the JWKS follows', async () => {
      const u = await t.signIn();
      const old = t.app.auth.keys.signing();
      const kids = async () => (await t.req('GET', '/.well-known/jwks.json')).body.keys.map((k: { kid: string }) => k.kid);
      const jwks = (await t.req('GET', '/.well-known/jwks.json')).body;
      assert.ok(
        jwks.keys.every((k: Record<string, unknown>) => k.alg === 'EdDSA' && k.use === 'sig' && !('d' in k)),
        'public keys only',
      );
      assert.ok((await kids()).includes(old.kid));
      const now = Math.floor(clock.now() / 1000);
      // A token the old key signed with a long life: it must stop when the key retires.
      const longLived = await new SignJWT({ sid: u.sessionId, role: 'user', email: u.email, email_verified: false })
        .setProtectedHeader({ alg: 'EdDSA', kid: old.kid, typ: 'at+jwt' })
        .setIssuer('rampart')
        .setAudience('rampart-api')
        .setSubject(u.id)
        .setIssuedAt(now)
        .setExpirationTime(now + 86_400)
        .setJti('long')
        .sign(await importJWK(old.key.export({ format: 'jwk' }) as JWK, 'EdDSA'));
      await SigningKeys.rotate(t.app.storage, clock, 990_000);
      await t.app.auth.keys.reload();
      const next = t.app.auth.keys.signing().kid;
      assert.notEqual(next, old.kid);
      assert.deepEqual((await kids()).sort(), [old.kid, next].sort());
      const relog = await t.req('POST', `${A}/login`, { email: u.email, password: u.password });
      const header = JSON.parse(Buffer.from(relog.body.access_token.split('.')[0], 'base64url').toString());
      assert.equal(header.kid, next, 'new tokens use the new key');
      assert.equal((await t.req('GET', `${A}/me`, undefined, u.auth)).status, 200, 'tokens of the old key still verify');
      clock.advance(991_000);
      await t.app.auth.keys.reload();
      assert.deepEqual(await kids(), [next]);
      const late = await t.req('GET', `${A}/me`, undefined, { authorization: `Bearer ${longLived}` });
      assert.equal(late.status, 401, 'the retired key verifies nothing');
    });
  });
}
