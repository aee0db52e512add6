/**
 * Every log line the suite produces, kept for the final scan for secrets (test/logs/): `npm
 * test` sets RAMPART_TEST_LOG_DIR; in-process apps then log (warn and up) to a file there, and
 * child processes' output is copied there when they exit. The configured secrets include
 * canaries every backend carries (a PostgreSQL password PostgreSQL's trust auth ignores, a
 * master key), so a secret that reaches a log anywhere in the suite is found.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';

export const LOG_DIR = process.env.RAMPART_TEST_LOG_DIR;

/** Secret values configured throughout the suite. */
export const CANARIES = {
  pgPassword: 'canary-pg-Q7x2mZr4',
  masterKey: Buffer.from('canary-master-key-0123456789abcd').toString('base64'),
};

/** Configuration that sends an in-process app's log lines to the capture directory. */
export function captureEnv(): Record<string, string> {
  if (!LOG_DIR) return {};
  return { LOG_LEVEL: 'warn', RAMPART_LOG_FILE: join(LOG_DIR, `inproc-${process.pid}-${randomBytes(4).toString('hex')}.log`) };
}

/** Keep a child process's output for the scan. */
export function archiveOutput(name: string, text: string): void {
  if (!LOG_DIR || text === '') return;
  appendFileSync(join(LOG_DIR, `child-${name}-${process.pid}.log`), text);
}
