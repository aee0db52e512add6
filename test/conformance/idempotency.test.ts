/**
 * Idempotency-Key on mutations, on each backend: a retry replays the first answer, a different
 * request with the same key is a 422, concurrent retries get 409 or the replay and the effect
 * happens once (50 at a time over real sockets), failures are not stored, keys are per caller,
 * a claim of a dead node is taken over, and (PostgreSQL) a retry on another node replays.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Pool } from 'undici';
import { createApp } from '../../src/app.js';
import { collection, defineApp, f } from '../../src/records/schema.js';
import { OPEN } from '../fixtures/open-chat.ts';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';

const ROOMS = '/api/v1/collections/rooms/records';
let failNext = 0;
const app = defineApp({
  collections: {
    rooms: collection({
      fields: { name: f.text({ required: true, max: 80, unique: true }), slow: f.boolean() },
      rules: OPEN,
      hooks: {
        async beforeCreate(data) {
          if (failNext > 0) {
            failNext--;
            throw new Error('a transient failure');
          }
          // Keeps the first request running while its retries arrive.
          if (data.slow) await new Promise((r) => setTimeout(r, 300));
          return data;
        },
      },
    }),
  },
});

for (const { name, skip } of await backendMatrix()) {
  describe(`idempotency keys (${name})`, { skip }, () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp(name, app);
    });
    after(() => t?.close());
    const count = async (filter: string) =>
      (await t.req('GET', `${ROOMS}?count=true&filter=${encodeURIComponent(filter)}`)).body.total as number;

    test('a retry gets the first answer again, marked as a replay; the effect happens once', async () => {
      const key = crypto.randomUUID();
      const first = await t.req('POST', ROOMS, { name: 'idem-1' }, { 'idempotency-key': key });
      assert.equal(first.status, 201);
      assert.equal(first.headers['idempotent-replayed'], undefined);
      const again = await t.req('POST', ROOMS, { name: 'idem-1' }, { 'idempotency-key': key });
      assert.equal(again.status, 201);
      assert.equal(again.headers['idempotent-replayed'], 'true');
      assert.equal(again.raw, first.raw);
      assert.equal(again.headers.location, first.headers.location);
      assert.equal(again.headers.etag, first.headers.etag);
      assert.match(String(again.headers['content-type']), /application\/json/);
      assert.equal(await count('name = "idem-1"'), 1);
      // A stored 4xx is replayed as well (it was the answer).
      const dupKey = crypto.randomUUID();
      const dup = await t.req('POST', ROOMS, { name: 'idem-1' }, { 'idempotency-key': dupKey });
      assert.equal(dup.status, 409);
      const dupAgain = await t.req('POST', ROOMS, { name: 'idem-1' }, { 'idempotency-key': dupKey });
      assert.equal(dupAgain.status, 409);
      assert.equal(dupAgain.headers['idempotent-replayed'], 'true');
      assert.equal(dupAgain.body.code, 'E_UNIQUE_VIOLATION');
    });

    test('the same key with a different request is a 422; a malformed key a 400', async () => {
      const key = crypto.randomUUID();
      assert.equal((await t.req('POST', ROOMS, { name: 'idem-2' }, { 'idempotency-key': key })).status, 201);
      const other = await t.req('POST', ROOMS, { name: 'idem-2b' }, { 'idempotency-key': key });
      assert.equal(other.status, 422);
      assert.equal(other.body.code, 'E_IDEMPOTENCY_KEY_REUSED');
      const id = (await t.req('GET', `${ROOMS}?filter=${encodeURIComponent('name = "idem-2"')}`)).body.items[0].id;
      const patch = await t.req('PATCH', `${ROOMS}/${id}`, { name: 'idem-2' }, { 'idempotency-key': key });
      assert.equal(patch.status, 422, 'another method or path is another request');
      assert.equal(await count('name = "idem-2b"'), 0);
      const bad = await t.req('POST', ROOMS, { name: 'idem-2c' }, { 'idempotency-key': 'has spaces in it' });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.code, 'E_BAD_REQUEST');
      assert.equal((await t.req('POST', ROOMS, { name: 'idem-2c' }, { 'idempotency-key': 'x'.repeat(256) })).status, 400);
    });

    test('50 concurrent requests with one key: one effect, the others replay or get 409', async () => {
      const key = crypto.randomUUID();
      const pool = new Pool(t.url, { connections: 50 });
      try {
        const answers = await Promise.all(
          Array.from({ length: 50 }, async () => {
            const res = await pool.request({
              method: 'POST',
              path: ROOMS,
              headers: { 'content-type': 'application/json', 'idempotency-key': key },
              body: JSON.stringify({ name: 'idem-concurrent', slow: true }),
            });
            const body = (await res.body.json()) as { code?: string; id?: string };
            return { status: res.statusCode, replayed: res.headers['idempotent-replayed'] === 'true', body };
          }),
        );
        const tally: Record<string, number> = {};
        for (const a of answers) {
          const k = a.status === 201 ? (a.replayed ? '201 replayed' : '201 ran') : `${a.status} ${a.body.code}`;
          tally[k] = (tally[k] ?? 0) + 1;
        }
        console.log(`# ${name}: 50 concurrent requests with one key: ${JSON.stringify(tally)}`);
        assert.equal(tally['201 ran'], 1);
        assert.equal((tally['201 replayed'] ?? 0) + (tally['409 E_IDEMPOTENCY_IN_PROGRESS'] ?? 0), 49);
        assert.equal(new Set(answers.filter((a) => a.status === 201).map((a) => a.body.id)).size, 1, 'one record id in every 201');
        assert.equal(await count('name = "idem-concurrent"'), 1);
        // Once it is done, every retry is a replay.
        const late = await t.req('POST', ROOMS, { name: 'idem-concurrent', slow: true }, { 'idempotency-key': key });
        assert.equal(late.headers['idempotent-replayed'], 'true');
      } finally {
        await pool.close();
      }
    });

    test('a 5xx is not stored: the retry runs for real', async () => {
      const key = crypto.randomUUID();
      failNext = 1;
      const failed = await t.req('POST', ROOMS, { name: 'idem-5xx' }, { 'idempotency-key': key });
      assert.equal(failed.status, 500);
      const retry = await t.req('POST', ROOMS, { name: 'idem-5xx' }, { 'idempotency-key': key });
      assert.equal(retry.status, 201);
      assert.equal(retry.headers['idempotent-replayed'], undefined);
      assert.equal(await count('name = "idem-5xx"'), 1);
    });

    test('keys are per caller: another user with the same key gets their own effect', async () => {
      const a = await t.signIn();
      const b = await t.signIn();
      const key = 'shared-key-123';
      const ra = await t.req('POST', ROOMS, { name: 'idem-user' }, { ...a.auth, 'idempotency-key': key });
      assert.equal(ra.status, 201);
      const rb = await t.req('POST', ROOMS, { name: 'idem-user-b' }, { ...b.auth, 'idempotency-key': key });
      assert.equal(rb.status, 201, 'not a 422: B never used this key');
      assert.equal(rb.headers['idempotent-replayed'], undefined);
    });

    test('a claim left by a node that died is taken over once its lock expires', async () => {
      const key = crypto.randomUUID();
      const { fingerprint } = await import('../../src/protect/idempotency.js');
      const body = { name: 'idem-orphan' };
      await t.app.storage.db
        .insertInto('_rampart_idempotency')
        .values({
          scope: '-',
          key,
          fingerprint: fingerprint('POST', ROOMS, body),
          state: 'running',
          locked_until: Date.now() + 60_000,
          created_at: Date.now(),
          expires_at: Date.now() + 86_400_000,
        })
        .execute();
      const busy = await t.req('POST', ROOMS, body, { 'idempotency-key': key });
      assert.equal(busy.status, 409);
      assert.equal(busy.headers['retry-after'], '1');
      await t.app.storage.db
        .updateTable('_rampart_idempotency')
        .set({ locked_until: Date.now() - 1 })
        .where('key', '=', key)
        .execute();
      const taken = await t.req('POST', ROOMS, body, { 'idempotency-key': key });
      assert.equal(taken.status, 201);
      assert.equal((await t.req('POST', ROOMS, body, { 'idempotency-key': key })).headers['idempotent-replayed'], 'true');
    });

    test('a write that committed but whose node died before storing the answer is not applied again: the retry is answered from it', async () => {
      const { fingerprint, IdempotencyStore } = await import('../../src/protect/idempotency.js');
      const { SYSTEM } = await import('../../src/records/access.js');
      const store = new IdempotencyStore(t.app.storage, { now: () => Date.now() }, { ttlMs: 86_400_000, lockMs: 60_000 });
      /** Claim a key as a node would, and the service that marks it applied in the write's transaction. */
      const claimed = async (key: string, method: string, url: string, body: unknown) => {
        const c = await store.claim('-', key, fingerprint(method, url, body));
        assert.equal(c.kind, 'claimed');
        const owner = (c as { owner: string }).owner;
        return t.app.records.forRequest(t.app.logger, SYSTEM, undefined, (db, kind, writes) =>
          store.markApplied(db, '-', key, owner, { kind, writes }),
        );
      };
      // What a node does up to its commit, then "dies": the claim, and the write marking it applied in its transaction.
      const key = crypto.randomUUID();
      const body = { name: 'idem-committed' };
      const created = await (await claimed(key, 'POST', ROOMS, body)).create('rooms', body);
      const retry = await t.req('POST', ROOMS, body, { 'idempotency-key': key });
      assert.equal(retry.status, 201);
      assert.equal(retry.headers['idempotent-replayed'], 'true');
      assert.equal(retry.body.id, created.id, 'the record the lost answer was about');
      assert.equal(retry.headers.location, `${ROOMS}/${created.id}`);
      assert.equal(retry.headers.etag, '"1"');
      assert.equal(await count('name = "idem-committed"'), 1, 'applied once');
      // A batch the same way.
      const bkey = crypto.randomUUID();
      const ops = {
        operations: [
          { op: 'create', collection: 'rooms', data: { name: 'idem-b1' } },
          { op: 'create', collection: 'rooms', data: { name: 'idem-b2' } },
        ],
      };
      const applied = await (await claimed(bkey, 'POST', '/api/v1/batch', ops)).batch(ops.operations);
      const bretry = await t.req('POST', '/api/v1/batch', ops, { 'idempotency-key': bkey });
      assert.equal(bretry.status, 200);
      assert.equal(bretry.headers['idempotent-replayed'], 'true');
      assert.deepEqual(
        bretry.body.results.map((r: { status: number; record: { id: string } }) => [r.status, r.record.id]),
        applied.map((r) => [r.status, r.record.id]),
      );
      assert.equal(await count('name prefix "idem-b"'), 2, 'the batch applied once');
      // A write that rolled back leaves the claim running (nothing was applied): a retry waits, then takes over.
      const rkey = crypto.randomUUID();
      const dup = { name: 'idem-committed' };
      await assert.rejects((await claimed(rkey, 'POST', ROOMS, dup)).create('rooms', dup));
      assert.equal((await store.claim('-', rkey, fingerprint('POST', ROOMS, dup))).kind, 'in-progress');
    });

    test('claims are leases with fencing: the claim of a dead request lapses within the lease; a request that lost its claim cannot apply its write', async () => {
      const { fingerprint, IdempotencyStore } = await import('../../src/protect/idempotency.js');
      const { SYSTEM } = await import('../../src/records/access.js');
      let now = Date.now();
      const store = new IdempotencyStore(t.app.storage, { now: () => now }, { ttlMs: 86_400_000, lockMs: 10_000 });
      const key = crypto.randomUUID();
      const body = { name: 'idem-fenced' };
      const print = fingerprint('POST', ROOMS, body);
      const first = await store.claim('-', key, print);
      assert.equal(first.kind, 'claimed');
      const oldOwner = (first as { owner: string }).owner;
      // Renewed while it runs…
      now += 8000;
      assert.equal(await store.renew('-', key, oldOwner), true);
      now += 8000;
      assert.equal((await store.claim('-', key, print)).kind, 'in-progress', 'renewed: still held');
      // …and when its node stops renewing, another request takes it over after the lease.
      now += 10_001;
      const second = await store.claim('-', key, print);
      assert.equal(second.kind, 'claimed', 'taken over');
      assert.equal(await store.renew('-', key, oldOwner), false, 'the old owner has lost it');
      // The old owner wakes up and writes: fenced off, its transaction rolls back.
      const stale = t.app.records.forRequest(t.app.logger, SYSTEM, undefined, (db, kind, writes) =>
        store.markApplied(db, '-', key, oldOwner, { kind, writes }),
      );
      await assert.rejects(stale.create('rooms', body), (e: Error & { code?: string }) => e.code === 'E_IDEMPOTENCY_IN_PROGRESS');
      assert.equal(await count('name = "idem-fenced"'), 0, 'nothing applied by the fenced-off owner');
      const newOwner = (second as { owner: string }).owner;
      await t.app.records
        .forRequest(t.app.logger, SYSTEM, undefined, (db, kind, writes) => store.markApplied(db, '-', key, newOwner, { kind, writes }))
        .create('rooms', body);
      assert.equal(await count('name = "idem-fenced"'), 1, 'applied once, by the new owner');
    });

    test('credentials are never stored: sign-up and login ignore the key', async () => {
      const key = crypto.randomUUID();
      const email = `idem-${Date.now()}@example.com`;
      const signup = await t.req('POST', '/api/v1/auth/signup', { email, password: 'a-long-password-1' }, { 'idempotency-key': key });
      assert.equal(signup.status, 201);
      const rows = await t.app.storage.db.selectFrom('_rampart_idempotency').select('key').where('key', '=', key).execute();
      assert.equal(rows.length, 0);
    });

    if (name === 'postgres') {
      test('a retry on another node replays the answer', async () => {
        const other = await createApp(t.backend.config, app);
        await other.start();
        try {
          const key = crypto.randomUUID();
          assert.equal((await t.req('POST', ROOMS, { name: 'idem-nodes' }, { 'idempotency-key': key })).status, 201);
          const res = await other.server.inject({
            method: 'POST',
            url: ROOMS,
            headers: { 'content-type': 'application/json', 'idempotency-key': key },
            payload: JSON.stringify({ name: 'idem-nodes' }),
          });
          assert.equal(res.statusCode, 201);
          assert.equal(res.headers['idempotent-replayed'], 'true');
          assert.equal(await count('name = "idem-nodes"'), 1);
        } finally {
          await other.stop();
        }
      });
    }
  });
}
