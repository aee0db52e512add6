import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from './config.js';

test('defaults', () => {
  const c = loadConfig({ env: {} });
  assert.equal(c.http.port, 8090);
  assert.equal(c.http.host, '127.0.0.1');
  assert.equal(c.storage.databaseUrl, undefined);
  assert.match(c.storage.dataDir, /data$/);
  assert.equal(c.observability.logLevel, 'info');
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.http), 'frozen');
});

test('file < environment < NAME_FILE < overrides', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  writeFileSync(join(dir, 'rampart.json'), JSON.stringify({ PORT: 1000, HOST: '0.0.0.0', LOG_LEVEL: 'debug' }));
  writeFileSync(join(dir, 'db'), 'postgres://u:p@h/db\n');
  const c = loadConfig({
    env: { RAMPART_CONFIG: join(dir, 'rampart.json'), PORT: '2000', DATABASE_URL_FILE: join(dir, 'db'), LOG_LEVEL: 'warn' },
    overrides: { LOG_LEVEL: 'error' },
  });
  assert.equal(c.http.port, 2000);
  assert.equal(c.http.host, '0.0.0.0');
  assert.equal(c.storage.databaseUrl, 'postgres://u:p@h/db', 'trailing newline of a secret file is dropped');
  assert.equal(c.observability.logLevel, 'error');
});

test('every invalid key is reported; secrets are redacted', () => {
  assert.throws(
    () => loadConfig({ env: { PORT: '99999', LOG_LEVEL: 'loud', REDIS_URL: 'http://pw@x', RAMPART_AUTO_MIGRATE: 'maybe' } }),
    (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /PORT="99999": expected an integer from 0 to 65535/);
      assert.match(err.message, /LOG_LEVEL="loud"/);
      assert.match(err.message, /REDIS_URL=\[redacted\]/);
      assert.match(err.message, /RAMPART_AUTO_MIGRATE="maybe": expected true or false/);
      assert.ok(!err.message.includes('pw@x'));
      return true;
    },
  );
  assert.throws(() => loadConfig({ env: { DATABASE_URL_FILE: '/nonexistent/secret' } }), /DATABASE_URL_FILE: cannot read/);
  assert.throws(() => loadConfig({ env: { RAMPART_CONFIG: '/nonexistent.json' } }), /RAMPART_CONFIG: cannot read/);
});

test('unknown keys in the config file are refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ PROT: 1 }));
  assert.throws(() => loadConfig({ env: { RAMPART_CONFIG: join(dir, 'c.json') } }), /unknown key "PROT"/);
});

test('accounts settings: providers, proxies and redirect prefixes are validated; secrets stay out of errors', () => {
  const c = loadConfig({
    env: {
      RAMPART_TRUST_PROXY: '10.0.0.0/8, 127.0.0.1',
      RAMPART_AUTH_REDIRECT_URLS: 'https://app.example/auth/,myapp://callback',
      RAMPART_OAUTH_PROVIDERS: JSON.stringify({ google: { preset: 'google', clientId: 'id', clientSecret: 's3cret' } }),
    },
  });
  assert.deepEqual(c.http.trustProxy, ['10.0.0.0/8', '127.0.0.1']);
  assert.equal(c.auth.oauthProviders.google?.clientId, 'id');
  assert.equal(c.auth.accessTtlS, 900);
  assert.deepEqual(loadConfig({ env: {} }).http.trustProxy, []);
  const bad = [
    { RAMPART_TRUST_PROXY: 'example.com' },
    { RAMPART_AUTH_REDIRECT_URLS: 'javascript:alert(1)' },
    { RAMPART_OAUTH_PROVIDERS: '{"x": {"clientId": "id"}}' },
    { RAMPART_OAUTH_PROVIDERS: '{"ms": {"preset": "microsoft", "clientId": "id"}}' },
    { RAMPART_OAUTH_PROVIDERS: '{"Bad Name": {"preset": "google", "clientId": "id"}}' },
    { RAMPART_OAUTH_PROVIDERS: '{"g": {"preset": "google", "clientId": "id", "clientSecret": "s3cret"}, "h": 1}' },
    { RAMPART_LOGIN_MAX_FAILURES: '101' },
  ];
  for (const env of bad) {
    assert.throws(
      () => loadConfig({ env }),
      (e: Error) => e instanceof ConfigError && !e.message.includes('s3cret'),
      JSON.stringify(env),
    );
  }
});

test('HTTP protection settings: CORS origins, HSTS and API deprecations are checked', () => {
  const c = loadConfig({
    env: {
      RAMPART_CORS_ORIGINS: 'https://app.example.com, http://localhost:5173',
      RAMPART_HSTS_MAX_AGE_S: '0',
      RAMPART_API_DEPRECATIONS: '{"v1": {"deprecated": "2026-12-01", "sunset": "2027-06-30T00:00:00Z"}}',
    },
  });
  assert.deepEqual(c.http.corsOrigins, ['https://app.example.com', 'http://localhost:5173']);
  assert.equal(c.http.hstsMaxAgeS, 0);
  assert.equal(c.http.apiDeprecations.v1?.sunset?.toISOString(), '2027-06-30T00:00:00.000Z');
  assert.deepEqual(loadConfig({ env: {} }).http.apiDeprecations, {});
  for (const env of [
    { RAMPART_CORS_ORIGINS: 'https://app.example.com/path' },
    { RAMPART_CORS_ORIGINS: 'app.example.com' },
    { RAMPART_API_DEPRECATIONS: '{"v3": {"deprecated": "2026-12-01"}}' },
    { RAMPART_API_DEPRECATIONS: '{"v1": {"deprecated": "soon"}}' },
    { RAMPART_API_DEPRECATIONS: '{"v1": {"deprecated": "2027-01-01", "sunset": "2026-01-01"}}' },
    { RAMPART_API_DEPRECATIONS: '{"v1": {"deprecated": "2026-12-01", "extra": 1}}' },
    { RAMPART_API_DEPRECATIONS: 'v1' },
  ]) {
    assert.throws(() => loadConfig({ env }), ConfigError, JSON.stringify(env));
  }
});
