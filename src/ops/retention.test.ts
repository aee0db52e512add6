import assert from 'node:assert/strict';
import { test } from 'node:test';
import { retained } from './backups.js';

const day = 86_400_000;
const at = (iso: string) => Date.parse(iso);

test('retention keeps the newest backup of each of the last N days and M ISO weeks', () => {
  const backups = [
    { id: 'mon-a', at: at('2026-11-23T03:00:00Z') },
    { id: 'mon-b', at: at('2026-11-23T15:00:00Z') },
    { id: 'tue', at: at('2026-11-24T03:00:00Z') },
    { id: 'wed', at: at('2026-11-25T03:00:00Z') },
    { id: 'prev-week-sun', at: at('2026-11-22T03:00:00Z') },
    { id: 'prev-week-fri', at: at('2026-11-20T03:00:00Z') },
    { id: 'two-weeks-ago', at: at('2026-11-12T03:00:00Z') },
    { id: 'old', at: at('2026-10-01T03:00:00Z') },
  ];
  assert.deepEqual([...retained(backups, 3, 0)].sort(), ['mon-b', 'tue', 'wed']);
  // Weeks: this week's newest (wed), last week's newest (Sunday 22nd), the week before's.
  assert.deepEqual([...retained(backups, 1, 3)].sort(), ['prev-week-sun', 'two-weeks-ago', 'wed']);
  assert.equal(retained([], 7, 4).size, 0);
  assert.equal(retained([{ id: 'x', at: Date.now() - 400 * day }], 1, 0).size, 1, 'the newest backup is always kept');
});
