import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defineApp, f, normalizeCollections } from './schema.js';
import { diffSchemas, indexesOf, snapshotOf } from './schema-diff.js';

const app = normalizeCollections(
  defineApp({
    collections: {
      rooms: { fields: { name: f.text({ unique: true }) } },
      messages: { fields: { room: f.relation('rooms', { onDelete: 'cascade' }), body: f.text() }, indexes: [['room', 'created_at']] },
    },
  }),
);

test('indexes: keyset order, relations, unique fields, declared ones ending with id', () => {
  assert.deepEqual(
    indexesOf(app[1]!).map((i) => `${i.unique ? 'unique ' : ''}${i.name}(${i.columns.join(',')})`),
    ['ix_messages_created_at_id(created_at,id)', 'ix_messages_room(room)', 'ix_messages_room_created_at_id(room,created_at,id)'],
  );
  assert.ok(indexesOf(app[0]!).some((i) => i.unique && i.name === 'ux_rooms_name'));
  const long = normalizeCollections(
    defineApp({
      collections: {
        c: {
          fields: { a_very_long_field_name_indeed: f.text(), another_very_long_field_name: f.text() },
          indexes: [['a_very_long_field_name_indeed', 'another_very_long_field_name']],
        },
      },
    }),
  );
  for (const i of indexesOf(long[0]!)) assert.ok(i.name.length <= 63, i.name);
});

test('an empty database gets tables in relation order; down is the exact inverse', () => {
  const plan = diffSchemas([], app);
  assert.deepEqual(
    plan.up.filter((o) => o.op === 'createTable').map((o) => (o.op === 'createTable' ? o.collection.name : '')),
    ['rooms', 'messages'],
  );
  assert.deepEqual(plan.down.map((o) => o.op).slice(-2), ['dropTable', 'dropTable']);
  assert.deepEqual(plan.destructive, []);
});

test('the snapshot records created indexes, so a change in how they are derived is migrated', () => {
  const snap = snapshotOf(app);
  assert.deepEqual(diffSchemas(snap, app).up, [], 'no change, no operations');
  const old = snap.map((c) =>
    c.name === 'messages'
      ? {
          ...c,
          created_indexes: c.created_indexes?.map((i) =>
            i.name === 'ix_messages_room_created_at_id'
              ? { ...i, name: 'ix_messages_room_created_at', columns: ['room', 'created_at'] }
              : i,
          ),
        }
      : c,
  );
  const plan = diffSchemas(old, app);
  assert.deepEqual(plan.summary, ['drop index ix_messages_room_created_at', 'create index ix_messages_room_created_at_id']);
  assert.deepEqual(plan.destructive, []);
});
