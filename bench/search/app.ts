/**
 * The app bench/search drives: chat messages whose body is searchable, in rooms. Rules are
 * open, so the figures are the search itself (examples/chat adds a membership rule per row).
 */
import { collection, defineApp, f } from '../../src/records/schema.js';

const OPEN = { list: 'true', view: 'true', create: 'true', update: 'true', delete: 'true' };

export default defineApp({
  collections: {
    rooms: collection({ fields: { name: f.text({ required: true, max: 80 }) }, rules: OPEN }),
    messages: collection({
      fields: {
        room: f.relation('rooms', { required: true, onDelete: 'cascade' }),
        body: f.text({ required: true, max: 4000, search: 'A' }),
        author: f.text({ required: true, max: 80 }),
      },
      indexes: [['room', 'created_at']],
      rules: OPEN,
    }),
  },
});
