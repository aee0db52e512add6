/** The `rampart` command line. */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createApp, type RampartApp } from '../app.js';
import { KEY_RELOAD_MS, SigningKeys } from '../auth/keys.js';
import { withUsers } from '../auth/users.js';
import { systemClock } from '../core/clock.js';
import { ConfigError, type ConfigKey, describeConfigKeys, loadConfigWithSecrets } from '../core/config.js';
import { RampartError } from '../core/errors.js';
import { createProgress } from '../core/progress.js';
import { serve, work } from '../main.js';
import { BackupFormatError } from '../ops/backup-crypto.js';
import { BackupError, Backups } from '../ops/backups.js';
import { REENCRYPT_JOB } from '../ops/ops-jobs.js';
import { RuleError } from '../records/rules.js';
import { normalizeCollections, SchemaError, type SearchSpec } from '../records/schema.js';
import { REBUILD_BATCH, rebuildSearch } from '../records/search-index.js';
import { generateTypes } from '../records/types-gen.js';
import { MigrationError } from '../storage/migrator.js';
import { loadAppDef } from './load-app.js';

const GLOBAL = `Global options:
  --app <file>        the app declaration (default ./rampart.config.ts, .js or .json)
  --port <n>          overrides PORT
  --host <addr>       overrides HOST
  --data-dir <dir>    overrides RAMPART_DATA_DIR
  -h, --help          help for a command`;

const HELP: Record<string, string> = {
  main: `rampart — a resilient backend for web and mobile apps

Usage: rampart <command> [options]

Commands:
  serve               serve the app's API (embedded SQLite, or PostgreSQL with DATABASE_URL)
  worker              run background jobs and cron without serving the API (cluster mode)
  migrate up          apply pending migrations (system tables and collection changes)
  migrate down        revert the last migration (--steps N for more)
  migrate status      list applied migrations and what is pending
  admin create        create the first admin (or make a user admin): --email, password on stdin
  keys rotate         add a new token signing key; the old ones verify until their tokens expire
  keys list           the signing keys and their state
  keys rotate-data-key  add a data key for encrypted fields; a job moves every value to it
  keys data-keys      the data keys of encrypted fields and how many values each encrypts
  keys reencrypt      move every encrypted value to the current data key now (progress shown)
  keys retire-data-key <id>  destroy a data key no value uses any more
  search reindex [c]  rebuild the search index of a collection (default: every searchable one), online
  types [--out f]     the app's collections as TypeScript, for the client SDK (@rampart/client)
  events status       the outbox per destination: pending events, oldest age, partitions and relays
  events replay       publish again the events written since a time (--since, --until, --destination)
  backup create       take a backup now (sealed with RAMPART_BACKUP_KEY) to RAMPART_BACKUP_TARGET
  backup list         the backups at the target, newest first, with their last verify
  backup verify <id>  restore a backup (or 'latest') into scratch and compare it with its manifest
  backup prune        delete backups outside the retention policy
  restore <id>        restore a backup (or 'latest') into the app's empty database (--force: replace)
  audit               the audit log, newest first (--action, --actor, --since, --limit)
  check               run the routine checks now and print a report (exit 1 when one fails)
  help [command]      this text, or a command's

${GLOBAL}

Configuration (environment variables; RAMPART_CONFIG may name a JSON file with the same keys;
NAME_FILE reads a value from a file):
  ${describeConfigKeys().join('\n  ')}`,
  serve: `Usage: rampart serve [--app <file>] [--port <n>] [--host <addr>] [--data-dir <dir>]

Serves the REST API, /docs, /healthz, /readyz and /metrics. Applies pending migrations first
unless RAMPART_AUTO_MIGRATE=false (migrations that drop data always need 'rampart migrate up
--allow-destructive'). SIGTERM or SIGINT drains in-flight requests, closes the database, exits 0.

${GLOBAL}`,
  worker: `Usage: rampart worker [--queues <a,b>] [--metrics-port <n>] [--app <file>]

Runs the app's background jobs (every declared queue, or the ones named) and takes part in the
election of the node that fires cron schedules; serves no API. Run as many as needed, on any
machines sharing the database: each job runs in one worker at a time (leases renewed by a
heartbeat), and a worker that dies loses nothing (its jobs are taken back when their lease
expires). With --metrics-port, /metrics, /healthz and /readyz are served on that port. SIGTERM or SIGINT
stops fetching, lets running jobs finish within RAMPART_JOBS_SHUTDOWN_GRACE_MS and releases the
rest to other workers. Set RAMPART_JOBS_IN_PROCESS=false on 'serve' nodes when workers run jobs.

${GLOBAL}`,
  migrate: `Usage: rampart migrate up [--allow-destructive]
       rampart migrate down [--steps <n>]
       rampart migrate status

Migrations are versioned and recorded in the _rampart_migrations table. Changes to the declared
collections become schema migrations (with their inverse, so 'down' can revert them). On
PostgreSQL an advisory lock lets many nodes start at once: each migration runs exactly once.

${GLOBAL}`,
  admin: `Usage: rampart admin create --email <address>

Creates an admin account with a password (or, when the email already has an account, makes it an
admin and sets the password). The password is read from standard input: typed without echo on a
terminal, or piped (printf '%s' "$PASSWORD" | rampart admin create --email ops@example.com).
Applies pending migrations first unless RAMPART_AUTO_MIGRATE=false.

${GLOBAL}`,
  keys: `Usage: rampart keys rotate
       rampart keys list
       rampart keys rotate-data-key
       rampart keys data-keys
       rampart keys reencrypt
       rampart keys retire-data-key <id>

Access tokens are signed with an Ed25519 key kept in the database. 'rotate' adds a new signing
key; every node picks it up within 30 s. Older keys keep verifying until the longest access token
they signed has expired (RAMPART_ACCESS_TOKEN_TTL_S + 90 s), then leave /.well-known/jwks.json.

Fields declared \`encrypted\` are stored with AES-256-GCM under data keys, kept in the database
wrapped by RAMPART_MASTER_KEY. 'rotate-data-key' adds a data key: every node loads it within
RAMPART_DATA_KEY_RELOAD_MS and encrypts with it after twice that; a background job (on a worker)
then re-encrypts existing values, logging its progress. 'reencrypt' does the same in this process
with a progress bar. 'data-keys' shows how many values each key encrypts; 'retire-data-key'
refuses while any value still uses the key, then destroys its wrapped copy.

${GLOBAL}`,
  search: `Usage: rampart search reindex [collection]

Rebuilds the full-text index and the typo vocabulary of a collection (or of every collection with
searchable fields) from its records, with a progress bar. Online: it works in batches of
${REBUILD_BATCH} records, each a short transaction, so the API keeps reading and writing meanwhile; the
index's triggers keep records written during the rebuild in step. Needed only to repair an index
or to drop words no record holds any more; migrations build and rebuild indexes themselves.

${GLOBAL}`,
  types: `Usage: rampart types [--out <file.ts>] [--app <file>]

Writes the app's collections as TypeScript interfaces (the fields an API caller sees; hidden
fields left out) and a Collections map, for the client SDK: createClient<Collections>({ url })
types every collection's records, filters aside. Run it again after changing collections. Needs
no database.

${GLOBAL}`,
  events: `Usage: rampart events status
       rampart events replay --since <time> [--until <time>] [--destination <name>]

'status' shows, per destination, the events waiting in the outbox, the age of the oldest, the
events published in the last hour, the broker connection and breaker as this process sees them,
and which relay holds each ordering partition.

'replay' marks the events written in [since, until) as not yet published, so the relays publish
them again, in their order and with their original ids (consumers deduplicate by id). For a
consumer that lost data. Times are ISO 8601 (2026-11-26T10:00:00Z) or an age (90m, 6h, 2d). Only
events still in the outbox can be replayed: published ones are kept RAMPART_EVENTS_KEEP_DAYS.

${GLOBAL}`,
  backup: `Usage: rampart backup create
       rampart backup list
       rampart backup verify <id | latest>
       rampart backup prune

'create' takes a consistent backup while the app keeps writing (SQLite: VACUUM INTO; PostgreSQL:
pg_dump in an exported snapshot), gzips it and seals it with AES-256-GCM under RAMPART_BACKUP_KEY,
and writes it with a manifest (row counts and content hashes per table, the schema version, the
file's SHA-256; authenticated with the same key) to RAMPART_BACKUP_TARGET: a directory or
s3://bucket/prefix. Then the retention policy runs (RAMPART_BACKUP_KEEP_DAILY, _WEEKLY). The
scheduled backup (RAMPART_BACKUP_CRON) does the same on a worker.

'verify' restores into scratch (a temporary SQLite file, or a temporary PostgreSQL database: the
role needs CREATEDB), checks integrity, and compares counts and hashes with the manifest; a backup
with one altered byte, or made with another key, is refused. Exit code 1 when it fails.

${GLOBAL}`,
  restore: `Usage: rampart restore <id | latest> [--force]

Verifies the backup in scratch, then restores it into the app's database and applies pending
migrations. Refuses a corrupted or foreign backup, and a database that already holds tables
unless --force (which replaces everything in it). SQLite: stop every node first (the file is
replaced). PostgreSQL: the restore is one transaction.

${GLOBAL}`,
  check: `Usage: rampart check

Runs the routine checks and prints one line per check: backup freshness, dead-letter growth, queue
lag, the cluster's error rate (from the API nodes' reports), open circuit breakers (of this
process), disk space of the data directory, database integrity (SQLite quick_check; PostgreSQL
checksum failures), replication lag (pg_stat_replication) and TLS certificate expiry
(RAMPART_CHECK_TLS_URLS). Exit code 1 when any check fails, 0 otherwise (warnings included). The
scheduled run (RAMPART_CHECKS_CRON, once across the cluster) also sends alerts to
RAMPART_ALERT_CHANNELS: one when a check starts failing, reminders, one when it recovers.

${GLOBAL}`,
  audit: `Usage: rampart audit [--action <name or prefix.>] [--actor <user id>] [--since <time>] [--limit <n>]

Prints audit log entries, newest first: time, action, outcome, actor, target, details.

${GLOBAL}`,
};

/** Run the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${HELP.main}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command = 'help', sub] = positionals;
  if (command === 'help' || (values.help && !HELP[command])) {
    process.stdout.write(`${HELP[sub ?? 'main'] ?? HELP.main}\n`);
    return 0;
  }
  if (values.help) {
    process.stdout.write(`${HELP[command]}\n`);
    return 0;
  }
  const overrides: Partial<Record<ConfigKey, string>> = {};
  if (values.port !== undefined) overrides.PORT = values.port;
  if (values.host !== undefined) overrides.HOST = values.host;
  if (values['data-dir'] !== undefined) overrides.RAMPART_DATA_DIR = values['data-dir'];
  try {
    if (command === 'serve') {
      const { def } = await loadAppDef(values.app);
      return await serve(def, { overrides });
    }
    if (command === 'worker') {
      const { def } = await loadAppDef(values.app);
      const queues = values.queues
        ?.split(',')
        .map((q) => q.trim())
        .filter(Boolean);
      const metricsPort = values['metrics-port'] === undefined ? undefined : Number(values['metrics-port']);
      if (metricsPort !== undefined && !(Number.isInteger(metricsPort) && metricsPort >= 0 && metricsPort <= 65535)) {
        process.stderr.write('--metrics-port must be a port number\n');
        return 2;
      }
      return await work(def, { overrides }, { queues, metricsPort });
    }
    if (command === 'migrate') return await migrate(sub, values, overrides);
    if (command === 'admin' || command === 'keys') return await accountsCommand(command, sub, values, overrides, positionals[2]);
    if (command === 'search') return await searchCommand(sub, positionals[2], values, overrides);
    if (command === 'events') return await eventsCommand(sub, values, overrides);
    if (command === 'backup' || command === 'restore') return await backupCommand(command, sub, positionals[2], values, overrides);
    if (command === 'audit') return await auditCommand(values, overrides);
    if (command === 'check') {
      return await withApp(values, overrides, async (app) => {
        if (app.config.storage.autoMigrate) await app.migrator.up();
        const results = await app.checks.run({ thorough: true });
        const mark = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;
        for (const r of results) out(`${mark[r.status]}  ${r.name.padEnd(20)} ${r.message}`);
        const failing = results.filter((r) => r.status === 'fail').length;
        out(failing > 0 ? `${failing} of ${results.length} checks failing` : `all ${results.length} checks pass`);
        return failing > 0 ? 1 : 0;
      });
    }
    if (command === 'types') {
      const { def } = await loadAppDef(values.app);
      const visible = normalizeCollections(withUsers(def)).map((c) => ({
        ...c,
        fields: Object.fromEntries(Object.entries(c.fields).filter(([, f]) => !f.hidden)),
      }));
      const text = generateTypes(visible);
      if (values.out === undefined) process.stdout.write(text);
      else {
        writeFileSync(values.out, text);
        out(`wrote ${values.out}: ${visible.length} collections (${visible.map((c) => c.name).join(', ')})`);
      }
      return 0;
    }
    process.stderr.write(`unknown command ${JSON.stringify(command)}\n\n${HELP.main}\n`);
    return 2;
  } catch (err) {
    if (
      err instanceof ConfigError ||
      err instanceof SchemaError ||
      err instanceof MigrationError ||
      err instanceof RuleError ||
      err instanceof BackupError ||
      err instanceof BackupFormatError
    ) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    // The stack only when asked for: operators get the message, developers can get the rest.
    const detail = process.env.LOG_LEVEL === 'debug' || process.env.LOG_LEVEL === 'trace' ? (err as Error).stack : (err as Error).message;
    process.stderr.write(`rampart ${command} failed: ${detail}\n`);
    return 1;
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      app: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'data-dir': { type: 'string' },
      'allow-destructive': { type: 'boolean' },
      steps: { type: 'string' },
      email: { type: 'string' },
      queues: { type: 'string' },
      'metrics-port': { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      destination: { type: 'string' },
      out: { type: 'string' },
      force: { type: 'boolean' },
      action: { type: 'string' },
      actor: { type: 'string' },
      limit: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

async function migrate(
  sub: string | undefined,
  values: ReturnType<typeof parse>['values'],
  overrides: Partial<Record<ConfigKey, string>>,
): Promise<number> {
  if (!sub || !['up', 'down', 'status'].includes(sub)) {
    process.stderr.write(`${HELP.migrate}\n`);
    return 2;
  }
  return withApp(values, overrides, async (app) => {
    if (sub === 'status') {
      const s = await app.migrator.status();
      out(`storage: ${app.storage.kind}`);
      out(`applied (${s.applied.length}):`);
      for (const m of s.applied) out(`  ${String(m.seq).padStart(4)}  ${m.name.padEnd(28)} ${m.applied_at}  ${m.summary}`);
      const pending = [...s.pendingSystem, ...s.schemaPlan.summary.map((l) => `schema: ${l}`)];
      out(pending.length > 0 ? `pending (${pending.length}):\n  ${pending.join('\n  ')}` : 'pending: none');
      if (s.schemaPlan.destructive.length > 0) out(`destructive (needs --allow-destructive):\n  ${s.schemaPlan.destructive.join('\n  ')}`);
      return 0;
    }
    if (sub === 'up') {
      const applied = await app.migrator.up({
        allowDestructive: values['allow-destructive'] === true,
        progress: (total) => createProgress('migrate up', total, process.stdout),
      });
      out(applied.length > 0 ? `applied: ${applied.join(', ')}` : 'nothing to apply');
      return 0;
    }
    const steps = values.steps === undefined ? 1 : Number(values.steps);
    if (!Number.isInteger(steps) || steps < 1) {
      process.stderr.write('--steps must be a positive integer\n');
      return 2;
    }
    const reverted = await app.migrator.down(steps);
    out(reverted.length > 0 ? `reverted: ${reverted.join(', ')}` : 'nothing to revert');
    return 0;
  });
}

const out = (s: string) => process.stdout.write(`${s}\n`);

/** Run a one-off command against the app (quiet logs; nothing listens), then close it. */
async function withApp(
  values: ReturnType<typeof parse>['values'],
  overrides: Partial<Record<ConfigKey, string>>,
  fn: (app: RampartApp) => Promise<number>,
): Promise<number> {
  const config = await loadConfigWithSecrets({ overrides: { ...overrides, LOG_LEVEL: 'warn' } });
  const { def } = await loadAppDef(values.app);
  const app = await createApp(config, def);
  try {
    return await fn(app);
  } finally {
    await app.stop();
  }
}

/** Read a password from stdin: without echo on a terminal, else the whole piped input (one trailing newline dropped). */
async function readPassword(): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    let text = '';
    for await (const chunk of stdin) text += chunk;
    return text.replace(/\r?\n$/, '');
  }
  process.stdout.write('password: ');
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (c: string) => {
      for (const ch of c) {
        if (ch === '\r' || ch === '\n') {
          stdin.setRawMode(false);
          stdin.off('data', onData);
          stdin.pause();
          process.stdout.write('\n');
          resolve(text);
          return;
        }
        if (ch === '\u0003') {
          stdin.setRawMode(false);
          reject(new Error('cancelled'));
          return;
        }
        if (ch === '\u007f') text = text.slice(0, -1);
        else text += ch;
      }
    };
    stdin.on('data', onData);
  });
}

async function searchCommand(
  sub: string | undefined,
  name: string | undefined,
  values: ReturnType<typeof parse>['values'],
  overrides: Partial<Record<ConfigKey, string>>,
): Promise<number> {
  if (sub !== 'reindex') {
    process.stderr.write(`${HELP.search}\n`);
    return 2;
  }
  return withApp(values, overrides, async (app) => {
    const all = app.records.collections();
    const chosen = name === undefined ? all.filter((c) => c.search) : all.filter((c) => c.name === name);
    if (name !== undefined && chosen.length === 0) {
      process.stderr.write(`there is no collection ${JSON.stringify(name)}\n`);
      return 2;
    }
    if (chosen.some((c) => !c.search) || chosen.length === 0) {
      process.stderr.write(
        `${name === undefined ? 'no collection has' : `collection ${name} has no`} searchable fields (mark fields with \`search\`)\n`,
      );
      return 1;
    }
    if (app.config.storage.autoMigrate) await app.migrator.up();
    for (const c of chosen) {
      const started = Date.now();
      const r = await rebuildSearch(app.storage, c.search as SearchSpec, {
        progress: (total) => createProgress(`reindex ${c.name}`, total, process.stdout),
      });
      out(`reindexed ${c.name}: ${r.records} records, ${r.words} words in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    return 0;
  });
}

async function accountsCommand(
  command: 'admin' | 'keys',
  sub: string | undefined,
  values: ReturnType<typeof parse>['values'],
  overrides: Partial<Record<ConfigKey, string>>,
  positionals3?: string,
): Promise<number> {
  const valid =
    command === 'admin'
      ? sub === 'create'
      : ['rotate', 'list', 'rotate-data-key', 'data-keys', 'reencrypt', 'retire-data-key'].includes(sub ?? '');
  if (!valid || (command === 'admin' && !values.email)) {
    process.stderr.write(`${HELP[command]}\n`);
    return 2;
  }
  return withApp(values, overrides, async (app) => {
    const config = app.config;
    try {
      if (config.storage.autoMigrate) await app.migrator.up();
      if (command === 'admin') {
        const password = await readPassword();
        const { user, created } = await app.auth.accounts.createAdmin(values.email as string, password);
        out(`${created ? 'created admin' : 'made admin'} ${user.email} (${user.id})`);
        await app.audit.record({
          action: 'user.role_changed',
          actor: { type: 'cli' },
          target: { type: 'user', id: String(user.id) },
          details: { role: 'admin', created },
        });
        return 0;
      }
      if (sub === 'rotate-data-key' || sub === 'data-keys' || sub === 'reencrypt' || sub === 'retire-data-key') {
        return await dataKeysCommand(app, sub, positionals3);
      }
      if (sub === 'rotate') {
        const kid = await SigningKeys.rotate(app.storage, systemClock, config.auth.accessTtlS * 1000 + KEY_RELOAD_MS + 60_000);
        out(`new signing key ${kid}; nodes switch to it within ${KEY_RELOAD_MS / 1000} s`);
        await app.audit.record({ action: 'keys.signing_rotated', actor: { type: 'cli' }, target: { type: 'signing_key', id: kid } });
      }
      for (const k of await SigningKeys.list(app.storage, systemClock)) {
        out(`${k.kid}  ${k.state.padEnd(9)}  created ${k.created_at}${k.retire_at ? `  retires ${k.retire_at}` : ''}`);
      }
      return 0;
    } catch (err) {
      if (err instanceof RampartError) {
        const fields = (err.extras.errors as Array<{ field: string; message: string }> | undefined)?.map((e) => `${e.field} ${e.message}`);
        process.stderr.write(`${fields?.join('; ') ?? err.message}\n`);
        return 1;
      }
      throw err;
    }
  });
}

/** A time given as ISO 8601 or as an age before now (90m, 6h, 2d); undefined when neither. */
export function parseSince(text: string, now = Date.now()): number | undefined {
  const age = /^(\d+)(s|m|h|d)$/.exec(text.trim());
  if (age) return now - Number(age[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[age[2] as 's' | 'm' | 'h' | 'd'];
  const t = Date.parse(text);
  return Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(text.trim()) ? undefined : t;
}

async function eventsCommand(
  sub: string | undefined,
  values: ReturnType<typeof parse>['values'],
  overrides: Partial<Record<ConfigKey, string>>,
): Promise<number> {
  if (sub !== 'status' && sub !== 'replay') {
    process.stderr.write(`${HELP.events}\n`);
    return 2;
  }
  const since = values.since === undefined ? undefined : parseSince(values.since);
  const until = values.until === undefined ? undefined : parseSince(values.until);
  if (sub === 'replay' && (since === undefined || (values.until !== undefined && until === undefined))) {
    process.stderr.write('--since (and --until) must be ISO 8601 times or ages such as 90m, 6h, 2d\n');
    return 2;
  }
  return withApp(values, overrides, async (app) => {
    if (app.config.storage.autoMigrate) await app.migrator.up();
    if (app.events.destinations().length === 0) {
      out('no destinations: the app publishes no events (events.publish)');
      return sub === 'status' ? 0 : 1;
    }
    if (sub === 'replay') {
      const n = await app.events.replay({ since: since as number, until, destination: values.destination });
      out(
        `${n} event${n === 1 ? '' : 's'} will be published again${values.destination ? ` to ${values.destination}` : ''} (written since ${new Date(since as number).toISOString()}${until ? `, before ${new Date(until).toISOString()}` : ''})`,
      );
      return 0;
    }
    for (const d of await app.events.status()) {
      const held = d.partitions.filter((p) => p.holder !== null);
      const relays = new Set(held.map((p) => p.holder));
      out(
        `${d.destination} (${d.kind} ${d.broker}): ${d.pending} pending${d.oldestPendingS !== null ? `, oldest ${d.oldestPendingS} s` : ''}; ${d.publishedLastHour} published in the last hour; partitions held ${held.length}/${app.config.events.partitions} by ${relays.size} relay${relays.size === 1 ? '' : 's'}`,
      );
      for (const r of relays) {
        out(
          `  ${r}: ${held
            .filter((p) => p.holder === r)
            .map((p) => p.part)
            .join(', ')}`,
        );
      }
    }
    return 0;
  });
}

const progressOut = (label: string, total: number) => createProgress(label, total, process.stdout);
const cliActor = { type: 'cli' as const };

async function backupCommand(
  command: 'backup' | 'restore',
  sub: string | undefined,
  arg: string | undefined,
  values: ReturnType<typeof parse>['values'],
  overrides: Partial<Record<ConfigKey, string>>,
): Promise<number> {
  if (command === 'restore') {
    if (!sub) {
      process.stderr.write(`${HELP.restore}\n`);
      return 2;
    }
    // Without the app open: a SQLite restore replaces the file the app would hold.
    const config = await loadConfigWithSecrets({ overrides: { ...overrides, LOG_LEVEL: 'warn' } });
    const { createLogger } = await import('../observability/logger.js');
    const backups = new Backups({
      kind: config.storage.databaseUrl ? 'postgres' : 'sqlite',
      storageConfig: config.storage,
      config: config.backup,
      log: createLogger('warn'),
      node: 'cli',
    });
    const m = await backups.restore(sub, { force: values.force === true, progress: progressOut });
    out(
      `restored ${m.id} (taken ${m.createdAt}): ${Object.keys(m.tables).length} tables, ${Object.values(m.tables).reduce((n, t) => n + t.rows, 0)} rows, checked against its manifest`,
    );
    return withApp(values, overrides, async (app) => {
      const applied = await app.migrator.up({ progress: (total) => createProgress('migrate', total, process.stdout) });
      out(applied.length > 0 ? `migrations applied after restore: ${applied.join(', ')}` : 'schema up to date');
      // The snapshot saw its own backup running; it finished (that is what was restored).
      await app.storage.db
        .updateTable('_rampart_backups')
        .set({ status: 'ok', bytes: m.file.bytes, duration_ms: m.durationMs, finished_at: Date.parse(m.createdAt) + m.durationMs })
        .where('id', '=', m.id)
        .where('status', '=', 'running')
        .execute();
      await app.audit.record({
        action: 'backup.restored',
        actor: cliActor,
        target: { type: 'backup', id: m.id },
        details: { forced: values.force === true },
      });
      return 0;
    });
  }
  if (!sub || !['create', 'list', 'verify', 'prune'].includes(sub) || (sub === 'verify' && !arg)) {
    process.stderr.write(`${HELP.backup}\n`);
    return 2;
  }
  return withApp(values, overrides, async (app) => {
    if (app.config.storage.autoMigrate) await app.migrator.up();
    const b = app.backups;
    if (sub === 'create') {
      const started = Date.now();
      const m = await b.create(progressOut);
      const rows = Object.values(m.tables).reduce((n, t) => n + t.rows, 0);
      await app.audit.record({
        action: 'backup.created',
        actor: cliActor,
        target: { type: 'backup', id: m.id },
        details: { bytes: m.file.bytes },
      });
      out(
        `backup ${m.id}: ${Object.keys(m.tables).length} tables, ${rows} rows, ${m.rawBytes} bytes → ${m.file.bytes} sealed, in ${((Date.now() - started) / 1000).toFixed(1)} s, at ${b.store.location}`,
      );
      const removed = await b.prune();
      if (removed.length > 0) out(`retention: removed ${removed.join(', ')}`);
      return 0;
    }
    if (sub === 'prune') {
      const removed = await b.prune();
      out(removed.length > 0 ? `removed ${removed.join(', ')}` : 'nothing to remove');
      return 0;
    }
    if (sub === 'list') {
      const list = await b.list();
      if (list.length === 0) out(`no backups at ${b.store.location}`);
      for (const x of list) {
        if (x.error) {
          out(`${x.id}  UNREADABLE: ${x.error}`);
          continue;
        }
        const v = x.verified ? (x.verified.ok ? `verified ${x.verified.at}` : `VERIFY FAILED ${x.verified.at}`) : 'not verified';
        out(`${x.id}  ${x.createdAt}  ${String(x.bytes).padStart(12)} bytes  ${x.tables} tables  ${x.rows} rows  ${v}`);
      }
      return 0;
    }
    try {
      const r = await b.verify(arg as string, progressOut);
      await app.audit.record({
        action: 'backup.verified',
        actor: cliActor,
        target: { type: 'backup', id: r.id },
        details: { rows: r.rows },
      });
      out(`${r.id}: restored into scratch, integrity ok, ${r.tables} tables and ${r.rows} rows match the manifest`);
      return 0;
    } catch (err) {
      await app.audit.record({
        action: 'backup.verified',
        outcome: 'failure',
        actor: cliActor,
        target: { type: 'backup', id: arg },
        details: { error: (err as Error).message.slice(0, 300) },
      });
      throw err;
    }
  });
}

async function auditCommand(values: ReturnType<typeof parse>['values'], overrides: Partial<Record<ConfigKey, string>>): Promise<number> {
  const since = values.since === undefined ? undefined : parseSince(values.since);
  const limit = values.limit === undefined ? 50 : Number(values.limit);
  if ((values.since !== undefined && since === undefined) || !Number.isInteger(limit) || limit < 1 || limit > 1000) {
    process.stderr.write(`${HELP.audit}\n`);
    return 2;
  }
  return withApp(values, overrides, async (app) => {
    if (app.config.storage.autoMigrate) await app.migrator.up();
    const { entries } = await app.audit.query({ action: values.action, actorId: values.actor, since, limit });
    for (const e of entries) {
      const actor = `${e.actor.type}${e.actor.id ? `:${e.actor.id}` : ''}`;
      const target = e.target ? ` ${e.target.type}${e.target.id ? `:${e.target.id}` : ''}` : '';
      out(
        `${e.at}  ${e.action.padEnd(24)} ${e.outcome.padEnd(8)} ${actor}${target}${e.ip ? ` from ${e.ip}` : ''}${e.details ? ` ${JSON.stringify(e.details)}` : ''}`,
      );
    }
    if (entries.length === 0) out('no entries');
    return 0;
  });
}

async function dataKeysCommand(app: RampartApp, sub: string, arg: string | undefined): Promise<number> {
  const keys = app.dataKeys;
  if (!keys) {
    process.stderr.write('the app declares no encrypted fields: there are no data keys\n');
    return 1;
  }
  await keys.start();
  try {
    const collections = app.collections.filter((c) => Object.values(c.fields).some((f) => f.encrypted));
    const cli = { type: 'cli' as const };
    if (sub === 'rotate-data-key') {
      const { id, usableAt } = await keys.rotate();
      // After every node encrypts with the new key, a worker moves the old values to it.
      const job = await app.jobs.enqueue(REENCRYPT_JOB, {}, { runAt: new Date(usableAt + 1000) });
      await app.audit.record({ action: 'keys.data_rotated', actor: cli, target: { type: 'data_key', id } });
      out(
        `new data key ${id}: nodes encrypt with it from ${new Date(usableAt).toISOString()}; re-encryption job ${job.id} runs then (or run: rampart keys reencrypt)`,
      );
    } else if (sub === 'reencrypt') {
      let bar: ReturnType<typeof createProgress> | undefined;
      const moved = await keys.reencrypt(collections, (done, total) => {
        bar ??= createProgress('re-encrypt', total, process.stdout);
        bar.update(done);
      });
      bar?.finish();
      await app.audit.record({ action: 'keys.data_reencrypted', actor: cli, details: { values: moved } });
      out(`${moved} values now under data key ${keys.current().id}`);
    } else if (sub === 'retire-data-key') {
      if (!arg) {
        process.stderr.write(`${HELP.keys}\n`);
        return 2;
      }
      await keys.retire(arg, collections);
      await app.audit.record({ action: 'keys.data_retired', actor: cli, target: { type: 'data_key', id: arg } });
      out(`data key ${arg} retired: its wrapped copy is destroyed`);
    }
    for (const k of await keys.list(collections)) {
      out(`${k.id.padEnd(22)} ${k.state.padEnd(8)} ${k.current ? 'current ' : '        '} created ${k.createdAt}  ${k.values} values`);
    }
    return 0;
  } finally {
    keys.stop();
  }
}
