/**
 * Security events and admin actions of the HTTP API into the audit log, from one place: after
 * each answer, the route and its outcome say what happened. Sign-ins (and failed ones, and
 * refused ones), refresh-token reuse, session ends, account deletion, password changes, changes
 * of a user's role or state, and every mutating `/admin/` call (jobs retried, queues redriven
 * or paused, app-version policies set, webhooks changed, …). Bodies are never stored: only ids,
 * the attempted email of a sign-in, and which fields of a user changed.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { seenPrincipal } from '../auth/guard.js';
import type { AuditActor, AuditEvent, AuditLog } from '../ops/audit.js';
import { problemOf } from './problem.js';

const SIGNED_IN = Symbol('signedIn');
type Req = FastifyRequest & { [SIGNED_IN]?: string };

const AUTH_ROUTES: Record<string, string> = {
  'POST /auth/login': 'auth.login',
  'POST /auth/signup': 'auth.signup',
  'POST /auth/logout': 'session.revoked',
  'POST /auth/password': 'auth.password_changed',
  'DELETE /auth/sessions': 'session.revoked_all',
  'DELETE /auth/sessions/:id': 'session.revoked',
  'DELETE /auth/me': 'account.deleted',
};

/** `POST /api/v1/admin/jobs/:id/retry` → `admin.jobs.retry`; `PUT …/app-versions/:platform` → `admin.app-versions.set`. */
export function adminAction(method: string, route: string): string {
  const parts = route
    .replace(/^.*?\/admin\//, '')
    .split('/')
    .filter((p) => p !== '' && !p.startsWith(':'));
  const verb = { PUT: 'set', PATCH: 'update', DELETE: 'delete' }[method];
  return ['admin', ...parts, ...(verb ? [verb] : [])].join('.');
}

export function registerAuditHook(app: FastifyInstance, audit: AuditLog): void {
  // The user a sign-in answered with (no bearer token on that request to tell).
  // Callback-style hooks: they run on every request, and reads should not pay for a promise.
  app.addHook('onSend', (req, reply, payload, done) => {
    if (
      req.method === 'POST' &&
      reply.statusCode < 300 &&
      typeof payload === 'string' &&
      /\/auth\/(login|signup)$/.test(req.routeOptions?.url ?? '')
    ) {
      try {
        (req as Req)[SIGNED_IN] = JSON.parse(payload)?.user?.id;
      } catch {
        // Not JSON: nothing to take.
      }
    }
    done(null, payload);
  });
  app.addHook('onResponse', (req, reply, done) => {
    done();
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return;
    record(req, reply.statusCode).catch((err) => req.log.error({ err: (err as Error).message }, 'audit entry could not be made'));
  });
  async function record(req: FastifyRequest, status: number): Promise<void> {
    const route = req.routeOptions?.url;
    if (!route) return;
    const rel = route.replace(/^\/api\/v\d+/, '');
    const problem = problemOf(req);
    let action = AUTH_ROUTES[`${req.method} ${rel}`];
    const body = (req.body ?? {}) as Record<string, unknown>;
    let target: AuditEvent['target'];
    let details: Record<string, unknown> | undefined;
    if (action === 'auth.login' || action === 'auth.signup') {
      details = typeof body.email === 'string' ? { email: body.email.trim().toLowerCase().slice(0, 200) } : undefined;
    } else if (rel === '/auth/refresh') {
      // Only the alarming case: a refresh token presented twice (possible theft).
      if (problem?.code !== 'E_SESSION_REVOKED' || !/already used/.test(problem.message)) return;
      action = 'auth.refresh_token_reused';
    } else if (rel.startsWith('/admin/')) {
      action = adminAction(req.method, rel);
      const params = req.params as Record<string, string>;
      const id = params.id ?? params.queue ?? params.name ?? params.platform;
      if (id) target = { type: rel.split('/')[2] ?? 'admin', id };
    } else if (/^\/collections\/users\/records\/:id$/.test(rel) && (req.method === 'PATCH' || req.method === 'PUT')) {
      const changed = Object.keys(body).filter((k) => k === 'role' || k === 'disabled' || k === 'email_verified');
      if (changed.length === 0) return;
      action = changed.includes('role') ? 'user.role_changed' : 'user.state_changed';
      target = { type: 'user', id: (req.params as { id: string }).id };
      details = Object.fromEntries(changed.map((k) => [k, body[k]]));
    }
    if (!action) return;
    if (action.startsWith('session.') && !target) {
      const id = (req.params as { id?: string }).id;
      if (id) target = { type: 'session', id };
    }
    const who = await seenPrincipal(req)?.catch(() => undefined);
    let actor: AuditActor = { type: 'anonymous' };
    if (who?.kind === 'user') actor = { type: who.role === 'admin' ? 'admin' : 'user', id: who.id };
    else if ((req as Req)[SIGNED_IN]) actor = { type: 'user', id: (req as Req)[SIGNED_IN] };
    await audit.record({
      action,
      outcome: status < 400 ? 'success' : status === 403 || status === 429 ? 'denied' : 'failure',
      actor,
      target,
      ip: req.ip,
      requestId: String(req.id),
      details: problem && status >= 400 ? { ...details, code: problem.code } : details,
    });
  }
}
