/**
 * Encryption at rest on both backends: fields declared `encrypted` are ciphertext in the
 * database and plaintext through the API; they cannot be filtered or sorted; a data key rotation
 * keeps old values readable, the re-encryption job moves every value to the new key, and only
 * then can the old key be retired.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { createApp } from '../../src/app.js';
import { ConfigError } from '../../src/core/config.js';
import { REENCRYPT_JOB } from '../../src/ops/ops-jobs.js';
import { collection, defineApp, f, normalizeCollections, SchemaError } from '../../src/records/schema.js';
import { startTestApp } from '../helpers/app.js';
import { backendMatrix, makeBackend } from '../helpers/backends.js';

const app = defineApp({
  collections: {
    patients: collection({
      fields: { name: f.text({ required: true }), ssn: f.text({ encrypted: true, max: 20 }), note: f.text({ encrypted: true }) },
      rules: { list: 'true', view: 'true', create: 'true', update: 'true' },
    }),
  },
});
const MASTER = randomBytes(32).toString('base64');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const { name, skip } of await backendMatrix()) {
  describe(`encrypted fields (${name})`, { skip }, () => {
    test('ciphertext at rest, plaintext to readers; rotation, re-encryption and retirement', async () => {
      const t = await startTestApp(name, app, { RAMPART_MASTER_KEY: MASTER, RAMPART_DATA_KEY_RELOAD_MS: '200' });
      try {
        const ids: string[] = [];
        for (let i = 0; i < 40; i++) {
          const r = await t.req('POST', '/api/v1/collections/patients/records', {
            name: `p${i}`,
            ssn: `123-45-${String(i).padStart(4, '0')}`,
            note: `allergic to ${i}`,
          });
          assert.equal(r.status, 201, r.raw);
          assert.equal(r.body.ssn, `123-45-${String(i).padStart(4, '0')}`);
          ids.push(r.body.id);
        }
        const raw = async () => t.app.storage.db.selectFrom('patients').select(['id', 'ssn', 'note']).orderBy('id').execute();
        const before = await raw();
        assert.ok(
          before.every((r) => /^rpe1:dk-1:/.test(String(r.ssn)) && !String(r.ssn).includes('123-45')),
          'ciphertext in the database',
        );
        const got = await t.req('GET', `/api/v1/collections/patients/records/${ids[7]}`);
        assert.equal(got.body.ssn, '123-45-0007');
        assert.equal(got.body.note, 'allergic to 7');
        // Validation still applies to the plaintext; filters and sorts are refused clearly.
        assert.equal((await t.req('POST', '/api/v1/collections/patients/records', { name: 'x', ssn: 'x'.repeat(21) })).status, 400);
        const filtered = await t.req('GET', `/api/v1/collections/patients/records?filter=${encodeURIComponent('ssn = "123-45-0007"')}`);
        assert.equal(filtered.status, 400);
        assert.equal(filtered.body.code, 'E_INVALID_FILTER');
        assert.match(filtered.body.detail, /encrypted/);
        const sorted = await t.req('GET', '/api/v1/collections/patients/records?sort=note');
        assert.equal(sorted.body.code, 'E_INVALID_SORT');

        // Rotate: the new key encrypts once every node has had time to load it.
        const keys = t.app.dataKeys;
        assert.ok(keys);
        const collections = t.app.collections.filter((c) => c.name === 'patients');
        const { id: newKey, usableAt } = await keys.rotate();
        await sleep(Math.max(0, usableAt - Date.now()) + 50);
        const fresh = await t.req('POST', '/api/v1/collections/patients/records', { name: 'new', ssn: '999-99-9999' });
        const freshRaw = await t.app.storage.db
          .selectFrom('patients')
          .select('ssn')
          .where('id', '=', fresh.body.id)
          .executeTakeFirstOrThrow();
        assert.match(String(freshRaw.ssn), new RegExp(`^rpe1:${newKey}:`));
        // Old values still decrypt; the old key cannot be retired while they use it.
        const list = await t.req('GET', '/api/v1/collections/patients/records?limit=100');
        assert.equal(list.body.items.length, 41);
        assert.ok(list.body.items.some((r: { ssn: string }) => r.ssn === '123-45-0000'));
        await assert.rejects(keys.retire('dk-1', collections), /still encrypts 80 values/);
        await assert.rejects(keys.retire(newKey, collections), /current key/);
        // The background job moves every value to the new key.
        await t.app.jobs.enqueue(REENCRYPT_JOB, {});
        await t.app.jobs.settle({ queues: ['rampart.housekeeping'] });
        const usage = await keys.usage(collections);
        assert.equal(usage.get('dk-1') ?? 0, 0);
        assert.equal(usage.get(newKey), 81);
        const after = await raw();
        assert.ok(after.every((r, i) => r.ssn !== before[i]?.ssn || r.id === fresh.body.id));
        await keys.retire('dk-1', collections);
        const listed = await keys.list(collections);
        assert.deepEqual(
          listed.map((k) => [k.id, k.state, k.values]),
          [
            ['dk-1', 'retired', 0],
            [newKey, 'active', 81],
          ],
        );
        const again = await t.req('GET', `/api/v1/collections/patients/records/${ids[39]}`);
        assert.equal(again.body.ssn, '123-45-0039');
        const audit = await t.app.audit.query({ action: 'keys.', limit: 10 });
        assert.ok(audit.entries.some((e) => e.action === 'keys.data_reencrypted'));
        process.stdout.write(
          `# ${name}: 41 records, 81 encrypted values: rotated dk-1 → ${newKey}; before re-encryption old values read, retire refused; ` +
            `job moved ${usage.get(newKey)} values; dk-1 retired; reads still plaintext\n`,
        );
      } finally {
        await t.close();
      }
    });
  });
}

test('encrypted fields need a master key and refuse unique, search and indexes', async () => {
  const backend = await makeBackend('sqlite', { RAMPART_MASTER_KEY: '' });
  try {
    await assert.rejects(
      createApp(backend.config, app),
      (err: Error) => err instanceof ConfigError && /RAMPART_MASTER_KEY: required.*patients\.ssn, patients\.note/.test(err.message),
    );
  } finally {
    await backend.cleanup();
  }
  const bad = defineApp({
    collections: {
      c: collection({
        fields: {
          a: f.text({ encrypted: true, unique: true }),
          b: f.text({ encrypted: true, search: true }),
          n: f.integer({ encrypted: true } as never),
        },
        indexes: [['a']],
      }),
    },
  });
  assert.throws(
    () => normalizeCollections(bad),
    (err: Error) =>
      err instanceof SchemaError &&
      /cannot be unique/.test(err.message) &&
      /cannot be searchable/.test(err.message) &&
      /only text, email and url/.test(err.message) &&
      /cannot be indexed/.test(err.message),
  );
});
