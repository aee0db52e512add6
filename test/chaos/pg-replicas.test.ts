/**
 * Read replicas for real: a private primary and a streaming standby (pg_basebackup), a Rampart
 * process with DATABASE_REPLICA_URLS. Record reads go to the replica; a client that just wrote
 * reads its write even while the replica's replay is paused; another client's reads are never
 * staler than RAMPART_REPLICA_MAX_LAG_MS (then they go to the primary); a dead replica sends
 * every read to the primary without an error.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PrivatePostgres, privatePgUnavailable, type RampartProcess, startRampart } from '../helpers/processes.js';

const skip = privatePgUnavailable() ?? false;
if (skip) process.stdout.write(`# skipping the read-replica test: ${skip}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('PostgreSQL read replicas', { skip, concurrency: false }, () => {
  const primary = new PrivatePostgres();
  const replica = new PrivatePostgres();
  const dataDir = mkdtempSync(join(tmpdir(), 'rampart-replicas-'));
  let rampart: RampartProcess;
  let room: string;

  /** A client of its own: its address as the trusted proxy reports it. */
  const as = (client: string) => ({ 'x-forwarded-for': client });
  const metric = async (name: string, label: string) => {
    const text = await (await fetch(`${rampart.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}{replica="${label}"}`));
    return line ? Number(line.split(' ').at(-1)) : 0;
  };
  const replicaName = () => `127.0.0.1:${replica.port}`;

  before(async () => {
    await primary.init();
    await replica.initReplicaOf(primary);
    rampart = await startRampart({
      DATABASE_URL: primary.url,
      DATABASE_REPLICA_URLS: replica.url,
      RAMPART_REPLICA_MAX_LAG_MS: '1000',
      RAMPART_TRUST_PROXY: '127.0.0.1',
      RAMPART_DATA_DIR: dataDir,
      RAMPART_DB_CONNECT_TIMEOUT_MS: '1000',
    });
    const r = await fetch(`${rampart.url}/api/v1/collections/rooms/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...as('10.0.0.1') },
      body: '{"name":"replicas"}',
    });
    room = ((await r.json()) as { id: string }).id;
    for (let i = 0; i < 100 && (await metric('rampart_db_replica_up', replicaName())) !== 1; i++) await sleep(100);
  });

  after(() => {
    rampart?.child.kill('SIGKILL');
    primary.destroy();
    replica.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const write = async (client: string, body: string) => {
    const r = await fetch(`${rampart.url}/api/v1/collections/messages/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...as(client) },
      body: JSON.stringify({ room, body, author: client }),
    });
    assert.equal(r.status, 201);
    assert.match(r.headers.get('rampart-read-after') ?? '', /^[0-9A-F]+\/[0-9A-F]+$/, 'the write tells its position');
    return ((await r.json()) as { id: string }).id;
  };
  const read = (client: string, path: string) => fetch(`${rampart.url}/api/v1/collections/${path}`, { headers: as(client) });

  test('reads go to the replica; a writer reads its own writes at once, 100 times out of 100', async () => {
    assert.equal(await metric('rampart_db_replica_up', replicaName()), 1, 'the replica is up');
    await sleep(1200);
    for (let i = 0; i < 20; i++) assert.equal((await read('10.0.0.9', `rooms/records/${room}`)).status, 200);
    const served = await metric('rampart_db_replica_reads', replicaName());
    let own = 0;
    for (let i = 0; i < 100; i++) {
      const id = await write('10.0.0.2', `mine ${i}`);
      if ((await read('10.0.0.2', `messages/records/${id}`)).status === 200) own++;
    }
    const after = await metric('rampart_db_replica_reads', replicaName());
    process.stdout.write(
      `# replicas: ${served} reads served by the replica before the writes; own writes read back ${own}/100; replica reads then ${after}\n`,
    );
    assert.ok(served >= 20, `reads served by the replica: ${served}`);
    assert.equal(own, 100);
  });

  test("replay paused: the writer still reads its writes; others' reads are at most the lag bound stale", async () => {
    replica.psql('select pg_wal_replay_pause()');
    const t0 = Date.now();
    const id = await write('10.0.0.3', 'while paused');
    // Another client: the replica shows it the past until it is more than 1 s behind; then its
    // reads go to the primary too.
    let seenAfterMs = -1;
    while (Date.now() - t0 < 5000) {
      if ((await read('10.0.0.4', `messages/records/${id}`)).status === 200) {
        seenAfterMs = Date.now() - t0;
        break;
      }
      await sleep(50);
    }
    // The writer, meanwhile, reads what it just wrote at once (from the primary).
    const mine = await write('10.0.0.3', 'mine while paused');
    const own = (await read('10.0.0.3', `messages/records/${mine}`)).status;
    const fallbacks = await metric('rampart_db_replica_reads', 'primary');
    replica.psql('select pg_wal_replay_resume()');
    process.stdout.write(
      `# replicas: with replay paused, another client saw a write after ${seenAfterMs} ms (bound 1000 ms + one poll); ` +
        `the writer read its own at once (${own}); ${fallbacks} reads fell back to the primary\n`,
    );
    assert.ok(seenAfterMs >= 500 && seenAfterMs < 1500, `seen after ${seenAfterMs} ms`);
    assert.equal(own, 200);
    assert.ok(fallbacks > 0);
  });

  test('the replica stopped: every read goes to the primary, no error', async () => {
    replica.stopImmediate();
    const statuses: Record<number, number> = {};
    for (let i = 0; i < 50; i++) {
      // A different page size each time: none of them is a cached answer.
      const r = await read('10.0.0.5', `messages/records?filter=${encodeURIComponent(`room = "${room}"`)}&limit=${i + 1}`);
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    }
    process.stdout.write(`# replicas: replica stopped, 50 reads: ${JSON.stringify(statuses)}\n`);
    assert.deepEqual(statuses, { 200: 50 });
    assert.equal(await metric('rampart_db_replica_up', replicaName()), 0);
    const ready = (await (await fetch(`${rampart.url}/readyz`)).json()) as { status: string; replicas: { up: boolean }[] };
    assert.equal(ready.status, 'ok', 'a replica is not needed to be ready');
    assert.equal(ready.replicas[0]?.up, false);
  });
});
