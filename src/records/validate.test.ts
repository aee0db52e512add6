import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizeDateTime } from './validate.js';

test('date-times become UTC ISO 8601 with milliseconds; ambiguous or impossible ones are refused', () => {
  const ok: Array<[string, string]> = [
    ['2026-03-01T10:00:00Z', '2026-03-01T10:00:00.000Z'],
    ['2026-03-01T10:00:00.5+02:00', '2026-03-01T08:00:00.500Z'],
    ['2026-03-01 10:00:00-0130', '2026-03-01T11:30:00.000Z'],
    ['2026-03-01', '2026-03-01T00:00:00.000Z'],
    ['2024-02-29', '2024-02-29T00:00:00.000Z'],
  ];
  for (const [input, expected] of ok) assert.equal(normalizeDateTime(input), expected, input);
  for (const bad of [
    '2026-03-01T10:00:00',
    '2026-02-30',
    'tomorrow',
    '2026-13-01',
    '',
    42,
    null,
    '2026-03-01T25:00:00Z',
    `2026-03-01T10:00:00Z${' '.repeat(50)}`,
  ]) {
    assert.equal(normalizeDateTime(bad), undefined, String(bad));
  }
});
