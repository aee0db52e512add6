import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type AppVersionPolicy, parseVersion, updateStatus } from './app-versions.js';

test('versions are read as semantic versions; short forms are padded; anything else is refused', () => {
  assert.equal(parseVersion('2'), '2.0.0');
  assert.equal(parseVersion('2.1'), '2.1.0');
  assert.equal(parseVersion('v2.1.3'), '2.1.3');
  assert.equal(parseVersion(' 2.1.3 '), '2.1.3');
  assert.equal(parseVersion('2.1-beta.1'), '2.1.0-beta.1');
  assert.equal(parseVersion('2.1.3+build.5'), '2.1.3', 'build metadata dropped');
  for (const bad of ['', 'abc', '1.2.3.4', '01.2.3', '1.02', '1.2.3-', '1.2.3-be$ta', '-1.0.0', '1.0.0 beta', 5, null, 'x'.repeat(65)]) {
    assert.equal(parseVersion(bad), undefined, String(bad));
  }
});

test('hard below the minimum, soft below the latest, pre-releases before their release', () => {
  const policy = { latest: '3.0.0', minimum: '2.0.0' } as AppVersionPolicy;
  const s = (v: string) => updateStatus(policy, parseVersion(v) as string);
  assert.equal(s('1.99.99'), 'hard');
  assert.equal(s('2.0.0-rc.9'), 'hard');
  assert.equal(s('2.0.0'), 'soft');
  assert.equal(s('2.10.0'), 'soft', 'numeric, not text, order');
  assert.equal(s('3.0.0-alpha'), 'soft');
  assert.equal(s('3.0.0+build.1'), 'none', 'build metadata does not count');
  assert.equal(s('12.0.0'), 'none');
  assert.equal(updateStatus(undefined, '0.0.1'), 'none', 'no policy');
  const beta = { latest: '2.0.0-beta.11', minimum: '2.0.0-beta.2' } as AppVersionPolicy;
  assert.equal(updateStatus(beta, '2.0.0-beta.10'), 'soft', 'numeric pre-release identifiers compare as numbers');
  assert.equal(updateStatus(beta, '2.0.0-alpha.99'), 'hard');
});
