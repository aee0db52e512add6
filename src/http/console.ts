/**
 * The admin console at `/_/`: the static files `npm run build` makes from `admin/` (a Preact
 * app, bundled by Vite; no CDN), served with their own content security policy. The console is
 * a client like any other: it signs in through the auth API and every action goes through the
 * same routes and rules. Hashed assets are cached for a year; the page itself never.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { RampartError } from '../core/errors.js';
import { sendProblem } from './problem.js';

export const CONSOLE_PREFIX = '/_/';
/** Where the build puts the console (the package's dist/admin, from src/ and dist/ alike). */
export const CONSOLE_DIR = fileURLToPath(new URL('../../dist/admin/', import.meta.url));

const CSP =
  "default-src 'self'; base-uri 'none'; connect-src 'self' ws: wss:; img-src 'self' data:; object-src 'none'; " +
  "script-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'";

export async function registerConsole(app: FastifyInstance, dir = CONSOLE_DIR): Promise<void> {
  app.get('/_', { schema: { hide: true } }, async (_req, reply) => reply.redirect(CONSOLE_PREFIX));
  if (!existsSync(`${dir}/index.html`)) {
    app.get('/_/*', { schema: { hide: true } }, async (req, reply) =>
      sendProblem(req, reply, new RampartError('E_CONSOLE_NOT_BUILT', 'the admin console was not built: run `npm run build`')),
    );
    return;
  }
  await app.register(async (scope) => {
    scope.addHook('onSend', (req, reply, payload, done) => {
      if (reply.statusCode < 400) {
        const asset = req.url.startsWith(`${CONSOLE_PREFIX}assets/`);
        reply.header('cache-control', asset ? 'public, max-age=31536000, immutable' : 'no-cache');
        reply.header('content-security-policy', CSP);
        reply.header('referrer-policy', 'no-referrer');
      }
      done(null, payload);
    });
    await scope.register(fastifyStatic, {
      root: dir,
      prefix: CONSOLE_PREFIX,
      decorateReply: false,
      // Pages are addressed by the hash, so index.html is the only document.
      index: ['index.html'],
      cacheControl: false,
      etag: true,
      lastModified: true,
      schemaHide: true,
    });
  });
}
