/** Helpers of the multi-process jobs tests. */
import { createApp, type RampartApp } from '../../src/app.js';
import { loadConfig } from '../../src/core/config.js';
import type { AppDef } from '../../src/records/schema.js';
import type { TestBackend } from './backends.js';

/** The test's own handle on a backend: migrates, enqueues and inspects; runs no jobs and fires no ticks. */
export async function controlApp(backend: TestBackend, def: AppDef): Promise<RampartApp> {
  const app = await createApp(loadConfig({ env: { ...backend.env, RAMPART_JOBS_IN_PROCESS: 'false', RAMPART_SCHEDULER: 'false' } }), def);
  await app.migrator.up();
  return app;
}
