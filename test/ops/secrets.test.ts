/**
 * Secrets: from environment variables, NAME_FILE paths, a secrets directory (Docker/Kubernetes)
 * and a provider module, in that order of precedence (environment over directory over provider);
 * and never in logs (scrubbed from every line, whatever logged them), error responses, metrics
 * or backup manifests.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createApp } from '../../src/app.js';
import { ConfigError, loadConfig, loadConfigWithSecrets } from '../../src/core/config.js';
import { collection, defineApp, f } from '../../src/records/schema.js';

const key = () => randomBytes(32).toString('base64');

test('secrets come from the environment, NAME_FILE, a secrets directory and a provider, in that order', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-secrets-'));
  try {
    const secretsDir = join(dir, 'run-secrets');
    mkdirSync(secretsDir);
    const [fromDir, fromLower, fromEnv, fromFile, fromVault] = [key(), key(), key(), key(), key()];
    writeFileSync(join(secretsDir, 'RAMPART_BACKUP_KEY'), `${fromDir}\n`);
    writeFileSync(join(secretsDir, 'rampart_master_key'), fromLower);
    const c1 = loadConfig({ env: { RAMPART_DATA_DIR: dir, RAMPART_SECRETS_DIR: secretsDir } });
    assert.equal(c1.backup.key?.toString('base64'), fromDir);
    assert.equal(c1.dataKeys.masterKey?.toString('base64'), fromLower, 'Kubernetes-style lower-case names too');
    const c2 = loadConfig({ env: { RAMPART_DATA_DIR: dir, RAMPART_SECRETS_DIR: secretsDir, RAMPART_BACKUP_KEY: fromEnv } });
    assert.equal(c2.backup.key?.toString('base64'), fromEnv, 'the environment wins over the directory');
    writeFileSync(join(dir, 'bk'), fromFile);
    const c3 = loadConfig({ env: { RAMPART_DATA_DIR: dir, RAMPART_BACKUP_KEY: fromEnv, RAMPART_BACKUP_KEY_FILE: join(dir, 'bk') } });
    assert.equal(c3.backup.key?.toString('base64'), fromFile);
    assert.throws(() => loadConfig({ env: { RAMPART_SECRETS_DIR: join(dir, 'nope') } }), /RAMPART_SECRETS_DIR: .* does not exist/);
    // A provider module (an external manager); the directory wins over it.
    const vault = join(dir, 'vault.json');
    writeFileSync(vault, JSON.stringify({ RAMPART_BACKUP_KEY: fromVault, RAMPART_MASTER_KEY: fromVault, NOT_A_SECRET: 'x' }));
    process.env.FIXTURE_VAULT_FILE = vault;
    const env = { RAMPART_DATA_DIR: dir, RAMPART_SECRETS_PROVIDER: 'test/fixtures/secrets-provider.ts' };
    const c4 = await loadConfigWithSecrets({ env });
    assert.equal(c4.backup.key?.toString('base64'), fromVault);
    const c5 = await loadConfigWithSecrets({ env: { ...env, RAMPART_SECRETS_DIR: secretsDir } });
    assert.equal(c5.backup.key?.toString('base64'), fromDir);
    assert.equal(c5.dataKeys.masterKey?.toString('base64'), fromLower);
    // A failing provider is a configuration error naming it, with no value in the message.
    writeFileSync(vault, JSON.stringify({ fail: 'vault sealed', RAMPART_BACKUP_KEY: fromVault }));
    await assert.rejects(
      loadConfigWithSecrets({ env }),
      (err: Error) =>
        err instanceof ConfigError && /fixture-vault failed: vault sealed/.test(err.message) && !err.message.includes(fromVault),
    );
    await assert.rejects(loadConfigWithSecrets({ env: { ...env, RAMPART_SECRETS_PROVIDER: 'test/fixtures/missing.ts' } }), /cannot load/);
    // An invalid secret is reported without its value.
    assert.throws(
      () => loadConfig({ env: { RAMPART_BACKUP_KEY: 'not-a-key-but-secret-text' } }),
      (err: Error) => /RAMPART_BACKUP_KEY=\[redacted\]/.test(err.message) && !err.message.includes('not-a-key-but-secret-text'),
    );
  } finally {
    delete process.env.FIXTURE_VAULT_FILE;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('configured secrets never reach logs, error responses, metrics or backup manifests', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-secrets-'));
  const logFile = join(dir, 'rampart.log');
  const backupKey = key();
  const masterKey = key();
  const slackSecret = 'T000/B000/slack-hook-secret-xyz';
  const smtpPassword = 'smtp-password-Zq8';
  const env = {
    RAMPART_DATA_DIR: dir,
    LOG_LEVEL: 'info',
    RAMPART_LOG_FILE: logFile,
    RAMPART_BACKUP_KEY: backupKey,
    RAMPART_MASTER_KEY: masterKey,
    RAMPART_ALERT_CHANNELS: JSON.stringify([{ type: 'slack', url: `https://hooks.example.com/services/${slackSecret}` }]),
    RAMPART_SMTP_URL: `smtp://mailer:${smtpPassword}@127.0.0.1:1`,
    RAMPART_RATE_LIMITS: 'off',
  };
  const def = defineApp({
    collections: {
      boom: collection({
        fields: { title: f.text() },
        rules: { create: 'true' },
        hooks: {
          beforeCreate() {
            // App code that carelessly puts a secret in an error.
            throw new Error(`cannot reach smtp://mailer:${smtpPassword}@127.0.0.1:1 with key ${backupKey}`);
          },
        },
      }),
    },
  });
  const app = await createApp(loadConfig({ env }), def);
  await app.start();
  try {
    const res = await app.server.inject({ method: 'POST', url: '/api/v1/collections/boom/records', payload: { title: 'x' } });
    assert.equal(res.statusCode, 500);
    app.logger.warn(
      { detail: { url: env.RAMPART_SMTP_URL, slack: `https://hooks.example.com/services/${slackSecret}` } },
      `careless app log ${masterKey}`,
    );
    const manifest = await app.backups.create();
    const metrics = await app.metrics.registry.metrics();
    await app.stop();
    const log = readFileSync(logFile, 'utf8');
    const manifestText = readFileSync(join(dir, 'backups', `${manifest.id}.manifest.json`), 'utf8');
    const secrets = [backupKey, masterKey, slackSecret, smtpPassword];
    for (const [where, text] of [
      ['logs', log],
      ['error response', res.body],
      ['metrics', metrics],
      ['backup manifest', manifestText],
    ] as const) {
      for (const s of secrets)
        assert.ok(
          !text.includes(s),
          `${where} must not contain a secret: ${text.slice(Math.max(0, text.indexOf(s) - 200), text.indexOf(s) + 50)}`,
        );
    }
    assert.match(log, /careless app log \[redacted\]/);
    assert.match(log, /"url":"\[redacted\]","slack":"\[redacted\]"/);
    assert.match(res.body, /"code":"E_INTERNAL"/);
    process.stdout.write(
      `# secrets: ${log.split('\n').length - 1} log lines (one logged each secret on purpose), a 500, /metrics and a backup manifest: no secret in any\n`,
    );
    assert.ok(readdirSync(join(dir, 'backups')).length === 2);
  } finally {
    await app.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
