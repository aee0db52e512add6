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
import { requestLog } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { type AppliedAnswer, fingerprint, IDEMPOTENCY_KEY_RE, type IdempotencyStore } from '../protect/idempotency.js';
import type { RecordData } from '../records/hooks.js';
import type { AppliedRecorder, RecordsService } from '../records/service.js';

/** Route config of routes that must not store their answers. */
export interface IdempotencyRouteConfig {
  storesAnswers?: false;
}

const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Headers replayed with a stored answer. */
const KEPT_HEADERS = ['content-type', 'location', 'etag', 'cache-control'];
const CLAIM = Symbol('idempotency');
type WithClaim = FastifyRequest & { [CLAIM]?: { scope: string; key: string; owner: string; store: IdempotencyStore } };

/**
 * For a request holding a claim: what its write transaction calls to mark the claim applied,
 * in that transaction (pass to RecordsService.forRequest). Undefined without a claim.
 */
export function appliedRecorder(req: FastifyRequest): AppliedRecorder | undefined {
  const claim = (req as WithClaim)[CLAIM];
  if (!claim) return undefined;
  return (db, kind, writes) => claim.store.markApplied(db, claim.scope, claim.key, claim.owner, { kind, writes });
}

/**
 * Attach the claim and store hooks to every API mutation route registered from now on (reads
 * and routes that store no answers carry no hook at all). Call before the routes are added.
 */
export function registerIdempotency(
  app: FastifyInstance,
  store: IdempotencyStore,
  guard: Guard,
  metrics: Metrics,
  log: Logger,
  records: RecordsService,
  renewEveryMs: number,
): void {
  /** The answer of a write that committed but whose answer was lost: the records as they are now, with the original status. */
  const rebuild = async (req: FastifyRequest, applied: AppliedAnswer): Promise<{ status: number; body: unknown; location?: string }> => {
    const svc = records.forRequest(requestLog(req), await guard(req));
    const current = async (w: AppliedAnswer['writes'][number]): Promise<RecordData | null> => {
      if (w.op === 'purge') return null;
      const live = await svc.get(w.collection, w.id).catch(() => undefined);
      return live ?? (await svc.get(w.collection, w.id, { trashed: true }).catch(() => null));
    };
    if (applied.kind === 'batch') {
      return {
        status: 200,
        body: { results: await Promise.all(applied.writes.map(async (w) => ({ status: w.status, record: await current(w) }))) },
      };
    }
    const w = applied.writes[0];
    if (!w) return { status: 204, body: undefined };
    const base = req.url.split('?')[0]?.replace(/\/records(\/.*)?$/, '/records') ?? '';
    return { status: w.status, body: (await current(w)) ?? undefined, location: w.op === 'create' ? `${base}/${w.id}` : undefined };
  };

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
      case 'claimed': {
        (req as WithClaim)[CLAIM] = { scope, key, owner: claim.owner, store };
        // The claim is a lease: renewed while this request runs, so a dead node's claim lapses soon.
        const timer = setInterval(() => void store.renew(scope, key, claim.owner).catch(() => {}), renewEveryMs);
        timer.unref();
        reply.raw.once('close', () => clearInterval(timer));
        return;
      }
      case 'applied': {
        const answer = await rebuild(req, claim.applied);
        reply.code(answer.status).header('idempotent-replayed', 'true');
        if (answer.location) reply.header('location', answer.location);
        const record = answer.body as { version?: number } | undefined;
        if (record && typeof record.version === 'number') reply.header('etag', `"${record.version}"`);
        return reply.send(answer.body);
      }
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
      if (status >= 500 || status === 429) await store.release(claim.scope, claim.key, claim.owner);
      else {
        const headers: Record<string, string> = {};
        for (const h of KEPT_HEADERS) {
          const v = reply.getHeader(h);
          if (v !== undefined) headers[h] = String(v);
        }
        const body = typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8') : '';
        await store.complete(claim.scope, claim.key, claim.owner, { status, headers, body });
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
