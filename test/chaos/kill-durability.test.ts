/**
 * An acknowledged write is durable: a real Rampart process acknowledges writes while a
 * concurrent stream keeps writing, is SIGKILLed mid-stream, restarted on the same data, and
 * every acknowledged record must be there (and every batch all or nothing).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backendMatrix, makeBackend } from '../helpers/backends.js';
import { startRampart } from '../helpers/processes.js';

const json = { 'content-type': 'application/json' };

for (const { name, skip } of await backendMatrix()) {
  describe(`SIGKILL durability (${name})`, { skip }, () => {
    test('every acknowledged write survives a SIGKILL; batches are all or nothing', async () => {
      const backend = await makeBackend(name);
      const { PORT: _anyPort, ...env } = backend.env; // each start gets its own free port
      try {
        const first = await startRampart(env);
        const room = (await (
          await fetch(`${first.url}/api/v1/collections/rooms/records`, { method: 'POST', headers: json, body: '{"name":"durable"}' })
        ).json()) as { id: string };
        const acked: string[] = [];
        const batches: string[][] = [];
        let stop = false;
        const writers = Array.from({ length: 6 }, async (_, w) => {
          for (let i = 0; !stop; i++) {
            try {
              if (w === 0) {
                const ops = Array.from({ length: 5 }, (_, k) => ({
                  op: 'create',
                  collection: 'messages',
                  data: { room: room.id, body: `batch ${i}.${k}`, author: 'b' },
                }));
                const r = await fetch(`${first.url}/api/v1/batch`, {
                  method: 'POST',
                  headers: json,
                  body: JSON.stringify({ operations: ops }),
                });
                if (r.status === 200)
                  batches.push(((await r.json()) as { results: Array<{ record: { id: string } }> }).results.map((x) => x.record.id));
              } else {
                const r = await fetch(`${first.url}/api/v1/collections/messages/records`, {
                  method: 'POST',
                  headers: json,
                  body: JSON.stringify({ room: room.id, body: `w${w} ${i}`, author: 'k' }),
                });
                if (r.status === 201) acked.push(((await r.json()) as { id: string }).id);
              }
            } catch {
              return; // the server is gone
            }
          }
        });
        await new Promise((r) => setTimeout(r, 1500));
        first.child.kill('SIGKILL');
        stop = true;
        await Promise.all(writers);
        await first.exited;
        const second = await startRampart(env);
        try {
          const stored = new Set<string>();
          let cursor: string | null = null;
          do {
            const r: Response = await fetch(
              `${second.url}/api/v1/collections/messages/records?limit=200&fields=id${cursor ? `&cursor=${cursor}` : ''}`,
            );
            const page = (await r.json()) as { items: Array<{ id: string }>; next_cursor: string | null };
            for (const x of page.items) stored.add(x.id);
            cursor = page.next_cursor;
          } while (cursor);
          const lost = acked.filter((id) => !stored.has(id)).length + batches.flat().filter((id) => !stored.has(id)).length;
          const total = stored.size;
          const batchIds = new Set(batches.flat());
          process.stdout.write(
            `# ${name}: ${acked.length} single + ${batches.length} batch writes acknowledged before SIGKILL; ${total} stored after restart; lost ${lost}\n`,
          );
          assert.ok(acked.length > 50, 'writes were acknowledged before the kill');
          assert.equal(lost, 0);
          // Unacknowledged batches are whole or absent: count stored "batch" bodies per batch index.
          const partial = await fetch(
            `${second.url}/api/v1/collections/messages/records?limit=200&filter=${encodeURIComponent('author = "b"')}&count=true&fields=id,body`,
          );
          const body = (await partial.json()) as { total: number };
          assert.equal(body.total % 5, 0, 'no batch is half-written');
          assert.ok(batchIds.size > 0);
        } finally {
          second.child.kill('SIGTERM');
          await second.exited;
        }
      } finally {
        await backend.cleanup();
      }
    });
  });
}
