/**
 * Rampart's own tables, in order. Names never change once released; new tables are new
 * entries (jobs, accounts, … arrive with their features). Each runs inside the migration
 * lock's transaction (DDL is transactional on both backends), so a failure leaves no trace.
 * Times in these tables are epoch milliseconds (integers), the same on every backend.
 */
import { type Kysely, sql } from 'kysely';
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

export const SYSTEM_MIGRATIONS: SystemMigration[] = [auth];
