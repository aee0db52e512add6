/**
 * Sign-in with OpenID Connect against a real provider running locally (oidc-provider): the
 * authorization code flow with PKCE, state and nonce, account creation and linking, and what
 * happens when the provider is down or hangs.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { type FakeGithub, startFakeGithub } from '../helpers/fake-github.js';
import { follow, type LocalOidc, startOidcProvider } from '../helpers/oidc-provider.js';
import { freePort } from '../helpers/processes.js';

const APP = 'http://app.example/after-login';

describe('OpenID Connect sign-in', () => {
  let t: TestApp;
  let idp: LocalOidc;
  let github: FakeGithub;
  let hangingPort: number;
  const hanging = createServer(() => {}); // accepts connections, never answers
  before(async () => {
    const port = await freePort();
    hangingPort = await freePort();
    await new Promise<void>((r) => hanging.listen(hangingPort, '127.0.0.1', r));
    idp = await startOidcProvider(() => ['local', 'posted'].map((n) => `http://127.0.0.1:${port}/api/v1/auth/oauth/${n}/callback`));
    github = await startFakeGithub();
    t = await startTestApp('sqlite', undefined, {
      PORT: String(port),
      RAMPART_AUTH_REDIRECT_URLS: 'http://app.example/',
      RAMPART_OAUTH_PROVIDERS: JSON.stringify({
        local: { issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret },
        posted: { issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret, formPost: true },
        gh: { preset: 'github', githubUrl: github.url, clientId: github.clientId, clientSecret: github.clientSecret, timeoutMs: 1000 },
        down: { issuer: `http://127.0.0.1:${await freePort()}`, clientId: 'x', clientSecret: 'y', timeoutMs: 1000 },
        hangs: { issuer: `http://127.0.0.1:${hangingPort}`, clientId: 'x', clientSecret: 'y', timeoutMs: 300 },
      }),
    });
  });
  after(async () => {
    await t?.close();
    await idp?.close();
    await github?.close();
    hanging.close();
  });

  const signIn = async () => {
    const start = await fetch(`${t.url}/api/v1/auth/oauth/local/start?redirect_to=${encodeURIComponent(APP)}`, { redirect: 'manual' });
    assert.equal(start.status, 302);
    const auth = new URL(start.headers.get('location') as string);
    assert.equal(auth.origin, idp.issuer);
    assert.equal(auth.searchParams.get('code_challenge_method'), 'S256');
    for (const p of ['state', 'nonce', 'code_challenge']) assert.ok(auth.searchParams.get(p), p);
    const back = await follow(auth.href, (u) => u.origin === 'http://app.example');
    return back;
  };

  test('a new user signs in: account created with the verified email, session issued', async () => {
    idp.account = { sub: 'alice', email: 'Alice@IdP.example', email_verified: true };
    const back = await signIn();
    const code = back.searchParams.get('code') as string;
    assert.match(code, /^ot_/);
    const tokens = await t.req('POST', '/api/v1/auth/oauth/exchange', { code });
    assert.equal(tokens.status, 200);
    assert.equal(tokens.body.user.email, 'alice@idp.example');
    assert.equal(tokens.body.user.email_verified, true);
    assert.equal((await t.req('POST', '/api/v1/auth/oauth/exchange', { code })).status, 401, 'the code works once');
    const sessions = await t.req('GET', '/api/v1/auth/sessions', undefined, { authorization: `Bearer ${tokens.body.access_token}` });
    assert.equal(sessions.body.items[0].method, 'oauth:local');
    const again = await t.req('POST', '/api/v1/auth/oauth/exchange', { code: (await signIn()).searchParams.get('code') });
    assert.equal(again.body.user.id, tokens.body.user.id, 'the same identity signs in the same user');
  });

  test('a verified email links to the existing account; an unverified one is refused', async () => {
    const u = await t.signIn({ email: 'bob@idp.example' });
    idp.account = { sub: 'bob-unverified', email: 'bob@idp.example', email_verified: false };
    const refused = await signIn();
    assert.equal(refused.searchParams.get('error'), 'account_exists');
    idp.account = { sub: 'bob', email: 'bob@idp.example', email_verified: true };
    const linked = await signIn();
    const tokens = await t.req('POST', '/api/v1/auth/oauth/exchange', { code: linked.searchParams.get('code') });
    assert.equal(tokens.body.user.id, u.id);
  });

  test('state is single-use, redirect targets are checked, callbacks without a flow are refused', async () => {
    const start = await fetch(`${t.url}/api/v1/auth/oauth/local/start?redirect_to=${encodeURIComponent(APP)}`, { redirect: 'manual' });
    const callback = await follow(start.headers.get('location') as string, (u) => u.pathname.endsWith('/callback'));
    const first = await fetch(callback, { redirect: 'manual' });
    assert.equal(first.status, 302);
    assert.match(first.headers.get('location') as string, /^http:\/\/app\.example\/after-login\?code=ot_/);
    const replay = await fetch(callback, { redirect: 'manual' });
    assert.equal(replay.status, 401, 'a replayed callback (same state and code) is refused');
    const evil = await t.req('GET', `/api/v1/auth/oauth/local/start?redirect_to=${encodeURIComponent('https://evil.example/')}`);
    assert.equal(evil.status, 400);
    const missing = await t.req('GET', '/api/v1/auth/oauth/local/start');
    assert.equal(missing.status, 400);
    const forged = await t.req('GET', '/api/v1/auth/oauth/local/callback?code=abc&state=made-up');
    assert.equal(forged.status, 401);
    assert.equal(forged.body.code, 'E_INVALID_TOKEN');
    assert.equal((await t.req('GET', `/api/v1/auth/oauth/nope/start?redirect_to=${encodeURIComponent(APP)}`)).status, 404);
  });

  test('a provider that is down or hangs gives 503 on its login route only; the breaker then fails fast', async () => {
    for (const name of ['down', 'hangs']) {
      const started = performance.now();
      const r = await t.req('GET', `/api/v1/auth/oauth/${name}/start?redirect_to=${encodeURIComponent(APP)}`);
      const ms = performance.now() - started;
      process.stdout.write(`# provider ${name}: ${r.status} ${r.body.code} after ${ms.toFixed(0)} ms\n`);
      assert.equal(r.status, 503);
      assert.equal(r.body.code, 'E_PROVIDER_UNAVAILABLE');
      assert.ok(r.headers['retry-after']);
    }
    for (let i = 0; i < 5; i++) await t.req('GET', `/api/v1/auth/oauth/hangs/start?redirect_to=${encodeURIComponent(APP)}`);
    const started = performance.now();
    const fast = await t.req('GET', `/api/v1/auth/oauth/hangs/start?redirect_to=${encodeURIComponent(APP)}`);
    const ms = performance.now() - started;
    process.stdout.write(`# breaker open: 503 after ${ms.toFixed(1)} ms (timeout is 300 ms)\n`);
    assert.equal(fast.status, 503);
    assert.ok(ms < 100, `failed fast in ${ms.toFixed(0)} ms`);
    const metrics = await t.req('GET', '/metrics');
    assert.match(metrics.raw, /rampart_circuit_breaker_state\{dependency="oauth:hangs"\} 2/);
    assert.match(metrics.raw, /rampart_outbound_failures_total\{dependency="oauth:hangs",reason="timeout"\}/);
    // Everything else is unaffected.
    assert.equal((await t.req('GET', '/api/v1/auth/oauth/providers')).status, 200);
    assert.equal((await t.signIn()).access.length > 0, true);
    assert.equal((await t.req('GET', `/api/v1/auth/oauth/local/start?redirect_to=${encodeURIComponent(APP)}`)).status, 302);
  });

  test('GitHub (OAuth 2.0, no ID token): PKCE and client secret checked, verified primary email from its API', async () => {
    const go = async () => {
      const start = await fetch(`${t.url}/api/v1/auth/oauth/gh/start?redirect_to=${encodeURIComponent(APP)}`, { redirect: 'manual' });
      assert.equal(start.status, 302);
      const auth = new URL(start.headers.get('location') as string);
      assert.equal(auth.origin, github.url);
      assert.equal(auth.searchParams.get('nonce'), null, 'no nonce: GitHub has no ID token');
      return follow(auth.href, (u) => u.origin === 'http://app.example');
    };
    const back = await go();
    const tokens = await t.req('POST', '/api/v1/auth/oauth/exchange', { code: back.searchParams.get('code') });
    assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
    assert.equal(tokens.body.user.email, 'octo@example.com');
    assert.equal(tokens.body.user.email_verified, true);
    github.user.emails = [{ email: 'other@example.com', primary: true, verified: true }];
    const again = await t.req('POST', '/api/v1/auth/oauth/exchange', { code: (await go()).searchParams.get('code') });
    assert.equal(again.body.user.id, tokens.body.user.id, 'the GitHub user id, not the email, identifies the account');
    github.down = true;
    const start = await fetch(`${t.url}/api/v1/auth/oauth/gh/start?redirect_to=${encodeURIComponent(APP)}`, { redirect: 'manual' });
    const callback = await follow(start.headers.get('location') as string, (u) => u.pathname.endsWith('/callback'));
    const outage = await fetch(callback, { redirect: 'manual' });
    assert.equal(outage.status, 503, 'a GitHub outage at the token exchange is a 503');
    assert.equal(((await outage.json()) as { code: string }).code, 'E_PROVIDER_UNAVAILABLE');
    github.down = false;
  });

  test('a callback posted as a form (response_mode=form_post, as Apple does) signs in too', async () => {
    idp.account = { sub: 'poster', email: 'poster@idp.example', email_verified: true };
    const start = await fetch(`${t.url}/api/v1/auth/oauth/posted/start?redirect_to=${encodeURIComponent(APP)}`, { redirect: 'manual' });
    const auth = new URL(start.headers.get('location') as string);
    assert.equal(auth.searchParams.get('response_mode'), 'form_post');
    // The provider answers with an auto-submitting form instead of a redirect: read it and post it.
    const jar = new Map<string, string>();
    let url = auth.href;
    let page = '';
    for (let hop = 0; hop < 10; hop++) {
      const r = await fetch(url, { redirect: 'manual', headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } });
      for (const c of r.headers.getSetCookie()) {
        const pair = c.split(';')[0] as string;
        jar.set(pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1));
      }
      const loc = r.headers.get('location');
      if (!loc) {
        page = await r.text();
        break;
      }
      url = new URL(loc, url).href;
    }
    const action = /<form[^>]*action="([^"]+)"/.exec(page)?.[1];
    assert.equal(action, `${t.url}/api/v1/auth/oauth/posted/callback`);
    const fields = new URLSearchParams();
    for (const m of page.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) fields.set(m[1] as string, m[2] as string);
    assert.ok(fields.get('code') && fields.get('state'));
    const posted = await fetch(action as string, { method: 'POST', body: fields, redirect: 'manual' });
    assert.equal(posted.status, 302);
    const back = new URL(posted.headers.get('location') as string);
    const tokens = await t.req('POST', '/api/v1/auth/oauth/exchange', { code: back.searchParams.get('code') });
    assert.equal(tokens.status, 200);
    assert.equal(tokens.body.user.email, 'poster@idp.example');
  });
});
