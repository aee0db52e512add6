/**
 * Database failover for real: a primary and a synchronous streaming standby (pg_basebackup) on
 * this machine, a Rampart process given both hosts in DATABASE_URL. Under write load the
 * primary is SIGKILLed (postmaster and backends) and the standby promoted, as Patroni would:
 * Rampart writes to the new primary within 10 s, with no restart, and every write it
 * acknowledged is on the new primary.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PrivatePostgres, privatePgUnavailable, type RampartProcess, startRampart } from '../helpers/processes.js';

const skip = privatePgUnavailable() ?? false;
if (skip) process.stdout.write(`# skipping the failover test: ${skip}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('PostgreSQL failover', { skip }, () => {
  const primary = new PrivatePostgres();
  const standby = new PrivatePostgres();
  const dataDir = mkdtempSync(join(tmpdir(), 'rampart-failover-'));
  let rampart: RampartProcess;

  before(async () => {
    await primary.init();
    await standby.initReplicaOf(primary);
    // Synchronous replication: a commit is acknowledged once the standby has it on disk.
    primary.psql("alter system set synchronous_standby_names = '*'");
    primary.psql('select pg_reload_conf()');
    for (let i = 0; i < 100 && primary.psql('select sync_state from pg_stat_replication') !== 'sync'; i++) await sleep(100);
    assert.equal(primary.psql('select sync_state from pg_stat_replication'), 'sync');
    rampart = await startRampart({
      DATABASE_URL: `postgres://postgres@127.0.0.1:${primary.port},127.0.0.1:${standby.port}/postgres?target_session_attrs=read-write`,
      RAMPART_DATA_DIR: dataDir,
      RAMPART_DB_CONNECT_TIMEOUT_MS: '1000',
      LOG_LEVEL: 'info',
    });
  });

  after(() => {
    rampart?.child.kill('SIGKILL');
    primary.destroy();
    standby.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('the primary SIGKILLed under writes, the standby promoted: writes resume on it within 10 s, none acknowledged is lost', async () => {
    const post = async (body: unknown, collection = 'messages') => {
      const r = await fetch(`${rampart.url}/api/v1/collections/${collection}/records`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
      return { status: r.status, body: (await r.json()) as { id: string } };
    };
    const room = (await post({ name: 'failover' }, 'rooms')).body.id;
    const acked: string[] = [];
    const failed: Record<string, number> = {};
    let killedAt = 0;
    let firstAfterKill = 0;
    let stop = false;
    let seq = 0;
    const writer = async () => {
      while (!stop) {
        const body = `w${seq++}`;
        const started = performance.now();
        try {
          const r = await post({ room, body, author: 'failover' });
          if (r.status === 201) {
            acked.push(body);
            // The first write sent after the kill that is acknowledged: the new primary took it.
            if (killedAt && started > killedAt && !firstAfterKill) firstAfterKill = performance.now();
          } else failed[r.status] = (failed[r.status] ?? 0) + 1;
        } catch {
          failed.network = (failed.network ?? 0) + 1;
        }
        if (killedAt && !firstAfterKill) await sleep(50);
      }
    };
    const writers = Array.from({ length: 6 }, writer);
    await sleep(3000);
    const before = acked.length;
    primary.killHard();
    killedAt = performance.now();
    // Patroni would notice the leader's lease expire, then promote: a second here.
    await sleep(1000);
    standby.promote();
    const promotedAt = performance.now();
    const until = performance.now() + 20_000;
    while (!firstAfterKill && performance.now() < until) await sleep(50);
    await sleep(2000);
    stop = true;
    await Promise.all(writers);

    const resumedS = firstAfterKill ? (firstAfterKill - killedAt) / 1000 : Number.POSITIVE_INFINITY;
    const stored = new Set(standby.psql("select body from messages where author = 'failover'").split('\n').filter(Boolean));
    const lost = acked.filter((b) => !stored.has(b));
    process.stdout.write(
      `# failover: ${before} writes before the kill, ${acked.length} acknowledged in all; writes resumed ${resumedS.toFixed(2)} s after the kill ` +
        `(${((firstAfterKill - promotedAt) / 1000).toFixed(2)} s after the promotion); failed meanwhile ${JSON.stringify(failed)}; ` +
        `acknowledged but missing on the new primary: ${lost.length}\n`,
    );
    assert.ok(resumedS < 10, `writes resumed after ${resumedS} s`);
    assert.equal(lost.length, 0);
    assert.equal(rampart.child.exitCode, null, 'no restart');
    assert.match(rampart.output(), /the database primary moved/);
    const failures = Object.keys(failed).filter((k) => k !== '503');
    assert.deepEqual(failures, [], 'only 503s while there was no primary');
  });
});
