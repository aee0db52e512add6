/** Concurrency over real sockets: optimistic locking and keyset pagination under inserts. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';

const json = { 'content-type': 'application/json' };

for (const { name, skip } of await backendMatrix()) {
  describe(`concurrency (${name})`, { skip }, () => {
    let t: TestApp;
    let room: string;
    before(async () => {
      t = await startTestApp(name);
      room = (await t.req('POST', '/api/v1/collections/rooms/records', { name: 'busy' })).body.id;
    });
    after(async () => t?.close());

    test('50 parallel PATCHes with the same If-Match: exactly one succeeds', async () => {
      const msg = (await t.req('POST', '/api/v1/collections/messages/records', { room, body: 'v1', author: 'a' })).body;
      const url = `${t.url}/api/v1/collections/messages/records/${msg.id}`;
      const statuses = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          fetch(url, { method: 'PATCH', headers: { ...json, 'if-match': '"1"' }, body: JSON.stringify({ body: `edit ${i}` }) }).then(
            async (r) => {
              await r.arrayBuffer();
              return r.status;
            },
          ),
        ),
      );
      const ok = statuses.filter((s) => s === 200).length;
      const refused = statuses.filter((s) => s === 412).length;
      process.stdout.write(`# ${name}: 50 parallel If-Match PATCHes -> ${ok} x 200, ${refused} x 412\n`);
      assert.equal(ok, 1);
      assert.equal(refused, 49);
      const final = (await t.req('GET', `/api/v1/collections/messages/records/${msg.id}`)).body;
      assert.equal(final.version, 2);
    });

    test('pagination under concurrent inserts: no duplicates, nothing that existed is skipped', async () => {
      const existing = new Set<string>();
      const batch = Array.from({ length: 30 }, (_, i) => ({
        op: 'create',
        collection: 'messages',
        data: { room, body: `seed ${i}`, author: 'seed' },
      }));
      for (let i = 0; i < 10; i++) {
        const r = await t.req('POST', '/api/v1/batch', { operations: batch });
        for (const x of r.body.results) existing.add(x.record.id);
      }
      let inserting = true;
      let inserted = 0;
      const writer = (async () => {
        while (inserting) {
          const r = await fetch(`${t.url}/api/v1/collections/messages/records`, {
            method: 'POST',
            headers: json,
            body: JSON.stringify({ room, body: `live ${inserted}`, author: 'live' }),
          });
          await r.arrayBuffer();
          if (r.status === 201) inserted++;
        }
      })();
      const seen: string[] = [];
      let cursor: string | null = null;
      const filter = encodeURIComponent(`room = "${room}"`);
      do {
        const r: Response = await fetch(
          `${t.url}/api/v1/collections/messages/records?filter=${filter}&limit=20${cursor ? `&cursor=${cursor}` : ''}`,
        );
        const page = (await r.json()) as { items: Array<{ id: string }>; next_cursor: string | null };
        seen.push(...page.items.map((x) => x.id));
        cursor = page.next_cursor;
        await new Promise((res) => setImmediate(res));
      } while (cursor);
      inserting = false;
      await writer;
      const dupes = seen.length - new Set(seen).size;
      const missing = [...existing].filter((id) => !seen.includes(id)).length;
      process.stdout.write(
        `# ${name}: paged ${seen.length} rows while ${inserted} were inserted: ${dupes} duplicates, ${missing} skipped\n`,
      );
      assert.ok(inserted > 0, 'inserts ran during paging');
      assert.equal(dupes, 0);
      assert.equal(missing, 0);
    });
  });
}
