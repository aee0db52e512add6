/**
 * Routine checks and alerts on both backends: a check that fails raises one alert per channel
 * (a webhook that fails twice first, a Slack-compatible webhook, email), none more while it keeps
 * failing, and one recovery notice when it clears; `rampart_check_status` follows. A TLS
 * certificate close to expiry fails its check. `rampart check` exits 1 when a check fails.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttp, type IncomingMessage } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { job } from '../../src/jobs/define.js';
import { NodeReporter } from '../../src/ops/nodes.js';
import { collection, defineApp, f } from '../../src/records/schema.js';
import { startTestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';

const app = defineApp({
  collections: { notes: collection({ fields: { title: f.text() } }) },
  jobs: { noop: job({ handler: () => undefined }) },
});

/** A local receiver that fails its first `failFirst` requests with 503. */
async function receiver(failFirst = 0) {
  const got: Array<Record<string, unknown>> = [];
  let seen = 0;
  const server = createHttp((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      if (++seen <= failFirst) {
        res.writeHead(503).end();
        return;
      }
      got.push(JSON.parse(body));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/hook`, got, attempts: () => seen, close: () => new Promise((r) => server.close(r)) };
}

const waitFor = async (what: string, ok: () => boolean, ms = 20_000) => {
  const until = Date.now() + ms;
  while (!ok()) {
    assert.ok(Date.now() < until, what);
    await new Promise((r) => setTimeout(r, 50));
  }
};

for (const { name, skip } of await backendMatrix()) {
  describe(`routine checks and alerts (${name})`, { skip }, () => {
    test('a failing check raises one alert per channel, no repeats, and one recovery notice', async () => {
      const hook = await receiver(2);
      const slack = await receiver();
      const t = await startTestApp(name, app, {
        RAMPART_CHECK_QUEUE_LAG_S: '1',
        RAMPART_WEBHOOKS_ALLOW_PRIVATE: 'true',
        RAMPART_ALERT_CHANNELS: JSON.stringify([
          { type: 'webhook', url: hook.url },
          { type: 'slack', url: slack.url },
          { type: 'email', to: ['ops@example.com'] },
        ]),
      });
      try {
        const statusOf = async () => /^rampart_check_status\{check="queue_lag"\} (\S+)$/m.exec(await t.app.metrics.registry.metrics())?.[1];
        // Healthy first: no alert.
        let results = await t.app.checks.runAndAlert();
        assert.equal(results.find((r) => r.name === 'queue_lag')?.status, 'ok');
        assert.equal(await statusOf(), '1');
        // A paused queue with a due job: it lags past 1 s.
        await t.app.jobs.queue.setPaused('default', true);
        await t.app.jobs.enqueue('noop', {});
        await new Promise((r) => setTimeout(r, 1300));
        for (let i = 0; i < 3; i++) results = await t.app.checks.runAndAlert();
        const lag = results.find((r) => r.name === 'queue_lag');
        assert.equal(lag?.status, 'fail');
        assert.match(lag?.message ?? '', /queue default: 1 due/);
        assert.equal(await statusOf(), '0');
        await waitFor('the alert reached every channel', () => hook.got.length === 1 && slack.got.length === 1);
        // Recovery.
        await t.app.jobs.queue.setPaused('default', false);
        await t.app.jobs.settle({ queues: ['default'] });
        results = await t.app.checks.runAndAlert();
        await t.app.checks.runAndAlert();
        assert.equal(results.find((r) => r.name === 'queue_lag')?.status, 'ok');
        await waitFor('the recovery reached every channel', () => hook.got.length === 2 && slack.got.length === 2);
        await t.app.jobs.settle({ queues: ['rampart.alerts', 'rampart.mail'] });
        const mails = await t.mails('ops@example.com');
        assert.deepEqual(
          hook.got.map((m) => `${m.kind}:${m.check}`),
          ['alert:queue_lag', 'recovery:queue_lag'],
        );
        assert.match(String(slack.got[0]?.text), /FAILING: queue_lag/);
        assert.match(String(slack.got[1]?.text), /RESOLVED: queue_lag/);
        assert.equal(mails.length, 2);
        assert.match(mails[0] as string, /Subject: \[rampart\] FAILING: queue_lag/);
        const state = (await t.app.checks.status()) as { alerts: Array<{ kind: string; check: string }> };
        const lagAlerts = state.alerts.filter((a) => a.check === 'queue_lag').map((a) => a.kind);
        assert.deepEqual(lagAlerts, ['recovery', 'alert']);
        process.stdout.write(
          `# ${name}: queue_lag failed for 3 runs, recovered for 2: webhook ${hook.attempts()} attempts (2 refused) → ${hook.got.length} notices, ` +
            `slack ${slack.got.length}, email ${mails.length}; alerts recorded: ${lagAlerts.reverse().join(', ')}\n`,
        );
        assert.match(await t.app.metrics.registry.metrics(), /^rampart_alerts_sent_total\{channel="webhook",kind="alert"\} 1$/m);
        assert.match(await t.app.metrics.registry.metrics(), /^rampart_alert_delivery_failures_total\{channel="webhook"\} 2$/m);
      } finally {
        await t.close();
        await hook.close();
        await slack.close();
      }
    });
  });
}

describe('TLS expiry and rampart check', () => {
  test('a certificate with days to live under the limit fails tls_expiry; rampart check exits 1 on a failing check', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rampart-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        'k.pem',
        '-out',
        'c.pem',
        '-days',
        '5',
        '-subj',
        '/CN=127.0.0.1',
      ],
      {
        cwd: dir,
        stdio: 'pipe',
      },
    );
    const server = createHttps({ key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem')) }, (_q, s) => s.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
    const t = await startTestApp('sqlite', app, { RAMPART_CHECK_TLS_URLS: url, RAMPART_CHECK_TLS_MIN_DAYS: '14' });
    try {
      const tls = (await t.app.checks.run()).find((r) => r.name === 'tls_expiry');
      assert.equal(tls?.status, 'fail');
      assert.match(tls?.message ?? '', /[45] days left/);
      process.stdout.write(`# tls_expiry: ${tls?.message}\n`);
      // Not spawnSync: the HTTPS server above answers from this process's event loop.
      const cli = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          ['bin/rampart.js', 'check', '--app', 'test/fixtures/jobs-app.ts'],
          { env: { PATH: process.env.PATH, RAMPART_DATA_DIR: dir, RAMPART_CHECK_TLS_URLS: url } },
          (err, stdout, stderr) => resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
        );
      });
      assert.equal(cli.status, 1, cli.stderr);
      assert.match(cli.stdout, /^FAIL {2}tls_expiry {11}.*days left/m);
      assert.match(cli.stdout, /^WARN {2}backup_freshness/m);
      assert.match(cli.stdout, /1 of 9 checks failing/);
    } finally {
      await t.close();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the cluster error rate', () => {
  test("error_rate adds up the API nodes' last interval: 2 nodes, 10% of 5xx fails the check", async () => {
    const t = await startTestApp('sqlite', app, { RAMPART_CHECK_ERROR_RATE: '0.05' });
    try {
      // Two API nodes reporting their counters, as each process does every 30 s.
      const counters = [
        { requests: 0, errors: 0 },
        { requests: 0, errors: 0 },
      ];
      const nodes = counters.map(
        (c, i) =>
          new NodeReporter(t.app.storage, `api-${i}`, 'api', async () => ({ ...(await t.app.metrics.nodeStats()), ...c }), t.app.logger),
      );
      for (const n of nodes) await n.report();
      Object.assign(counters[0] as object, { requests: 1000, errors: 20 });
      Object.assign(counters[1] as object, { requests: 1000, errors: 180 });
      for (const n of nodes) await n.report();
      const rate = (await t.app.checks.run()).find((r) => r.name === 'error_rate');
      assert.equal(rate?.status, 'fail', rate?.message);
      assert.match(rate?.message ?? '', /^10\.00% of 2000 requests answered 5xx across [23] API nodes/);
      // The next interval is clean.
      Object.assign(counters[0] as object, { requests: 2000, errors: 20 });
      Object.assign(counters[1] as object, { requests: 2000, errors: 180 });
      for (const n of nodes) await n.report();
      const clean = (await t.app.checks.run()).find((r) => r.name === 'error_rate');
      assert.equal(clean?.status, 'ok');
      process.stdout.write(`# error_rate: ${rate?.message} → then ${clean?.message}\n`);
    } finally {
      await t.close();
    }
  });
});
