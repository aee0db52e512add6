/**
 * The baseline: the smallest reasonable Fastify + better-sqlite3 server for the same three
 * operations on the same SQLite file (WAL, prepared statements, no validation layer, no
 * hooks, no metrics). Rampart's figures are read as a ratio of this one's.
 */
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import { SqliteDatabase as Database } from '../../src/storage/sqlite/driver.ts';

const db = new Database(process.env.BASELINE_DB as string);
db.pragma('busy_timeout = 5000');
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
const byId = db.prepare('select * from messages where id = ? and deleted_at is null');
const newest = db.prepare('select * from messages where room = ? and deleted_at is null order by created_at desc, id desc limit 20');
const count = db.prepare('select count(*) as n from messages where room = ? and deleted_at is null');
const insert = db.prepare(
  'insert into messages (id, created_at, updated_at, version, room, body, author) values (?, ?, ?, 1, ?, ?, ?) returning *',
);

const app = Fastify();
app.get('/messages/:id', async (req, reply) => {
  const row = byId.get((req.params as { id: string }).id);
  return row ?? reply.code(404).send({ error: 'not found' });
});
app.get('/rooms/:room/messages', async (req) => {
  const room = (req.params as { room: string }).room;
  const items = newest.all(room);
  return (req.query as { count?: string }).count === 'true' ? { items, total: (count.get(room) as { n: number }).n } : { items };
});
app.post('/messages', async (req, reply) => {
  const b = req.body as { room?: unknown; body?: unknown; author?: unknown };
  if (typeof b?.room !== 'string' || typeof b.body !== 'string' || typeof b.author !== 'string')
    return reply.code(400).send({ error: 'bad body' });
  const now = new Date().toISOString();
  return reply.code(201).send(insert.get(randomUUID(), now, now, b.room, b.body, b.author));
});
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
