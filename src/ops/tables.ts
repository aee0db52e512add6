/**
 * Operations' tables (system migration 0010): the nodes' heartbeats, backups and their verifies, the routine checks'
 * state and the alerts sent, the audit log, and the wrapped data keys of encrypted fields.
 */
import { type Kysely, sql } from 'kysely';
import type { Storage } from '../storage/types.js';

const TABLES = ['_rampart_nodes', '_rampart_backups', '_rampart_checks', '_rampart_alerts', '_rampart_audit', '_rampart_data_keys'];

export async function createOpsTables(db: Kysely<any>, storage: Storage): Promise<void> {
  const int = sql.raw(storage.columnTypes.integer);
  await db.schema
    .createTable('_rampart_backups')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('started_at', int, (c) => c.notNull())
    .addColumn('finished_at', int)
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('location', 'text', (c) => c.notNull())
    .addColumn('bytes', int)
    .addColumn('rows', int)
    .addColumn('duration_ms', int)
    .addColumn('error', 'text')
    .addColumn('verified_at', int)
    .addColumn('verify_ok', int)
    .addColumn('verify_error', 'text')
    .addColumn('node', 'text')
    .execute();
  await db.schema.createIndex('_rampart_backups_started').on('_rampart_backups').column('started_at').execute();
  await db.schema
    .createTable('_rampart_checks')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('message', 'text', (c) => c.notNull())
    .addColumn('since', int, (c) => c.notNull())
    .addColumn('checked_at', int, (c) => c.notNull())
    .addColumn('alerted_at', int)
    .addColumn('node', 'text')
    .execute();
  await db.schema
    .createTable('_rampart_alerts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('check_name', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('message', 'text', (c) => c.notNull())
    .addColumn('created_at', int, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('_rampart_alerts_created').on('_rampart_alerts').column('created_at').execute();
  await db.schema
    .createTable('_rampart_audit')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('at', int, (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('actor_type', 'text', (c) => c.notNull())
    .addColumn('actor_id', 'text')
    .addColumn('target_type', 'text')
    .addColumn('target_id', 'text')
    .addColumn('ip', 'text')
    .addColumn('request_id', 'text')
    .addColumn('details', 'text')
    .execute();
  await db.schema.createIndex('_rampart_audit_at').on('_rampart_audit').column('at').execute();
  await db.schema.createIndex('_rampart_audit_action').on('_rampart_audit').columns(['action', 'at']).execute();
  await db.schema.createIndex('_rampart_audit_actor').on('_rampart_audit').columns(['actor_id', 'at']).execute();
  // Each process's heartbeat and figures (metrics' NodeStats, JSON) at this report and the
  // previous one: the cluster's nodes, its error rate, the console's figures.
  await db.schema
    .createTable('_rampart_nodes')
    .addColumn('node', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('started_at', int, (c) => c.notNull())
    .addColumn('seen_at', int, (c) => c.notNull())
    .addColumn('stats', 'text', (c) => c.notNull())
    .addColumn('prev_stats', 'text')
    .execute();
  await db.schema
    .createTable('_rampart_data_keys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('wrapped', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('created_at', int, (c) => c.notNull())
    .addColumn('retired_at', int)
    .execute();
}

export async function dropOpsTables(db: Kysely<any>): Promise<void> {
  for (const t of TABLES) await db.schema.dropTable(t).ifExists().execute();
}
