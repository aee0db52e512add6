/** Health, readiness and metrics endpoints for operators and orchestrators. */
import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../observability/metrics.js';
import type { Storage } from '../storage/types.js';

/** What `/readyz` needs. */
export interface SystemRouteDeps {
  storage: Storage;
  metrics: Metrics;
  /** Timeout of each readiness check. */
  readyTimeoutMs: number;
  /** True once shutdown has begun: the node must leave the load balancer. */
  isStopping(): boolean;
  /** More readiness checks by name; each rejects with the reason it fails. */
  readyChecks?: Record<string, () => Promise<void>>;
  /** Details shown by /readyz that do not decide readiness (outbound dependencies' breakers). */
  readyDetails?: () => Record<string, unknown>;
}

export function registerSystemRoutes(app: FastifyInstance, deps: SystemRouteDeps): void {
  const hide = { hide: true };
  app.get('/healthz', { schema: { tags: ['system'], summary: 'Liveness: the process answers' } }, async () => ({ status: 'ok' }));

  app.get(
    '/readyz',
    { schema: { tags: ['system'], summary: 'Readiness: dependencies answer (503 names the failing check)' } },
    async (_req, reply) => {
      const checks: Record<string, { status: 'ok' | 'fail'; duration_ms: number; error?: string }> = {};
      const started = performance.now();
      try {
        await deps.storage.ping(deps.readyTimeoutMs);
        checks.database = { status: 'ok', duration_ms: Math.round(performance.now() - started) };
      } catch (err) {
        checks.database = {
          status: 'fail',
          duration_ms: Math.round(performance.now() - started),
          error: (err as Error).message.slice(0, 200),
        };
      }
      for (const [name, check] of Object.entries(deps.readyChecks ?? {})) {
        const t0 = performance.now();
        try {
          await check();
          checks[name] = { status: 'ok', duration_ms: Math.round(performance.now() - t0) };
        } catch (err) {
          checks[name] = { status: 'fail', duration_ms: Math.round(performance.now() - t0), error: (err as Error).message.slice(0, 200) };
        }
      }
      if (deps.isStopping()) checks.lifecycle = { status: 'fail', duration_ms: 0, error: 'shutting down' };
      const failing = Object.entries(checks)
        .filter(([, c]) => c.status === 'fail')
        .map(([n]) => n);
      if (failing.length > 0) reply.code(503).header('retry-after', '5');
      return { status: failing.length > 0 ? 'fail' : 'ok', failing, checks, ...deps.readyDetails?.() };
    },
  );

  app.get('/metrics', { schema: hide }, async (_req, reply) => {
    reply.type(deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
}
