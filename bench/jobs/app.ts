/** The app bench/jobs runs: one no-op job, so the figures are the queue's own cost. */
import { job } from '../../src/jobs/define.js';
import { defineApp } from '../../src/records/schema.js';

export default defineApp({
  collections: {},
  jobs: { noop: job({ queue: 'bench', handler: () => undefined }) },
});
