/**
 * The rate-limit gate of the API: every `/api/` request is counted before its body is read,
 * per user when it carries a valid access token, else per client IP (`req.ip`, which believes
 * `X-Forwarded-For` only from configured proxies); routes marked `rateTier: 'auth'` count
 * against the per-IP sign-in tier as well.
 */
import type { FastifyInstance } from 'fastify';
import type { Guard } from '../auth/guard.js';
import { RampartError } from '../core/errors.js';
import { inSpan, tracingEnabled } from '../observability/tracing.js';
import type { LimitClass, RateLimits } from '../protect/rate-limits.js';

/** Route config of a route in a stricter tier. */
export interface RateTierConfig {
  rateTier?: 'auth';
}

export function registerRateLimitHook(app: FastifyInstance, limits: RateLimits, guard: Guard): void {
  const anyLimit = limits.applies('anonymous') || limits.applies('user') || limits.applies('auth');
  if (!anyLimit) return;
  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/api/')) return;
    // A broken token is the handler's 401; for counting, its sender is an anonymous IP.
    const who = req.headers.authorization === undefined ? undefined : await guard(req).catch(() => undefined);
    const subjects: Array<[LimitClass, string]> = [];
    if (who?.kind === 'user') {
      if (limits.applies('user')) subjects.push(['user', who.id]);
    } else if (limits.applies('anonymous')) subjects.push(['anonymous', req.ip]);
    if ((req.routeOptions.config as RateTierConfig).rateTier === 'auth' && limits.applies('auth')) subjects.push(['auth', req.ip]);
    if (subjects.length === 0) return;
    const decision = tracingEnabled()
      ? await inSpan('rate-limit check', {}, async (span) => {
          const d = await limits.check(subjects);
          span.setAttribute('rampart.rate_limit.allowed', d.allowed);
          return d;
        })
      : await limits.check(subjects);
    reply.headers(decision.headers);
    if (decision.allowed) return;
    if (decision.reason === 'store-down') {
      throw new RampartError('E_RATE_LIMIT_UNAVAILABLE', 'rate limits cannot be checked right now; retry shortly', {
        headers: { 'Retry-After': String(decision.retryAfterS) },
      });
    }
    throw new RampartError('E_RATE_LIMITED', `too many requests; retry in ${decision.retryAfterS} s`, {
      headers: { 'Retry-After': String(decision.retryAfterS) },
    });
  });
}
