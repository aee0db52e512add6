/**
 * OpenTelemetry across processes, for real: `rampart serve` and `rampart worker` export to an OTLP
 * receiver in this test (an HTTP server that decodes what arrives). A sign-up carrying a
 * `traceparent` enqueues the welcome job; the worker's run of it is in the same trace, a child of
 * the enqueue, itself inside the request's span, with database spans below; no personal data in
 * any attribute; log lines carry the trace id. Without an endpoint, nothing is exported.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/core/config.js';
import { OUTBOX } from '../../src/events/events.js';
import { startTracing } from '../../src/observability/tracing.js';
import { collection, defineApp, f } from '../../src/records/schema.js';
import { type RampartProcess, startRampart, startWorker } from '../helpers/processes.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: Array<{ key: string; value: Record<string, unknown> }>;
  service: string;
}

const APP = 'examples/chat/rampart.config.ts';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('tracing across the API and a worker (OTLP)', () => {
  const spans: OtlpSpan[] = [];
  let receiver: Server;
  let endpoint = '';
  const dir = mkdtempSync(join(tmpdir(), 'rampart-otel-'));
  let api: RampartProcess;
  let worker: RampartProcess;

  before(async () => {
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        if (req.url === '/v1/traces') {
          const doc = JSON.parse(body) as {
            resourceSpans: Array<{ resource: { attributes: OtlpSpan['attributes'] }; scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
          };
          for (const rs of doc.resourceSpans) {
            const service = String(rs.resource.attributes?.find((a) => a.key === 'service.name')?.value.stringValue);
            for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, service });
          }
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    endpoint = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;
    const env = {
      RAMPART_DATA_DIR: dir,
      LOG_LEVEL: 'info',
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      RAMPART_JOBS_POLL_MS: '50',
    };
    api = await startRampart({ ...env, RAMPART_JOBS_IN_PROCESS: 'false', RAMPART_SCHEDULER: 'false' }, ['serve', '--app', APP]);
    worker = await startWorker(env, APP);
  });
  after(async () => {
    for (const p of [api, worker]) p?.child.kill('SIGTERM');
    await Promise.all([api?.exited, worker?.exited]);
    receiver?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a request that enqueues a job: one trace from the API through the worker', async () => {
    const traceId = randomBytes(16).toString('hex');
    const callerSpan = randomBytes(8).toString('hex');
    const email = `traced-${Date.now()}@example.com`;
    const res = await fetch(`${api.url}/api/v1/auth/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${callerSpan}-01` },
      body: JSON.stringify({ email, password: 'correct horse battery' }),
    });
    assert.equal(res.status, 201);
    const ours = () => spans.filter((s) => s.traceId === traceId);
    for (let i = 0; i < 100 && !ours().some((s) => s.service === 'rampart-worker' && s.name === 'job welcomeEmail'); i++) await sleep(100);
    const trace = ours();
    const byId = new Map(trace.map((s) => [s.spanId, s]));
    const request = trace.find((s) => s.service === 'rampart-api' && s.name === 'POST /api/v1/auth/signup');
    assert.ok(request, `the request span (got ${trace.map((s) => `${s.service}:${s.name}`).join(', ')})`);
    assert.equal(request.parentSpanId, callerSpan, "a child of the caller's span");
    assert.equal(request.kind, 2, 'SERVER');
    const enqueue = trace.find((s) => s.service === 'rampart-api' && s.name === 'enqueue welcomeEmail');
    assert.ok(enqueue, 'the enqueue span');
    // The enqueue is inside the request (through the write's spans).
    let up: OtlpSpan | undefined = enqueue;
    while (up && up.spanId !== request.spanId) up = up.parentSpanId ? byId.get(up.parentSpanId) : undefined;
    assert.ok(up, 'the enqueue descends from the request span');
    const job = trace.find((s) => s.service === 'rampart-worker' && s.name === 'job welcomeEmail');
    assert.ok(job, 'the job run, in the worker, in the same trace');
    assert.equal(job.parentSpanId, enqueue.spanId, 'a child of the enqueue');
    assert.equal(job.kind, 5, 'CONSUMER');
    const db = trace.filter((s) => s.name.startsWith('db '));
    assert.ok(
      db.some((s) => s.service === 'rampart-api') && db.some((s) => s.service === 'rampart-worker'),
      'database spans on both sides',
    );
    const statement = db[0]?.attributes?.find((a) => a.key === 'db.query.text')?.value.stringValue as string;
    assert.match(statement, /^(select|insert|update|delete|with|begin|commit)/i);
    assert.ok(!JSON.stringify(trace).includes(email), 'no personal data (the email) in any span');
    await sleep(300);
    assert.ok(
      api.output().includes(`"trace_id":"${traceId}"`) || worker.output().includes(`"trace_id":"${traceId}"`),
      'log lines carry the trace id',
    );
    process.stdout.write(
      `# tracing: one trace, ${trace.length} spans (${trace.filter((s) => s.service === 'rampart-api').length} in the API, ${trace.filter((s) => s.service === 'rampart-worker').length} in the worker): ${[...new Set(trace.map((s) => s.name.replace(/^db .*/, 'db')))].join(', ')}\n`,
    );
  });

  test('the trace context reaches outbound calls (traceparent header) and outbox events (CloudEvents traceparent)', async () => {
    const seen: string[] = [];
    const echo = createServer((req, res) => {
      seen.push(String(req.headers.traceparent ?? ''));
      res.writeHead(200).end('pong');
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const stop = await startTracing('rampart-inproc', { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_BSP_SCHEDULE_DELAY: '100' });
    const data = mkdtempSync(join(tmpdir(), 'rampart-otel-'));
    const app = await createApp(
      loadConfig({
        env: {
          RAMPART_DATA_DIR: data,
          PORT: '0',
          LOG_LEVEL: 'silent',
          RAMPART_BROKERS: '{"mq": "amqp://127.0.0.1:1"}',
          RAMPART_EVENTS_RELAY: 'false',
        },
      }),
      defineApp({
        dependencies: { echo: { baseUrl: `http://127.0.0.1:${(echo.address() as { port: number }).port}`, retries: 0 } },
        collections: {
          notes: collection({
            fields: { text: f.text() },
            rules: { list: 'true', view: 'true', create: 'true', update: 'true', delete: 'true' },
            hooks: { onCreate: async (_r, ctx) => void (await (await ctx.http('echo').fetch('/ping')).text()) },
          }),
        },
        events: { publish: { audit: { events: ['notes.*'], broker: 'mq', exchange: 'audit' } } },
      }),
    );
    try {
      const url = await app.start();
      const traceId = randomBytes(16).toString('hex');
      const res = await fetch(`${url}/api/v1/collections/notes/records`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
        body: JSON.stringify({ text: 'traced' }),
      });
      assert.equal(res.status, 201);
      assert.match(seen[0] ?? '', new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`), 'the outbound call carried the trace');
      const row = await app.storage.db.selectFrom(OUTBOX).select('payload').executeTakeFirstOrThrow();
      assert.match(JSON.parse(row.payload as string).traceparent, new RegExp(`^00-${traceId}-`), 'the event carries it too');
      for (let i = 0; i < 50 && !spans.some((s) => s.traceId === traceId && s.name === 'GET echo'); i++) await sleep(100);
      const client = spans.find((s) => s.traceId === traceId && s.name === 'GET echo');
      assert.equal(client?.kind, 3, 'a CLIENT span for the outbound call');
      assert.equal(seen[0]?.split('-')[2], client?.spanId, 'the dependency was told the client span');
    } finally {
      await app.stop();
      await stop();
      echo.close();
      rmSync(data, { recursive: true, force: true });
    }
  });
});
