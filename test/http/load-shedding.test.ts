/**
 * Load shedding and slow clients: an overloaded node answers API requests with a quick 503 and
 * recovers by itself; 1,000 slowloris sockets and a 100 MB body do not stop it serving others.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startTestApp } from '../helpers/app.js';
import { startRampart } from '../helpers/processes.js';

const ROOMS = '/api/v1/collections/rooms/records';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('load shedding', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('a lagging event loop: API requests get 503 with Retry-After, health answers, readiness says why; then it recovers', async () => {
    const t = await startTestApp('sqlite', undefined, { RAMPART_SHED_EVENT_LOOP_DELAY_MS: '20' });
    try {
      assert.equal((await t.req('GET', ROOMS)).status, 200);
      // Keep the loop busy: 40 ms blocked out of every 45, for a second (this process runs the app).
      const until = Date.now() + 1000;
      while (Date.now() < until) {
        const end = Date.now() + 40;
        while (Date.now() < end) {}
        await sleep(5);
      }
      const shed = await t.req('GET', ROOMS);
      assert.equal(shed.status, 503, shed.raw);
      assert.equal(shed.body.code, 'E_OVERLOADED');
      assert.match(shed.body.detail, /event-loop delay \d+ ms/);
      assert.equal(shed.headers['retry-after'], '2');
      assert.equal((await t.req('GET', '/healthz')).status, 200, 'liveness still answers');
      const ready = await t.req('GET', '/readyz');
      assert.equal(ready.status, 503);
      assert.match(ready.raw, /overloaded/);
      assert.match((await t.req('GET', '/metrics')).raw, /rampart_shed_requests_total\{reason="eventLoopDelay"\} [1-9]/);
      const started = Date.now();
      while ((await t.req('GET', ROOMS)).status !== 200) {
        assert.ok(Date.now() - started < 3000, 'not recovered within 3 s');
        await sleep(50);
      }
      process.stdout.write(`# shed while lagging; served again ${Date.now() - started} ms after the load stopped\n`);
    } finally {
      await t.close();
    }
  });

  test('1,000 slowloris sockets and a 100 MB body: others are served, the body gets 413, the slow sockets are cut off', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rampart-shed-'));
    dirs.push(dir);
    const server = await startRampart({ RAMPART_DATA_DIR: dir, RAMPART_HEADERS_TIMEOUT_MS: '2000' });
    const { hostname, port } = new URL(server.url);
    try {
      const sockets: Socket[] = [];
      let closed = 0;
      for (let i = 0; i < 1000; i++) {
        const s = connect(Number(port), hostname);
        s.on('error', () => {});
        s.on('close', () => closed++);
        s.write(`GET ${ROOMS} HTTP/1.1\r\nHost: ${hostname}\r\n`);
        sockets.push(s);
      }
      // Each sends one more header byte now and then, never finishing.
      const drip = setInterval(() => {
        for (const s of sockets) if (!s.destroyed) s.write('X');
      }, 500);
      try {
        await sleep(300);
        const times: number[] = [];
        for (let i = 0; i < 20; i++) {
          const t0 = performance.now();
          const r = await fetch(`${server.url}${ROOMS}`);
          assert.equal(r.status, 200);
          await r.arrayBuffer();
          times.push(performance.now() - t0);
        }
        times.sort((a, b) => a - b);
        // 100 MB, chunked (no Content-Length to refuse up front): cut off once past the limit.
        let sent = 0;
        let reset = false;
        const status = await new Promise<number>((resolve, reject) => {
          const req = request(`${server.url}${ROOMS}`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          // The server answers 413 and closes while we still write: the write may fail before the
          // answer is read (EPIPE, ECONNRESET). Then the answer is read if it came, else we settle.
          req.on('error', (err) => {
            if (sent === 0) return reject(err);
            reset = true;
            setTimeout(() => resolve(0), 1000);
          });
          const chunk = Buffer.alloc(1_048_576, 'a');
          const pump = () => {
            while (sent < 100 * 1_048_576 && !req.destroyed) {
              sent += chunk.length;
              if (!req.write(chunk)) {
                req.once('drain', pump);
                return;
              }
            }
            req.end();
          };
          pump();
        });
        // Cut off past the limit: the 413 is read, unless the reset of our writes came first.
        assert.ok(status === 413 || (status === 0 && reset), `the 100 MB body was answered ${status}`);
        const started = Date.now();
        while (closed < 1000 && Date.now() - started < 6000) await sleep(100);
        process.stdout.write(
          `# 1000 slowloris sockets: 20 requests served meanwhile (p50 ${times[10]?.toFixed(1)} ms, max ${times[19]?.toFixed(1)} ms); ` +
            `100 MB chunked body -> ${status} after ${Math.round(sent / 1_048_576)} MB sent; ${closed} slow sockets cut off within ${Date.now() - started} ms of the checks\n`,
        );
        assert.equal(closed, 1000, 'every slow socket was closed by the server');
        assert.ok(sent < 100 * 1_048_576, 'the body was refused before all of it was sent');
        const after = await fetch(`${server.url}${ROOMS}`);
        assert.equal(after.status, 200);
      } finally {
        clearInterval(drip);
        for (const s of sockets) s.destroy();
      }
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });
});
