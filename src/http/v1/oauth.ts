/** `/api/vN/auth/oauth/…`: sign-in with configured OAuth / OpenID Connect providers. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { OAuthService } from '../../auth/oauth.js';
import { problemRef, queryParams } from '../params.js';
import { clientMeta } from './auth.js';

const tags = ['auth'];
const providerParam = { type: 'object', properties: { provider: { type: 'string' } }, required: ['provider'] };

export async function registerOAuthRoutes(app: FastifyInstance, oauth: OAuthService, root: string): Promise<void> {
  const base = `${root}/auth/oauth`;
  app.get(`${base}/providers`, {
    schema: { tags, summary: 'Configured sign-in providers' },
    handler: async (req) => {
      queryParams(req, []);
      return { items: oauth.names().map((name) => ({ name, start: `${base}/${name}/start` })) };
    },
  });
  app.get(`${base}/:provider/start`, {
    config: { rateTier: 'auth' },
    schema: {
      tags,
      summary: 'Begin signing in with a provider (redirects to it)',
      params: providerParam,
      querystring: { type: 'object', properties: { redirect_to: { type: 'string', format: 'uri' } }, required: ['redirect_to'] },
      response: { 302: { type: 'null' }, 400: problemRef, 404: problemRef, 503: problemRef },
    },
    handler: async (req, reply) => {
      const { redirect_to } = queryParams(req, ['redirect_to']);
      const url = await oauth.start((req.params as { provider: string }).provider, redirect_to);
      return reply.header('cache-control', 'no-store').redirect(url, 302);
    },
  });
  const callback = async (req: FastifyRequest, params: URLSearchParams) =>
    oauth.callback((req.params as { provider: string }).provider, params);
  // Apple posts the callback as a form; the form parser exists only in this scope (the API is JSON).
  await app.register(async (scope) => {
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16_384 }, (_req, body, done) =>
      done(null, new URLSearchParams(body as string)),
    );
    scope.route({
      method: ['GET', 'POST'],
      url: `${base}/:provider/callback`,
      schema: { tags, summary: 'Where the provider sends the user back (redirects to the app with a login code)', params: providerParam },
      handler: async (req, reply) => {
        const params =
          req.method === 'POST' && req.body instanceof URLSearchParams
            ? req.body
            : new URLSearchParams(req.query as Record<string, string>);
        return reply.header('cache-control', 'no-store').redirect(await callback(req, params), 302);
      },
    });
  });
  app.post(`${base}/exchange`, {
    config: { rateTier: 'auth', storesAnswers: false },
    schema: {
      tags,
      summary: 'Trade the login code from the redirect for tokens',
      body: { type: 'object', properties: { code: { type: 'string' } }, required: ['code'] },
      response: { 400: problemRef, 401: problemRef },
    },
    handler: async (req, reply) => {
      queryParams(req, []);
      return reply.header('cache-control', 'no-store').send(await oauth.exchange(req.body, clientMeta(req)));
    },
  });
}
