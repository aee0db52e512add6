/**
 * The example chat app. Rooms have an owner; members of a room read and write its messages;
 * nobody else sees them. Later issues add realtime, push and jobs.
 */
import { collection, defineApp, f } from 'rampart';

/** The caller owns or is a member of the room `room` (a field of the record the rule is about). */
const memberOf = (room: string) =>
  `${room === 'id' ? 'owner' : `${room}.owner`} = @auth.id || exists(members, room = @record.${room} && user = @auth.id)`;

export default defineApp({
  collections: {
    rooms: collection({
      fields: {
        name: f.text({ required: true, min: 1, max: 80, unique: true, description: 'Display name, unique' }),
        topic: f.text({ max: 500 }),
        owner: f.owner(),
      },
      rules: {
        list: memberOf('id'),
        view: memberOf('id'),
        create: '@auth.id != ""',
        update: 'owner = @auth.id',
        delete: 'owner = @auth.id',
      },
    }),
    members: collection({
      fields: {
        room: f.relation('rooms', { required: true, onDelete: 'cascade' }),
        user: f.relation('users', { required: true, onDelete: 'cascade' }),
        role: f.select(['owner', 'member'], { default: 'member' }),
      },
      indexes: [{ fields: ['room', 'user'], unique: true }],
      rules: {
        list: memberOf('room'),
        view: memberOf('room'),
        // The room's owner adds and removes members; a member may leave.
        create: 'room.owner = @auth.id',
        delete: 'room.owner = @auth.id || user = @auth.id',
      },
    }),
    messages: collection({
      fields: {
        room: f.relation('rooms', { required: true, onDelete: 'cascade' }),
        body: f.text({ required: true, min: 1, max: 4000 }),
        author: f.owner(),
        edited_at: f.datetime({ readOnly: true }),
      },
      indexes: [['room', 'created_at']],
      rules: {
        list: memberOf('room'),
        view: memberOf('room'),
        create: memberOf('room'),
        update: 'author = @auth.id',
        delete: 'author = @auth.id || room.owner = @auth.id',
      },
      hooks: {
        // Marks edits of the body, inside the same transaction as the edit.
        beforeUpdate: (data, ctx) =>
          'body' in data && data.body !== ctx.existing?.body ? { ...data, edited_at: new Date().toISOString() } : data,
      },
    }),
  },
});
