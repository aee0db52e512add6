/**
 * deploy/kubernetes/ and the CI template, checked offline (no cluster here): every manifest parses;
 * the probes, ports, commands and environment variables are what the server really uses (the
 * configuration keys it knows, the secret files it is pointed at, the routes a server built from the
 * ConfigMap answers); selectors, autoscaler targets and the worker autoscaler's metric line up with
 * the Deployments and with a metric Rampart exports; grace periods cover the drain; and the GitHub
 * Actions template runs the same steps as .ci/run.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { createApp } from '../../src/app.js';
import { describeConfigKeys, loadConfig } from '../../src/core/config.js';
import chat from '../fixtures/open-chat.ts';
import { ROOT } from '../helpers/processes.js';

type Obj = Record<string, any>;
const dir = join(ROOT, 'deploy/kubernetes');
const docs: Obj[] = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) =>
    parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => {
      assert.equal(d.errors.length, 0, `${f}: ${d.errors.join('; ')}`);
      return d.toJSON() as Obj;
    }),
  );
const find = (kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata?.name === name) as Obj;
const known = new Set(describeConfigKeys().map((l) => l.split(' ')[0]));
const config = find('ConfigMap', 'rampart-config').data as Record<string, string>;
const secret = find('Secret', 'rampart-secrets');
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('Kubernetes manifests', () => {
  test('every object has what its kind needs', () => {
    const kinds = docs.map((d) => `${d.kind}/${d.metadata.name}`).sort();
    for (const want of [
      'ConfigMap/rampart-config',
      'Deployment/rampart-api',
      'Deployment/rampart-worker',
      'HorizontalPodAutoscaler/rampart-api',
      'HorizontalPodAutoscaler/rampart-worker',
      'Job/rampart-migrate',
      'PodDisruptionBudget/rampart-api',
      'PodDisruptionBudget/rampart-worker',
      'Secret/rampart-secrets',
      'Service/rampart-api',
    ])
      assert.ok(kinds.includes(want), `${want} is there`);
    for (const d of docs) {
      assert.ok(d.apiVersion && d.kind && d.metadata?.name, `${d.kind}/${d.metadata?.name}: apiVersion, kind, name`);
    }
  });

  test('environment: only configuration keys the server knows; *_FILE names a mounted secret file', () => {
    for (const key of Object.keys(config)) assert.ok(known.has(key), `ConfigMap: ${key} is a configuration key`);
    const workloads = [find('Deployment', 'rampart-api'), find('Deployment', 'rampart-worker'), find('Job', 'rampart-migrate')];
    for (const w of workloads) {
      const pod = w.spec.template.spec;
      for (const c of pod.containers) {
        for (const e of c.env ?? []) {
          const base = e.name.replace(/_FILE$/, '');
          assert.ok(known.has(base), `${w.metadata.name}: ${e.name} is a configuration key (or its _FILE)`);
          if (e.name.endsWith('_FILE')) {
            const mount = c.volumeMounts.find((m: Obj) => e.value.startsWith(`${m.mountPath}/`));
            assert.ok(mount, `${w.metadata.name}: ${e.value} is under a mounted volume`);
            const volume = pod.volumes.find((v: Obj) => v.name === mount.name);
            assert.equal(volume.secret?.secretName, 'rampart-secrets');
            assert.ok(e.value.slice(mount.mountPath.length + 1) in secret.stringData, `${e.value} is a key of the secret`);
          }
        }
        assert.deepEqual(c.envFrom, [{ configMapRef: { name: 'rampart-config' } }]);
      }
    }
    // The database URL in the example secret points at its CA file where the secret is mounted.
    assert.match(secret.stringData['database-url'], /sslmode=verify-full&sslrootcert=\/run\/secrets\/rampart\/pg-ca\.crt/);
  });

  test('commands, ports and probes are what the server serves; grace periods cover the drain', async () => {
    const api = find('Deployment', 'rampart-api');
    const worker = find('Deployment', 'rampart-worker');
    const [apiC] = api.spec.template.spec.containers;
    const [workerC] = worker.spec.template.spec.containers;
    assert.equal(apiC.args[0], 'serve');
    assert.equal(workerC.args[0], 'worker');
    assert.deepEqual(find('Job', 'rampart-migrate').spec.template.spec.containers[0].args.slice(0, 2), ['migrate', 'up']);
    for (const c of [apiC, workerC]) assert.ok(existsSync(join(ROOT, c.args[c.args.indexOf('--app') + 1])), 'the app file the image holds');
    assert.equal(String(apiC.ports[0].containerPort), config.PORT, 'the API listens where the ConfigMap says');
    assert.equal(String(workerC.ports[0].containerPort), workerC.args[workerC.args.indexOf('--metrics-port') + 1]);
    for (const c of [apiC, workerC]) {
      assert.equal(c.readinessProbe.httpGet.path, '/readyz');
      assert.equal(c.livenessProbe.httpGet.path, '/healthz');
      for (const p of [c.readinessProbe, c.livenessProbe])
        assert.ok(
          c.ports.some((port: Obj) => port.name === p.httpGet.port),
          'probe on a named port',
        );
      assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory);
    }
    const drain = Number(config.RAMPART_DRAIN_DELAY_MS) + Number(config.RAMPART_SHUTDOWN_TIMEOUT_MS);
    assert.ok(api.spec.template.spec.terminationGracePeriodSeconds * 1000 > drain, 'the API pod may drain and finish its requests');
    assert.ok(worker.spec.template.spec.terminationGracePeriodSeconds * 1000 > loadConfig({ env: {} }).jobs.shutdownGraceMs);
    // A server built from the ConfigMap (on SQLite here) answers the probes' paths.
    const data = mkdtempSync(join(tmpdir(), 'rampart-k8s-'));
    const app = await createApp(
      loadConfig({ env: { ...config, RAMPART_DATA_DIR: data, LOG_LEVEL: 'silent', RAMPART_AUTO_MIGRATE: 'true' } }),
      chat,
    );
    try {
      await app.migrator.up();
      for (const path of ['/readyz', '/healthz']) assert.equal((await app.server.inject({ url: path })).statusCode, 200, path);
    } finally {
      await app.stop();
      rmSync(data, { recursive: true, force: true });
    }
  });

  test('selectors, autoscalers and the worker autoscaler metric line up', () => {
    const service = find('Service', 'rampart-api');
    for (const name of ['rampart-api', 'rampart-worker']) {
      const d = find('Deployment', name);
      const labels = d.spec.template.metadata.labels;
      assert.ok(matches(d.spec.selector.matchLabels, labels), `${name}: its selector picks its pods`);
      assert.ok(matches(find('PodDisruptionBudget', name).spec.selector.matchLabels, labels), `${name}: the PDB covers its pods`);
      const hpa = find('HorizontalPodAutoscaler', name);
      assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name });
      assert.ok(hpa.spec.minReplicas >= find('PodDisruptionBudget', name).spec.minAvailable, 'the PDB can be met at the minimum');
    }
    const apiLabels = find('Deployment', 'rampart-api').spec.template.metadata.labels;
    assert.ok(matches(service.spec.selector, apiLabels), 'the Service sends to the API pods');
    assert.ok(
      find('Deployment', 'rampart-api').spec.template.spec.containers[0].ports.some(
        (p: Obj) => p.name === service.spec.ports[0].targetPort,
      ),
    );
    // The worker autoscaler's external metric is what the adapter makes of a metric Rampart exports.
    const external = find('HorizontalPodAutoscaler', 'rampart-worker').spec.metrics[0].external.metric.name;
    const adapter = parse(find('ConfigMap', 'prometheus-adapter-rampart').data['config.yaml']) as Obj;
    const rule = adapter.externalRules.find((r: Obj) => r.name.as === external);
    assert.ok(rule, `an adapter rule makes ${external}`);
    const metric = /^([a-z_]+)\{/.exec(rule.seriesQuery)?.[1] as string;
    const source = readFileSync(join(ROOT, 'src/observability/metrics.ts'), 'utf8');
    assert.match(source, new RegExp(`queueGauge\\('${metric}'`), `${metric} is exported`);
    assert.match(source, /'queue', 'state'/, 'with the queue and state labels the query uses');
  });
});

describe('the CI template', () => {
  test('.github/workflows/ci.yml runs the steps .ci/run runs, against PostgreSQL and Redis services', () => {
    const wf = parse(readFileSync(join(ROOT, '.github/workflows/ci.yml'), 'utf8')) as Obj;
    const job = wf.jobs.test;
    const runs: string[] = job.steps.filter((s: Obj) => s.run).map((s: Obj) => s.run);
    const [packages, ...rest] = runs;
    assert.deepEqual(rest, ['npm ci --no-audit --no-fund', 'npm run typecheck', 'npx biome ci .', 'npm test']);
    const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
    for (const r of rest) assert.ok(ci.includes(r), `.ci/run has ${r}`);
    // The system packages the suite needs, as .ci/run installs them.
    for (const p of ['postgresql-client', 'prometheus']) {
      assert.ok(packages?.includes(p), `the workflow installs ${p}`);
      assert.ok(ci.includes(`install -y -qq ${p}`) || ci.includes(`--no-install-recommends ${p}`), `.ci/run installs ${p}`);
    }
    assert.match(job.services.postgres.image, /^postgres:15/);
    assert.match(job.services.redis.image, /^redis:/);
    assert.equal(job.env.RAMPART_REQUIRE_PG, '1');
    assert.deepEqual(job.strategy.matrix.node, [20, 22, 24], 'the Node versions Rampart supports');
    assert.equal(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).engines.node, '>=20.19');
  });
});
