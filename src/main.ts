/**
 * Entries of `rampart serve` and `rampart worker`: loadConfig() -> createApp() -> start the
 * role; SIGTERM/SIGINT -> stop() (in-flight requests and running jobs get their grace periods).
 */
import { createServer } from 'node:http';
import { createApp, type RampartApp } from './app.js';
import type { ConfigSources } from './core/config.js';
import { loadConfigWithSecrets } from './core/config.js';
import { startTracing } from './observability/tracing.js';
import type { AppDef } from './records/schema.js';

/** Serve the API (and, when configured, run jobs in-process). */
export function serve(def: AppDef, sources: ConfigSources = {}): Promise<number> {
  return run(def, sources, 'rampart-api', async (app) => {
    await app.start();
  });
}

/** Options of `rampart worker`. */
export interface WorkerRunOptions {
  /** Queues to serve; default every declared queue. */
  queues?: string[];
  /** Serve /metrics, /healthz and /readyz on this port (loopback unless HOST says otherwise). */
  metricsPort?: number;
}

/** Run jobs (and take part in cron) without serving the API. */
export function work(def: AppDef, sources: ConfigSources = {}, opts: WorkerRunOptions = {}): Promise<number> {
  let stopping = false;
  return run(def, sources, 'rampart-worker', async (app) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.once(signal, () => {
        stopping = true;
      });
    }
    await app.startWorker(opts.queues);
    if (opts.metricsPort !== undefined) {
      const server = createServer((req, res) => {
        if (req.url === '/metrics') {
          app.metrics.registry.metrics().then(
            (text) => res.writeHead(200, { 'content-type': app.metrics.registry.contentType }).end(text),
            () => res.writeHead(500).end(),
          );
        } else if (req.url === '/healthz') {
          res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
        } else if (req.url === '/readyz') {
          // Ready while the database answers and the worker is not stopping.
          app.storage.ping(app.config.observability.readyTimeoutMs).then(
            () =>
              res
                .writeHead(stopping ? 503 : 200, { 'content-type': 'application/json' })
                .end(JSON.stringify({ status: stopping ? 'stopping' : 'ok' })),
            (err: Error) =>
              res
                .writeHead(503, { 'content-type': 'application/json' })
                .end(JSON.stringify({ status: 'fail', error: err.message.slice(0, 200) })),
          );
        } else {
          res.writeHead(404).end();
        }
      });
      await new Promise<void>((resolve) => server.listen(opts.metricsPort, app.config.http.host, resolve));
      server.unref();
      const addr = server.address();
      app.logger.info(
        { url: typeof addr === 'object' && addr ? `http://${app.config.http.host}:${addr.port}` : undefined },
        'worker metrics listening',
      );
    }
    app.logger.info({ node: app.jobs.node, storage: app.storage.kind }, 'rampart worker is running');
  });
}

async function run(def: AppDef, sources: ConfigSources, service: string, start: (app: RampartApp) => Promise<void>): Promise<number> {
  const config = await loadConfigWithSecrets(sources);
  // OpenTelemetry before anything else, when OTEL_EXPORTER_OTLP_ENDPOINT is set (off otherwise).
  const stopTracing = await startTracing(service, sources.env ?? process.env);
  const app = await createApp(config, def);
  let signalled = false;
  const done = new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) return;
      signalled = true;
      app.logger.info({ signal }, 'signal received');
      app
        .stop()
        .then(stopTracing)
        .then(
          () => resolve(0),
          (err) => {
            app.logger.error({ err }, 'shutdown failed');
            resolve(1);
          },
        );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  // Once stopped, work that ignored its abort signal (a handler past the grace period, whose job
  // was released to other workers) must not keep the process alive.
  void done.then((code) => setTimeout(() => process.exit(code), 200).unref());
  try {
    await start(app);
  } catch (err) {
    await app.stop().catch(() => {});
    throw err;
  }
  return done;
}
