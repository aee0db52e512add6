/** The `rampart` CLI as a user runs it: help, configuration errors, migrations, graceful shutdown. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { sql } from 'kysely';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/core/config.js';
import type { AppDef } from '../src/records/schema.js';
import { searchName } from '../src/records/schema-diff.js';
import { ROOT, startRampart } from './helpers/processes.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'rampart-cli-'));
  dirs.push(d);
  return d;
};

function run(args: string[], env: Record<string, string> = {}, input?: string) {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/rampart.js'), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
    timeout: 60_000,
    input,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('rampart CLI', () => {
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('help for the tool and for each command', () => {
    const main = run(['--help']);
    assert.equal(main.code, 0);
    for (const word of ['serve', 'migrate up', 'migrate down', 'migrate status', 'DATABASE_URL', 'RAMPART_DATA_DIR'])
      assert.ok(main.out.includes(word), word);
    assert.match(run(['migrate', '--help']).out, /--allow-destructive/);
    assert.match(run(['help', 'serve']).out, /SIGTERM/);
    const bad = run(['explode']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /unknown command "explode"/);
  });

  test('invalid configuration stops with the key, the value (redacted when secret) and what is expected', () => {
    const r = run(['serve', '--app', 'examples/chat/rampart.config.ts'], {
      PORT: 'eighty',
      DATABASE_URL: 'mysql://root:hunter2@db/x',
      RAMPART_DATA_DIR: tmp(),
    });
    assert.equal(r.code, 1);
    assert.match(r.err, /PORT="eighty": expected an integer from 0 to 65535/);
    assert.match(r.err, /DATABASE_URL=\[redacted\]: expected a postgres:\/\//);
    assert.ok(!r.err.includes('hunter2'), 'the secret is not printed');
  });

  test('an invalid app declaration stops with the collection and field named', () => {
    const dir = tmp();
    const file = join(dir, 'app.json');
    writeFileSync(
      file,
      JSON.stringify({ collections: { posts: { fields: { author: { type: 'relation', collection: 'people' }, id: { type: 'text' } } } } }),
    );
    const r = run(['migrate', 'status', '--app', file], { RAMPART_DATA_DIR: dir });
    assert.equal(r.code, 1);
    assert.match(r.err, /collection "posts", field "author": relation to unknown collection "people"/);
    assert.match(r.err, /field "id": is a base field/);
  });

  test('a bad access rule stops startup, naming the collection, the operation and the problem', () => {
    const dir = tmp();
    const file = join(dir, 'app.json');
    writeFileSync(
      file,
      JSON.stringify({ collections: { notes: { fields: { owner: { type: 'text' } }, rules: { list: 'ownr = @auth.id' } } } }),
    );
    const r = run(['serve', '--app', file, '--port', '0'], { RAMPART_DATA_DIR: dir });
    assert.equal(r.code, 1);
    assert.match(r.err, /collection "notes", rule list \("ownr = @auth.id"\): notes has no field "ownr"/);
  });

  test('admin create makes or promotes an admin (password on stdin); keys rotate adds a signing key', () => {
    const env = { RAMPART_DATA_DIR: tmp() };
    const app = ['--app', 'examples/chat/rampart.config.ts'];
    const weak = run(['admin', 'create', '--email', 'ops@example.com', ...app], env, 'short');
    assert.equal(weak.code, 1);
    assert.match(weak.err, /password must be at least 8 characters/);
    const made = run(['admin', 'create', '--email', 'Ops@Example.com', ...app], env, 'a long admin password\n');
    assert.equal(made.code, 0, made.err);
    assert.match(made.out, /created admin ops@example\.com/);
    const again = run(['admin', 'create', '--email', 'ops@example.com', ...app], env, 'another long password');
    assert.match(again.out, /made admin ops@example\.com/);
    const rotated = run(['keys', 'rotate', ...app], env);
    assert.equal(rotated.code, 0, rotated.err);
    assert.match(rotated.out, /new signing key/);
    assert.match(run(['keys', 'list', ...app], env).out, /signing/);
    assert.equal(run(['admin', 'create', ...app], env).code, 2, '--email is required');
  });

  test('migrate status, up and down on a JSON-declared app', () => {
    const dir = tmp();
    const file = join(dir, 'app.json');
    writeFileSync(file, JSON.stringify({ collections: { posts: { fields: { title: { type: 'text', required: true } } } } }));
    const env = { RAMPART_DATA_DIR: dir };
    const s1 = run(['migrate', 'status', '--app', file], env);
    assert.equal(s1.code, 0, s1.err);
    assert.match(
      s1.out,
      /pending \(12\):\n {2}0001_auth\n {2}0002_jobs\n {2}0003_app_versions\n {2}0004_protect\n {2}0005_webhooks\n {2}0006_realtime\n {2}0007_events\n {2}0008_idempotency_owner\n {2}0009_job_trace\n {2}0010_operations\n {2}schema: create collection users\n {2}schema: create collection posts/,
    );
    const up = run(['migrate', 'up', '--app', file], env);
    assert.equal(up.code, 0, up.err);
    assert.match(
      up.out,
      /applied: 0001_auth, 0002_jobs, 0003_app_versions, 0004_protect, 0005_webhooks, 0006_realtime, 0007_events, 0008_idempotency_owner, 0009_job_trace, 0010_operations, schema_0011/,
    );
    assert.match(run(['migrate', 'status', '--app', file], env).out, /schema_0011 .*create collection posts\npending: none/);
    writeFileSync(file, JSON.stringify({ collections: { posts: { fields: {} } } }));
    const refused = run(['migrate', 'up', '--app', file], env);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /drop field posts\.title.*--allow-destructive/);
    assert.equal(run(['migrate', 'up', '--allow-destructive', '--app', file], env).code, 0);
    const down = run(['migrate', 'down', '--steps', '2', '--app', file], env);
    assert.equal(down.code, 0, down.err);
    assert.match(down.out, /reverted: schema_0012, schema_0011/);
  });

  test('search reindex rebuilds an index online with a progress bar; unknown or unsearchable collections are refused', async () => {
    const dir = tmp();
    const file = join(dir, 'app.json');
    const def = {
      collections: {
        posts: { fields: { title: { type: 'text', search: 'A' }, body: { type: 'text', search: 'C' } } },
        tags: { fields: { label: { type: 'text' } } },
      },
    };
    writeFileSync(file, JSON.stringify(def));
    const env = { RAMPART_DATA_DIR: dir };
    assert.equal(run(['migrate', 'up', '--app', file], env).code, 0);
    const open = () => createApp(loadConfig({ env: { ...env, LOG_LEVEL: 'silent' } }), def as AppDef);
    let app = await open();
    for (let i = 0; i < 1200; i += 100) {
      await app.records.batch(
        Array.from({ length: 100 }, (_, j) => ({
          op: 'create',
          collection: 'posts',
          data: { title: `post ${i + j}`, body: 'lighthouse keeper' },
        })),
      );
    }
    // A damaged index: every entry gone.
    await sql`delete from ${sql.id(searchName('posts'))}`.execute(app.storage.db);
    assert.equal((await app.records.list('posts', { q: 'lighthouse', count: 'true' })).total, 0);
    await app.stop();

    const r = run(['search', 'reindex', '--app', file], env);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /reindex posts \[#{24}\] 100% 1200\/1200/);
    assert.match(r.out, /reindexed posts: 1200 records, 3 words in [\d.]+ s/);
    app = await open();
    assert.equal((await app.records.list('posts', { q: 'lighthouse', count: 'true' })).total, 1200);
    await app.stop();

    const unknown = run(['search', 'reindex', 'nope', '--app', file], env);
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /there is no collection "nope"/);
    const plain = run(['search', 'reindex', 'tags', '--app', file], env);
    assert.equal(plain.code, 1);
    assert.match(plain.err, /collection tags has no searchable fields/);
    assert.equal(run(['search', '--app', file], env).code, 2, 'usage without a subcommand');
  });

  test('events status shows the outbox per destination; events replay marks a range for publishing again', async () => {
    const dir = tmp();
    const file = join(dir, 'app.json');
    const def = {
      collections: { notes: { fields: { text: { type: 'text' } } } },
      events: { publish: { audit: { events: ['notes.*'], broker: 'mq', exchange: 'audit' } } },
    };
    writeFileSync(file, JSON.stringify(def));
    // Nothing relays here (no worker runs): the events stay pending. No broker is contacted.
    const env = { RAMPART_DATA_DIR: dir, RAMPART_BROKERS: '{"mq": "amqp://guest:guest@127.0.0.1:1"}' };
    const app = await createApp(loadConfig({ env: { ...env, LOG_LEVEL: 'silent' } }), def as AppDef);
    await app.migrator.up();
    for (const text of ['a', 'b', 'c']) await app.records.create('notes', { text });
    await sql`update _rampart_outbox set published_at = created_at where id = (select min(id) from _rampart_outbox)`.execute(
      app.storage.db,
    );
    await app.stop();
    const status = run(['events', 'status', '--app', file], env);
    assert.equal(status.code, 0, status.err);
    assert.match(
      status.out,
      /^audit \(rabbitmq mq\): 2 pending, oldest [\d.]+ s; 1 published in the last hour; partitions held 0\/16 by 0 relays$/m,
    );
    const bad = run(['events', 'replay', '--since', 'yesterday', '--app', file], env);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--since .* ISO 8601 .* 90m, 6h, 2d/);
    const unknown = run(['events', 'replay', '--since', '1h', '--destination', 'nope', '--app', file], env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /there is no destination "nope"/);
    const replay = run(['events', 'replay', '--since', '1h', '--app', file], env);
    assert.equal(replay.code, 0, replay.err);
    assert.match(replay.out, /^1 event will be published again \(written since \d{4}-/);
    assert.match(run(['events', 'status', '--app', file], env).out, /3 pending/);
    assert.match(run(['events', 'nothing', '--app', file], env).err, /Usage: rampart events status/);
  });

  test('backup create, list, verify; restore into a fresh data dir (migrations after), refused over data; check and audit', () => {
    const file = join(ROOT, 'test/fixtures/jobs-app.ts');
    const source = tmp();
    const target = join(tmp(), 'backups');
    const key = Buffer.alloc(32, 9).toString('base64');
    const env = { RAMPART_DATA_DIR: source, RAMPART_BACKUP_KEY: key, RAMPART_BACKUP_TARGET: target };
    assert.equal(run(['migrate', 'up', '--app', file], env).code, 0);
    const created = run(['backup', 'create', '--app', file], env);
    assert.equal(created.code, 0, created.err);
    const id = /^backup (rampart-sqlite-\S+): \d+ tables, \d+ rows/m.exec(created.out)?.[1];
    assert.ok(id, created.out);
    assert.match(created.out, /hash rows \[#+\] 100%/, 'progress is shown');
    const verified = run(['backup', 'verify', 'latest', '--app', file], env);
    assert.equal(verified.code, 0, verified.err);
    assert.match(verified.out, new RegExp(`${id}: restored into scratch, integrity ok`));
    assert.match(run(['backup', 'list', '--app', file], env).out, new RegExp(`${id} .* verified`));
    // Into a fresh data directory; migrations run after; the backup shows as finished there.
    const fresh = { ...env, RAMPART_DATA_DIR: tmp() };
    const restored = run(['restore', id, '--app', file], fresh);
    assert.equal(restored.code, 0, restored.err);
    assert.match(restored.out, /restored rampart-sqlite-.* checked against its manifest/);
    assert.match(run(['migrate', 'status', '--app', file], fresh).out, /pending: none/);
    // Over a database that holds data: refused unless --force.
    const again = run(['restore', id, '--app', file], fresh);
    assert.equal(again.code, 1);
    assert.match(again.err, /not empty.*--force/);
    assert.equal(run(['restore', id, '--force', '--app', file], fresh).code, 0);
    const audit = run(['audit', '--action', 'backup.', '--app', file], fresh);
    assert.match(audit.out, /backup\.restored +success +cli backup:rampart-sqlite-/);
    // Another key: the backup is foreign.
    const foreign = run(['backup', 'verify', id, '--app', file], { ...env, RAMPART_BACKUP_KEY: Buffer.alloc(32, 1).toString('base64') });
    assert.equal(foreign.code, 1);
    assert.match(foreign.err, /another backup key .*a foreign backup/);
    const check = run(['check', '--app', file], fresh);
    assert.match(check.out, /^ok {4}backup_freshness/m);
  });

  test('SIGTERM: in-flight requests finish, the database closes, exit code 0', async () => {
    const p = await startRampart({ RAMPART_DATA_DIR: tmp(), LOG_LEVEL: 'info' }, ['serve', '--app', 'test/fixtures/slow-app.ts']);
    const inflight = fetch(`${p.url}/api/v1/collections/notes/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"text":"slow"}',
    });
    await new Promise((r) => setTimeout(r, 200));
    p.child.kill('SIGTERM');
    const res = await inflight;
    assert.equal(res.status, 201, 'the in-flight create completed');
    assert.equal(await p.exited, 0);
    assert.match(p.output(), /"msg":"stopped"/);
    await assert.rejects(fetch(`${p.url}/healthz`), 'no longer accepting');
  });

  test('SIGTERM with a drain delay: still serving (connections closing, readiness failing, realtime refused), then gone', async () => {
    const p = await startRampart({ RAMPART_DATA_DIR: tmp(), RAMPART_DRAIN_DELAY_MS: '1500' });
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    const list = await fetch(`${p.url}/api/v1/collections/rooms/records`);
    assert.equal(list.status, 200, 'requests are still answered while draining');
    assert.equal(list.headers.get('connection'), 'close', 'and their connections close after the answer');
    const ready = await fetch(`${p.url}/readyz`);
    assert.equal(ready.status, 503, 'the load balancer is told to stop sending');
    assert.match(await ready.text(), /shutting down/);
    const rt = await fetch(`${p.url}/api/v1/realtime/events`);
    assert.equal(rt.status, 503, 'a realtime client is sent to another node');
    assert.equal(((await rt.json()) as { code: string }).code, 'E_SHUTTING_DOWN');
    assert.equal(await p.exited, 0);
    const took = Date.now() - t0;
    assert.ok(took >= 1500, `exited after the drain delay (${took} ms)`);
    process.stdout.write(`# drain: served while draining, exited ${took} ms after SIGTERM (delay 1500 ms)\n`);
  });
});
