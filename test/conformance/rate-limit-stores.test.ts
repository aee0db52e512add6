/**
 * The same assertions on every rate-limit store (memory, Redis, PostgreSQL): a window holds its
 * limit under concurrent checks, keys and classes count apart, the tightest window is reported,
 * a refusal says when to retry, and two limiters on one shared store count together.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type LimitStore, RateLimits } from '../../src/protect/rate-limits.js';
import { openSidePool } from '../../src/storage/open.js';
import { openRedis, type RedisHandle } from '../../src/storage/redis.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { pgUnavailable } from '../helpers/backends.js';
import { PrivateRedis, privateRedisUnavailable } from '../helpers/redis.js';

const RULES = {
  anonymous: [
    { points: 20, durationS: 60 },
    { points: 1000, durationS: 86_400 },
  ],
  user: [{ points: 5, durationS: 10 }],
  auth: [],
};

interface StoreCase {
  name: string;
  skip: string | false;
  open(): Promise<{ store: LimitStore; close(): Promise<void> }>;
}

const redisServer = new PrivateRedis();
let pgApp: TestApp | undefined;
const cases: StoreCase[] = [
  { name: 'memory', skip: false, open: async () => ({ store: { kind: 'memory' }, close: async () => {} }) },
  {
    name: 'redis',
    skip: privateRedisUnavailable() ?? false,
    async open() {
      const redis: RedisHandle = await openRedis(redisServer.url);
      await redis.ready(3000);
      return { store: { kind: 'redis', client: redis.client }, close: () => redis.close() };
    },
  },
  {
    name: 'postgres',
    skip: (await pgUnavailable()) ?? false,
    async open() {
      // A migrated database (the counters' table comes with the system migrations).
      pgApp ??= await startTestApp('postgres');
      const pool = openSidePool(pgApp.backend.config.storage, 'rampart-test-limits', 4, 1000);
      return { store: { kind: 'postgres', pool }, close: () => pool.end() };
    },
  },
];

describe('rate-limit stores', () => {
  before(async () => {
    if (!privateRedisUnavailable()) await redisServer.start();
  });
  after(async () => {
    await pgApp?.close();
    await redisServer.stop();
  });

  for (const c of cases) {
    test(`${c.name}: the same limits hold`, { skip: c.skip }, async () => {
      const a = await c.open();
      const b = await c.open();
      try {
        const run = `${c.name}-${process.pid}-${Date.now()}`;
        const limits = new RateLimits(RULES, a.store, 'closed');
        // 50 concurrent checks of one key: exactly 20 pass (the minute window).
        const decisions = await Promise.all(Array.from({ length: 50 }, () => limits.check([['anonymous', `${run}-ip1`]])));
        assert.equal(decisions.filter((d) => d.allowed).length, 20);
        const refused = decisions.find((d) => !d.allowed);
        assert.equal(refused?.reason, 'limited');
        assert.ok((refused?.retryAfterS ?? 0) >= 1 && (refused?.retryAfterS ?? 0) <= 60);
        assert.match(refused?.headers.ratelimit ?? '', /^"anonymous-minute";r=0;t=\d+$/);
        assert.equal(refused?.headers['ratelimit-policy'], '"anonymous-minute";q=20;w=60, "anonymous-day";q=1000;w=86400');
        // Another key, and another class with the same key, count apart.
        assert.equal((await limits.check([['anonymous', `${run}-ip2`]])).allowed, true);
        const user = await limits.check([['user', `${run}-ip1`]]);
        assert.equal(user.allowed, true);
        assert.equal(user.headers.ratelimit, '"user-10s";r=4;t=10');
        // A second limiter on the same store (another node) sees the same counters.
        const other = new RateLimits(RULES, b.store, 'closed');
        for (let i = 0; i < 4; i++) assert.equal((await other.check([['user', `${run}-ip1`]])).allowed, true);
        const sixth = await limits.check([['user', `${run}-ip1`]]);
        assert.equal(
          sixth.allowed,
          c.name === 'memory',
          c.name === 'memory' ? 'memory counts per process' : 'the shared store counted both',
        );
      } finally {
        await a.close();
        await b.close();
      }
    });
  }
});
