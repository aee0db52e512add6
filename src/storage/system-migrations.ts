/**
 * Rampart's own tables, in order. Names never change once released; new tables are new
 * entries (jobs, accounts, … arrive with their features). Each runs inside the migration
 * lock's transaction (DDL is transactional on both backends), so a failure leaves no trace.
 * Times in these tables are epoch milliseconds (integers), the same on every backend.
 */
import { type Kysely, sql } from 'kysely';
import { createEventTables, dropEventTables } from '../events/events.js';
import { createOpsTables, dropOpsTables } from '../ops/tables.js';
import type { Storage } from './types.js';

export interface SystemMigration {
  /** Unique, ordered name (`0001_jobs`). */
  name: string;
  /** One line for `migrate status`. */
  description: string;
  /** Create or change tables. */
  up(db: Kysely<any>, storage: Storage): Promise<void>;
  /** Undo `up`. */
  down(db: Kysely<any>, storage: Storage): Promise<void>;
}

const AUTH_TABLES = [
  '_rampart_sessions',
  '_rampart_one_time_tokens',
  '_rampart_signing_keys',
  '_rampart_login_throttle',
  '_rampart_identities',
  '_rampart_oauth_flows',
];

const auth: SystemMigration = {
  name: '0001_auth',
  description: 'accounts: sessions (with their refresh token chains), one-time tokens, signing keys, login throttle, OAuth identities',
  async up(db, storage) {
    const int = sql.raw(storage.columnTypes.integer);
    // The type of users.id, so joins with the accounts table compare like with like.
    const uuid = sql.raw(storage.columnTypes.uuid);
    await db.schema
      .createTable('_rampart_sessions')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', uuid, (c) => c.notNull())
      .addColumn('created_at', int, (c) => c.notNull())
      .addColumn('last_used_at', int, (c) => c.notNull())
      .addColumn('expires_at', int, (c) => c.notNull())
      .addColumn('revoked_at', int)
      .addColumn('revoked_reason', 'text')
      // The refresh token chain: the current token's generation and SHA-256, and when it was issued.
      .addColumn('generation', int, (c) => c.notNull())
      .addColumn('current_hash', 'text', (c) => c.notNull())
      .addColumn('rotated_at', int, (c) => c.notNull())
      // Key that derives each token from the one before (see auth/sessions.ts).
      .addColumn('rotation_key', 'text', (c) => c.notNull())
      .addColumn('method', 'text', (c) => c.notNull())
      .addColumn('user_agent', 'text')
      .addColumn('ip', 'text')
      .execute();
    await db.schema.createIndex('_rampart_sessions_user').on('_rampart_sessions').columns(['user_id']).execute();
    await db.schema.createIndex('_rampart_sessions_revoked').on('_rampart_sessions').columns(['revoked_at']).execute();
    await db.schema
      .createTable('_rampart_one_time_tokens')
      .addColumn('hash', 'text', (c) => c.primaryKey())
      .addColumn('purpose', 'text', (c) => c.notNull())
      .addColumn('user_id', uuid, (c) => c.notNull())
      .addColumn('data', 'text')
      .addColumn('created_at', int, (c) => c.notNull())
      .addColumn('expires_at', int, (c) => c.notNull())
      .addColumn('used_at', int)
      .execute();
    await db.schema.createIndex('_rampart_one_time_tokens_user').on('_rampart_one_time_tokens').columns(['user_id', 'purpose']).execute();
    await db.schema
      .createTable('_rampart_signing_keys')
      .addColumn('kid', 'text', (c) => c.primaryKey())
      .addColumn('alg', 'text', (c) => c.notNull())
      .addColumn('public_jwk', 'text', (c) => c.notNull())
      .addColumn('private_jwk', 'text', (c) => c.notNull())
      .addColumn('created_at', int, (c) => c.notNull())
      // Set when a newer key takes over: the key keeps verifying until then, then retires.
      .addColumn('retire_at', int)
      .execute();
    await db.schema
      .createTable('_rampart_login_throttle')
      .addColumn('key', 'text', (c) => c.primaryKey())
      .addColumn('failures', int, (c) => c.notNull())
      .addColumn('window_start', int, (c) => c.notNull())
      .addColumn('next_allowed_at', int, (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('_rampart_identities')
      .addColumn('provider', 'text', (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('user_id', uuid, (c) => c.notNull())
      .addColumn('email', 'text')
      .addColumn('created_at', int, (c) => c.notNull())
      .addPrimaryKeyConstraint('_rampart_identities_pk', ['provider', 'subject'])
      .execute();
    await db.schema.createIndex('_rampart_identities_user').on('_rampart_identities').columns(['user_id']).execute();
    await db.schema
      .createTable('_rampart_oauth_flows')
      .addColumn('state_hash', 'text', (c) => c.primaryKey())
      .addColumn('provider', 'text', (c) => c.notNull())
      .addColumn('code_verifier', 'text', (c) => c.notNull())
      .addColumn('nonce', 'text', (c) => c.notNull())
      .addColumn('redirect_to', 'text', (c) => c.notNull())
      .addColumn('expires_at', int, (c) => c.notNull())
      .execute();
  },
  async down(db) {
    for (const t of [...AUTH_TABLES].reverse()) await db.schema.dropTable(t).ifExists().execute();
  },
};

const JOB_TABLES = [
  '_rampart_jobs',
  '_rampart_queues',
  '_rampart_queue_starts',
  '_rampart_leases',
  '_rampart_schedules',
  '_rampart_cron_ticks',
];

const jobs: SystemMigration = {
  name: '0002_jobs',
  description:
    'jobs: the queue (with leases and fencing tokens), queue pauses and rate-limit windows, leases, cron schedules and their ticks',
  async up(db, storage) {
    const int = sql.raw(storage.columnTypes.integer);
    await db.schema
      .createTable('_rampart_jobs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('queue', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('payload', 'text', (c) => c.notNull())
      // waiting (due at run_at), active (leased), completed, dead (attempts used up), cancelled.
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('priority', int, (c) => c.notNull())
      .addColumn('run_at', int, (c) => c.notNull())
      .addColumn('attempts', int, (c) => c.notNull())
      .addColumn('max_attempts', int, (c) => c.notNull())
      .addColumn('timeout_ms', int, (c) => c.notNull())
      .addColumn('backoff_base_ms', int, (c) => c.notNull())
      .addColumn('backoff_cap_ms', int, (c) => c.notNull())
      .addColumn('unique_key', 'text')
      // Raised by every fetch: the fencing token a worker must still hold to finish the attempt.
      .addColumn('fence', int, (c) => c.notNull())
      .addColumn('lease_until', int)
      .addColumn('worker', 'text')
      .addColumn('errors', 'text', (c) => c.notNull())
      .addColumn('result', 'text')
      .addColumn('sensitive', int, (c) => c.notNull())
      .addColumn('schedule', 'text')
      .addColumn('tick', int)
      .addColumn('created_at', int, (c) => c.notNull())
      .addColumn('started_at', int)
      .addColumn('finished_at', int)
      .execute();
    // The fetch order, over due work only; the partial indexes stay small whatever the history.
    await sql`create index _rampart_jobs_fetch on _rampart_jobs (queue, priority desc, run_at, id) where state = 'waiting'`.execute(db);
    await sql`create index _rampart_jobs_leases on _rampart_jobs (lease_until) where state = 'active'`.execute(db);
    await sql`create unique index _rampart_jobs_unique on _rampart_jobs (unique_key) where unique_key is not null and state in ('waiting', 'active')`.execute(
      db,
    );
    await sql`create index _rampart_jobs_by_state on _rampart_jobs (queue, state, id)`.execute(db);
    await sql`create index _rampart_jobs_finished on _rampart_jobs (state, finished_at)`.execute(db);
    await db.schema
      .createTable('_rampart_queues')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('paused', int, (c) => c.notNull())
      .addColumn('updated_at', int, (c) => c.notNull())
      .execute();
    // Starts within the current window of each rate-limited queue (a sliding log, pruned as it goes).
    await db.schema
      .createTable('_rampart_queue_starts')
      .addColumn('queue', 'text', (c) => c.notNull())
      .addColumn('at', int, (c) => c.notNull())
      .execute();
    await db.schema.createIndex('_rampart_queue_starts_at').on('_rampart_queue_starts').columns(['queue', 'at']).execute();
    await db.schema
      .createTable('_rampart_leases')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('holder', 'text', (c) => c.notNull())
      .addColumn('fence', int, (c) => c.notNull())
      .addColumn('expires_at', int, (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('_rampart_schedules')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('cron', 'text', (c) => c.notNull())
      .addColumn('tz', 'text', (c) => c.notNull())
      .addColumn('job', 'text', (c) => c.notNull())
      // The last tick handled (fired or skipped); the next one is computed from it.
      .addColumn('last_tick', int, (c) => c.notNull())
      .addColumn('next_tick', int)
      .addColumn('last_fired_at', int)
      .addColumn('last_job_id', 'text')
      .addColumn('last_node', 'text')
      .addColumn('skipped', int, (c) => c.notNull())
      .addColumn('updated_at', int, (c) => c.notNull())
      .execute();
    // One row per fired tick: the primary key is what makes a tick fire once across all nodes.
    await db.schema
      .createTable('_rampart_cron_ticks')
      .addColumn('schedule', 'text', (c) => c.notNull())
      .addColumn('tick', int, (c) => c.notNull())
      .addColumn('job_id', 'text', (c) => c.notNull())
      .addColumn('node', 'text', (c) => c.notNull())
      .addColumn('fired_at', int, (c) => c.notNull())
      .addPrimaryKeyConstraint('_rampart_cron_ticks_pk', ['schedule', 'tick'])
      .execute();
  },
  async down(db) {
    for (const t of [...JOB_TABLES].reverse()) await db.schema.dropTable(t).ifExists().execute();
  },
};

const appVersions: SystemMigration = {
  name: '0003_app_versions',
  description: 'app-version policy: latest and minimum supported app version per platform',
  async up(db, storage) {
    await db.schema
      .createTable('_rampart_app_versions')
      .addColumn('platform', 'text', (c) => c.primaryKey())
      .addColumn('latest', 'text', (c) => c.notNull())
      .addColumn('minimum', 'text', (c) => c.notNull())
      .addColumn('store_url', 'text')
      .addColumn('message', 'text')
      .addColumn('updated_at', sql.raw(storage.columnTypes.integer), (c) => c.notNull())
      .addColumn('updated_by', 'text')
      .execute();
  },
  async down(db) {
    await db.schema.dropTable('_rampart_app_versions').ifExists().execute();
  },
};

const protect: SystemMigration = {
  name: '0004_protect',
  description: 'rate-limit counters (PostgreSQL store) and stored answers of idempotent requests',
  async up(db, storage) {
    const int = sql.raw(storage.columnTypes.integer);
    // Shaped as rate-limiter-flexible's PostgreSQL store expects it.
    await db.schema
      .createTable('_rampart_rate_limits')
      .addColumn('key', 'varchar(255)', (c) => c.primaryKey())
      .addColumn('points', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('expire', int)
      .execute();
    await db.schema
      .createTable('_rampart_idempotency')
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('key', 'text', (c) => c.notNull())
      .addColumn('fingerprint', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('locked_until', int, (c) => c.notNull())
      .addColumn('status', 'integer')
      .addColumn('headers', 'text')
      .addColumn('body', 'text')
      .addColumn('created_at', int, (c) => c.notNull())
      .addColumn('expires_at', int, (c) => c.notNull())
      .addPrimaryKeyConstraint('_rampart_idempotency_pk', ['scope', 'key'])
      .execute();
    await db.schema.createIndex('_rampart_idempotency_expires').on('_rampart_idempotency').column('expires_at').execute();
  },
  async down(db) {
    await db.schema.dropTable('_rampart_idempotency').ifExists().execute();
    await db.schema.dropTable('_rampart_rate_limits').ifExists().execute();
  },
};

const webhooks: SystemMigration = {
  name: '0005_webhooks',
  description: 'webhook subscriptions and their delivery log',
  async up(db, storage) {
    const int = sql.raw(storage.columnTypes.integer);
    await db.schema
      .createTable('_rampart_webhooks')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('owner', 'text')
      .addColumn('url', 'text', (c) => c.notNull())
      .addColumn('events', 'text', (c) => c.notNull())
      .addColumn('description', 'text')
      .addColumn('secret', 'text', (c) => c.notNull())
      .addColumn('active', 'integer', (c) => c.notNull())
      .addColumn('disabled_reason', 'text')
      .addColumn('consecutive_failures', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', int, (c) => c.notNull())
      .addColumn('updated_at', int, (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('_rampart_webhook_deliveries')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('webhook_id', 'text', (c) => c.notNull())
      .addColumn('event', 'text', (c) => c.notNull())
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('last_status', 'integer')
      .addColumn('last_error', 'text')
      .addColumn('last_duration_ms', 'integer')
      .addColumn('created_at', int, (c) => c.notNull())
      .addColumn('finished_at', int)
      .execute();
    await db.schema
      .createIndex('_rampart_webhook_deliveries_by_hook')
      .on('_rampart_webhook_deliveries')
      .columns(['webhook_id', 'id'])
      .execute();
    await db.schema.createIndex('_rampart_webhook_deliveries_created').on('_rampart_webhook_deliveries').column('created_at').execute();
  },
  async down(db) {
    await db.schema.dropTable('_rampart_webhook_deliveries').ifExists().execute();
    await db.schema.dropTable('_rampart_webhooks').ifExists().execute();
  },
};

const realtime: SystemMigration = {
  name: '0006_realtime',
  description: 'realtime event log and its counter, who is online, notification inboxes, push devices',
  async up(db, storage) {
    const int = sql.raw(storage.columnTypes.integer);
    const uuid = sql.raw(storage.columnTypes.uuid);
    // Event ids come from this counter row, in the writing transaction: its row lock orders
    // appends by commit, and a rolled-back append gives its number back (no gaps).
    await db.schema
      .createTable('_rampart_counters')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('value', int, (c) => c.notNull())
      .execute();
    await db.insertInto('_rampart_counters').values({ name: 'events', value: 0 }).execute();
    await db.schema
      .createTable('_rampart_events')
      .addColumn('id', int, (c) => c.primaryKey())
      .addColumn('stream', 'text', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('target', 'text')
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('created_at', int, (c) => c.notNull())
      .execute();
    await db.schema.createIndex('_rampart_events_created').on('_rampart_events').column('created_at').execute();
    await db.schema
      .createTable('_rampart_online')
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('node', 'text', (c) => c.notNull())
      .addColumn('connections', 'integer', (c) => c.notNull())
      .addColumn('seen_at', int, (c) => c.notNull())
      .addPrimaryKeyConstraint('_rampart_online_pk', ['user_id', 'node'])
      .execute();
    await db.schema
      .createTable('_rampart_notifications')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', uuid, (c) => c.notNull())
      .addColumn('title', 'text', (c) => c.notNull())
      .addColumn('body', 'text')
      .addColumn('data', 'text')
      .addColumn('channels', 'text', (c) => c.notNull())
      .addColumn('created_at', int, (c) => c.notNull())
      .addColumn('read_at', int)
      .execute();
    await db.schema.createIndex('_rampart_notifications_by_user').on('_rampart_notifications').columns(['user_id', 'id']).execute();
    await db.schema
      .createTable('_rampart_devices')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', uuid, (c) => c.notNull())
      .addColumn('provider', 'text', (c) => c.notNull())
      .addColumn('token', 'text', (c) => c.notNull().unique())
      .addColumn('keys', 'text')
      .addColumn('app_platform', 'text')
      .addColumn('app_version', 'text')
      .addColumn('created_at', int, (c) => c.notNull())
      .addColumn('updated_at', int, (c) => c.notNull())
      .execute();
    await db.schema.createIndex('_rampart_devices_by_user').on('_rampart_devices').column('user_id').execute();
  },
  async down(db) {
    for (const t of ['_rampart_devices', '_rampart_notifications', '_rampart_online', '_rampart_events', '_rampart_counters']) {
      await db.schema.dropTable(t).ifExists().execute();
    }
  },
};

const events: SystemMigration = {
  name: '0007_events',
  description: 'domain events: the outbox with its partition leases and relays, the inbox of consumed event ids',
  up: (db, storage) => createEventTables(db, storage),
  down: (db) => dropEventTables(db),
};

/** A migration that adds one nullable text column to one of Rampart's tables. */
function addColumn(name: string, description: string, table: string, column: string): SystemMigration {
  return {
    name,
    description,
    async up(db) {
      await db.schema.alterTable(table).addColumn(column, 'text').execute();
    },
    async down(db) {
      await db.schema.alterTable(table).dropColumn(column).execute();
    },
  };
}

const idempotencyOwner = addColumn(
  '0008_idempotency_owner',
  'idempotency claims carry their owner (a fencing token): a taken-over claim cannot be applied by its old owner',
  '_rampart_idempotency',
  'owner',
);

const jobTrace = addColumn(
  '0009_job_trace',
  "jobs carry the trace context of their enqueue (OpenTelemetry), so a job run continues the request's trace",
  '_rampart_jobs',
  'trace',
);

const operations: SystemMigration = {
  name: '0010_operations',
  description: 'operations: backups and their verifies, routine checks and alerts, the audit log, data keys of encrypted fields',
  up: (db, storage) => createOpsTables(db, storage),
  down: (db) => dropOpsTables(db),
};

export const SYSTEM_MIGRATIONS: SystemMigration[] = [
  auth,
  jobs,
  appVersions,
  protect,
  webhooks,
  realtime,
  events,
  idempotencyOwner,
  jobTrace,
  operations,
];
