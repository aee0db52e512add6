/** The `rampart` command line. */
import { parseArgs } from 'node:util';
import { createApp } from '../app.js';
import { ConfigError, type ConfigKey, describeConfigKeys, loadConfig } from '../core/config.js';
import { createProgress } from '../core/progress.js';
import { serve } from '../main.js';
import { SchemaError } from '../records/schema.js';
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
  migrate up          apply pending migrations (system tables and collection changes)
  migrate down        revert the last migration (--steps N for more)
  migrate status      list applied migrations and what is pending
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
  migrate: `Usage: rampart migrate up [--allow-destructive]
       rampart migrate down [--steps <n>]
       rampart migrate status

Migrations are versioned and recorded in the _rampart_migrations table. Changes to the declared
collections become schema migrations (with their inverse, so 'down' can revert them). On
PostgreSQL an advisory lock lets many nodes start at once: each migration runs exactly once.

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
    if (command === 'migrate') return await migrate(sub, values, overrides);
    process.stderr.write(`unknown command ${JSON.stringify(command)}\n\n${HELP.main}\n`);
    return 2;
  } catch (err) {
    if (err instanceof ConfigError || err instanceof SchemaError || err instanceof MigrationError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    process.stderr.write(`rampart ${command} failed: ${(err as Error).message}\n`);
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
  const config = loadConfig({ overrides: { ...overrides, LOG_LEVEL: 'warn' } });
  const { def } = await loadAppDef(values.app);
  const app = await createApp(config, def);
  const out = (s: string) => process.stdout.write(`${s}\n`);
  try {
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
  } finally {
    await app.stop();
  }
}
