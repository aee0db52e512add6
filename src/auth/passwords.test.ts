import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RampartError } from '../core/errors.js';
import { OWASP_PARAMS, PasswordHasher } from './passwords.js';

const weak = { memoryCost: 8192, timeCost: 1, parallelism: 1 };

test('hashes carry their parameters; a weaker stored hash asks for a re-hash', async () => {
  const old = new PasswordHasher({ concurrency: 2, queue: 10 }, weak);
  const current = new PasswordHasher({ concurrency: 2, queue: 10 });
  const h = await old.hash('correct horse');
  assert.match(h, /^\$argon2id\$v=19\$m=8192,t=1,p=1\$/);
  assert.deepEqual(await current.verify(h, 'correct horse'), { ok: true, rehash: true });
  assert.deepEqual(await current.verify(h, 'wrong horse'), { ok: false, rehash: false });
  const fresh = await current.hash('correct horse');
  assert.match(fresh, new RegExp(`m=${OWASP_PARAMS.memoryCost},t=${OWASP_PARAMS.timeCost},p=1\\$`));
  assert.deepEqual(await current.verify(fresh, 'correct horse'), { ok: true, rehash: false });
  assert.deepEqual(await current.verify('not a hash', 'x'), { ok: false, rehash: false });
});

test('the gate bounds hashes at once and waiting; beyond it callers get E_OVERLOADED', async () => {
  const hasher = new PasswordHasher({ concurrency: 2, queue: 3 }, weak);
  let peak = 0;
  const watch = setInterval(() => {
    peak = Math.max(peak, hasher.stats().active);
  }, 1);
  const results = await Promise.allSettled(Array.from({ length: 10 }, () => hasher.hash('pw')));
  clearInterval(watch);
  const refused = results.filter((r) => r.status === 'rejected');
  assert.equal(results.length - refused.length, 5, '2 running + 3 waiting');
  for (const r of refused)
    assert.ok((r as PromiseRejectedResult).reason instanceof RampartError && (r as PromiseRejectedResult).reason.code === 'E_OVERLOADED');
  assert.ok(peak <= 2, `peak ${peak}`);
  assert.deepEqual({ ...hasher.stats(), rejected: 0 }, { active: 0, waiting: 0, rejected: 0 });
});
