/**
 * The SDK as it is published: it builds on its own (its tsconfig: browser and ES2022 libraries,
 * no Node types), the entry points its package.json names exist, the built code imports nothing
 * from Node, and the built module works.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { ROOT } from '../helpers/processes.js';

test('sdk/ builds alone, names real entry points, and uses no Node-only module', async () => {
  const out = mkdtempSync(join(tmpdir(), 'rampart-sdk-build-'));
  try {
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'sdk/tsconfig.json'), '--outDir', out], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'sdk/package.json'), 'utf8'));
    assert.equal(pkg.name, '@rampart/client');
    assert.equal(pkg.type, 'module');
    assert.deepEqual(pkg.files, ['dist', 'README.md']);
    const entry = pkg.exports['.'];
    for (const f of [entry.import, entry.types, pkg.main, pkg.types]) {
      assert.ok(readdirSync(out).includes(f.replace('./dist/', '')), `${f} is built`);
    }
    for (const f of readdirSync(out).filter((f) => f.endsWith('.js'))) {
      const code = readFileSync(join(out, f), 'utf8');
      assert.doesNotMatch(code, /from ['"]node:|require\(|process\.|Buffer\./, `${f} uses nothing Node-only`);
    }
    const sdk = await import(pathToFileURL(join(out, 'index.js')).href);
    for (const name of ['createClient', 'memoryStore', 'localStorageStore', 'indexedDbStore', 'ApiError', 'Transport'])
      assert.equal(typeof sdk[name], 'function', name);
    const client = sdk.createClient({ url: 'http://127.0.0.1:9' });
    assert.equal(client.http.base, 'http://127.0.0.1:9/api/v1');
    client.close();
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
