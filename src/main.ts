/** Entry of `rampart serve`: loadConfig() -> createApp() -> start(); SIGTERM/SIGINT -> stop(). */
import { createApp } from './app.js';
import type { ConfigSources } from './core/config.js';
import { loadConfig } from './core/config.js';
import type { AppDef } from './records/schema.js';

export async function serve(def: AppDef, sources: ConfigSources = {}): Promise<number> {
  const config = loadConfig(sources);
  const app = await createApp(config, def);
  let signalled = false;
  const done = new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) return;
      signalled = true;
      app.logger.info({ signal }, 'signal received');
      app.stop().then(
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
  try {
    await app.start();
  } catch (err) {
    await app.stop().catch(() => {});
    throw err;
  }
  return done;
}
