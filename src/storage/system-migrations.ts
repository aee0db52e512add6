/**
 * Rampart's own tables, in order. Names never change once released; new tables are new
 * entries (jobs, accounts, … arrive with their features). Each runs inside the migration
 * lock's transaction (DDL is transactional on both backends), so a failure leaves no trace.
 */
import type { Kysely } from 'kysely';
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

export const SYSTEM_MIGRATIONS: SystemMigration[] = [];
