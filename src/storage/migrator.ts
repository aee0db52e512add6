/**
 * Versioned migrations, up and down. Two kinds share one ordered history table:
 *  - system migrations: Rampart's own tables, written in code (`system-migrations.ts`);
 *  - schema migrations: produced by diffing the app's declared collections against the
 *    snapshot stored with the last schema migration; the inverse operations are stored with
 *    each one, so `down` works without the code that produced it.
 * Every run holds the storage's migration lock for its whole transaction: twenty nodes
 * starting at once apply each migration exactly once, and a failed run leaves nothing half-done.
 */
import { type Kysely, sql } from 'kysely';
import type { Progress } from '../core/progress.js';
import type { CollectionSchema, FieldDef } from '../records/schema.js';
import { diffSchemas, type SchemaOp, type SchemaPlan, type SnapshotCollection, snapshotOf } from '../records/schema-diff.js';
import { rebuildSearch } from '../records/search-index.js';
import { SYSTEM_MIGRATIONS, type SystemMigration } from './system-migrations.js';
import type { ColumnTypes, Storage } from './types.js';

const TABLE = '_rampart_migrations';

/** One applied migration as stored. */
export interface AppliedMigration {
  seq: number;
  name: string;
  kind: 'system' | 'schema';
  applied_at: string;
  summary: string;
}

/** What is applied and what would be applied next. */
export interface MigrationStatus {
  applied: AppliedMigration[];
  pendingSystem: string[];
  schemaPlan: SchemaPlan;
}

/** Raised when a run needs an explicit decision (destructive changes) or cannot proceed. */
export class MigrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationError';
  }
}

export class Migrator {
  constructor(
    private readonly storage: Storage,
    private readonly collections: CollectionSchema[],
    private readonly system: SystemMigration[] = SYSTEM_MIGRATIONS,
  ) {}

  private async ensureTable(db: Kysely<any>): Promise<void> {
    await db.schema
      .createTable(TABLE)
      .ifNotExists()
      .addColumn('seq', 'integer', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('applied_at', 'text', (c) => c.notNull())
      .addColumn('summary', 'text', (c) => c.notNull())
      .addColumn('snapshot', 'text')
      .addColumn('down', 'text')
      .execute();
  }

  private async readState(db: Kysely<any>) {
    await this.ensureTable(db);
    const rows = await db.selectFrom(TABLE).selectAll().orderBy('seq').execute();
    const lastSchema = [...rows].reverse().find((r) => r.kind === 'schema');
    const snapshot: SnapshotCollection[] = lastSchema ? JSON.parse(lastSchema.snapshot) : [];
    const done = new Set(rows.map((r) => r.name as string));
    return { rows, snapshot, pendingSystem: this.system.filter((m) => !done.has(m.name)) };
  }

  /** Applied migrations, pending system migrations and the pending schema change. */
  async status(): Promise<MigrationStatus> {
    return this.storage.withMigrationLock(async (db) => {
      const { rows, snapshot, pendingSystem } = await this.readState(db);
      return {
        applied: rows.map(({ seq, name, kind, applied_at, summary }) => ({ seq, name, kind, applied_at, summary })),
        pendingSystem: pendingSystem.map((m) => m.name),
        schemaPlan: diffSchemas(snapshot, this.collections),
      };
    });
  }

  /** Apply everything pending. Destructive schema changes need `allowDestructive`. */
  async up(opts: { allowDestructive?: boolean; progress?: (total: number) => Progress } = {}): Promise<string[]> {
    return this.storage.withMigrationLock(async (db) => {
      const { rows, snapshot, pendingSystem } = await this.readState(db);
      const plan = diffSchemas(snapshot, this.collections);
      const declared = snapshotOf(this.collections);
      const schemaChanged = JSON.stringify(snapshot) !== JSON.stringify(declared);
      if (plan.destructive.length > 0 && !opts.allowDestructive) {
        throw new MigrationError(
          `the declared schema drops data: ${plan.destructive.join('; ')}. Run \`rampart migrate up --allow-destructive\` to apply it.`,
        );
      }
      const total = pendingSystem.length + (schemaChanged ? plan.up.length || 1 : 0);
      const progress = total > 0 ? opts.progress?.(total) : undefined;
      let seq = rows.reduce((m, r) => Math.max(m, r.seq as number), 0);
      let done = 0;
      const applied: string[] = [];
      const record = (name: string, kind: string, summary: string, snap?: unknown, down?: unknown) =>
        db
          .insertInto(TABLE)
          .values({
            seq: ++seq,
            name,
            kind,
            applied_at: new Date().toISOString(),
            summary,
            snapshot: snap === undefined ? null : JSON.stringify(snap),
            down: down === undefined ? null : JSON.stringify(down),
          })
          .execute();
      for (const m of pendingSystem) {
        await m.up(db, this.storage);
        await record(m.name, 'system', m.description);
        applied.push(m.name);
        progress?.update(++done);
      }
      if (schemaChanged) {
        for (const op of plan.up) {
          await runOp(db, this.storage, op);
          progress?.update(++done);
        }
        const name = `schema_${String(seq + 1).padStart(4, '0')}`;
        await record(name, 'schema', plan.summary.join('; ') || 'update collection rules', declared, plan.down);
        applied.push(name);
      }
      progress?.finish(applied.length > 0 ? `applied ${applied.length}` : 'nothing to do');
      return applied;
    });
  }

  /** Revert the last `steps` migrations, newest first. */
  async down(steps = 1): Promise<string[]> {
    return this.storage.withMigrationLock(async (db) => {
      const { rows } = await this.readState(db);
      const reverted: string[] = [];
      for (const row of [...rows].reverse().slice(0, steps)) {
        if (row.kind === 'schema') {
          for (const op of JSON.parse(row.down) as SchemaOp[]) await runOp(db, this.storage, op);
        } else {
          const m = this.system.find((x) => x.name === row.name);
          if (!m) throw new MigrationError(`system migration ${row.name} is unknown to this version of Rampart`);
          await m.down(db, this.storage);
        }
        await db.deleteFrom(TABLE).where('seq', '=', row.seq).execute();
        reverted.push(row.name);
      }
      return reverted;
    });
  }
}

function columnType(types: ColumnTypes, def: FieldDef) {
  const kind = def.type === 'relation' ? 'uuid' : ['email', 'url', 'select'].includes(def.type) ? 'text' : def.type;
  return sql.raw(types[kind as keyof ColumnTypes]);
}

async function runOp(db: Kysely<any>, storage: Storage, op: SchemaOp): Promise<void> {
  const types = storage.columnTypes;
  switch (op.op) {
    case 'createTable': {
      let t = db.schema
        .createTable(op.collection.name)
        .addColumn('id', sql.raw(types.uuid), (c) => c.primaryKey().notNull())
        .addColumn('created_at', sql.raw(types.datetime), (c) => c.notNull())
        .addColumn('updated_at', sql.raw(types.datetime), (c) => c.notNull())
        .addColumn('deleted_at', sql.raw(types.datetime))
        .addColumn('version', sql.raw(types.integer), (c) => c.notNull().defaultTo(1));
      for (const [name, def] of Object.entries(op.collection.fields)) {
        t = t.addColumn(name, columnType(types, def), (c) =>
          def.type === 'relation' ? c.references(`${def.collection}.id`).onDelete(def.onDelete ?? 'set null') : c,
        );
      }
      await t.execute();
      return;
    }
    case 'dropTable':
      await db.schema.dropTable(op.collection.name).execute();
      return;
    case 'addColumn': {
      const def = op.field;
      await db.schema
        .alterTable(op.table)
        .addColumn(op.name, columnType(types, def), (c) =>
          def.type === 'relation' ? c.references(`${def.collection}.id`).onDelete(def.onDelete ?? 'set null') : c,
        )
        .execute();
      return;
    }
    case 'dropColumn':
      await db.schema.alterTable(op.table).dropColumn(op.name).execute();
      return;
    case 'createIndex': {
      let b = db.schema.createIndex(op.index.name).on(op.index.table).columns(op.index.columns);
      if (op.index.unique) b = b.unique();
      // Partial: list queries always filter live rows, and uniqueness ignores the trash.
      await b.where(sql.ref('deleted_at'), 'is', null).execute();
      return;
    }
    case 'dropIndex':
      await db.schema.dropIndex(op.index.name).ifExists().execute();
      return;
    case 'createSearch':
      await storage.search.create(db, op.search);
      await rebuildSearch(storage, op.search, { db });
      return;
    case 'dropSearch':
      await storage.search.drop(db, op.search);
      return;
  }
}
