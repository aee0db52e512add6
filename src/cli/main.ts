/** The `rampart` command line. */
import { parseArgs } from 'node:util';
import { createApp, type RampartApp } from '../app.js';
import { KEY_RELOAD_MS, SigningKeys } from '../auth/keys.js';
import { systemClock } from '../core/clock.js';
import { ConfigError, type ConfigKey, describeConfigKeys, loadConfig } from '../core/config.js';
import { RampartError } from '../core/errors.js';
import { createProgress } from '../core/progress.js';
import { serve, work } from '../main.js';
import { RuleError } from '../records/rules.js';
import { SchemaError, type SearchSpec } from '../records/schema.js';
import { REBUILD_BATCH, rebuildSearch } from '../records/search-index.js';
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
  search reindex [c]  rebuild the search index of a collection (default: every searchable one), online
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

Access tokens are signed with an Ed25519 key kept in the database. 'rotate' adds a new signing
key; every node picks it up within 30 s. Older keys keep verifying until the longest access token
they signed has expired (RAMPART_ACCESS_TOKEN_TTL_S + 90 s), then leave /.well-known/jwks.json.

${GLOBAL}`,
  search: `Usage: rampart search reindex [collection]

Rebuilds the full-text index and the typo vocabulary of a collection (or of every collection with
searchable fields) from its records, with a progress bar. Online: it works in batches of
${REBUILD_BATCH} records, each a short transaction, so the API keeps reading and writing meanwhile; the
index's triggers keep records written during the rebuild in step. Needed only to repair an index
or to drop words no record holds any more; migrations build and rebuild indexes themselves.

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
    if (command === 'admin' || command === 'keys') return await accountsCommand(command, sub, values, overrides);
    if (command === 'search') return await searchCommand(sub, positionals[2], values, overrides);
    process.stderr.write(`unknown command ${JSON.stringify(command)}\n\n${HELP.main}\n`);
    return 2;
  } catch (err) {
    if (err instanceof ConfigError || err instanceof SchemaError || err instanceof MigrationError || err instanceof RuleError) {
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
  const config = loadConfig({ overrides: { ...overrides, LOG_LEVEL: 'warn' } });
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
): Promise<number> {
  const valid = command === 'admin' ? sub === 'create' : sub === 'rotate' || sub === 'list';
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
        return 0;
      }
      if (sub === 'rotate') {
        const kid = await SigningKeys.rotate(app.storage, systemClock, config.auth.accessTtlS * 1000 + KEY_RELOAD_MS + 60_000);
        out(`new signing key ${kid}; nodes switch to it within ${KEY_RELOAD_MS / 1000} s`);
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
