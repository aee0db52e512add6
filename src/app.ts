/**
 * The composition root: builds every component from the configuration and the app
 * declaration. No singletons, so tests can run several apps in one process.
 */
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { type Auth, createAuth } from './auth/auth.js';
import { verifyAccessToken } from './auth/guard.js';
import { withUsers } from './auth/users.js';
import { type Clock, systemClock } from './core/clock.js';
import { type Config, ConfigError, configSecrets } from './core/config.js';
import { TLS_CERT_ERRORS } from './core/errors.js';
import { createProgress } from './core/progress.js';
import { DomainEvents } from './events/events.js';
import { ReadAfterWrites } from './http/read-after-writes.js';
import { RealtimeRoutes } from './http/realtime.js';
import { buildServer } from './http/server.js';
import { registerAdminOpsRoutes } from './http/v1/admin-ops.js';
import { registerAdminUserRoutes } from './http/v1/admin-users.js';
import { registerNotificationRoutes } from './http/v1/notifications.js';
import { ACCOUNT_LINK_JOB, builtins, MAIL_JOB } from './jobs/builtins.js';
import { createJobs, type Jobs } from './jobs/jobs.js';
import { Mailer } from './notify/mail.js';
import { Notifications } from './notify/notifications.js';
import { WEBHOOK_JOB, Webhooks } from './notify/webhooks.js';
import { createLogger } from './observability/logger.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { recordSpan, tracingEnabled } from './observability/tracing.js';
import { Alerts } from './ops/alerts.js';
import { AuditLog } from './ops/audit.js';
import { Backups } from './ops/backups.js';
import { RoutineChecks } from './ops/checks.js';
import { CONSOLE_CHANNEL, ConsoleFeed, consoleChannel } from './ops/console-feed.js';
import { DataKeys } from './ops/data-keys.js';
import { listNodes, NodeReporter } from './ops/nodes.js';
import { opsJobs } from './ops/ops-jobs.js';
import { AppVersionPolicies } from './protect/app-versions.js';
import { IdempotencyStore } from './protect/idempotency.js';
import { type LimitStore, RateLimits } from './protect/rate-limits.js';
import { ReadCache } from './protect/read-cache.js';
import { createRealtime, type Realtime } from './realtime/realtime.js';
import { HookRegistry } from './records/hooks.js';
import { type AppDef, type CollectionSchema, normalizeCollections } from './records/schema.js';
import { RecordsService } from './records/service.js';
import { type DependencyOptions, OutboundHttp } from './resilience/http-client.js';
import type { PolicyObserver } from './resilience/policy.js';
import { DbAvailability } from './storage/availability.js';
import { Migrator } from './storage/migrator.js';
import { openSidePool, openStorage } from './storage/open.js';
import { openRedis, type RedisHandle } from './storage/redis.js';
import type { Storage } from './storage/types.js';

/** A built app; nothing listens until `start()`. */
export interface RampartApp {
  /** The validated configuration. */
  config: Config;
  /** The process logger. */
  logger: Logger;
  /** The storage backend in use. */
  storage: Storage;
  /** The metrics registry and recorders. */
  metrics: Metrics;
  /** Reads and writes of app collections, for app code. */
  records: RecordsService;
  /** Hooks of every collection; app code may add more. */
  hooks: HookRegistry;
  /** Migrations of this app on this storage. */
  migrator: Migrator;
  /** The HTTP server (Fastify); `inject` works before `start`. */
  server: FastifyInstance;
  /** The normalized collections (the built-in `users` first). */
  collections: CollectionSchema[];
  /** Accounts, sessions and tokens. */
  auth: Auth;
  /** Background jobs and cron. */
  jobs: Jobs;
  /** Outgoing mail. */
  mailer: Mailer;
  /** Realtime: the event log, the hub, channels and presence. */
  realtime: Realtime;
  /** Notifications: inboxes, devices, push. */
  notifications: Notifications;
  /** Domain events to brokers (the outbox relay) and from them (the inbox). */
  events: DomainEvents;
  /** Backups: create, list, verify, restore, retention. */
  backups: Backups;
  /** Routine checks: run on demand, state and alerts. */
  checks: RoutineChecks;
  /** Data keys of encrypted fields, when the app declares any. */
  dataKeys?: DataKeys;
  /** The audit log of security events and admin actions. */
  audit: AuditLog;
  /**
   * Apply migrations (when configured), start the in-process worker (when configured) and the
   * scheduler, and listen; resolves to the bound URL.
   */
  start(): Promise<string>;
  /**
   * Run as a worker process: migrations, the worker for these queues (default all) and the
   * scheduler; no HTTP API.
   */
  startWorker(queues?: string[]): Promise<void>;
  /** Stop accepting, let in-flight requests and running jobs finish within their deadlines, close the database. */
  stop(): Promise<void>;
}

/** Options for tests and embedding. */
export interface CreateAppOptions {
  logger?: Logger;
  clock?: Clock;
}

export async function createApp(config: Config, def: AppDef, opts: CreateAppOptions = {}): Promise<RampartApp> {
  const app = withUsers(def);
  const collections = normalizeCollections(app);
  const clock = opts.clock ?? systemClock;
  const logger =
    opts.logger ??
    createLogger(config.observability.logLevel, undefined, { secrets: configSecrets(config), file: config.observability.logFile });
  let metrics: Metrics | undefined;
  const storage = openStorage(config.storage, {
    onQuery: (e) => {
      metrics?.observeQuery(e);
      if (tracingEnabled()) {
        const end = Date.now();
        recordSpan(`db ${e.op}`, end - e.durationMs, end, {
          'db.system': config.storage.databaseUrl ? 'postgresql' : 'sqlite',
          'db.operation.name': e.op,
          'db.query.text': (e.sql ?? '').slice(0, 500),
        });
      }
    },
    onBackgroundError: (err) => logger.warn({ err: err.message }, 'database connection error (the pool replaces the connection)'),
    onFailover: (from, to) => logger.warn({ from, to }, 'the database primary moved: new connections go to the new primary'),
  });
  metrics = createMetrics(storage.kind, () => storage.poolStats());
  const m = metrics;
  const availability = new DbAvailability(
    () => storage.ping(config.observability.readyTimeoutMs),
    (up) => {
      m.setDbAvailable(up);
      if (up) logger.info('database is reachable again');
      else logger.warn('database unreachable: failing requests fast until it answers');
    },
  );
  const hooks = new HookRegistry();
  for (const [name, c] of Object.entries(app.collections)) hooks.addDeclared(name, c.hooks);
  const records = new RecordsService(storage, collections, hooks, clock, logger, () => availability.reportFailure());
  const migrator = new Migrator(storage, collections);
  let lifecycle: 'serving' | 'draining' | 'stopping' = 'serving';
  let boundUrl: string | undefined;
  const outboundObserver = observeOutbound(logger, m);
  const outbound = new OutboundHttp(mergeDependencies(app.dependencies ?? {}, config.protect.dependencies), outboundObserver);
  records.http = (name) => outbound.get(name);
  m.watchOutbound(() => outbound.stats());
  const replicas = storage.replicas;
  if (replicas) m.watchReplicas(() => ({ status: replicas.status(), fallbacks: replicas.fallbacks() }));
  const mailer = new Mailer(
    { smtpUrl: config.auth.smtpUrl, from: config.auth.mailFrom, dataDir: config.storage.dataDir },
    outboundObserver,
  );
  const jobs = createJobs({ config: config.jobs, storage, records, mailer, metrics, log: logger });
  records.jobsFor = (db) => jobs.client(db);
  const auth = createAuth({
    config,
    storage,
    records,
    hooks,
    clock,
    log: logger,
    metrics,
    outbound,
    publicUrl: () => config.http.publicUrl ?? boundUrl ?? `http://${config.http.host}:${config.http.port}`,
    sendMail: (mail) => jobs.enqueue(MAIL_JOB, mail),
    requestLink: (kind, email) => jobs.enqueue(ACCOUNT_LINK_JOB, { kind, email }),
  });
  const idempotency = new IdempotencyStore(storage, clock, {
    ttlMs: config.protect.idempotencyTtlS * 1000,
    // A lease the running request renews every third of it: a dead node's claim is taken over within 10 s.
    lockMs: 10_000,
  });
  const webhooks = new Webhooks({
    storage,
    records,
    clock,
    log: logger,
    settings: config.webhooks,
    // One dependency for every subscriber URL: its timeout and bulkhead; no breaker (one dead
    // receiver must not stop the others) and no retries here (the delivery job retries).
    http: () => webhookHttp,
    async notifyOwner(db, ownerId, hook) {
      const owner = await records.get('users', ownerId).catch(() => undefined);
      if (!owner?.email) return;
      await jobs.client(db).enqueue(MAIL_JOB, {
        to: String(owner.email),
        subject: 'A webhook subscription was disabled',
        text: `The webhook subscription ${hook.id} to ${hook.url} was disabled: ${hook.disabled_reason}.\n\nFix the receiver, then re-enable it with PATCH /api/v1/admin/webhooks/${hook.id} {"active": true}.\n`,
      });
    },
    onDelivery: (outcome) => m.countWebhook(outcome),
  });
  const webhookHttp = outbound.add('webhooks', {
    timeoutMs: config.webhooks.timeoutMs,
    retries: 0,
    breaker: false,
    concurrency: 20,
    queue: 500,
  });
  webhooks.registerHooks(
    hooks,
    collections.map((c) => c.name),
  );
  jobs.registry.add({ jobs: { [WEBHOOK_JOB]: webhooks.job() }, queues: { 'rampart.webhooks': { concurrency: 10 } }, schedules: {} });
  const events = new DomainEvents({
    storage,
    records,
    clock,
    config: config.events,
    def: app.events,
    log: logger,
    registry: m.registry,
    observer: outboundObserver,
    jobsFor: (db) => jobs.client(db),
    node: config.jobs.nodeName ?? `${hostname()}:${process.pid}`,
  });
  events.registerHooks(
    hooks,
    collections.map((c) => c.name),
  );
  records.emitFor = (db) => events.emitter(db);
  jobs.registry.add(events.jobs());
  jobs.registry.add(
    builtins({
      config,
      mailer,
      records,
      queue: jobs.queue,
      log: logger,
      countMail: (outcome) => m.countMail(outcome),
      authSweep: () => auth.sweep(),
      idempotencySweep: () => idempotency.sweep(),
      webhookSweep: () => webhooks.sweep(config.webhooks.keepDays * 86_400_000),
      sendLink: (kind, email, send) => auth.accounts.sendLink(kind, email, send),
      trashCollections: collections.map((c) => c.name).filter((n) => n !== 'users'),
    }),
  );
  const audit = new AuditLog(storage, clock, logger, m.registry);
  const backups = new Backups({
    storage,
    kind: storage.kind,
    storageConfig: config.storage,
    config: config.backup,
    log: logger,
    node: config.jobs.nodeName ?? `${hostname()}:${process.pid}`,
  });
  backups.registerMetrics(m.registry);
  const nodeName = config.jobs.nodeName ?? `${hostname()}:${process.pid}`;
  const alertsHttp = outbound.add('alerts', { timeoutMs: 10_000, retries: 0, breaker: { failures: 5 }, concurrency: 4, queue: 100 });
  const alerts = new Alerts({
    channels: config.checks.channels,
    http: () => alertsHttp,
    jobs: () => jobs.client(storage.db),
    log: logger,
    source: config.http.publicUrl ?? nodeName,
    registry: m.registry,
  });
  const tlsCert = config.http.tls?.certPath;
  const checks = new RoutineChecks({
    config: config.checks,
    storage,
    queue: jobs.queue,
    clock,
    log: logger,
    node: nodeName,
    dataDir: config.storage.dataDir,
    backupsConfigured: config.backup.key !== undefined,
    backupMaxAgeHours: config.checks.backupMaxAgeHours,
    breakers: () => outbound.stats(),
    replicas: storage.replicas ? () => (storage.replicas as NonNullable<typeof storage.replicas>).status() : undefined,
    ownCertificate: tlsCert ? () => new Date(new X509Certificate(readFileSync(tlsCert)).validTo) : undefined,
    alert: (kind, r) => alerts.raise(kind, r),
  });
  checks.registerMetrics(m.registry);
  const encryptedCollections = collections.filter((c) => Object.values(c.fields).some((f) => f.encrypted));
  let dataKeys: DataKeys | undefined;
  if (encryptedCollections.length > 0) {
    const masterKey = config.dataKeys.masterKey;
    if (!masterKey) {
      const fields = encryptedCollections.flatMap((c) =>
        Object.keys(c.fields)
          .filter((f) => c.fields[f]?.encrypted)
          .map((f) => `${c.name}.${f}`),
      );
      throw new ConfigError(
        `RAMPART_MASTER_KEY: required, the app has encrypted fields (${fields.join(', ')}); 32 random bytes (openssl rand -base64 32)`,
      );
    }
    dataKeys = new DataKeys(storage, masterKey, clock, logger, config.dataKeys.reloadMs);
    const keys = dataKeys;
    records.cipher = (collection, field) => keys.cipher(collection, field);
  }
  jobs.registry.add(
    opsJobs({
      config,
      backups,
      audit,
      checks,
      alerts,
      log: logger,
      encryption: dataKeys ? { keys: dataKeys, collections: encryptedCollections } : undefined,
    }),
  );
  jobs.registry.add({ jobs: app.jobs, queues: app.queues, schedules: app.schedules });
  const appVersions = new AppVersionPolicies(storage, clock, logger);
  const redis = config.redisUrl ? await connectRedis(config.redisUrl, config.redisTlsCaPath, logger, m) : undefined;
  const limitStore = rateLimitStore(config, redis);
  const cache = readCache(config, clock, redis, m);
  const realtime = createRealtime({
    config: config.realtime,
    storage,
    records,
    hooks,
    clock,
    logger,
    registry: m.registry,
    redis,
    channels: { ...app.channels, [CONSOLE_CHANNEL]: consoleChannel },
    nodeName: config.jobs.nodeName,
    clusterIdentity: config.storage.databaseUrl ?? config.storage.dataDir,
  });
  records.writeObserver = async (db, changed) => {
    let bump: (() => void) | undefined;
    if (cache) {
      // Each write transaction tells every node which collections it changed, at commit; the
      // writing node applies it before answering (read your own writes).
      const token = randomBytes(6).toString('base64url');
      await storage.notify(db, CACHE_CHANNEL, JSON.stringify({ c: changed, t: token }));
      bump = () => cache.bump(changed, token);
    }
    // Realtime after the cache: a client that reads what an event announced reads it fresh.
    const announce = await realtime.hub.beforeCommit(db);
    return () => {
      bump?.();
      announce();
    };
  };
  const realtimeRoutes = new RealtimeRoutes({
    hub: realtime.hub,
    channels: realtime.channels,
    config: config.realtime,
    metrics: realtime.metrics,
    guard: auth.guard,
    authenticate: (token) => verifyAccessToken(auth.tokens, auth.revoked, token),
    isRevoked: (p) => p.kind === 'user' && p.sessionId !== undefined && auth.revoked.has(p.sessionId),
    async expiryOf(req) {
      const m = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '');
      return m ? (await auth.tokens.verify(m[1] as string)).exp * 1000 : undefined;
    },
  });
  realtime.countConnections = () => realtimeRoutes.connections();
  const notifications = new Notifications({
    storage,
    records,
    realtime,
    jobsFor: (db) => jobs.client(db),
    config: config.push,
    outbound,
    observer: outboundObserver,
    registry: m.registry,
    log: logger,
  });
  records.notifyFor = (db) => notifications.notifier(db);
  jobs.registry.add(notifications.jobs());
  jobs.registry.check();
  let stopCacheListener: (() => void) | undefined;
  const rateLimits = new RateLimits(config.protect.rateLimits, limitStore, config.protect.rateLimitFallback, {
    onDecision: (cls, outcome) => m.countRateLimit(cls, outcome),
    onStoreState(up, err) {
      m.setRateLimitStoreUp(up);
      if (up) logger.info({ store: limitStore.kind }, 'rate-limit store answers again');
      else
        logger.warn(
          { store: limitStore.kind, fallback: config.protect.rateLimitFallback, err: (err as Error | undefined)?.message },
          'rate-limit store unreachable: the fallback decides',
        );
    },
  });
  const readyChecks: Record<string, () => Promise<void>> = {};
  if (config.jobs.readyMaxLagS > 0) {
    readyChecks.jobs = async () => {
      const lagging = (await jobs.queue.lag()).filter((s) => s.oldestDueMs > config.jobs.readyMaxLagS * 1000);
      if (lagging.length > 0) {
        throw new Error(lagging.map((s) => `queue ${s.queue} lags ${Math.round(s.oldestDueMs / 1000)} s`).join('; '));
      }
    };
  }
  // Positions in Redis under this database's own namespace (clusters may share a Redis).
  const rywNamespace = `rampart:${createHash('sha256')
    .update(config.storage.databaseUrl ?? '')
    .digest('hex')
    .slice(0, 12)}`;
  const readAfterWrites = replicas ? new ReadAfterWrites(replicas, redis, rywNamespace, logger) : undefined;
  const server = await buildServer({
    config: config.http,
    logger,
    metrics,
    storage,
    availability,
    records,
    readyTimeoutMs: config.observability.readyTimeoutMs,
    lifecycle: () => lifecycle,
    readyChecks,
    jobs,
    appVersions,
    rateLimits,
    idempotency,
    cache,
    // Shown, not decisive: without the fan-out, events still arrive from the log; without a
    // replica, reads go to the primary.
    readyDetails: () => ({
      dependencies: outbound.stats(),
      realtime: realtime.hub.status(),
      ...(redis ? { redis: { up: redis.isUp() } } : {}),
      ...(storage.replicas ? { replicas: storage.replicas.status() } : {}),
    }),
    readAfterWrites,
    webhooks,
    realtime: realtimeRoutes,
    extraRoutes: (server, root) => {
      registerNotificationRoutes(server, notifications, auth.guard, root);
      registerAdminOpsRoutes(
        server,
        { audit, backups, jobs, guard: auth.guard, checks: () => checks.status(), nodes: () => listNodes(storage, clock.now()) },
        root,
      );
      registerAdminUserRoutes(
        server,
        { sessions: auth.sessions, guard: auth.guard, devices: (id) => notifications.devices(id), onRevoked: (id) => auth.revoked.add(id) },
        root,
      );
    },
    audit,
    guard: auth.guard,
    auth: { accounts: auth.accounts, sessions: auth.sessions, keys: auth.keys, onRevoked: (id) => auth.revoked.add(id) },
    oauth: auth.oauth,
  });

  let stopped: Promise<void> | undefined;
  let reporter: NodeReporter | undefined;
  const consoleFeed = new ConsoleFeed(realtime.channels, nodeName, () => m.nodeStats(), logger);
  const prepare = async () => {
    if (config.storage.autoMigrate) {
      const applied = await migrator.up({ progress: (total) => createProgress('migrate', total) });
      if (applied.length > 0) logger.info({ applied }, 'migrations applied');
    }
    await auth.start();
    await dataKeys?.start();
    await audit.recordRules(Object.fromEntries(collections.map((c) => [c.name, c.rules ?? {}])));
    await webhooks.start();
    logger.info({ mail: mailer.describe() }, 'mail ready');
    // Start on the shared counters when Redis is there; without it the node serves anyway (fallback).
    if (redis && !(await redis.ready(2000))) logger.warn('redis is not reachable at startup: serving with the fallback until it is');
  };
  return {
    config,
    logger,
    storage,
    metrics,
    records,
    hooks,
    migrator,
    server,
    collections,
    auth,
    jobs,
    mailer,
    realtime,
    notifications,
    events,
    backups,
    audit,
    checks,
    dataKeys,
    async start() {
      await prepare();
      await appVersions.start();
      await realtime.start();
      if (cache) {
        let lost = false;
        stopCacheListener = await storage.listen(
          CACHE_CHANNEL,
          (payload) => {
            const { c, t } = JSON.parse(payload) as { c: string[]; t: string };
            cache.bump(c, t);
          },
          (connected) => {
            // Writes announced while the connection was down are unknown: start every collection afresh.
            if (connected && lost) {
              cache.reset();
              logger.info('read cache reset after the notification connection came back');
            }
            lost = !connected;
          },
        );
      }
      if (config.jobs.inProcess) {
        await jobs.startWorker();
        await events.start();
      }
      await jobs.startScheduler();
      const url = await server.listen({ host: config.http.host, port: config.http.port });
      boundUrl = url;
      reporter = new NodeReporter(storage, nodeName, 'api', () => m.nodeStats(), logger);
      reporter.start();
      consoleFeed.start();
      logger.info(
        { url, storage: storage.kind, rate_limits: rateLimits.describe(), collections: collections.map((c) => c.name) },
        'rampart is serving',
      );
      return url;
    },
    async startWorker(queues) {
      await prepare();
      await jobs.startWorker(queues);
      await events.start();
      await jobs.startScheduler();
      reporter = new NodeReporter(storage, nodeName, 'worker', () => m.nodeStats(), logger);
      reporter.start();
    },
    stop() {
      stopped ??= (async () => {
        // Behind a proxy: keep serving a moment while readiness fails and every answer closes its
        // connection, so no kept-alive connection is cut while the proxy sends on it; then stop
        // listening (new connections are refused: the proxy tries another node).
        if (boundUrl && config.http.drainDelayMs > 0) {
          lifecycle = 'draining';
          logger.info({ drain_ms: config.http.drainDelayMs }, 'draining: readiness fails, connections close after their answer');
          realtime.dropClients();
          await new Promise((r) => setTimeout(r, config.http.drainDelayMs));
        }
        lifecycle = 'stopping';
        const deadline = config.http.shutdownTimeoutMs;
        logger.info({ deadline_ms: deadline }, 'shutting down: finishing in-flight requests');
        const timer = setTimeout(() => {
          logger.warn('shutdown deadline passed: closing remaining connections');
          server.server.closeAllConnections();
        }, deadline);
        timer.unref();
        try {
          // Realtime clients are told to go (1001) and reconnect elsewhere with their last event id.
          realtimeRoutes.close();
          await realtime.stop().catch((err) => logger.warn({ err }, 'stopping realtime failed'));
          await server.close();
          const running = (server as unknown as { handlersRunning(): number }).handlersRunning;
          const until = Date.now() + deadline;
          while (running() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
        } finally {
          clearTimeout(timer);
          // Running jobs get their grace period; the rest are released to other workers.
          await events.stop().catch((err) => logger.warn({ err }, 'stopping the outbox relay failed; its leases will expire'));
          await jobs.stop().catch((err) => logger.error({ err }, 'stopping jobs failed; unfinished leases will expire'));
          availability.stop();
          reporter?.stop();
          consoleFeed.stop();
          dataKeys?.stop();
          appVersions.stop();
          webhooks.stop();
          stopCacheListener?.();
          await auth.stop();
          mailer.close();
          await notifications.close();
          await outbound.close();
          await redis?.close();
          if (limitStore.kind === 'postgres') await (limitStore.pool as { end(): Promise<void> }).end();
          await storage.close();
          logger.info('stopped');
        }
      })();
      return stopped;
    },
  };
}

/** The Redis connection, its state in metrics and in the log (once per change, not per retry). */
function connectRedis(url: string, caPath: string | undefined, logger: Logger, metrics: Metrics): Promise<RedisHandle> {
  let lastError = '';
  metrics.setRedisUp(false);
  return openRedis(
    url,
    {
      onState(up) {
        metrics.setRedisUp(up);
        if (up) logger.info('redis connected');
        else logger.warn('redis connection lost: reconnecting');
        lastError = '';
      },
      onError(err) {
        if (err.message !== lastError) {
          const code = (err as NodeJS.ErrnoException).code;
          // A certificate the CA does not vouch for is a configuration problem, not an outage: say so.
          if (code && TLS_CERT_ERRORS.has(code)) {
            logger.error(
              { err: err.message, code, ca: caPath ?? 'the system CAs' },
              'redis TLS: the server certificate is not trusted (RAMPART_REDIS_TLS_CA_PATH)',
            );
          } else logger.warn({ err: err.message }, 'redis error');
        }
        lastError = err.message;
      },
    },
    { ca: caPath ? readFileSync(caPath) : undefined },
  );
}

/** Where rate-limit counters live: Redis when configured, else PostgreSQL in cluster mode, else memory. */
function rateLimitStore(config: Config, redis: RedisHandle | undefined): LimitStore {
  const kind =
    config.protect.rateLimitStore === 'auto'
      ? redis
        ? 'redis'
        : config.storage.databaseUrl
          ? 'postgres'
          : 'memory'
      : config.protect.rateLimitStore;
  if (kind === 'redis') {
    if (!redis) throw new ConfigError('RAMPART_RATE_LIMIT_STORE=redis needs REDIS_URL');
    return { kind, client: redis.client };
  }
  if (kind === 'postgres') {
    if (!config.storage.databaseUrl) throw new ConfigError('RAMPART_RATE_LIMIT_STORE=postgres needs DATABASE_URL');
    return { kind, pool: openSidePool(config.storage, 'rampart-rate-limits', 4, 1000) };
  }
  return { kind: 'memory' };
}

/** Where writes announce the collections they changed (read-cache invalidation). */
const CACHE_CHANNEL = 'rampart_cache';

/** The read cache (in-process, with Redis as a shared second level when configured), unless turned off. */
function readCache(config: Config, clock: Clock, redis: RedisHandle | undefined, metrics: Metrics): ReadCache | undefined {
  const p = config.protect;
  if (p.cacheTtlMs === 0) return undefined;
  const shared = redis && {
    get: (key: string) => (redis.isUp() ? redis.client.get(key) : Promise.resolve(null)),
    set: (key: string, value: string, ttlMs: number) => (redis.isUp() ? redis.client.set(key, value, 'PX', ttlMs) : Promise.resolve()),
  };
  return new ReadCache(
    { ttlMs: p.cacheTtlMs, staleMs: Math.max(p.cacheStaleS * 1000, p.cacheTtlMs), maxEntries: p.cacheMaxEntries, maxBodyBytes: 256 * 1024 },
    clock,
    shared,
    (outcome) => metrics.countCache(outcome),
  );
}

/** Outbound calls in metrics; breaker changes and failures in the log. */
function observeOutbound(logger: Logger, metrics: Metrics): PolicyObserver {
  return {
    onState(dependency, state) {
      metrics.setBreakerState(dependency, state);
      if (state === 'closed') logger.info({ dependency }, 'circuit breaker closed');
      else logger.warn({ dependency, state }, 'circuit breaker is not closed');
    },
    onFailure(dependency, reason, err) {
      metrics.countOutboundFailure(dependency, reason);
      logger.debug({ dependency, reason, err: (err as Error | undefined)?.message }, 'outbound call failed');
    },
    onCall: (dependency, outcome, seconds) => metrics.observeOutbound(dependency, outcome, seconds),
  };
}

/** The app's dependencies with the configuration's options laid over them, name by name. */
function mergeDependencies(
  declared: Record<string, DependencyOptions>,
  configured: Record<string, Record<string, unknown>>,
): Record<string, DependencyOptions> {
  const out: Record<string, DependencyOptions> = { ...declared };
  for (const [name, o] of Object.entries(configured)) out[name] = { ...declared[name], ...(o as DependencyOptions) };
  return out;
}
