/**
 * `npm run cluster -- up|down|status`: a demo cluster on loopback (nginx, 3 nodes, 1 worker) on
 * this machine's PostgreSQL and Redis. Processes keep running after `up` returns; `down` stops
 * them (nodes drain first). See docs/deploy.md.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { alive, LocalCluster } from './cluster.js';

const USAGE = `Usage: npm run cluster -- up [--nodes 3] [--workers 1] [--port 8080] [--app <file>] [--dir data/cluster]
       npm run cluster -- down [--dir data/cluster]
       npm run cluster -- status [--dir data/cluster]
DATABASE_URL (default postgres://postgres@127.0.0.1:5432/rampart_cluster, created when missing) and
REDIS_URL (default redis://127.0.0.1:6379; REDIS_URL= for none) choose the shared services.`;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    nodes: { type: 'string', default: '3' },
    workers: { type: 'string', default: '1' },
    port: { type: 'string', default: '8080' },
    app: { type: 'string' },
    dir: { type: 'string', default: 'data/cluster' },
  },
});
const say = (line: string) => process.stdout.write(`${line}\n`);

async function ensureDatabase(url: string): Promise<void> {
  const u = new URL(url.replace(/^postgres(ql)?:\/\/([^/]*?),[^/]*/, 'postgres://$2'));
  const name = decodeURIComponent(u.pathname.slice(1));
  if (!name || name === 'postgres') return;
  u.pathname = '/postgres';
  const c = new pg.Client({ connectionString: u.toString() });
  await c.connect();
  try {
    const found = await c.query('select 1 from pg_database where datname = $1', [name]);
    if (found.rowCount === 0) {
      await c.query(`create database "${name.replaceAll('"', '""')}"`);
      say(`created database ${name}`);
    }
  } finally {
    await c.end();
  }
}

async function main(): Promise<number> {
  const command = positionals[0];
  const running = LocalCluster.load(values.dir);
  if (command === 'up') {
    if (running?.members.some((m) => alive(m.pid))) {
      say(`already running at ${running.url} (npm run cluster -- down to stop it)`);
      return 1;
    }
    const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/rampart_cluster';
    await ensureDatabase(databaseUrl);
    const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    const cluster = new LocalCluster({
      databaseUrl,
      redisUrl: redisUrl || undefined,
      dir: values.dir,
      app: values.app,
      nodes: Number(values.nodes),
      workers: Number(values.workers),
      port: Number(values.port),
      detached: true,
    });
    await cluster.up(say);
    say(`cluster up: ${cluster.url} (logs and state in ${cluster.dir})`);
    return 0;
  }
  if (command === 'down' || command === 'status') {
    if (!running) {
      say(`no cluster in ${values.dir}`);
      return command === 'down' ? 0 : 1;
    }
    for (const m of running.members) {
      const up = alive(m.pid);
      if (command === 'status') say(`${m.name.padEnd(10)} pid ${m.pid}  port ${m.port}  ${up ? 'running' : 'stopped'}`);
      else if (up) process.kill(m.pid, m.name === 'nginx' ? 'SIGQUIT' : 'SIGTERM');
    }
    if (command === 'down') {
      const until = Date.now() + 30_000;
      while (running.members.some((m) => alive(m.pid)) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      for (const m of running.members) if (alive(m.pid)) process.kill(m.pid, 'SIGKILL');
      say('cluster down');
    }
    return 0;
  }
  process.stderr.write(`${USAGE}\n`);
  return 2;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`cluster: ${err.message}\n`);
    process.exit(1);
  },
);
