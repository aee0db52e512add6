/**
 * A local stand-in for GitHub's OAuth app flow and the two API calls sign-in needs (GitHub lives
 * on the internet, so a fake that speaks its protocol is allowed; it can fail on demand). Served
 * as a GitHub Enterprise Server would be: `/login/oauth/…` and `/api/v3/…`. It checks the client
 * secret and PKCE (S256) like the real one.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeGithub {
  url: string;
  clientId: string;
  clientSecret: string;
  user: { id: number; login: string; emails: Array<{ email: string; primary: boolean; verified: boolean }> };
  /** When true the token endpoint answers 502 (an outage). */
  down: boolean;
  close(): Promise<void>;
}

export async function startFakeGithub(): Promise<FakeGithub> {
  const codes = new Map<string, { challenge: string; redirect: string }>();
  const tokens = new Set<string>();
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/login/oauth/authorize') {
      const code = randomBytes(10).toString('hex');
      codes.set(code, { challenge: url.searchParams.get('code_challenge') ?? '', redirect: url.searchParams.get('redirect_uri') ?? '' });
      const back = new URL(url.searchParams.get('redirect_uri') ?? '');
      back.searchParams.set('code', code);
      back.searchParams.set('state', url.searchParams.get('state') ?? '');
      res.writeHead(302, { location: back.href });
      res.end();
      return;
    }
    if (url.pathname === '/login/oauth/access_token' && req.method === 'POST') {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        if (state.down) return json(502, { message: 'bad gateway' });
        const form = new URLSearchParams(body);
        const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')?.[1];
        const [id, secret] = basic
          ? Buffer.from(basic, 'base64').toString().split(':').map(decodeURIComponent)
          : [form.get('client_id'), form.get('client_secret')];
        if (id !== state.clientId || secret !== state.clientSecret) return json(200, { error: 'incorrect_client_credentials' });
        const grant = codes.get(form.get('code') ?? '');
        codes.delete(form.get('code') ?? '');
        const verifier = form.get('code_verifier') ?? '';
        if (
          !grant ||
          createHash('sha256').update(verifier).digest('base64url') !== grant.challenge ||
          grant.redirect !== form.get('redirect_uri')
        ) {
          return json(200, { error: 'bad_verification_code' });
        }
        const token = `gho_${randomBytes(12).toString('hex')}`;
        tokens.add(token);
        return json(200, { access_token: token, token_type: 'bearer', scope: 'read:user,user:email' });
      });
      return;
    }
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!bearer || !tokens.has(bearer)) return json(401, { message: 'Bad credentials' });
    if (url.pathname === '/api/v3/user') return json(200, { id: state.user.id, login: state.user.login });
    if (url.pathname === '/api/v3/user/emails') return json(200, state.user.emails);
    json(404, { message: 'Not Found' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const state: FakeGithub = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    clientId: 'Iv1.fake',
    clientSecret: 'fake-github-secret',
    user: { id: 4242, login: 'octo', emails: [{ email: 'Octo@Example.com', primary: true, verified: true }] },
    down: false,
    close: () => new Promise((r) => server.close(() => r())),
  };
  return state;
}
