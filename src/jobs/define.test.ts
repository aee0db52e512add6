import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { backoffDelay, JobRegistry, job, schedule } from './define.js';

test('backoff: full jitter stays within [0, min(cap, base · 2^(n−1))]', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 0, max: 10_000 }),
      fc.integer({ min: 0, max: 1_000_000 }),
      fc.double({ min: 0, max: 0.999999, noNaN: true }),
      (n, base, extra, r) => {
        const cap = base + extra;
        const d = backoffDelay(n, base, cap, () => r);
        return d >= 0 && d <= Math.min(cap, base * 2 ** (n - 1)) && Number.isInteger(d);
      },
    ),
  );
  // The ceiling doubles until the cap.
  assert.equal(
    backoffDelay(1, 100, 1000, () => 0.999999),
    99,
  );
  assert.equal(
    backoffDelay(3, 100, 1000, () => 0.999999),
    399,
  );
  assert.equal(
    backoffDelay(9, 100, 1000, () => 0.999999),
    999,
  );
});

test('declarations are checked at startup, naming every problem', () => {
  const r = new JobRegistry(10);
  assert.throws(
    () =>
      r.add({
        jobs: { 'bad name!': job({ handler: () => {} }), noHandler: {} as never, neg: job({ retries: -1, handler: () => {} }) },
        queues: { Upper: { concurrency: 0 } },
        schedules: { s1: schedule('61 * * * *', 'x'), s2: schedule('* * * * *', 'x', { tz: 'Mars/Olympus' }) },
      }),
    (err: Error) =>
      /job "bad name!": name must match/.test(err.message) &&
      /job "noHandler": needs a handler/.test(err.message) &&
      /job "neg": retries/.test(err.message) &&
      /queue "Upper"/.test(err.message) &&
      /schedule "s1"/.test(err.message) &&
      /schedule "s2"/.test(err.message),
  );
  const ok = new JobRegistry(10);
  ok.add({ jobs: { a: job({ handler: () => {} }) }, schedules: { s: schedule('* * * * *', 'missing') } });
  assert.throws(() => ok.check(), /schedule "s": no job named "missing"/);
});

test('an app schedule named like a built-in replaces it; defaults are resolved', () => {
  const r = new JobRegistry(7);
  r.add({
    jobs: { 'rampart.purge-trash': job({ handler: () => {} }) },
    schedules: { 'rampart.purge-trash': schedule('30 3 * * *', 'rampart.purge-trash') },
  });
  r.add({ schedules: { 'rampart.purge-trash': schedule('0 2 * * 0', 'rampart.purge-trash', { tz: 'Europe/Berlin', missed: 'skip' }) } });
  r.check();
  const s = r.schedules.get('rampart.purge-trash');
  assert.equal(s?.cron, '0 2 * * 0');
  assert.equal(s?.tz, 'Europe/Berlin');
  assert.equal(s?.missed, 'skip');
  const j = r.job('rampart.purge-trash');
  assert.deepEqual([j?.queue, j?.maxAttempts, j?.baseMs, j?.timeoutMs, j?.priority], ['default', 6, 1000, 60_000, 0]);
  assert.equal(r.concurrency('default'), 7);
});
