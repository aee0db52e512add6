/**
 * bench/cluster: throughput through nginx (deploy/nginx/nginx.conf) with 1, 2 and 3 `rampart
 * serve` nodes on PostgreSQL — get a message by id and create one — and the scaling ratio against
 * one node; then the same node without nginx in front, for nginx's own cost per request.
 *
 *   npm run bench:cluster                       # about 3 minutes
 *   npm run bench:cluster -- --duration 5       # a quick look
 *
 * DATABASE_URL (default the local PostgreSQL) gets a scratch database, dropped at the end. Every
 * process (nginx, the nodes, autocannon, PostgreSQL) shares this machine's cores: on 2 cores the
 * ratio is bounded by the machine, not by Rampart — the figures say how much.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { LocalCluster } from '../../deploy/local/cluster.js';
import { seedChat } from '../../test/helpers/load.js';
import { type Figures, log, measure, rssMb } from '../lib.js';

const { values } = parseArgs({ options: { duration: { type: 'string', default: '10' }, connections: { type: 'string', default: '64' } } });
const duration = Number(values.duration);
const connections = Number(values.connections);
const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const dbName = `rampart_bench_cluster_${process.pid}`;
const url = new URL(adminUrl);
url.pathname = `/${dbName}`;

const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`create database ${dbName}`);

/** One measured setup and operation: autocannon's figures plus the nodes' memory. */
interface Row extends Figures {
  setup: string;
  op: string;
  rss: string;
}
const rows: Row[] = [];
const dir = mkdtempSync(join(tmpdir(), 'rampart-bench-cluster-'));

try {
  let ids: string[] = [];
  let room = '';
  for (const nodes of [1, 2, 3]) {
    log(`starting nginx and ${nodes} node(s)…`);
    const cluster = new LocalCluster({
      databaseUrl: url.toString(),
      dir: join(dir, `n${nodes}`),
      app: 'test/fixtures/open-chat.ts',
      nodes,
      workers: 0,
      perAddressRate: '1000000r/s',
      env: { LOG_LEVEL: 'warn', RAMPART_RATE_LIMITS: 'off' },
    });
    await cluster.up(log);
    try {
      if (!room) {
        log('seeding 1,000 messages…');
        ({ room, ids } = await seedChat(cluster.url, 1000, (n) => log(`  ${n}/1000`)));
      }
      const targets = nodes === 1 ? [cluster.url, `http://127.0.0.1:${cluster.nodes[0]?.port}`] : [cluster.url];
      for (const target of targets) {
        const setup = target === cluster.url ? `nginx + ${nodes} node${nodes > 1 ? 's' : ''}` : '1 node, no nginx';
        const rss = () => cluster.nodes.map((n) => rssMb(n.pid)).join('/');
        let i = 0;
        log(`${setup}: get by id…`);
        const get = await measure({
          url: target,
          connections,
          warmup: 2,
          duration,
          request: () => ({
            method: 'GET',
            setupRequest: (r) => ({ ...r, path: `/api/v1/collections/messages/records/${ids[i++ % ids.length]}` }),
          }),
        });
        rows.push({ setup, op: 'get by id', ...get, rss: rss() });
        log(`${setup}: create…`);
        const create = await measure({
          url: target,
          connections,
          warmup: 2,
          duration,
          request: () => ({
            method: 'POST',
            path: '/api/v1/collections/messages/records',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ room, body: 'bench', author: 'bench' }),
          }),
        });
        rows.push({ setup, op: 'create', ...create, rss: rss() });
      }
    } finally {
      await cluster.down();
    }
  }
} finally {
  await admin.query(`drop database if exists ${dbName} with (force)`);
  await admin.end();
  rmSync(dir, { recursive: true, force: true });
}

const base = (op: string) => rows.find((r) => r.setup === 'nginx + 1 node' && r.op === op)?.rps ?? 1;
const direct = (op: string) => rows.find((r) => r.setup === '1 node, no nginx' && r.op === op);
process.stdout.write(
  `\nbench/cluster — ${connections} connections, ${duration} s per operation after 2 s warm-up, PostgreSQL, Node ${process.version}, ${cpus().length} cores\n\n`,
);
process.stdout.write(
  '| setup | operation | req/s | vs 1 node | p50 ms | p99 ms | non-2xx | errors | node RSS MB |\n|---|---|--:|--:|--:|--:|--:|--:|--:|\n',
);
for (const r of rows) {
  const ratio = r.setup.startsWith('nginx') ? `${(r.rps / base(r.op)).toFixed(2)}×` : '';
  process.stdout.write(`| ${r.setup} | ${r.op} | ${r.rps} | ${ratio} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${r.errors} | ${r.rss} |\n`);
}
for (const op of ['get by id', 'create']) {
  const d = direct(op);
  const via = rows.find((r) => r.setup === 'nginx + 1 node' && r.op === op);
  // Creates wait on the database's commits (the event log's counter, an fsync): nginx's cost is
  // lost in their noise, and only a CPU-bound operation shows it.
  if (d && via && op === 'get by id') {
    // Both runs are CPU-bound on the same cores: the throughput lost is nginx's share of the CPU.
    const perReqUs = 1e6 / via.rps - 1e6 / d.rps;
    process.stdout.write(
      `\nnginx in front of one node, ${op}: ${via.rps} vs ${d.rps} req/s direct (${Math.round((1 - via.rps / d.rps) * 100)}% less), ` +
        `p50 ${via.p50} vs ${d.p50} ms: about ${Math.round(perReqUs)} µs of the machine's time per request\n`,
    );
  }
}
