/** Migrations on every backend: schema changes, up/down, the destructive guard, concurrent nodes. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { uuidv7 } from '../../src/core/ids.js';
import { defineApp, f, normalizeCollections, SchemaError, type SearchSpec } from '../../src/records/schema.js';
import { parseSearch } from '../../src/records/search.js';
import { MigrationError, Migrator } from '../../src/storage/migrator.js';
import { openStorage } from '../../src/storage/open.js';
import type { SystemMigration } from '../../src/storage/system-migrations.js';
import type { Storage } from '../../src/storage/types.js';
import { backendMatrix, makeBackend, type TestBackend } from '../helpers/backends.js';

const v1 = normalizeCollections(defineApp({ collections: { notes: { fields: { title: f.text({ required: true }) } } } }));
const v2 = normalizeCollections(
  defineApp({
    collections: {
      notes: { fields: { title: f.text({ required: true }), stars: f.integer({ unique: true }) } },
      tags: { fields: { note: f.relation('notes', { onDelete: 'cascade' }), label: f.text() }, indexes: [['label']] },
    },
  }),
);
const v3 = normalizeCollections(defineApp({ collections: { notes: { fields: { stars: f.integer({ unique: true }) } } } }));

async function columns(storage: Storage, table: string): Promise<string[]> {
  const tables = await storage.db.introspection.getTables();
  return (
    tables
      .find((t) => t.name === table)
      ?.columns.map((c) => c.name)
      .sort() ?? []
  );
}

for (const { name, skip } of await backendMatrix()) {
  describe(`migrations (${name})`, { skip }, () => {
    let backend: TestBackend;
    let storage: Storage;
    before(async () => {
      backend = await makeBackend(name);
      storage = openStorage(backend.config.storage);
    });
    after(async () => {
      await storage?.close();
      await backend?.cleanup();
    });

    test('declared changes become versioned migrations that apply and revert', async () => {
      assert.deepEqual(await new Migrator(storage, v1, []).up(), ['schema_0001']);
      assert.deepEqual(await new Migrator(storage, v1, []).up(), [], 'nothing pending the second time');
      const m2 = new Migrator(storage, v2, []);
      const status = await m2.status();
      assert.deepEqual(status.schemaPlan.summary, [
        'add field notes.stars (integer)',
        'create index ux_notes_stars',
        'create collection tags',
      ]);
      assert.deepEqual(await m2.up(), ['schema_0002']);
      assert.deepEqual(await columns(storage, 'notes'), ['created_at', 'deleted_at', 'id', 'stars', 'title', 'updated_at', 'version']);
      assert.ok((await columns(storage, 'tags')).includes('note'));
      const applied = (await m2.status()).applied.map((a) => a.name);
      assert.deepEqual(applied, ['schema_0001', 'schema_0002']);
      assert.deepEqual(await m2.down(), ['schema_0002']);
      assert.deepEqual(await columns(storage, 'notes'), ['created_at', 'deleted_at', 'id', 'title', 'updated_at', 'version']);
      assert.deepEqual(await columns(storage, 'tags'), []);
      assert.deepEqual(await m2.up(), ['schema_0002'], 're-applies after a rollback');
    });

    test('changes that drop data need --allow-destructive; type changes are refused', async () => {
      const m3 = new Migrator(storage, v3, []);
      await assert.rejects(m3.up(), (err: Error) => err instanceof MigrationError && /drop field notes\.title/.test(err.message));
      assert.ok((await columns(storage, 'notes')).includes('title'), 'nothing applied');
      assert.deepEqual(await m3.up({ allowDestructive: true }), ['schema_0003']);
      assert.ok(!(await columns(storage, 'notes')).includes('title'));
      assert.deepEqual(await m3.down(), ['schema_0003']);
      assert.ok((await columns(storage, 'notes')).includes('title'), 'down restores the column (not its data)');
      const retyped = normalizeCollections(defineApp({ collections: { notes: { fields: { title: f.integer(), stars: f.integer() } } } }));
      await assert.rejects(new Migrator(storage, retyped, []).status(), SchemaError);
    });

    test('system migrations run in order and revert', async () => {
      const system: SystemMigration[] = [
        {
          name: '9001_probe',
          description: 'a probe table',
          up: async (db) => {
            await db.schema.createTable('_probe').addColumn('k', 'text').execute();
          },
          down: async (db) => {
            await db.schema.dropTable('_probe').execute();
          },
        },
      ];
      const m = new Migrator(storage, v2, system);
      assert.deepEqual(await m.up(), ['9001_probe']);
      assert.deepEqual(await columns(storage, '_probe'), ['k']);
      assert.deepEqual(await m.down(), ['9001_probe']);
      assert.deepEqual(await columns(storage, '_probe'), []);
    });

    test('twenty nodes migrating at once apply each migration exactly once', async () => {
      const fresh = await makeBackend(name);
      const nodes = Array.from({ length: 20 }, () => openStorage(fresh.config.storage));
      try {
        let ran = 0;
        const system: SystemMigration[] = [
          {
            name: '9002_counted',
            description: 'counts its runs',
            up: async (db) => {
              ran++;
              await db.schema.createTable('_counted').addColumn('k', 'text').execute();
            },
            down: async () => {},
          },
        ];
        const results = await Promise.all(nodes.map((s) => new Migrator(s, v2, system).up()));
        const applied = results.flat();
        process.stdout.write(
          `# ${name}: 20 concurrent migrators -> ${applied.length} migrations applied in total, system migration ran ${ran}x\n`,
        );
        assert.equal(ran, 1);
        assert.deepEqual(applied.sort(), ['9002_counted', 'schema_0002']);
        const rows = await sql<{ n: number }>`select count(*) as n from _rampart_migrations`.execute(nodes[0]!.db);
        assert.equal(Number(rows.rows[0]?.n), 2);
      } finally {
        await Promise.all(nodes.map((s) => s.close()));
        await fresh.cleanup();
      }
    });

    test('a search declaration becomes an index filled from existing records; a change rebuilds it; down reverts', async () => {
      const fresh = await makeBackend(name);
      const store = openStorage(fresh.config.storage);
      const posts = (title: 'A' | 'B', body: 'A' | 'B' | undefined) =>
        normalizeCollections(
          defineApp({
            collections: { posts: { fields: { title: f.text({ search: title }), body: f.text(body ? { search: body } : {}) } } },
          }),
        );
      const plain = normalizeCollections(defineApp({ collections: { posts: { fields: { title: f.text(), body: f.text() } } } }));
      const insert = async (title: string, body: string) => {
        const now = new Date().toISOString();
        const id = uuidv7();
        await store.db.insertInto('posts').values({ id, created_at: now, updated_at: now, version: 1, title, body }).execute();
        return id;
      };
      const find = async (collections: typeof plain, text: string) => {
        const spec = collections[0]?.search as SearchSpec;
        const query = store.search.queryText(parseSearch(text));
        const rows = await store.db
          .selectFrom(store.search.matches(spec, query, 'm'))
          .select(['m._sid', 'm._score'])
          .orderBy('m._score', 'desc')
          .orderBy('m._sid')
          .execute();
        return rows.map((r) => String(r._sid));
      };
      try {
        await new Migrator(store, plain, []).up();
        const inTitle = await insert('Gardening in winter', 'frost and soil');
        const inBody = await insert('Notes', 'gardening tools list');
        await insert('Unrelated', 'nothing to see');
        const v = posts('A', 'B');
        const m = new Migrator(store, v, []);
        assert.deepEqual((await m.status()).schemaPlan.summary, ['create search index of posts (title:A, body:B; english)']);
        await m.up();
        assert.deepEqual(await find(v, 'gardening'), [inTitle, inBody], 'existing records indexed; title above body');
        const later = await insert('Later', 'gardening again');
        assert.ok((await find(v, 'gardening')).includes(later), 'a record written after is indexed by the trigger');
        const flipped = posts('B', 'A');
        await new Migrator(store, flipped, []).up();
        const reranked = await find(flipped, 'gardening');
        assert.ok(reranked.indexOf(inBody) < reranked.indexOf(inTitle), 'rebuilt with the new weights: the body now ranks first');
        const titleOnly = posts('A', undefined);
        await new Migrator(store, titleOnly, []).up();
        assert.deepEqual(await find(titleOnly, 'gardening'), [inTitle], 'a field left out of the index is no longer searched');
        await new Migrator(store, plain, []).up();
        const tables = (await store.db.introspection.getTables()).map((t) => t.name);
        assert.ok(!tables.some((t) => t.startsWith('_search_posts')), `index dropped: ${tables.join(', ')}`);
        await new Migrator(store, plain, []).down(1);
        assert.deepEqual(await find(titleOnly, 'gardening'), [inTitle], 'down recreates and refills the index');
      } finally {
        await store.close();
        await fresh.cleanup();
      }
    });
  });
}

describe('SQLite locking and lifecycle', () => {
  test('closing the storage closes every connection and checkpoints the WAL away', async () => {
    const backend = await makeBackend('sqlite');
    const storage = openStorage(backend.config.storage);
    await new Migrator(storage, v1, []).up();
    const { readdirSync } = await import('node:fs');
    assert.ok(readdirSync(backend.config.storage.dataDir).includes('rampart.db-wal'), 'WAL in use while open');
    await storage.close();
    assert.deepEqual(readdirSync(backend.config.storage.dataDir), ['rampart.db']);
    await backend.cleanup();
  });

  test('waiting for a write lock held elsewhere does not block the event loop', async () => {
    const backend = await makeBackend('sqlite');
    const storage = openStorage(backend.config.storage);
    await new Migrator(storage, v1, []).up();
    const { SqliteDatabase } = await import('../../src/storage/sqlite/driver.js');
    const other = new SqliteDatabase(`${backend.config.storage.dataDir}/rampart.db`);
    other.exec('begin immediate'); // another process (a CLI, a seed) holds the write lock
    let maxGap = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
    }, 5);
    setTimeout(() => other.exec('commit'), 1000);
    const started = performance.now();
    await storage.transaction(async (db) => {
      await sql`insert into notes (id, created_at, updated_at, title) values ('01900000-0000-7000-8000-000000000001', 'x', 'x', 't')`.execute(
        db,
      );
    });
    const waited = performance.now() - started;
    clearInterval(ticker);
    process.stdout.write(`# sqlite: waited ${waited.toFixed(0)} ms for the lock; longest event-loop stall ${maxGap.toFixed(0)} ms\n`);
    assert.ok(waited >= 900, 'the transaction waited for the lock');
    assert.ok(maxGap < 150, `event loop stayed responsive (longest stall ${maxGap} ms)`);
    other.close();
    await storage.close();
    await backend.cleanup();
  });
});
