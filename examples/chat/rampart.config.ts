/**
 * The example chat app. Until accounts exist (the auth issue), access is anonymous; members
 * are recorded by a free-form `user` name. Later issues add auth rules, realtime, push and jobs.
 */
import { collection, defineApp, f } from 'rampart';

export default defineApp({
  collections: {
    rooms: collection({
      fields: {
        name: f.text({ required: true, min: 1, max: 80, unique: true, description: 'Display name, unique' }),
        topic: f.text({ max: 500 }),
      },
    }),
    members: collection({
      fields: {
        room: f.relation('rooms', { required: true, onDelete: 'cascade' }),
        user: f.text({ required: true, min: 1, max: 80 }),
        role: f.select(['owner', 'member'], { default: 'member' }),
      },
      indexes: [{ fields: ['room', 'user'], unique: true }],
    }),
    messages: collection({
      fields: {
        room: f.relation('rooms', { required: true, onDelete: 'cascade' }),
        body: f.text({ required: true, min: 1, max: 4000 }),
        author: f.text({ required: true, max: 80 }),
        edited_at: f.datetime(),
      },
      indexes: [['room', 'created_at']],
      hooks: {
        // Marks edits of the body, inside the same transaction as the edit.
        beforeUpdate: (data, ctx) =>
          'body' in data && data.body !== ctx.existing?.body ? { ...data, edited_at: new Date().toISOString() } : data,
      },
    }),
  },
});
