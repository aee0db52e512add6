import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RampartError } from '../core/errors.js';
import { FILTER_LIMITS, parseFilter } from './filter.js';

test('comparisons, precedence and literals', () => {
  assert.deepEqual(parseFilter('a = 1'), { kind: 'cmp', field: 'a', op: '=', value: 1 });
  assert.deepEqual(parseFilter('a = "x" || b != -2.5e1 && c is not null'), {
    kind: 'or',
    items: [
      { kind: 'cmp', field: 'a', op: '=', value: 'x' },
      {
        kind: 'and',
        items: [
          { kind: 'cmp', field: 'b', op: '!=', value: -25 },
          { kind: 'cmp', field: 'c', op: 'is not null', value: null },
        ],
      },
    ],
  });
  assert.deepEqual(parseFilter('(a = true or a = false) and b in ("x", \'y\', 3)'), {
    kind: 'and',
    items: [
      {
        kind: 'or',
        items: [
          { kind: 'cmp', field: 'a', op: '=', value: true },
          { kind: 'cmp', field: 'a', op: '=', value: false },
        ],
      },
      { kind: 'cmp', field: 'b', op: 'in', value: ['x', 'y', 3] },
    ],
  });
  assert.deepEqual(parseFilter('t contains "a\\"b" AND t PREFIX \'\\\\\''), {
    kind: 'and',
    items: [
      { kind: 'cmp', field: 't', op: 'contains', value: 'a"b' },
      { kind: 'cmp', field: 't', op: 'prefix', value: '\\' },
    ],
  });
});

test('errors say where, with a stable code', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['a =', /expected a value at the end/],
    ['a = "x', /unterminated string/],
    ['= 1', /expected a field name at position 0/],
    ['a 1', /expected an operator after "a" at position 2/],
    ['a = 1 b = 2', /unexpected "b" at position 6/],
    ['(a = 1', /expected "\)"/],
    ['a is 1', /expected "null" after "is"/],
    ['a in 1', /expected "\(" after "in"/],
    ['a = @x', /unexpected character "@"/],
    ['a = b', /expected a value/],
  ];
  for (const [src, re] of cases) {
    assert.throws(
      () => parseFilter(src),
      (err: unknown) => err instanceof RampartError && err.code === 'E_INVALID_FILTER' && re.test(err.message),
      src,
    );
  }
});

test('limits keep hostile filters cheap', () => {
  assert.throws(() => parseFilter(`a = "${'x'.repeat(FILTER_LIMITS.length)}"`), /longer than/);
  assert.throws(() => parseFilter(`${'('.repeat(20)}a = 1${')'.repeat(20)}`), /nests deeper/);
  assert.throws(() => parseFilter(Array.from({ length: 70 }, () => 'a = 1').join(' or ')), /more than 64 comparisons/);
  assert.throws(() => parseFilter(`a in (${Array.from({ length: 101 }, () => '1').join(',')})`), /at most 100 values/);
});
