/**
 * Encryption in transit, for real, with a test CA made by openssl: Rampart serving HTTPS (HSTS on
 * its answers; a renewed certificate picked up without a restart; a broken pair ignored, the old
 * one kept), PostgreSQL with `ssl = on` reached with `sslmode=verify-full` and the CA (a wrong CA
 * refused with an error naming sslrootcert), and Redis over `rediss://` on a `--tls-port` verified
 * with RAMPART_REDIS_TLS_CA_PATH (a wrong CA logged as an untrusted certificate, Redis counted down).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { createApp, type RampartApp } from '../../src/app.js';
import { loadConfig } from '../../src/core/config.js';
import chat from '../fixtures/open-chat.ts';
import { freePort, PrivatePostgres, privatePgUnavailable } from '../helpers/processes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const openssl = (dir: string, ...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

/** A new P-256 key without a passphrase, as openssl req arguments. */
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A CA, and certificates it signs for 127.0.0.1 and localhost. */
function makeCa(dir: string, name: string) {
  openssl(dir, 'req', '-x509', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`);
  return {
    crt: join(dir, `${name}.crt`),
    issue(leaf: string, days = 2) {
      writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
      openssl(dir, 'req', ...EC_KEY, '-keyout', `${leaf}.key`, '-out', `${leaf}.csr`, '-subj', '/CN=127.0.0.1');
      openssl(
        dir,
        'x509',
        '-req',
        '-in',
        `${leaf}.csr`,
        '-CA',
        `${name}.crt`,
        '-CAkey',
        `${name}.key`,
        '-CAcreateserial',
        '-out',
        `${leaf}.crt`,
        '-days',
        String(days),
        '-extfile',
        'ext.cnf',
      );
      return { crt: join(dir, `${leaf}.crt`), key: join(dir, `${leaf}.key`) };
    },
  };
}

/** GET over HTTPS trusting `ca`: status, headers and the serial of the certificate the server showed. */
function get(url: string, ca: string): Promise<{ status: number; headers: Record<string, unknown>; serial: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca: readFileSync(ca), agent: false }, (res) => {
      const serial = (res.socket as TLSSocket).getPeerCertificate().serialNumber;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, serial }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('TLS end to end', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-tls-'));
  const ca = makeCa(dir, 'ca');
  const wrong = makeCa(dir, 'wrong');
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('HTTPS: served with the certificate, HSTS on answers, a renewed certificate used without a restart, a broken one ignored', async () => {
    const leaf = ca.issue('srv');
    const certPath = join(dir, 'live.crt');
    const keyPath = join(dir, 'live.key');
    copyFileSync(leaf.crt, certPath);
    copyFileSync(leaf.key, keyPath);
    const data = mkdtempSync(join(tmpdir(), 'rampart-tls-data-'));
    const lines: string[] = [];
    const app = await createApp(
      loadConfig({
        env: {
          RAMPART_DATA_DIR: data,
          PORT: '0',
          RAMPART_TLS_CERT_PATH: certPath,
          RAMPART_TLS_KEY_PATH: keyPath,
          RAMPART_TLS_RELOAD_MS: '1000',
          RAMPART_RATE_LIMITS: 'off',
        },
      }),
      chat,
      { logger: pino({ level: 'info' }, { write: (s: string) => void lines.push(s) }) },
    );
    try {
      const url = await app.start();
      assert.match(url, /^https:\/\//);
      const first = await get(`${url}/api/v1/collections/rooms/records`, ca.crt);
      assert.equal(first.status, 200);
      assert.match(String(first.headers['strict-transport-security']), /^max-age=\d+; includeSubDomains$/);
      // A plain-HTTP client gets no answer from an HTTPS port.
      await assert.rejects(fetch(url.replace('https:', 'http:')));
      // Renewal: new files in place; new connections get the new certificate.
      const renewed = ca.issue('srv2', 30);
      copyFileSync(renewed.crt, certPath);
      copyFileSync(renewed.key, keyPath);
      let now = first;
      for (let i = 0; i < 50 && now.serial === first.serial; i++) {
        await sleep(100);
        now = await get(`${url}/healthz`, ca.crt);
      }
      assert.notEqual(now.serial, first.serial, 'the renewed certificate is served');
      const metrics = await (await app.server.inject({ url: '/metrics' })).body;
      const expiry = Number(/rampart_tls_certificate_expiry_timestamp_seconds ([\d.e+]+)/.exec(metrics)?.[1]);
      assert.ok(expiry * 1000 > Date.now() + 20 * 86_400_000, 'the metric shows the renewed certificate (30 days)');
      // A broken pair (a key that does not match) is refused; the good one stays.
      copyFileSync(ca.issue('other').key, keyPath);
      await sleep(2500);
      const still = await get(`${url}/healthz`, ca.crt);
      assert.equal(still.status, 200);
      assert.equal(still.serial, now.serial);
      assert.ok(
        lines.some((l) => /TLS certificate or key does not load/.test(l)),
        'the broken pair is logged',
      );
      assert.ok(lines.some((l) => /TLS certificate reloaded/.test(l)));
      process.stdout.write(
        `# https: served serial …${first.serial.slice(-8)}, renewed to …${now.serial.slice(-8)} without a restart; a mismatched key was refused\n`,
      );
    } finally {
      await app.stop();
      rmSync(data, { recursive: true, force: true });
    }
  });

  describe('PostgreSQL over TLS (verify-full)', { skip: privatePgUnavailable() ?? false }, () => {
    const pg = new PrivatePostgres();
    before(async () => {
      const leaf = ca.issue('pg');
      // The server's files: readable by the postgres user, the key by it alone.
      for (const [from, to] of [
        [leaf.crt, 'server.crt'],
        [leaf.key, 'server.key'],
      ] as const) {
        copyFileSync(from, join(pg.dir, to));
        const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
        const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
        chownSync(join(pg.dir, to), uid, gid);
        chmodSync(join(pg.dir, to), 0o600);
      }
      pg.settings = { ssl: 'on', ssl_cert_file: join(pg.dir, 'server.crt'), ssl_key_file: join(pg.dir, 'server.key') };
      await pg.init();
    });
    after(() => pg.destroy());

    test('the right CA connects over TLS; a wrong CA is refused with an error that names sslrootcert', async () => {
      const data = mkdtempSync(join(tmpdir(), 'rampart-tls-data-'));
      const url = (caFile: string) => `${pg.url}?sslmode=verify-full&sslrootcert=${encodeURIComponent(caFile)}`;
      let app: RampartApp | undefined;
      try {
        app = await createApp(loadConfig({ env: { RAMPART_DATA_DIR: data, DATABASE_URL: url(ca.crt), LOG_LEVEL: 'silent' } }), chat);
        await app.migrator.up();
        const rec = await app.records.create('rooms', { name: 'over tls' });
        assert.ok(rec.id);
        const { rows } = await (await import('kysely')).sql<{
          ssl: boolean;
          version: string;
        }>`select ssl, version from pg_stat_ssl where pid = pg_backend_pid()`.execute(app.storage.db);
        assert.equal(rows[0]?.ssl, true, 'the connection is encrypted');
        process.stdout.write(`# postgres: connected with ${rows[0]?.version} (verify-full)\n`);
        await app.stop();
        app = await createApp(loadConfig({ env: { RAMPART_DATA_DIR: data, DATABASE_URL: url(wrong.crt), LOG_LEVEL: 'silent' } }), chat);
        await assert.rejects(app.migrator.up(), (err: Error) => {
          assert.match(err.message, /^TLS to PostgreSQL at 127\.0\.0\.1:\d+: .*sslrootcert/);
          return true;
        });
      } finally {
        await app?.stop();
        rmSync(data, { recursive: true, force: true });
      }
    });
  });

  describe('Redis over TLS (rediss://)', () => {
    let port: number;
    let proc: ChildProcess;
    before(async () => {
      const leaf = ca.issue('redis');
      port = await freePort();
      proc = spawn(
        'redis-server',
        [
          '--port',
          '0',
          '--tls-port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--tls-cert-file',
          leaf.crt,
          '--tls-key-file',
          leaf.key,
          '--tls-auth-clients',
          'no',
          '--save',
          '',
          '--appendonly',
          'no',
        ],
        { stdio: 'ignore' },
      );
      await sleep(500);
    });
    after(() => {
      proc?.kill('SIGKILL');
    });

    const start = async (caFile: string, lines: string[]) => {
      const data = mkdtempSync(join(tmpdir(), 'rampart-tls-data-'));
      const app = await createApp(
        loadConfig({
          env: { RAMPART_DATA_DIR: data, PORT: '0', REDIS_URL: `rediss://127.0.0.1:${port}`, RAMPART_REDIS_TLS_CA_PATH: caFile },
        }),
        chat,
        { logger: pino({ level: 'warn' }, { write: (s: string) => void lines.push(s) }) },
      );
      return { app, cleanup: () => rmSync(data, { recursive: true, force: true }) };
    };
    const redisUp = async (app: RampartApp) => /^rampart_redis_up 1$/m.test((await app.server.inject({ url: '/metrics' })).body);

    test('the right CA connects; a wrong CA is logged as an untrusted certificate and Redis counts as down', async () => {
      const ok = await start(ca.crt, []);
      try {
        for (let i = 0; i < 50 && !(await redisUp(ok.app)); i++) await sleep(100);
        assert.ok(await redisUp(ok.app), 'connected over TLS');
      } finally {
        await ok.app.stop();
        ok.cleanup();
      }
      const lines: string[] = [];
      const bad = await start(wrong.crt, lines);
      try {
        await sleep(1500);
        assert.equal(await redisUp(bad.app), false);
        assert.ok(
          lines.some((l) => /redis TLS: the server certificate is not trusted/.test(l)),
          `logged: ${lines.map((l) => JSON.parse(l).msg).join(' | ')}`,
        );
      } finally {
        await bad.app.stop();
        bad.cleanup();
      }
    });
  });
});
