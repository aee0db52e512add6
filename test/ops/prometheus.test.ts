/**
 * The shipped Prometheus rules and Grafana dashboard, checked with Debian's promtool: the rules
 * load; the live /metrics output passes `promtool check metrics`; every metric the rules and the
 * dashboard query is one Rampart exports (or a documented exception); the dashboard's queries
 * are valid PromQL.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { startTestApp } from '../helpers/app.js';

const ROOT = join(import.meta.dirname, '../..');
const promtool = spawnSync('promtool', ['--version']).status === 0 ? 'promtool' : undefined;
const skip = promtool ? false : 'promtool is not installed (apt-get install prometheus)';
if (skip && process.env.CI) throw new Error('CI needs promtool (.ci/run installs prometheus)');

// Series that exist only in some configurations, each exported by code the suite tests elsewhere.
const CONDITIONAL: Record<string, string> = {
  rampart_tls_certificate_expiry_timestamp_seconds: 'only while Rampart serves HTTPS (test/e2e/tls.test.ts)',
  rampart_db_replica_lag_bytes: 'only with read replicas (test/chaos/pg-replicas.test.ts)',
  rampart_events_pending: 'only with event destinations (test/conformance/events.test.ts)',
  rampart_events_oldest_pending_seconds: 'only with event destinations',
};
// Not Rampart's: Prometheus's own `up`, node_exporter's file system series.
const FOREIGN = /^(up|node_filesystem_\w+)$/;
// prom-client's default collectors name three gauges with _total; promtool's lint flags them.
const PROM_CLIENT_LINT = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

function metricNames(expr: string): string[] {
  const noStrings = expr.replace(/"[^"]*"/g, '""').replace(/\{[^}]*\}/g, '');
  const words = noStrings.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? [];
  return words.filter((w) => /^(rampart_|up$|node_)/.test(w));
}

test('alert rules, live metrics and the Grafana dashboard pass promtool', { skip }, async () => {
  const rulesFile = join(ROOT, 'deploy/prometheus/alerts.yml');
  const rules = execFileSync('promtool', ['check', 'rules', rulesFile], { encoding: 'utf8' });
  assert.match(rules, /SUCCESS: \d+ rules found/);
  const t = await startTestApp('sqlite', undefined, { RAMPART_BACKUP_KEY: Buffer.alloc(32, 7).toString('base64') });
  const dir = mkdtempSync(join(tmpdir(), 'rampart-prom-'));
  try {
    await t.req('GET', '/api/v1/collections/messages/records');
    await t.app.checks.runAndAlert();
    const text = await (await fetch(`${t.url}/metrics`)).text();
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    const problems = `${lint.stdout}${lint.stderr}`.split('\n').filter((l) => l.trim() !== '');
    const ours = problems.filter((l) => !PROM_CLIENT_LINT.some((n) => l.startsWith(n)));
    assert.deepEqual(ours, [], 'promtool check metrics finds nothing in our metrics');
    const exported = new Set(
      [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap((m) => {
        const n = m[1] as string;
        return m[2] === 'histogram' ? [n, `${n}_bucket`, `${n}_count`, `${n}_sum`] : [n];
      }),
    );
    const doc = parse(readFileSync(rulesFile, 'utf8')) as { groups: Array<{ rules: Array<{ expr: string; record?: string }> }> };
    const recorded = new Set(doc.groups.flatMap((g) => g.rules.map((r) => r.record).filter(Boolean)));
    const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/dashboards/rampart.json'), 'utf8')) as {
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    };
    const exprs = [
      ...doc.groups.flatMap((g) => g.rules.map((r) => r.expr)),
      ...dashboard.panels.flatMap((p) => p.targets.map((x) => x.expr)),
    ];
    const source = execFileSync('grep', ['-rhoE', 'rampart_[a-z_]+', join(ROOT, 'src')], { encoding: 'utf8' });
    const missing: string[] = [];
    for (const name of new Set(exprs.flatMap(metricNames))) {
      if (exported.has(name) || recorded.has(name) || FOREIGN.test(name)) continue;
      const base = name.replace(/_(bucket|count|sum)$/, '');
      if (CONDITIONAL[name] && source.includes(base)) continue;
      missing.push(name);
    }
    assert.deepEqual(missing, [], 'every series the rules and the dashboard use is exported');
    // The dashboard's queries as recording rules: promtool parses each one.
    const asRules = {
      groups: [
        {
          name: 'dashboard',
          rules: dashboard.panels.flatMap((p, i) => p.targets.map((x, j) => ({ record: `dashboard:panel${i}_${j}`, expr: x.expr }))),
        },
      ],
    };
    writeFileSync(join(dir, 'dashboard-rules.yml'), JSON.stringify(asRules));
    const dash = execFileSync('promtool', ['check', 'rules', join(dir, 'dashboard-rules.yml')], { encoding: 'utf8' });
    assert.match(dash, /SUCCESS/);
    process.stdout.write(
      `# promtool: ${rules.match(/(\d+) rules/)?.[1]} rules OK; /metrics: ${exported.size} series names, lint clean but for prom-client's ${PROM_CLIENT_LINT.length} default gauges; ` +
        `dashboard: ${dashboard.panels.length} panels, ${asRules.groups[0]?.rules.length} queries parse\n`,
    );
  } finally {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
