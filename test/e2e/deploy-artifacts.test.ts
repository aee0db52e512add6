/**
 * The Dockerfile, docker-compose.yml, the nginx config and the Prometheus config are kept
 * correct without a Docker engine: they must agree with each other and with the server, and
 * what they run is run here as plain processes — the compose services' commands with the
 * compose environment (hosts pointed at this machine's services), the image's HEALTHCHECK
 * against the node it would check.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { describeConfigKeys } from '../../src/core/config.js';
import { makeBackend, pgUnavailable, type TestBackend } from '../helpers/backends.js';
import { freePort, type RampartProcess, ROOT, startRampart } from '../helpers/processes.js';

interface Service {
  command?: string[];
  environment?: Record<string, string>;
  image?: string;
  build?: string;
  healthcheck?: { test: string[] };
  volumes?: string[];
}
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service> };
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const nginxConf = readFileSync(join(ROOT, 'deploy/nginx/nginx.conf'), 'utf8');
const prometheus = parse(readFileSync(join(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8')) as {
  scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
  rule_files?: string[];
};
const rampartServices = Object.entries(compose.services).filter(([, s]) => s.build === '.');
const jsonArray = (line: string) => JSON.parse(line.replace(/^\S+\s+/, '')) as string[];

const why = await pgUnavailable();

describe('deployment artifacts', () => {
  test('compose runs nginx, three nodes, a worker, a migration, PostgreSQL, Redis, Prometheus and Grafana', () => {
    for (const name of ['nginx', 'node-1', 'node-2', 'node-3', 'worker', 'migrate', 'postgres', 'redis', 'prometheus', 'grafana'])
      assert.ok(compose.services[name], `service ${name}`);
    assert.deepEqual(rampartServices.map(([n]) => n).sort(), ['migrate', 'node-1', 'node-2', 'node-3', 'worker']);
  });

  test('every variable the Rampart services set is a configuration key the server knows', () => {
    const known = new Set(describeConfigKeys().map((l) => l.split(' ')[0]));
    for (const [name, s] of rampartServices)
      for (const key of Object.keys(s.environment ?? {})) assert.ok(known.has(key), `${name}: ${key} is not a configuration key`);
  });

  test("nginx's upstream is the compose nodes on their port; Prometheus scrapes each process directly", () => {
    const port = compose.services['node-1']?.environment?.PORT;
    const upstream = [...nginxConf.matchAll(/^\s*server (\S+) max_fails/gm)].map((m) => m[1]);
    assert.deepEqual(
      upstream,
      ['node-1', 'node-2', 'node-3'].map((n) => `${n}:${port}`),
    );
    assert.ok(compose.services.nginx?.volumes?.some((v) => v.startsWith('./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf')));
    const targets = prometheus.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets)).sort();
    const workerPort = compose.services.worker?.command?.at(compose.services.worker.command.indexOf('--metrics-port') + 1);
    assert.deepEqual(targets, [...upstream, `worker:${workerPort}`].sort());
  });

  test('the alert rules Prometheus loads are mounted by compose and name only metrics Rampart exports', () => {
    const exported = new Set<string>();
    for (const f of readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'))) {
      for (const m of readFileSync(join(ROOT, 'src', f), 'utf8').matchAll(/'(rampart_[a-z0-9_]+)'/g)) exported.add(m[1] as string);
    }
    assert.ok(exported.has('rampart_events_oldest_pending_seconds'));
    assert.ok((prometheus.rule_files ?? []).length > 0, 'rule files are loaded');
    for (const file of prometheus.rule_files ?? []) {
      const mount = compose.services.prometheus?.volumes?.find((v) => v.endsWith(`:${file}:ro`));
      assert.ok(mount, `${file} is mounted`);
      const rules = parse(readFileSync(join(ROOT, mount.split(':')[0] as string), 'utf8')) as {
        groups: { name: string; rules: { alert?: string; record?: string; expr: string; labels?: { severity?: string } }[] }[];
      };
      for (const g of rules.groups) {
        for (const r of g.rules) {
          if (r.record !== undefined) {
            // Recording rules (the SLO ratios) follow Prometheus's level:metric:operations naming.
            assert.match(r.record, /^rampart:[a-z_]+:[a-z0-9_]+$/);
          } else {
            assert.match(r.alert ?? '', /^Rampart[A-Za-z]+$/);
            assert.ok(['warning', 'critical'].includes(r.labels?.severity ?? ''), `${r.alert} has a severity`);
          }
          for (const [name] of r.expr.matchAll(/rampart_[a-z0-9_]+/g)) {
            const base = name.replace(/_(bucket|sum|count)$/, '');
            assert.ok(exported.has(name) || exported.has(base), `${r.alert ?? r.record}: ${name} is a metric Rampart exports`);
          }
        }
      }
    }
  });

  test('the image runs as a non-root user, exposes the port the nodes listen on, and drains within compose’s grace period', () => {
    assert.match(dockerfile, /^USER rampart$/m);
    assert.match(dockerfile, /^FROM node:20-bookworm AS build$/m, 'multi-stage: a build stage');
    assert.match(dockerfile, /^FROM node:20-bookworm-slim$/m, 'and a slim runtime');
    // The build stage has everything `npm run build` reads (the server, the console, the SDK it bundles).
    for (const dir of ['src', 'bin', 'admin', 'sdk', 'docs', 'examples'])
      assert.match(dockerfile, new RegExp(`^COPY ${dir} \\./${dir}$`, 'm'), dir);
    assert.match(dockerfile, new RegExp(`^EXPOSE ${compose.services['node-1']?.environment?.PORT}$`, 'm'));
    const grace = Number.parseInt(String((compose.services['node-1'] as { stop_grace_period?: string }).stop_grace_period), 10) * 1000;
    const drain = Number(compose.services['node-1']?.environment?.RAMPART_DRAIN_DELAY_MS);
    assert.ok(grace > drain + 10_000, 'drain delay plus the in-flight requests’ shutdown timeout fit in the grace period');
  });

  describe('what they run, as plain processes', { skip: why ?? false }, () => {
    let backend: TestBackend;
    let node: RampartProcess | undefined;
    let worker: RampartProcess | undefined;
    before(async () => {
      backend = await makeBackend('postgres');
    });
    after(async () => {
      node?.child.kill('SIGKILL');
      worker?.child.kill('SIGKILL');
      await backend?.cleanup();
    });

    /** A compose service's environment, pointed at this machine's services. */
    const envOf = (s: Service, port: number) => ({
      // ${NAME:-default} as compose fills it in when NAME is not set.
      ...Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, String(v).replace(/\$\{\w+:-([^}]*)\}/g, '$1')])),
      DATABASE_URL: backend.env.DATABASE_URL as string,
      REDIS_URL: 'redis://127.0.0.1:6379',
      HOST: '127.0.0.1',
      PORT: String(port),
      RAMPART_DATA_DIR: backend.env.RAMPART_DATA_DIR as string,
      RAMPART_DRAIN_DELAY_MS: '0',
      LOG_LEVEL: 'warn',
    });

    test('migrate, then a node and the worker start with their compose commands; the image’s HEALTHCHECK passes', async () => {
      const migrate = compose.services.migrate as Service;
      const m = spawnSync(process.execPath, [join(ROOT, 'bin/rampart.js'), ...(migrate.command ?? [])], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', ...envOf(migrate, 0) },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(m.status, 0, m.stderr);
      // The image's default command is a node's.
      const entry = jsonArray(/^ENTRYPOINT .+$/m.exec(dockerfile)?.[0] ?? '');
      const cmd = jsonArray(/^CMD .+$/m.exec(dockerfile)?.[0] ?? '');
      assert.deepEqual(entry, ['node', 'bin/rampart.js']);
      assert.deepEqual(cmd, compose.services['node-1']?.command);
      const nodePort = await freePort();
      node = await startRampart(envOf(compose.services['node-1'] as Service, nodePort), cmd);
      const workerPort = await freePort();
      const wcmd = (compose.services.worker?.command ?? []).map((a) => (a === '9464' ? String(workerPort) : a));
      worker = await startRampart({ ...envOf(compose.services.worker as Service, workerPort) }, wcmd);
      // HEALTHCHECK CMD ["node", "-e", "…"] as Docker would run it inside the container.
      const health = jsonArray(/^\s+CMD (\[.+\])$/m.exec(dockerfile)?.[0]?.trim() ?? '');
      const h = spawnSync(health[0] === 'node' ? process.execPath : (health[0] as string), health.slice(1), {
        env: { PATH: process.env.PATH ?? '', PORT: String(nodePort) },
        timeout: 10_000,
      });
      assert.equal(h.status, 0, 'the HEALTHCHECK passes on a live node');
      const wh = compose.services.worker?.healthcheck?.test ?? [];
      const w = spawnSync(
        process.execPath,
        wh.slice(2).map((a) => a.replace('9464', String(workerPort))),
        { timeout: 10_000 },
      );
      assert.equal(w.status, 0, "the worker's healthcheck passes");
      node.child.kill('SIGKILL');
      const dead = spawnSync(process.execPath, health.slice(1), {
        env: { PATH: process.env.PATH ?? '', PORT: String(nodePort) },
        timeout: 10_000,
      });
      assert.notEqual(dead.status, 0, 'and fails on a dead one');
    });
  });
});
