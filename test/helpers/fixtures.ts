import { collection, defineApp, f } from '../../src/records/schema.js';
import { OPEN } from '../fixtures/open-chat.ts';

/** Every field type and relation behaviour, for conformance suites. */
export const kitchen = defineApp({
  collections: {
    owners: collection({ fields: { name: f.text({ required: true, max: 40 }) }, rules: OPEN }),
    things: collection({
      fields: {
        title: f.text({ required: true, min: 2, max: 20, pattern: '[A-Za-z0-9 ]+' }),
        code: f.text({ unique: true }),
        score: f.number({ min: -1000, max: 1000 }),
        rank: f.integer({ min: 0 }),
        active: f.boolean({ default: true }),
        due: f.datetime(),
        meta: f.json(),
        contact: f.email(),
        site: f.url(),
        kind: f.select(['a', 'b', 'c']),
        owner: f.relation('owners', { onDelete: 'restrict' }),
      },
      indexes: [['kind', 'rank']],
      rules: OPEN,
    }),
  },
});
