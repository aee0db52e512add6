/**
 * The Fastify instance: request ids, JSON logs, problem+json errors, 404 vs 405, per-route
 * metrics, the fast-fail gate while the database is away, OpenAPI and the docs page.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import underPressure from '@fastify/under-pressure';
import { context, propagation, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest, LogController } from 'fastify';
import helmet from 'helmet';
import type { Logger } from 'pino';
import { Gauge } from 'prom-client';
import { type Guard, seenPrincipal } from '../auth/guard.js';
import type { OAuthService } from '../auth/oauth.js';
import { ConfigError, type HttpConfig } from '../core/config.js';
import { RampartError } from '../core/errors.js';
import type { Jobs } from '../jobs/jobs.js';
import type { Webhooks } from '../notify/webhooks.js';
import { lazyChildLoggerFactory, requestLog } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { tracer, tracingEnabled } from '../observability/tracing.js';
import type { AuditLog } from '../ops/audit.js';
import type { AppVersionPolicies } from '../protect/app-versions.js';
import type { IdempotencyStore } from '../protect/idempotency.js';
import type { RateLimits } from '../protect/rate-limits.js';
import type { ReadCache } from '../protect/read-cache.js';
import type { RecordsService } from '../records/service.js';
import type { DbAvailability } from '../storage/availability.js';
import type { Storage } from '../storage/types.js';
import { API_VERSIONS, CHANGELOG_PATH, deprecationHeaders, versionOf } from './api-versions.js';
import { registerAuditHook } from './audit-hook.js';
import { registerAuthPages } from './auth-pages.js';
import { registerConsole } from './console.js';
import { registerIdempotency } from './idempotency.js';
import { problemSchema, RouteTable, sendProblem, toRampartError } from './problem.js';
import { registerRateLimitHook } from './rate-limit.js';
import type { ReadAfterWrites } from './read-after-writes.js';
import { registerSystemRoutes } from './system.js';
import { loadTls, type TlsPair, watchTls } from './tls.js';
import { registerAdminJobRoutes } from './v1/admin-jobs.js';
import { registerAppVersionHook, registerAppVersionRoutes } from './v1/app-versions.js';
import { type AuthRouteDeps, registerAuthRoutes, registerJwksRoute } from './v1/auth.js';
import { registerBatchRoute } from './v1/batch.js';
import { registerOAuthRoutes } from './v1/oauth.js';
import { registerRecordRoutes } from './v1/records.js';
import { registerWebhookRoutes } from './v1/webhooks.js';

/** Everything the server is built from. */
export interface ServerDeps {
  /** The HTTP slice of the configuration. */
  config: HttpConfig;
  /** The process logger; each request gets a lazily created child. */
  logger: Logger;
  /** Request metrics go here. */
  metrics: Metrics;
  /** For readiness checks. */
  storage: Storage;
  /** The fast-fail gate. */
  availability: DbAvailability;
  /** The records service behind the v1 routes. */
  records: RecordsService;
  /** Read-your-writes over read replicas (only when replicas are configured). */
  readAfterWrites?: ReadAfterWrites;
  /** Who a request is from. */
  guard: Guard;
  /** Accounts routes. */
  auth: Omit<AuthRouteDeps, 'guard' | 'root'>;
  /** OAuth / OIDC sign-in. */
  oauth: OAuthService;
  /** Timeout of each readiness check. */
  readyTimeoutMs: number;
  /**
   * Where shutdown is: `draining` (still listening, readiness failing) then `stopping` (no
   * longer listening). Either way every answer closes its connection and realtime is refused.
   */
  lifecycle(): 'serving' | 'draining' | 'stopping';
  /** More readiness checks by name (queue lag). */
  readyChecks?: Record<string, () => Promise<void>>;
  /** Jobs, queues and schedules for the operators' routes. */
  jobs: Jobs;
  /** The app-version policy (426 for unsupported app versions). */
  appVersions: AppVersionPolicies;
  /** Rate limits per IP, user and route tier. */
  rateLimits: RateLimits;
  /** Stored answers of requests with an Idempotency-Key. */
  idempotency: IdempotencyStore;
  /** The read cache of record reads and lists (absent when turned off). */
  cache: ReadCache | undefined;
  /** Shown by /readyz without deciding readiness (outbound dependencies). */
  readyDetails?: () => Record<string, unknown>;
  /** Outgoing webhook subscriptions. */
  webhooks: Webhooks;
  /** The realtime endpoints (WebSocket, Server-Sent Events). */
  realtime?: { register(app: FastifyInstance, roots: string[]): Promise<void> };
  /** More routes under each API root (notifications, devices). */
  extraRoutes?: (app: FastifyInstance, root: string) => void;
  /** Security events and admin actions go to this audit log. */
  audit?: AuditLog;
}

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
/**
 * The security headers of every answer, worked out once by helmet (they depend only on the
 * configuration) and set in one call per request. The content security policy lets JSON and
 * problems run and embed nothing; the built-in pages and /docs replace it with their own.
 */
function securityHeaders(cors: boolean): Record<string, string> {
  const headers: Record<string, string> = {};
  const res = {
    setHeader: (name: string, value: unknown) => {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader: (name: string) => {
      delete headers[name.toLowerCase()];
    },
  };
  helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    strictTransportSecurity: false,
    frameguard: { action: 'deny' },
    // Browsers on the configured origins read the API with CORS; other sites' pages may not embed it.
    crossOriginResourcePolicy: { policy: cors ? 'cross-origin' : 'same-origin' },
    // The set OWASP recommends for a JSON API (nosniff, CSP, X-Frame-Options, and CORP); headers
    // that only matter for HTML documents or old browsers are left out — each is bytes on every
    // answer. The built-in pages set their own Referrer-Policy.
    crossOriginOpenerPolicy: false,
    referrerPolicy: false,
    xDownloadOptions: false,
    xDnsPrefetchControl: false,
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false,
    originAgentCluster: false,
  })({} as never, res as never, (err?: unknown) => {
    if (err) throw err;
  });
  return headers;
}

/** A gap between two load samples this long means the process was paused, not loaded. */
const PAUSE_GAP_MS = 2000;
/** How often load figures (event-loop delay, memory) are sampled for shedding. */
const SHED_SAMPLE_MS = 250;
/** Request headers a browser on an allowed origin may send. */
const CORS_REQUEST_HEADERS = [
  'authorization',
  'content-type',
  'if-match',
  'if-none-match',
  'idempotency-key',
  'x-app-platform',
  'x-app-version',
  'x-request-id',
];
/** Response headers its scripts may read. */
const CORS_EXPOSED_HEADERS = [
  'cache-status',
  'age',
  'idempotent-replayed',
  'ratelimit',
  'ratelimit-policy',
  'etag',
  'location',
  'retry-after',
  'x-request-id',
  'x-app-update',
  'x-app-latest-version',
  'www-authenticate',
  'deprecation',
  'sunset',
  'link',
];

/**
 * Generated request ids: a random per-process prefix and a counter. Unique across nodes and
 * restarts for practical purposes, and much cheaper than a UUID per request.
 */
const REQUEST_ID_PREFIX = randomBytes(6).toString('base64url');
let requestCounter = 0;
const nextRequestId = () => `${REQUEST_ID_PREFIX}-${(++requestCounter).toString(36)}`;

/** The API changelog (docs/api-changelog.md, shipped with the package), read once. */
let changelogText: string | undefined;
function changelog(): string {
  changelogText ??= readFileSync(new URL('../../docs/api-changelog.md', import.meta.url), 'utf8');
  return changelogText;
}

export async function buildServer(deps: ServerDeps): Promise<FastifyInstance> {
  const { config, metrics, availability } = deps;
  // Slow senders (slowloris) are cut off once their headers take too long; Node checks every
  // second instead of every 30 s. The same for HTTP and HTTPS.
  const serverOptions = { headersTimeout: config.headersTimeoutMs, connectionsCheckingInterval: 1000 };
  let tls: TlsPair | undefined;
  if (config.tls) {
    try {
      tls = loadTls(config.tls);
    } catch (err) {
      throw new ConfigError(`RAMPART_TLS_CERT_PATH / RAMPART_TLS_KEY_PATH: ${(err as Error).message}`);
    }
  }
  const app = Fastify({
    ...((tls ? { https: { ...serverOptions, cert: tls.cert, key: tls.key } } : { http: serverOptions }) as object),
    loggerInstance: deps.logger as FastifyBaseLogger,
    childLoggerFactory: lazyChildLoggerFactory as never,
    // One 'request' line per response (below), with the route and timing, instead of two.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    bodyLimit: config.bodyLimit,
    requestTimeout: config.requestTimeoutMs,
    // Requests arriving on kept-alive connections while draining get our own problem (below).
    return503OnClosing: false,
    onProtoPoisoning: 'error',
    // X-Forwarded-For is believed only from configured proxies, so a client cannot choose its own IP.
    trustProxy: config.trustProxy.length > 0 ? [...config.trustProxy] : false,
    onConstructorPoisoning: 'error',
    // A client's X-Request-Id is kept when it is sane, so one id follows a call across services.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : nextRequestId();
    },
  }) as unknown as FastifyInstance;
  if (tls && config.tls) {
    const expiry = new Gauge({
      name: 'rampart_tls_certificate_expiry_timestamp_seconds',
      help: 'When the certificate this node serves HTTPS with expires (Unix time)',
      registers: [metrics.registry],
    });
    expiry.set(tls.notAfter.getTime() / 1000);
    const stop = watchTls(app.server as unknown as HttpsServer, config.tls, tls, deps.logger, (p) =>
      expiry.set(p.notAfter.getTime() / 1000),
    );
    app.addHook('onClose', (_app, done) => {
      stop();
      done();
    });
  }
  const routes = new RouteTable();
  // Handlers still running, even for requests whose client has gone: shutdown waits for them
  // before closing the database (a closed socket does not stop a handler half-way).
  let running = 0;
  app.addHook('onRoute', (r) => {
    routes.add(r.url, r.method);
    const handler = r.handler;
    // The handler's own shape is kept: an async one's promise is returned (settled after the
    // count), a callback-style one (static files: it sends later) returns as it did.
    r.handler = function tracked(this: unknown, req, reply) {
      running++;
      let out: unknown;
      try {
        out = handler.call(this as never, req, reply);
      } catch (err) {
        running--;
        throw err;
      }
      if (out instanceof Promise) return out.finally(() => running--);
      running--;
      return out as never;
    };
  });
  app.decorate('handlersRunning', () => running);
  // Route schemas describe the API; validation happens in the services (one gate for all callers).
  app.setValidatorCompiler(() => () => true);
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  app.addSchema(problemSchema);
  // The API speaks JSON only: a text/plain body is a 415, not a string handed to a handler.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));

  // Load shedding, first of all: while this node is overloaded (event loop lagging, memory near
  // its limit) API requests get a quick 503 with Retry-After instead of queueing up until the
  // process falls over. Health, readiness and metrics still answer (readiness says why it fails).
  // The first second after listening is exempt: the start-up's own synchronous work (migrations,
  // compiling the app) shows as event-loop delay in the first sample, and is not load.
  let shedFrom = Number.POSITIVE_INFINITY;
  app.addHook('onListen', (done) => {
    shedFrom = Date.now() + 1000;
    done();
  });
  // A process that was paused (SIGSTOP, a suspended VM or laptop) sees the whole pause as one
  // event-loop delay. That is not load: shedding the requests queued meanwhile would fail every
  // one of them. A beat that finds a long gap since the previous one (or a request that arrives
  // before the beat has run) marks the next two samples as not counting.
  let lastBeat = Date.now();
  let pausedUntil = 0;
  const beat = setInterval(() => {
    const now = Date.now();
    if (now - lastBeat > PAUSE_GAP_MS) pausedUntil = now + 2 * SHED_SAMPLE_MS + 50;
    lastBeat = now;
  }, SHED_SAMPLE_MS);
  beat.unref();
  app.addHook('onClose', (_app, done) => {
    clearInterval(beat);
    done();
  });
  const resumedFromPause = () => Date.now() - lastBeat > PAUSE_GAP_MS || Date.now() < pausedUntil;
  await app.register(underPressure, {
    maxEventLoopDelay: config.shedEventLoopDelayMs,
    maxHeapUsedBytes: config.shedHeapUsedBytes,
    maxRssBytes: config.shedRssBytes,
    sampleInterval: SHED_SAMPLE_MS,
    pressureHandler: (req, _reply, type, value) => {
      if (!req.url.startsWith('/api/') || Date.now() < shedFrom) return undefined;
      if (type === 'eventLoopDelay' && resumedFromPause()) return undefined;
      metrics.countShed(type);
      const detail =
        type === 'eventLoopDelay' ? `event-loop delay ${Math.round(value ?? 0)} ms` : `${type} ${Math.round((value ?? 0) / 1_048_576)} MB`;
      return Promise.reject(
        new RampartError('E_OVERLOADED', `this node is overloaded (${detail}); retry shortly`, { headers: { 'Retry-After': '2' } }),
      );
    },
  });

  if (config.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: config.corsOrigins.includes('*') ? '*' : config.corsOrigins,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: CORS_REQUEST_HEADERS,
      exposedHeaders: CORS_EXPOSED_HEADERS,
      // Bearer tokens, not cookies: no credentialed requests.
      credentials: false,
      maxAge: 600,
    });
  }
  const security = securityHeaders(config.corsOrigins.length > 0);
  const hsts = config.hstsMaxAgeS > 0 ? `max-age=${config.hstsMaxAgeS}; includeSubDomains` : undefined;
  // Answers of a deprecated API version say so, with the dates and where the changes are listed.
  const deprecated = new Map(Object.entries(config.apiDeprecations).map(([v, d]) => [Number(v.slice(1)), deprecationHeaders(d)]));

  if (tracingEnabled()) {
    // A span per request, from the caller's traceparent when it sends one; what runs for the
    // request (hooks, handler, queries, enqueues, outbound calls) runs inside it.
    const SPAN = Symbol('span');
    type Traced = FastifyRequest & { [SPAN]?: Span };
    app.addHook('onRequest', (req, _reply, done) => {
      const parent = propagation.extract(ROOT_CONTEXT, req.headers);
      const span = tracer.startSpan(
        req.method,
        { kind: SpanKind.SERVER, attributes: { 'http.request.method': req.method, 'url.path': req.url.split('?')[0] ?? '' } },
        parent,
      );
      (req as Traced)[SPAN] = span;
      context.with(trace.setSpan(parent, span), done);
    });
    app.addHook('onResponse', async (req, reply) => {
      const span = (req as Traced)[SPAN];
      if (!span) return;
      const route = req.routeOptions?.url;
      if (route) {
        span.updateName(`${req.method} ${route}`);
        span.setAttribute('http.route', route);
      }
      span.setAttribute('http.response.status_code', reply.statusCode);
      // The user's id only (an opaque UUID): no email or name in traces.
      const who = await seenPrincipal(req)?.catch(() => undefined);
      if (who?.kind === 'user') span.setAttribute('enduser.id', who.id);
      if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    });
  }

  // Callback-style hooks: they run on every request, and skip the promise machinery of async ones.
  app.addHook('onRequest', (req, reply, done) => {
    reply.header('x-request-id', req.id);
    reply.headers(security);
    // HSTS only on HTTPS (directly, or through a trusted proxy that says so in X-Forwarded-Proto).
    if (hsts && req.protocol === 'https') reply.header('strict-transport-security', hsts);
    if (deprecated.size > 0) {
      const headers = deprecated.get(versionOf(req.url) ?? 0);
      if (headers) reply.headers(headers);
    }
    // Shutting down: a request that still reaches this node (on a connection opened before it
    // stopped listening) is served, and its connection closes after the answer. Realtime
    // clients, who would stay, are sent to another node at once.
    if (deps.lifecycle() !== 'serving') {
      reply.header('connection', 'close');
      if (req.url.includes('/realtime')) {
        done(
          new RampartError('E_SHUTTING_DOWN', 'this node is shutting down; retry on another', {
            headers: { 'Retry-After': '1', Connection: 'close' },
          }),
        );
        return;
      }
    }
    // Cached reads answer for themselves while the database is down (stale if error).
    if (availability.isDown() && req.url.startsWith('/api/') && !(req.routeOptions.config as { staleIfError?: boolean }).staleIfError) {
      done(new RampartError('E_DB_UNAVAILABLE', 'the database is unavailable; retry shortly', { headers: { 'Retry-After': '2' } }));
      return;
    }
    done();
  });
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.observeRequest(req.method, route, reply.statusCode, reply.elapsedTime / 1000);
    const version = versionOf(req.url);
    if (version !== undefined) metrics.countApiRequest(version);
    const level = reply.statusCode >= 500 ? 'error' : 'info';
    if (requestLog(req).isLevelEnabled(level))
      req.log[level](
        { method: req.method, url: req.url.slice(0, 512), route, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 },
        'request',
      );
    done();
  });

  registerRateLimitHook(app, deps.rateLimits, deps.guard);
  registerIdempotency(app, deps.idempotency, deps.guard, metrics, deps.logger, deps.records, deps.idempotency.renewEveryMs);
  deps.readAfterWrites?.register(app, deps.guard);

  app.setErrorHandler((err, req, reply) => {
    // A database failure outside the records service (a session lookup, an idempotency claim)
    // is a 503 like any other, not an unexpected error.
    const known = toRampartError(err) ?? toRampartError(deps.records.mapError(err));
    if (known) return sendProblem(req, reply, known);
    req.log.error({ err }, 'unhandled error');
    return sendProblem(req, reply, new RampartError('E_INTERNAL', 'An unexpected error occurred; it has been logged.'));
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    const allowed = routes.allowed(path).filter((m) => m !== 'HEAD');
    // A route that takes this method but found nothing (a static file that is not there) is a 404.
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    if (allowed.length > 0 && !allowed.includes(method)) {
      reply.header('allow', [...allowed, ...(allowed.includes('GET') ? ['HEAD'] : [])].join(', '));
      return sendProblem(
        req,
        reply,
        new RampartError('E_METHOD_NOT_ALLOWED', `${req.method} is not allowed here; use ${allowed.join(', ')}`),
      );
    }
    return sendProblem(req, reply, new RampartError('E_ROUTE_NOT_FOUND', `no route ${req.method} ${path.slice(0, 200)}`));
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Rampart API',
        version: '1',
        description:
          'Accounts, collections, records and batch writes. Send `Authorization: Bearer <access token>`; ' +
          'errors are application/problem+json with a stable `code`.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      // A token is optional everywhere: the collection rules decide what anonymous callers may do.
      security: [{ bearer: [] }, {}],
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => (json.$id as string) || `def-${i}` },
  });
  // The docs page and its assets carry their own content security policy (self-hosted, no CDN).
  // (The plugin's default also upgrades requests to HTTPS, which breaks the page on plain HTTP,
  // and allows the online validator's badge: no requests leave for other hosts.)
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP:
      "default-src 'self'; base-uri 'self'; img-src 'self' data:; font-src 'self' data:; object-src 'none'; " +
      "script-src 'self'; script-src-attr 'none'; style-src 'self'; frame-ancestors 'none'",
    uiConfig: { docExpansion: 'list', deepLinking: false, validatorUrl: null },
  });

  await registerConsole(app);

  registerSystemRoutes(app, {
    storage: deps.storage,
    metrics,
    readyTimeoutMs: deps.readyTimeoutMs,
    isStopping: () => deps.lifecycle() !== 'serving',
    readyDetails: deps.readyDetails,
    readyChecks: {
      ...deps.readyChecks,
      load: async () => {
        if (app.isUnderPressure()) {
          const u = app.memoryUsage();
          throw new Error(`overloaded: event-loop delay ${Math.round(u.eventLoopDelay)} ms, heap ${Math.round(u.heapUsed / 1_048_576)} MB`);
        }
      },
    },
  });
  registerAuthPages(app);
  registerJwksRoute(app, deps.auth.keys);
  registerAppVersionHook(app, deps.appVersions, metrics);
  if (deps.audit) registerAuditHook(app, deps.audit);
  if (deps.realtime)
    await deps.realtime.register(
      app,
      API_VERSIONS.map((a) => a.root),
    );
  // Every API version has every route, served by the same handlers (see api-versions.ts).
  for (const api of API_VERSIONS) {
    registerAuthRoutes(app, { ...deps.auth, guard: deps.guard, root: api.root });
    await registerOAuthRoutes(app, deps.oauth, api.root);
    registerRecordRoutes(app, {
      records: deps.records,
      guard: deps.guard,
      api,
      cache: deps.cache,
      dbDown: () => availability.isDown(),
      readAfterWrites: deps.readAfterWrites,
    });
    registerBatchRoute(app, deps.records, deps.guard, api.root);
    registerAdminJobRoutes(app, deps.jobs, deps.guard, api.root);
    registerAppVersionRoutes(app, deps.appVersions, deps.guard, metrics, api.root);
    registerWebhookRoutes(app, deps.webhooks, deps.guard, api.root);
    deps.extraRoutes?.(app, api.root);
    app.get(`${api.root}/openapi.json`, { schema: { hide: true } }, async () => app.swagger());
  }
  app.get(CHANGELOG_PATH, { schema: { hide: true } }, async (_req, reply) =>
    reply.type('text/markdown; charset=utf-8').header('cache-control', 'public, max-age=3600').send(changelog()),
  );
  return app;
}
