import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withinPrefix } from './oauth.js';

test('redirect prefixes match at a boundary only', () => {
  const p = (s: string) => new URL(s).href;
  assert.ok(withinPrefix('https://app.example/auth/done?x=1', p('https://app.example/auth/')));
  assert.ok(withinPrefix('https://app.example/', p('https://app.example')));
  assert.ok(withinPrefix('myapp://callback?code=1', p('myapp://callback')));
  assert.ok(!withinPrefix('https://app.example.evil.com/', p('https://app.example')));
  assert.ok(!withinPrefix('https://app.example/authority', p('https://app.example/auth')));
  assert.ok(!withinPrefix('myapp://callbackevil', p('myapp://callback')));
  assert.ok(!withinPrefix('http://app.example/auth/', p('https://app.example/auth/')));
});
