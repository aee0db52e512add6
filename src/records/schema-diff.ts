/**
 * Compare the declared collections with the last applied snapshot and produce the DDL
 * operations that take the database from one to the other, each with its inverse so the
 * migration can be rolled back. Pure: no I/O.
 */
import { createHash } from 'node:crypto';
import { type CollectionSchema, type FieldDef, SchemaError, type SearchSpec } from './schema.js';

/** An index as the database sees it (name, columns, uniqueness over live rows). */
export interface IndexSpec {
  name: string;
  table: string;
  columns: string[];
  unique: boolean;
}

export type SchemaOp =
  | { op: 'createTable'; collection: TableShape }
  | { op: 'dropTable'; collection: TableShape }
  | { op: 'addColumn'; table: string; name: string; field: FieldDef }
  | { op: 'dropColumn'; table: string; name: string; field: FieldDef }
  | { op: 'createIndex'; index: IndexSpec }
  | { op: 'dropIndex'; index: IndexSpec }
  /** Create a full-text index and fill it from the collection's records. */
  | { op: 'createSearch'; search: SearchSpec }
  | { op: 'dropSearch'; search: SearchSpec };

/**
 * A collection as recorded with a schema migration: the declaration plus the indexes that were
 * actually created, so a change in how indexes are derived is seen as a change too.
 */
/** What the database holds of a collection (its rules live in code). */
export type TableShape = Pick<CollectionSchema, 'name' | 'fields' | 'indexes' | 'search'>;
export type SnapshotCollection = TableShape & { created_indexes?: IndexSpec[] };

/** What a schema migration records: each collection with its created indexes. */
export function snapshotOf(collections: TableShape[]): SnapshotCollection[] {
  // Rules live in code, not in the database: changing one needs no migration.
  return collections.map(({ name, fields, indexes, search }) => ({
    name,
    fields,
    indexes,
    ...(search ? { search } : {}),
    created_indexes: indexesOf({ name, fields, indexes }),
  }));
}

/** A computed change: operations forward and back, and whether it loses data. */
export interface SchemaPlan {
  up: SchemaOp[];
  down: SchemaOp[];
  /** Drops of tables or columns: refused unless explicitly allowed. */
  destructive: string[];
  /** One line per change, for `migrate status` and logs. */
  summary: string[];
}

/** Names fit PostgreSQL's 63-byte identifiers; long ones get a hash suffix. */
function shortName(name: string): string {
  if (name.length <= 63) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 10);
  return `${name.slice(0, 52)}_${hash}`;
}

function indexName(prefix: string, table: string, columns: string[]): string {
  return shortName(`${prefix}_${table}_${columns.join('_')}`);
}

/**
 * The name of a part of a collection's search index: the index itself (`''`), its id map,
 * vocabulary, trigram index or one of its triggers.
 */
export function searchName(table: string, part = ''): string {
  return shortName(`_search_${table}${part ? `_${part}` : ''}`);
}

/** Every index a collection implies: created_at order, relations, unique fields, declared ones. */
export function indexesOf(c: TableShape): IndexSpec[] {
  const out = new Map<string, IndexSpec>();
  const add = (columns: string[], unique: boolean) => {
    const name = indexName(unique ? 'ux' : 'ix', c.name, columns);
    out.set(name, { name, table: c.name, columns, unique });
  };
  add(['created_at', 'id'], false);
  for (const [name, def] of Object.entries(c.fields)) {
    if (def.type === 'relation') add([name], false);
    if (def.unique) add([name], true);
  }
  // Declared non-unique indexes end with `id`, the tie-breaker of every sort, so a keyset page
  // is read in index order with no sort step (`room, created_at` serves "newest in a room").
  for (const idx of c.indexes) add(idx.unique || idx.fields.includes('id') ? idx.fields : [...idx.fields, 'id'], idx.unique);
  return [...out.values()];
}

const inverse = (op: SchemaOp): SchemaOp => {
  switch (op.op) {
    case 'createTable':
      return { op: 'dropTable', collection: op.collection };
    case 'dropTable':
      return { op: 'createTable', collection: op.collection };
    case 'addColumn':
      return { op: 'dropColumn', table: op.table, name: op.name, field: op.field };
    case 'dropColumn':
      return { op: 'addColumn', table: op.table, name: op.name, field: op.field };
    case 'createIndex':
      return { op: 'dropIndex', index: op.index };
    case 'dropIndex':
      return { op: 'createIndex', index: op.index };
    case 'createSearch':
      return { op: 'dropSearch', search: op.search };
    case 'dropSearch':
      return { op: 'createSearch', search: op.search };
  }
};

/** Changes that need a table rebuild; refused with a clear message instead. */
function storageShape(def: FieldDef): string {
  return JSON.stringify([def.type, def.type === 'relation' ? [def.collection, def.onDelete] : null]);
}

/** Order collections so that a relation's target is created before it (self-references allowed). */
function byDependency(collections: TableShape[]): TableShape[] {
  const byName = new Map(collections.map((c) => [c.name, c]));
  const done = new Set<string>();
  const visiting = new Set<string>();
  const out: TableShape[] = [];
  const visit = (c: TableShape) => {
    if (done.has(c.name)) return;
    if (visiting.has(c.name)) throw new SchemaError(`relations form a cycle through collection "${c.name}"`);
    visiting.add(c.name);
    for (const def of Object.values(c.fields)) {
      const target = def.type === 'relation' && def.collection !== c.name ? byName.get(def.collection) : undefined;
      if (target) visit(target);
    }
    visiting.delete(c.name);
    done.add(c.name);
    out.push(c);
  };
  for (const c of collections) visit(c);
  return out;
}

const describeSearch = (s: SearchSpec) => `${s.fields.map((f) => `${f.name}:${f.weight}`).join(', ')}; ${s.language}`;

/** Plan the change from `from` (applied snapshot) to `to` (declared). */
export function diffSchemas(from: SnapshotCollection[], to: TableShape[]): SchemaPlan {
  const up: SchemaOp[] = [];
  const destructive: string[] = [];
  const summary: string[] = [];
  const old = new Map(from.map((c) => [c.name, c]));
  const next = new Map(to.map((c) => [c.name, c]));
  const dropIdx: SchemaOp[] = [];
  const createIdx: SchemaOp[] = [];

  for (const c of byDependency(to)) {
    const prev = old.get(c.name);
    if (!prev) {
      up.push({ op: 'createTable', collection: c });
      summary.push(`create collection ${c.name}`);
      for (const index of indexesOf(c)) createIdx.push({ op: 'createIndex', index });
      if (c.search) {
        createIdx.push({ op: 'createSearch', search: c.search });
        summary.push(`create search index of ${c.name} (${describeSearch(c.search)})`);
      }
      continue;
    }
    for (const [name, def] of Object.entries(c.fields)) {
      const before = prev.fields[name];
      if (!before) {
        up.push({ op: 'addColumn', table: c.name, name, field: def });
        summary.push(`add field ${c.name}.${name} (${def.type})`);
      } else if (storageShape(before) !== storageShape(def)) {
        throw new SchemaError(
          `field ${c.name}.${name} changes type or relation (${before.type} -> ${def.type}); ` +
            'add a new field and copy the data instead (expand, then contract)',
        );
      } else if (JSON.stringify({ ...before, search: undefined }) !== JSON.stringify({ ...def, search: undefined })) {
        // (A change of `search` alone is the search index's line.)
        summary.push(`change rules of field ${c.name}.${name}`);
      }
    }
    for (const [name, def] of Object.entries(prev.fields)) {
      if (!(name in c.fields)) {
        up.push({ op: 'dropColumn', table: c.name, name, field: def });
        destructive.push(`drop field ${c.name}.${name} and its data`);
        summary.push(`drop field ${c.name}.${name}`);
      }
    }
    const oldIdx = new Map((prev.created_indexes ?? indexesOf(prev)).map((i) => [i.name, i]));
    const newIdx = new Map(indexesOf(c).map((i) => [i.name, i]));
    for (const [name, index] of oldIdx) {
      if (!newIdx.has(name)) {
        dropIdx.push({ op: 'dropIndex', index });
        summary.push(`drop index ${name}`);
      }
    }
    for (const [name, index] of newIdx) {
      if (!oldIdx.has(name)) {
        createIdx.push({ op: 'createIndex', index });
        summary.push(`create index ${name}`);
      }
    }
    // A changed search declaration rebuilds the index: stemming and weights are in its entries.
    if (JSON.stringify(prev.search ?? null) !== JSON.stringify(c.search ?? null)) {
      if (prev.search) dropIdx.push({ op: 'dropSearch', search: prev.search });
      if (c.search) createIdx.push({ op: 'createSearch', search: c.search });
      const verb = !prev.search ? 'create' : c.search ? 'rebuild' : 'drop';
      summary.push(`${verb} search index of ${c.name}${c.search ? ` (${describeSearch(c.search)})` : ''}`);
    }
  }
  const drops: SchemaOp[] = [];
  for (const c of [...byDependency(from)].reverse()) {
    if (!next.has(c.name)) {
      if (c.search) drops.push({ op: 'dropSearch', search: c.search });
      drops.push({ op: 'dropTable', collection: c });
      destructive.push(`drop collection ${c.name} and all its records`);
      summary.push(`drop collection ${c.name}`);
    }
  }
  // Indexes go before the columns they cover are dropped, and are created after columns exist.
  const ordered = [...dropIdx, ...up, ...createIdx, ...drops];
  return { up: ordered, down: ordered.map(inverse).reverse(), destructive, summary };
}
