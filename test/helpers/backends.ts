/**
 * The backends conformance suites run against. SQLite gets a fresh temp directory; PostgreSQL
 * a fresh database on the shared server (127.0.0.1:5432, or TEST_PG_URL), dropped afterwards.
 * When PostgreSQL is absent its suites are skipped with the reason printed, so a newcomer's
 * `npm test` still passes; CI sets RAMPART_REQUIRE_PG=1, which turns the skip into a failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { type Config, loadConfig } from '../../src/core/config.js';
import { CANARIES, captureEnv } from './log-capture.js';

export const PG_ADMIN_URL = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let pgProbe: Promise<string | undefined> | undefined;

/** undefined when PostgreSQL answers, else why not. */
export function pgUnavailable(): Promise<string | undefined> {
  pgProbe ??= (async () => {
    const c = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 2000 });
    try {
      await c.connect();
      await c.query('select 1');
      return undefined;
    } catch (err) {
      const why = `PostgreSQL not reachable at ${PG_ADMIN_URL} (${(err as Error).message})`;
      if (process.env.RAMPART_REQUIRE_PG === '1') throw new Error(`${why}, and RAMPART_REQUIRE_PG=1`);
      return why;
    } finally {
      await c.end().catch(() => {});
    }
  })();
  return pgProbe;
}

/** A backend ready for one suite: configuration and a cleanup. */
export interface TestBackend {
  name: 'sqlite' | 'postgres';
  config: Config;
  /** Environment for a child process using this backend. */
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

function withDb(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  // Trust auth ignores it: a canary password for the scan of the suite's logs.
  if (!u.password) u.password = CANARIES.pgPassword;
  return u.toString();
}

/** Create a fresh backend. `env` adds configuration keys. */
export async function makeBackend(name: 'sqlite' | 'postgres', env: Record<string, string> = {}): Promise<TestBackend> {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-test-'));
  // Suites about other things send far more requests from one address than a real client;
  // rate limits are off unless a test sets them (test/http/rate-limits.test.ts does). Load
  // shedding on event-loop delay too: an in-process server shares its loop with the test (an
  // index rebuild, a fuzzer), so the delay it would see is the harness's
  // (test/http/load-shedding.test.ts sets its own).
  const base = {
    RAMPART_DATA_DIR: dir,
    PORT: '0',
    LOG_LEVEL: 'silent',
    RAMPART_MASTER_KEY: CANARIES.masterKey,
    // The routine checks' schedule too: tests of checks run them directly, the rest should not
    // have them firing (every minute, or at each minute a test clock skips) under their timings.
    RAMPART_CHECKS_CRON: 'off',
    ...captureEnv(),
    RAMPART_RATE_LIMITS: 'off',
    RAMPART_DRAIN_DELAY_MS: '0',
    RAMPART_SHED_EVENT_LOOP_DELAY_MS: '0',
    ...env,
  };
  if (name === 'sqlite') {
    return {
      name,
      config: loadConfig({ env: base }),
      env: base,
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const db = `rampart_t_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`create database ${db}`);
  await admin.end();
  const full = { ...base, DATABASE_URL: withDb(PG_ADMIN_URL, db) };
  return {
    name,
    config: loadConfig({ env: full }),
    env: full,
    async cleanup() {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`drop database if exists ${db} with (force)`);
      await c.end();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The backends to run a conformance suite on, with a skip reason for each that is absent. */
export async function backendMatrix(): Promise<Array<{ name: 'sqlite' | 'postgres'; skip: string | false }>> {
  const why = await pgUnavailable();
  if (why) process.stdout.write(`# skipping PostgreSQL: ${why}\n`);
  return [
    { name: 'sqlite', skip: false },
    { name: 'postgres', skip: why ?? false },
  ];
}
