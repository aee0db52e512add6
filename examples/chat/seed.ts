/**
 * Seed the example chat: `npm run seed -- --rooms 100 --messages 100000`. Writes through the
 * records service in batches of 100 (one transaction each), with a progress bar.
 */
import { parseArgs } from 'node:util';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/core/config.js';
import { createProgress } from '../../src/core/progress.js';
import type { RecordsService } from '../../src/records/service.js';
import chat from './rampart.config.ts';

const WORDS = 'the quick brown fox jumps over lazy dogs while resilient backends keep serving every request'.split(' ');

/**
 * Create `rooms` rooms and `messages` messages spread evenly across them; returns the room ids.
 * Where the app has owners and authors as users (examples/chat), 50 users (without passwords)
 * own the rooms and write the messages; where they are plain names, names are used.
 */
export async function seedChat(records: RecordsService, opts: { rooms: number; messages: number; quiet?: boolean }): Promise<string[]> {
  const rooms: string[] = [];
  const stamp = Date.now().toString(36);
  const byUser = records.schema('messages').fields.author?.type === 'relation';
  const users: string[] = [];
  if (byUser) {
    const ops = Array.from({ length: 50 }, (_, i) => ({
      op: 'create',
      collection: 'users',
      data: { email: `seed-${stamp}-${i}@example.com` },
    }));
    for (const r of await records.batch(ops)) users.push(r.record.id);
  }
  const author = (n: number) => (byUser ? users[n % users.length] : `user${n % 500}`);
  for (let i = 0; i < opts.rooms; i += 100) {
    const ops = Array.from({ length: Math.min(100, opts.rooms - i) }, (_, j) => ({
      op: 'create',
      collection: 'rooms',
      data: { name: `room ${stamp}-${i + j}`, topic: `topic ${i + j}`, ...(byUser ? { owner: author(i + j) } : {}) },
    }));
    for (const r of await records.batch(ops)) rooms.push(r.record.id);
  }
  const progress = opts.quiet ? undefined : createProgress('seed messages', opts.messages);
  for (let i = 0; i < opts.messages; i += 100) {
    const ops = Array.from({ length: Math.min(100, opts.messages - i) }, (_, j) => {
      const n = i + j;
      return {
        op: 'create',
        collection: 'messages',
        data: {
          room: rooms[n % rooms.length],
          body: Array.from({ length: 8 }, (_, k) => WORDS[(n * 7 + k * 3) % WORDS.length]).join(' '),
          author: author(n),
        },
      };
    });
    await records.batch(ops);
    progress?.update(Math.min(opts.messages, i + 100));
  }
  progress?.finish();
  // A bulk load leaves the planner's statistics stale (PostgreSQL would scan instead of using
  // the room index until autovacuum caught up).
  await records.analyze();
  return rooms;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { rooms: { type: 'string', default: '100' }, messages: { type: 'string', default: '100000' } } });
  const rooms = Number(values.rooms);
  const messages = Number(values.messages);
  if (!(Number.isInteger(rooms) && rooms > 0 && Number.isInteger(messages) && messages >= 0)) {
    process.stderr.write('usage: seed [--rooms N>0] [--messages N>=0]\n');
    process.exit(2);
  }
  const app = await createApp(loadConfig({ overrides: { LOG_LEVEL: 'warn' } }), chat);
  await app.migrator.up({ progress: (total) => createProgress('migrate', total) });
  await seedChat(app.records, { rooms, messages });
  process.stdout.write(`seeded ${rooms} rooms and ${messages} messages into ${app.storage.kind}\n`);
  await app.stop();
}
