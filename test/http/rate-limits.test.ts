/**
 * Rate limits: 429 problems with the standard headers, the stricter sign-in tier, limits that
 * hold against spoofed X-Forwarded-For and against one user behind many addresses, counters
 * shared by nodes through Redis and PostgreSQL, and the fallback while Redis is SIGKILLed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Pool } from 'undici';
import { createApp, type RampartApp } from '../../src/app.js';
import { loadConfig } from '../../src/core/config.js';
import { type SignedIn, startTestApp, type TestApp } from '../helpers/app.js';
import { makeBackend, pgUnavailable } from '../helpers/backends.js';
import { PrivateRedis, privateRedisUnavailable, redisCommand } from '../helpers/redis.js';

const ROOMS = '/api/v1/collections/rooms/records';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A request from a given client address (in-process; the socket address is what inject says). */
async function from(t: TestApp, ip: string, method: string, url: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await t.app.server.inject({
    method: method as 'GET',
    url,
    remoteAddress: ip,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    payload: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.statusCode, headers: res.headers, body: res.body ? JSON.parse(res.body) : undefined };
}

/** Fire `n` GETs over real sockets, 32 at a time; counts by status. */
async function hammer(url: string, n: number, headers: (i: number) => Record<string, string>): Promise<Record<number, number>> {
  // Pipelined keep-alive connections: the load generator shares the two cores with the server.
  const pool = new Pool(url, { connections: 16, pipelining: 8 });
  const counts: Record<number, number> = {};
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < n) {
          const i = next++;
          const res = await pool.request({ method: 'GET', path: ROOMS, headers: headers(i) });
          await res.body.dump();
          counts[res.statusCode] = (counts[res.statusCode] ?? 0) + 1;
        }
      }),
    );
  } finally {
    await pool.close();
  }
  return counts;
}

const randomIp = () =>
  `${1 + Math.floor(Math.random() * 223)}.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 256)}.${1 + Math.floor(Math.random() * 254)}`;

describe('rate limits (in memory)', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp('sqlite', undefined, {
      RAMPART_RATE_LIMITS: '{"anonymous": "5/min, 50/day", "user": "8/min", "auth": "3/min"}',
    });
  });
  after(() => t.close());

  test('over the limit: 429 problem+json with Retry-After; RateLimit-Policy and RateLimit on every answer', async () => {
    for (let i = 0; i < 5; i++) {
      const ok = await from(t, '198.51.100.1', 'GET', ROOMS);
      assert.equal(ok.status, 200);
      // The policies are sent once the tightest window is half used (remaining 2 of 5 and below).
      assert.equal(ok.headers['ratelimit-policy'], i >= 2 ? '"anonymous-minute";q=5;w=60, "anonymous-day";q=50;w=86400' : undefined);
      assert.match(String(ok.headers.ratelimit), new RegExp(`^"anonymous-minute";r=${4 - i};t=(59|60)$`));
    }
    const limited = await from(t, '198.51.100.1', 'GET', ROOMS);
    assert.equal(limited.status, 429);
    assert.match(String(limited.headers['content-type']), /application\/problem\+json/);
    assert.equal(limited.body.code, 'E_RATE_LIMITED');
    const retry = Number(limited.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
    assert.match(String(limited.headers.ratelimit), /^"anonymous-minute";r=0;t=\d+$/);
    assert.equal(limited.headers['ratelimit-policy'], '"anonymous-minute";q=5;w=60, "anonymous-day";q=50;w=86400');
    // Another address has its own counter; health and metrics are not limited.
    assert.equal((await from(t, '198.51.100.2', 'GET', ROOMS)).status, 200);
    assert.equal((await from(t, '198.51.100.1', 'GET', '/healthz')).status, 200);
    const metrics = await from(t, '198.51.100.1', 'GET', '/metrics').catch(() => undefined);
    assert.equal(metrics, undefined, 'metrics is text, not JSON');
  });

  test('sign-in routes are in a tighter per-IP tier; a signed-in user is counted per user, not per IP', async () => {
    const ip = '198.51.100.9';
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await from(t, ip, 'POST', '/api/v1/auth/login', { email: `nobody${i}@example.com`, password: 'wrong-password-1' });
      statuses.push(r.status);
      if (r.status === 429) {
        assert.equal(r.body.code, 'E_RATE_LIMITED');
        assert.match(String(r.headers['ratelimit-policy']), /"auth-minute";q=3;w=60/);
      }
    }
    assert.deepEqual(statuses, [401, 401, 401, 429]);

    const signup = await from(t, '198.51.100.10', 'POST', '/api/v1/auth/signup', {
      email: 'limits@example.com',
      password: 'a-long-password-1',
    });
    assert.equal(signup.status, 201);
    const auth = { authorization: `Bearer ${signup.body.access_token}` };
    const codes: number[] = [];
    // Eight per minute for this user, from whatever address.
    for (let i = 0; i < 9; i++) codes.push((await from(t, `203.0.113.${i + 1}`, 'GET', ROOMS, undefined, auth)).status);
    assert.deepEqual(codes, [200, 200, 200, 200, 200, 200, 200, 200, 429]);
    const r = await from(t, '203.0.113.99', 'GET', ROOMS, undefined, auth);
    assert.equal(r.status, 429);
    assert.equal(r.headers['ratelimit-policy'], '"user-minute";q=8;w=60');
  });

  test('the default limits apply when none are configured', async () => {
    // An empty value means the default (the test helpers turn limits off otherwise).
    const d = await startTestApp('sqlite', undefined, { RAMPART_RATE_LIMITS: '' });
    try {
      const r = await from(d, '198.51.100.1', 'GET', ROOMS);
      assert.equal(r.headers.ratelimit, '"anonymous-minute";r=599;t=60');
      let login = await from(d, '198.51.100.1', 'POST', '/api/v1/auth/login', { email: 'x@example.com', password: 'wrong-password-1' });
      assert.equal(login.headers.ratelimit, '"auth-minute";r=29;t=60');
      for (let i = 0; i < 15; i++) {
        login = await from(d, '198.51.100.1', 'POST', '/api/v1/auth/login', { email: 'x@example.com', password: 'wrong-password-1' });
      }
      assert.equal(
        login.headers['ratelimit-policy'],
        '"anonymous-minute";q=600;w=60, "anonymous-day";q=50000;w=86400, "auth-minute";q=30;w=60, "auth-day";q=500;w=86400',
      );
    } finally {
      await d.close();
    }
  });

  test('limits off: no headers, no 429', async () => {
    const off = await startTestApp('sqlite', undefined, { RAMPART_RATE_LIMITS: 'off' });
    try {
      for (let i = 0; i < 20; i++) {
        const r = await from(off, '198.51.100.1', 'GET', ROOMS);
        assert.equal(r.status, 200);
        assert.equal(r.headers['ratelimit-policy'], undefined);
      }
    } finally {
      await off.close();
    }
  });

  test('bad configuration is named', () => {
    for (const bad of ['{"anonymous": "5/fortnight"}', '{"robots": "5/min"}', '{"user": "0/min"}', '{"user": "5/min, 6/60s"}', 'nope']) {
      assert.throws(() => loadConfig({ env: { RAMPART_RATE_LIMITS: bad } }), /RAMPART_RATE_LIMITS/);
    }
  });
});

describe('rate limits hold against spoofing (10,000 requests over real sockets)', () => {
  const N = 10_000;

  test('one address with a different spoofed X-Forwarded-For on each request, no trusted proxy', async () => {
    const t = await startTestApp('sqlite', undefined, { RAMPART_RATE_LIMITS: '{"anonymous": "100/min"}' });
    try {
      const started = Date.now();
      const counts = await hammer(t.url, N, () => ({ 'x-forwarded-for': randomIp() }));
      console.log(`# spoofed X-Forwarded-For, no trusted proxy: ${JSON.stringify(counts)} in ${Date.now() - started} ms`);
      assert.deepEqual(counts, { 200: 100, 429: N - 100 });
    } finally {
      await t.close();
    }
  });

  test('behind a trusted proxy: spoofed values to the left of the address the proxy saw change nothing', async () => {
    const t = await startTestApp('sqlite', undefined, {
      RAMPART_RATE_LIMITS: '{"anonymous": "100/min"}',
      RAMPART_TRUST_PROXY: '127.0.0.1',
    });
    try {
      // The proxy appends the address it saw (203.0.113.7) to whatever the client sent.
      const counts = await hammer(t.url, N, () => ({ 'x-forwarded-for': `${randomIp()}, ${randomIp()}, 203.0.113.7` }));
      console.log(`# spoofed hops before a trusted proxy: ${JSON.stringify(counts)}`);
      assert.deepEqual(counts, { 200: 100, 429: N - 100 });
      // Distinct real clients behind the proxy each get their own counter.
      const other = await hammer(t.url, 50, (i) => ({ 'x-forwarded-for': `198.51.100.${i + 1}` }));
      assert.deepEqual(other, { 200: 50 });
    } finally {
      await t.close();
    }
  });

  test('one user spread over many addresses', async () => {
    const t = await startTestApp('sqlite', undefined, { RAMPART_RATE_LIMITS: '{"user": "100/min"}', RAMPART_TRUST_PROXY: '127.0.0.1' });
    try {
      const user: SignedIn = await t.signIn();
      const counts = await hammer(t.url, N, () => ({ ...user.auth, 'x-forwarded-for': randomIp() }));
      console.log(`# one user from ${N} addresses: ${JSON.stringify(counts)}`);
      assert.deepEqual(counts, { 200: 100, 429: N - 100 });
    } finally {
      await t.close();
    }
  });
});

describe('shared counters', async () => {
  const redisSkip = privateRedisUnavailable();
  const pgSkip = await pgUnavailable();

  test('two nodes on PostgreSQL count together', { skip: pgSkip ?? false }, async () => {
    const backend = await makeBackend('postgres', { RAMPART_RATE_LIMITS: '{"anonymous": "30/min"}' });
    const apps: RampartApp[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const app = await createApp(backend.config, (await import('../fixtures/open-chat.ts')).default);
        await app.start();
        apps.push(app);
      }
      let allowed = 0;
      for (let i = 0; i < 60; i++) {
        const res = await (apps[i % 2] as RampartApp).server.inject({ method: 'GET', url: ROOMS, remoteAddress: '198.51.100.77' });
        if (res.statusCode === 200) allowed++;
        else assert.equal(res.statusCode, 429);
      }
      assert.equal(allowed, 30);
    } finally {
      for (const a of apps) await a.stop();
      await backend.cleanup();
    }
  });

  describe('Redis', { skip: redisSkip ?? false }, () => {
    const redis = new PrivateRedis();
    before(() => redis.start());
    after(() => redis.stop());

    test('two nodes count together through Redis', async () => {
      const nodes = [
        await startTestApp('sqlite', undefined, { REDIS_URL: redis.url, RAMPART_RATE_LIMITS: '{"anonymous": "40/min"}' }),
        await startTestApp('sqlite', undefined, { REDIS_URL: redis.url, RAMPART_RATE_LIMITS: '{"anonymous": "40/min"}' }),
      ];
      try {
        let allowed = 0;
        for (let i = 0; i < 100; i++) if ((await from(nodes[i % 2] as TestApp, '198.51.100.5', 'GET', ROOMS)).status === 200) allowed++;
        assert.equal(allowed, 40);
        assert.match(await redisCommand(redis.port, 'KEYS', 'rl:anonymous:60:*'), /198\.51\.100\.5/);
      } finally {
        for (const n of nodes) await n.close();
      }
    });

    for (const fallback of ['memory', 'open', 'closed'] as const) {
      test(`Redis SIGKILLed under load, fallback ${fallback}: the API keeps answering, the store is used again within 5 s of its return`, async () => {
        const limit = 150;
        await redisCommand(redis.port, 'FLUSHALL');
        const t = await startTestApp('sqlite', undefined, {
          REDIS_URL: redis.url,
          RAMPART_RATE_LIMITS: `{"anonymous": "${limit}/min"}`,
          RAMPART_RATE_LIMIT_FALLBACK: fallback,
        });
        const phases: Record<string, Record<string, number>> = { before: {}, outage: {}, restarting: {}, after: {} };
        let phase = 'before';
        let stop = false;
        const pool = new Pool(t.url, { connections: 8 });
        const load = Promise.all(
          Array.from({ length: 8 }, async () => {
            while (!stop) {
              const at = phase;
              const res = await pool.request({ method: 'GET', path: ROOMS });
              const body = await res.body.text();
              const key = res.statusCode === 503 ? `503 ${JSON.parse(body).code}` : String(res.statusCode);
              const p = phases[at] as Record<string, number>;
              p[key] = (p[key] ?? 0) + 1;
              await sleep(2);
            }
          }),
        );
        const storeUp = async () => /^rampart_rate_limit_store_up 1$/m.test((await t.req('GET', '/metrics')).raw);
        try {
          await sleep(800);
          await redis.kill();
          phase = 'outage';
          await sleep(1500);
          const downMetric = await storeUp();
          phase = 'restarting';
          await redis.start();
          const back = Date.now();
          // The store is back once a request has been counted in Redis again.
          while (!(await storeUp()) || !/rl:anonymous/.test(await redisCommand(redis.port, 'KEYS', '*'))) {
            assert.ok(Date.now() - back < 5000, 'the shared store is used again within 5 s');
            await sleep(50);
          }
          const recovered = Date.now() - back;
          phase = 'after';
          await sleep(300);
          stop = true;
          await load;
          console.log(`# fallback ${fallback}: ${JSON.stringify(phases)}; shared store used again ${recovered} ms after Redis returned`);
          assert.equal(downMetric, false, 'rampart_rate_limit_store_up is 0 during the outage');
          const outage = phases.outage as Record<string, number>;
          // (Requests racing the kill itself may already meet the fallback, so 'before' is checked only where it passes.)
          const fives = Object.keys(phases.after as object)
            .concat(fallback === 'closed' ? [] : Object.keys(phases.before as object))
            .filter((k) => k.startsWith('5'));
          assert.deepEqual(fives, [], 'no 5xx while Redis is up');
          if (fallback === 'memory') {
            assert.equal(Object.keys(outage).filter((k) => k.startsWith('5')).length, 0);
            assert.ok((outage['200'] ?? 0) <= limit, 'the in-process limiter held the limit');
            assert.ok((outage['429'] ?? 0) > 0, 'and refused beyond it');
          } else if (fallback === 'open') {
            assert.deepEqual(Object.keys(outage), ['200'], 'every request passes');
          } else {
            assert.deepEqual(Object.keys(outage), ['503 E_RATE_LIMIT_UNAVAILABLE'], 'every request is refused with 503');
          }
        } finally {
          stop = true;
          await load.catch(() => {});
          await pool.close();
          await t.close();
          if (!(await redisCommand(redis.port, 'PING').catch(() => ''))) await redis.start();
        }
      });
    }
  });
});
