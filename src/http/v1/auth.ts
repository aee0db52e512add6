/**
 * `/api/v1/auth/…`: accounts, sessions and tokens, and the JWKS at `/.well-known/jwks.json`.
 * Token responses are `Cache-Control: no-store` (RFC 6749 §5.1).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AccountService, ClientMeta } from '../../auth/accounts.js';
import type { Guard } from '../../auth/guard.js';
import type { SigningKeys } from '../../auth/keys.js';
import type { SessionStore } from '../../auth/sessions.js';
import { RampartError } from '../../core/errors.js';
import { problemRef, queryParams } from '../params.js';

export interface AuthRouteDeps {
  accounts: AccountService;
  sessions: SessionStore;
  keys: SigningKeys;
  guard: Guard;
  /** Called when a session ends here, so this node stops its access tokens at once. */
  onRevoked(sessionId: string): void;
  /** The API version's path prefix (`/api/v1`). */
  root: string;
}

const str = { type: 'string' } as const;
const obj = (properties: Record<string, unknown>, required: string[] = []) => ({ type: 'object', properties, required });
const tokenResponse = obj({
  user: { type: 'object' },
  access_token: str,
  token_type: str,
  expires_in: { type: 'integer' },
  refresh_token: str,
  session_id: str,
});
const errors = { 400: problemRef, 401: problemRef, 429: problemRef, 503: problemRef };

export const clientMeta = (req: FastifyRequest): ClientMeta => ({
  ip: req.ip,
  userAgent: typeof req.headers['user-agent'] === 'string' ? req.headers['user-agent'] : undefined,
});

const noStore = (reply: FastifyReply) => reply.header('cache-control', 'no-store').header('pragma', 'no-cache');

export function registerAuthRoutes(app: FastifyInstance, deps: AuthRouteDeps): void {
  const { accounts, guard } = deps;
  const base = `${deps.root}/auth`;
  const tags = ['auth'];
  const post = (
    path: string,
    summary: string,
    body: Record<string, unknown>,
    status: number,
    handler: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
    response: Record<string, unknown> = {},
  ) =>
    app.post(`${base}${path}`, {
      // Routes that take credentials or mailed tokens are in the stricter per-IP tier.
      config: {
        rateTier: path === '/refresh' || path === '/logout' ? undefined : 'auth',
        // Answers with tokens are not stored for Idempotency-Key replays (no credentials at rest).
        storesAnswers: ['/signup', '/login', '/refresh'].includes(path) ? false : undefined,
      },
      schema: { tags, summary, body, response: { ...(status === 200 || status === 201 ? { [status]: response } : {}), ...errors } },
      handler: async (req, reply) => {
        queryParams(req, []);
        const out = await handler(req, reply);
        noStore(reply).code(status);
        return status === 204 ? reply.send() : reply.send(out ?? { status: 'accepted' });
      },
    });

  post(
    '/signup',
    'Create an account with email and password, and sign in',
    obj({ email: str, password: str }, ['email', 'password']),
    201,
    (req) => accounts.signup(req.body, clientMeta(req)),
    tokenResponse,
  );
  post(
    '/login',
    'Sign in with email and password',
    obj({ email: str, password: str }, ['email', 'password']),
    200,
    (req) => accounts.login(req.body, clientMeta(req)),
    tokenResponse,
  );
  post(
    '/refresh',
    'Exchange a refresh token for a new pair (the old one stops working)',
    obj({ refresh_token: str }, ['refresh_token']),
    200,
    (req) => accounts.refresh(req.body),
    tokenResponse,
  );
  post('/logout', 'End the current session', obj({}), 204, async (req) => {
    const p = await guard(req);
    await accounts.logout(p);
    if (p.kind === 'user' && p.sessionId) deps.onRevoked(p.sessionId);
  });
  post(
    '/password',
    'Change the password (other sessions end)',
    obj({ current_password: str, new_password: str }, ['current_password', 'new_password']),
    204,
    async (req) => accounts.changePassword(await guard(req), req.body, clientMeta(req)),
  );
  post(
    '/email',
    'Ask to change the email; a confirmation link goes to the new address',
    obj({ new_email: str, password: str }, ['new_email', 'password']),
    202,
    async (req) => accounts.requestEmailChange(await guard(req), req.body, clientMeta(req)),
  );
  post('/email/confirm', 'Confirm an email change with the mailed token', obj({ token: str }, ['token']), 200, (req) =>
    accounts.confirmEmailChange(req.body),
  );
  post(
    '/verify-email/request',
    'Send a verification link (same answer whether or not the address exists)',
    obj({ email: str }, ['email']),
    202,
    (req) => accounts.requestVerification(req.body),
  );
  post('/verify-email', 'Confirm the email address with the mailed token', obj({ token: str }, ['token']), 204, (req) =>
    accounts.verifyEmail(req.body),
  );
  post(
    '/password-reset/request',
    'Send a password reset link (same answer whether or not the address exists)',
    obj({ email: str }, ['email']),
    202,
    (req) => accounts.requestPasswordReset(req.body),
  );
  post(
    '/password-reset',
    'Set a new password with the mailed token (every session ends)',
    obj({ token: str, password: str }, ['token', 'password']),
    204,
    (req) => accounts.resetPassword(req.body),
  );

  app.get(`${base}/me`, {
    schema: { tags, summary: 'The signed-in user', response: { 200: { type: 'object' }, 401: problemRef } },
    handler: async (req, reply) => {
      queryParams(req, []);
      return noStore(reply).send(await accounts.me(await guard(req)));
    },
  });
  app.delete(`${base}/me`, {
    schema: {
      tags,
      summary: 'Delete the account (restorable by an admin until purged)',
      body: obj({ password: str }, ['password']),
      response: { 204: { type: 'null' }, ...errors },
    },
    handler: async (req, reply) => {
      queryParams(req, []);
      await accounts.deleteAccount(await guard(req), req.body, clientMeta(req));
      return reply.code(204).send();
    },
  });

  app.get(`${base}/sessions`, {
    schema: { tags, summary: "The signed-in user's sessions", response: { 200: obj({ items: { type: 'array' } }), 401: problemRef } },
    handler: async (req, reply) => {
      queryParams(req, []);
      const u = accounts.requireUser(await guard(req));
      return noStore(reply).send({ items: await deps.sessions.list(u.id, u.sessionId) });
    },
  });
  app.delete(`${base}/sessions`, {
    schema: {
      tags,
      summary: 'End every other session (`?include_current=true` ends this one too)',
      querystring: obj({ include_current: { type: 'boolean' } }),
      response: { 200: obj({ ended: { type: 'integer' } }), 401: problemRef },
    },
    handler: async (req) => {
      const { include_current } = queryParams(req, ['include_current']);
      if (include_current !== undefined && include_current !== 'true' && include_current !== 'false') {
        throw new RampartError('E_INVALID_QUERY', 'include_current must be true or false');
      }
      const u = accounts.requireUser(await guard(req));
      const ended = await deps.sessions.revokeAll(u.id, 'ended_by_user', include_current === 'true' ? undefined : u.sessionId);
      if (include_current === 'true' && u.sessionId) deps.onRevoked(u.sessionId);
      return { ended };
    },
  });
  app.delete(`${base}/sessions/:id`, {
    schema: {
      tags,
      summary: 'End one session',
      params: obj({ id: str }, ['id']),
      response: { 204: { type: 'null' }, 401: problemRef, 404: problemRef },
    },
    handler: async (req, reply) => {
      queryParams(req, []);
      const u = accounts.requireUser(await guard(req));
      const id = (req.params as { id: string }).id;
      if (!(await deps.sessions.revoke(u.id, id, 'ended_by_user')))
        throw new RampartError('E_RECORD_NOT_FOUND', 'you have no live session with this id');
      deps.onRevoked(id);
      return reply.code(204).send();
    },
  });
}

/** `/.well-known/jwks.json`: not versioned, registered once. */
export function registerJwksRoute(app: FastifyInstance, keys: SigningKeys): void {
  app.get('/.well-known/jwks.json', {
    schema: { tags: ['auth'], summary: 'Public keys that verify access tokens (JWKS)' },
    handler: async (_req, reply) => reply.header('cache-control', 'public, max-age=300').send(keys.jwks()),
  });
}
