/**
 * A release done the safe way, on PostgreSQL with real processes: release N serves; release
 * N+1's migration only expands the schema (an optional field), so N and N+1 nodes serve side by
 * side on it; then N+1 is rolled back (`rampart migrate down` and the release-N nodes that never
 * stopped), as docs/deploy.md describes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeBackend, pgUnavailable, type TestBackend } from '../helpers/backends.js';
import { type RampartProcess, ROOT, startRampart } from '../helpers/processes.js';

const why = await pgUnavailable();
if (why) process.stdout.write(`# skipping the release test: ${why}\n`);

function cli(args: string[], env: Record<string, string>) {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/rampart.js'), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('expand, run N and N+1 side by side, roll back', { skip: why ?? false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-release-'));
  const vN = join(dir, 'release-n.json');
  const vN1 = join(dir, 'release-n1.json');
  let backend: TestBackend;
  const procs: RampartProcess[] = [];
  before(async () => {
    backend = await makeBackend('postgres');
    const open = { list: 'true', view: 'true', create: 'true', update: 'true', delete: 'true' };
    writeFileSync(vN, JSON.stringify({ collections: { notes: { fields: { text: { type: 'text', required: true } }, rules: open } } }));
    writeFileSync(
      vN1,
      JSON.stringify({
        collections: { notes: { fields: { text: { type: 'text', required: true }, title: { type: 'text', max: 80 } }, rules: open } },
      }),
    );
  });
  after(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await backend?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  test('N+1 expands while N serves; both serve; migrate down rolls N+1 back and N goes on', async () => {
    // Nodes never migrate by themselves in a cluster release: a migration step does, once.
    const { PORT: _, ...shared } = backend.env; // each node gets a port of its own
    const env = { ...shared, LOG_LEVEL: 'warn', RAMPART_AUTO_MIGRATE: 'false' };
    assert.equal(cli(['migrate', 'up', '--app', vN], env).code, 0);
    const n = await startRampart(env, ['serve', '--app', vN]);
    procs.push(n);
    const post = (url: string, body: unknown) =>
      fetch(`${url}/api/v1/collections/notes/records`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    assert.equal((await post(n.url, { text: 'from N' })).status, 201);

    const expand = cli(['migrate', 'up', '--app', vN1], env);
    assert.equal(expand.code, 0, expand.err);
    const n1 = await startRampart(env, ['serve', '--app', vN1]);
    procs.push(n1);
    const byN1 = await post(n1.url, { text: 'from N+1', title: 'new field' });
    assert.equal(byN1.status, 201);
    const id = ((await byN1.json()) as { id: string }).id;
    assert.equal((await post(n.url, { text: 'N still writes' })).status, 201, 'release N writes on the expanded schema');
    assert.equal((await fetch(`${n.url}/api/v1/collections/notes/records/${id}`)).status, 200, 'and reads what N+1 wrote');

    // Roll back: N+1 leaves, its migration is reverted, N (never stopped) serves on.
    n1.child.kill('SIGTERM');
    await n1.exited;
    const down = cli(['migrate', 'down', '--app', vN], env);
    assert.equal(down.code, 0, down.err);
    const status = cli(['migrate', 'status', '--app', vN], env);
    assert.match(status.out, /pending: none/, 'the schema is release N again');
    assert.equal((await post(n.url, { text: 'after the rollback' })).status, 201);
    const list = (await (await fetch(`${n.url}/api/v1/collections/notes/records?limit=10`)).json()) as { items: { text: string }[] };
    process.stdout.write(`# release: N and N+1 served side by side; after the rollback N lists ${list.items.length} notes\n`);
    assert.equal(list.items.length, 4, 'nothing written by either release was lost');
  });
});
