/**
 * The composition root: builds every component from the configuration and the app
 * declaration. No singletons, so tests can run several apps in one process.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { type Auth, createAuth } from './auth/auth.js';
import { withUsers } from './auth/users.js';
import { type Clock, systemClock } from './core/clock.js';
import type { Config } from './core/config.js';
import { createProgress } from './core/progress.js';
import { buildServer } from './http/server.js';
import { ACCOUNT_LINK_JOB, builtins, MAIL_JOB } from './jobs/builtins.js';
import { createJobs, type Jobs } from './jobs/jobs.js';
import { Mailer } from './notify/mail.js';
import { createLogger } from './observability/logger.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { AppVersionPolicies } from './protect/app-versions.js';
import { HookRegistry } from './records/hooks.js';
import { type AppDef, type CollectionSchema, normalizeCollections } from './records/schema.js';
import { RecordsService } from './records/service.js';
import { DbAvailability } from './storage/availability.js';
import { Migrator } from './storage/migrator.js';
import { openStorage } from './storage/open.js';
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
  const logger = opts.logger ?? createLogger(config.observability.logLevel);
  let metrics: Metrics | undefined;
  const storage = openStorage(config.storage, {
    onQuery: (e) => metrics?.observeQuery(e),
    onBackgroundError: (err) => logger.warn({ err: err.message }, 'database connection error (the pool replaces the connection)'),
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
  let stopping = false;
  let boundUrl: string | undefined;
  const mailer = new Mailer({ smtpUrl: config.auth.smtpUrl, from: config.auth.mailFrom, dataDir: config.storage.dataDir });
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
    publicUrl: () => config.http.publicUrl ?? boundUrl ?? `http://${config.http.host}:${config.http.port}`,
    sendMail: (mail) => jobs.enqueue(MAIL_JOB, mail),
    requestLink: (kind, email) => jobs.enqueue(ACCOUNT_LINK_JOB, { kind, email }),
  });
  jobs.registry.add(
    builtins({
      config,
      mailer,
      records,
      queue: jobs.queue,
      log: logger,
      countMail: (outcome) => m.countMail(outcome),
      authSweep: () => auth.sweep(),
      sendLink: (kind, email, send) => auth.accounts.sendLink(kind, email, send),
      trashCollections: collections.map((c) => c.name).filter((n) => n !== 'users'),
    }),
  );
  jobs.registry.add({ jobs: app.jobs, queues: app.queues, schedules: app.schedules });
  jobs.registry.check();
  const appVersions = new AppVersionPolicies(storage, clock, logger);
  const readyChecks: Record<string, () => Promise<void>> = {};
  if (config.jobs.readyMaxLagS > 0) {
    readyChecks.jobs = async () => {
      const lagging = (await jobs.queue.lag()).filter((s) => s.oldestDueMs > config.jobs.readyMaxLagS * 1000);
      if (lagging.length > 0) {
        throw new Error(lagging.map((s) => `queue ${s.queue} lags ${Math.round(s.oldestDueMs / 1000)} s`).join('; '));
      }
    };
  }
  const server = await buildServer({
    config: config.http,
    logger,
    metrics,
    storage,
    availability,
    records,
    readyTimeoutMs: config.observability.readyTimeoutMs,
    isStopping: () => stopping,
    readyChecks,
    jobs,
    appVersions,
    guard: auth.guard,
    auth: { accounts: auth.accounts, sessions: auth.sessions, keys: auth.keys, onRevoked: (id) => auth.revoked.add(id) },
    oauth: auth.oauth,
  });

  let stopped: Promise<void> | undefined;
  const prepare = async () => {
    if (config.storage.autoMigrate) {
      const applied = await migrator.up({ progress: (total) => createProgress('migrate', total) });
      if (applied.length > 0) logger.info({ applied }, 'migrations applied');
    }
    await auth.start();
    logger.info({ mail: mailer.describe() }, 'mail ready');
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
    async start() {
      await prepare();
      await appVersions.start();
      if (config.jobs.inProcess) await jobs.startWorker();
      await jobs.startScheduler();
      const url = await server.listen({ host: config.http.host, port: config.http.port });
      boundUrl = url;
      logger.info({ url, storage: storage.kind, collections: collections.map((c) => c.name) }, 'rampart is serving');
      return url;
    },
    async startWorker(queues) {
      await prepare();
      await jobs.startWorker(queues);
      await jobs.startScheduler();
    },
    stop() {
      stopped ??= (async () => {
        stopping = true;
        const deadline = config.http.shutdownTimeoutMs;
        logger.info({ deadline_ms: deadline }, 'shutting down: finishing in-flight requests');
        const timer = setTimeout(() => {
          logger.warn('shutdown deadline passed: closing remaining connections');
          server.server.closeAllConnections();
        }, deadline);
        timer.unref();
        try {
          await server.close();
          const running = (server as unknown as { handlersRunning(): number }).handlersRunning;
          const until = Date.now() + deadline;
          while (running() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
        } finally {
          clearTimeout(timer);
          // Running jobs get their grace period; the rest are released to other workers.
          await jobs.stop().catch((err) => logger.error({ err }, 'stopping jobs failed; unfinished leases will expire'));
          availability.stop();
          appVersions.stop();
          await auth.stop();
          mailer.close();
          await storage.close();
          logger.info('stopped');
        }
      })();
      return stopped;
    },
  };
}
