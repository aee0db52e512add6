/**
 * The last step of `npm test`: every log line the whole suite produced (in-process apps' log
 * files and every child process's output, collected in RAMPART_TEST_LOG_DIR) is searched for
 * the secret values the suite configures: the PostgreSQL password in every DATABASE_URL, the
 * master key every backend carries. One occurrence fails the build.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CANARIES, LOG_DIR } from '../helpers/log-capture.js';

test('no configured secret appears in any log line of the suite', {
  skip: LOG_DIR ? false : 'run through npm test (RAMPART_TEST_LOG_DIR)',
}, () => {
  const dir = LOG_DIR as string;
  const forms = Object.values(CANARIES).flatMap((v) => [
    v,
    encodeURIComponent(v),
    JSON.stringify(v).slice(1, -1),
    Buffer.from(v, 'base64').toString('hex'),
  ]);
  let lines = 0;
  let files = 0;
  let warnings = 0;
  const hits: string[] = [];
  for (const name of readdirSync(dir)) {
    files++;
    for (const line of readFileSync(join(dir, name), 'utf8').split('\n')) {
      if (line === '') continue;
      lines++;
      if (/"level":"(warn|error|fatal)"/.test(line)) warnings++;
      const hit = forms.find((f) => f.length >= 8 && line.includes(f));
      if (hit) hits.push(`${name}: ${line.slice(0, 300).replace(hit, '<SECRET>')}`);
    }
  }
  process.stdout.write(
    `# scanned ${lines} log lines (${warnings} warnings and errors) in ${files} files from the whole suite: ${hits.length} with a secret\n`,
  );
  assert.ok(lines > 100, `the suite's logs were collected (${lines} lines)`);
  assert.deepEqual(hits.slice(0, 10), []);
});
