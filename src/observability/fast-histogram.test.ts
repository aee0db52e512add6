import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { FastHistogram } from './fast-histogram.js';

test('renders exactly what prom-client renders for the same observations', async () => {
  const buckets = [0.001, 0.01, 0.1, 1];
  const ours = new Registry();
  const theirs = new Registry();
  const fast = new FastHistogram('h_seconds', 'help text', buckets, ours);
  const ref = new Histogram({ name: 'h_seconds', help: 'help text', labelNames: ['route', 'status'], buckets, registers: [theirs] });
  const values = [0, 0.0005, 0.001, 0.002, 0.05, 0.1, 0.5, 1, 3, 1e9];
  for (const [route, status] of [
    ['/a', '200'],
    ['/b/:id', '404'],
  ] as const) {
    const series = fast.labelled(`${route} ${status}`, { route, status });
    for (const v of values) {
      series.observe(v);
      ref.observe({ route, status }, v);
    }
  }
  assert.equal(await ours.metrics(), await theirs.metrics());
  fast.reset();
  assert.doesNotMatch(await ours.metrics(), /h_seconds_bucket/);
});

test('totals add every series up, per bucket, and count the observations of the series picked', () => {
  const fast = new FastHistogram('t_seconds', 'help', [0.01, 0.1], new Registry());
  const ok = fast.labelled('200', { status: '200' });
  const failed = fast.labelled('503', { status: '503' });
  for (const v of [0.005, 0.05, 0.5]) ok.observe(v);
  for (const v of [0.005, 0.2]) failed.observe(v);
  assert.deepEqual(
    fast.totals((l) => Number(l.status) >= 500),
    { counts: [2, 1, 2], count: 5, picked: 2 },
  );
});
