/**
 * `Idempotency-Key` on every API mutation (POST, PUT, PATCH, DELETE): the key is claimed before
 * the handler runs (after the body is parsed, so the request's fingerprint is known) and the
 * answer is stored before it is sent. See protect/idempotency.ts for the rules.
 *
 * Routes whose answers hold credentials (sign-up, login, refresh, the OAuth code exchange)
 * do not store them: tokens are never written to the database in the clear. They ignore the key.
 */
import type { FastifyInstance, FastifyRequest, onSendAsyncHookHandler, preHandlerAsyncHookHandler } from 'fastify';
import type { Logger } from 'pino';
import type { Guard } from '../auth/guard.js';
import { RampartError } from '../core/errors.js';
import type { Metrics } from '../observability/metrics.js';
import { fingerprint, IDEMPOTENCY_KEY_RE, type IdempotencyStore } from '../protect/idempotency.js';

/** Route config of routes that must not store their answers. */
export interface IdempotencyRouteConfig {
  storesAnswers?: false;
}

const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Headers replayed with a stored answer. */
const KEPT_HEADERS = ['content-type', 'location', 'etag', 'cache-control'];
const CLAIM = Symbol('idempotency');
type WithClaim = FastifyRequest & { [CLAIM]?: { scope: string; key: string } };

/**
 * Attach the claim and store hooks to every API mutation route registered from now on (reads
 * and routes that store no answers carry no hook at all). Call before the routes are added.
 */
export function registerIdempotency(app: FastifyInstance, store: IdempotencyStore, guard: Guard, metrics: Metrics, log: Logger): void {
  const claimKey: preHandlerAsyncHookHandler = async (req, reply) => {
    const key = req.headers['idempotency-key'];
    // (A route may also answer GET, as the OAuth callback does.)
    if (key === undefined || !MUTATIONS.has(req.method)) return;
    if (typeof key !== 'string' || !IDEMPOTENCY_KEY_RE.test(key)) {
      throw new RampartError('E_BAD_REQUEST', 'Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID, say)');
    }
    const who = await guard(req);
    const scope = who.kind === 'user' ? who.id : '-';
    const claim = await store.claim(scope, key, fingerprint(req.method, req.url, req.body));
    metrics.countIdempotency(claim.kind);
    switch (claim.kind) {
      case 'claimed':
        (req as WithClaim)[CLAIM] = { scope, key };
        return;
      case 'replay':
        reply.code(claim.answer.status).headers(claim.answer.headers).header('idempotent-replayed', 'true');
        return reply.send(claim.answer.body === '' ? undefined : claim.answer.body);
      case 'mismatch':
        throw new RampartError('E_IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used for a different request; use a new key');
      case 'in-progress':
        throw new RampartError('E_IDEMPOTENCY_IN_PROGRESS', 'a request with this Idempotency-Key is still being processed; retry shortly', {
          headers: { 'Retry-After': '1' },
        });
    }
  };

  const storeAnswer: onSendAsyncHookHandler = async (req, reply, payload) => {
    const claim = (req as WithClaim)[CLAIM];
    if (!claim) return payload;
    (req as WithClaim)[CLAIM] = undefined;
    const status = reply.statusCode;
    try {
      // "Nothing happened, try again" answers are not kept: the retry runs for real.
      if (status >= 500 || status === 429) await store.release(claim.scope, claim.key);
      else {
        const headers: Record<string, string> = {};
        for (const h of KEPT_HEADERS) {
          const v = reply.getHeader(h);
          if (v !== undefined) headers[h] = String(v);
        }
        const body = typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8') : '';
        await store.complete(claim.scope, claim.key, { status, headers, body });
      }
    } catch (err) {
      // The answer still goes out; a retry after the claim's lock expires runs again.
      log.error({ err, request_id: req.id }, 'storing the answer of an idempotent request failed');
    }
    return payload;
  };

  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!route.url.startsWith('/api/') || !methods.some((m) => MUTATIONS.has(m))) return;
    if ((route.config as IdempotencyRouteConfig | undefined)?.storesAnswers === false) return;
    route.preHandler = [...toList(route.preHandler), claimKey];
    route.onSend = [...toList(route.onSend), storeAnswer];
  });
}

const toList = <T>(h: T | T[] | undefined): T[] => (h === undefined ? [] : Array.isArray(h) ? h : [h]);
