import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isUuid, uuidv7 } from './ids.js';

test('UUIDv7: version and variant bits, embedded time, strictly increasing within one millisecond', () => {
  const ms = Date.parse('2026-05-01T12:00:00.000Z');
  const ids = Array.from({ length: 10_000 }, () => uuidv7(ms));
  for (const id of ids) {
    assert.ok(isUuid(id));
    assert.equal(id[14], '7');
    assert.ok('89ab'.includes(id[19] as string));
  }
  assert.equal(Number.parseInt(ids[0]!.replace(/-/g, '').slice(0, 12), 16), ms);
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, `monotonic at ${i}`);
  assert.ok(uuidv7(ms - 5000) > ids.at(-1)!, 'a clock that steps back does not break the order');
  assert.ok(!isUuid('01900000-0000-7000-8000-00000000000G'));
  assert.ok(!isUuid(42));
});
