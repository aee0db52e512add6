/**
 * Full-text search on PostgreSQL: a side table per collection holding each record's weighted
 * `tsvector` (GIN index, `ts_rank_cd` ranking, stemming by the collection's language), and the
 * collection's vocabulary with a `pg_trgm` index for typo tolerance.
 *
 * Triggers on the collection keep the side table in step inside every write's transaction; a
 * foreign key removes a purged record's entry. A side table (not a generated column) lets a
 * changed language or weight be rebuilt online, in batches, without rewriting the collection.
 * The index holds trashed records too: lists filter on `deleted_at`.
 */
import { type Kysely, type RawBuilder, sql } from 'kysely';
import type { SearchSpec } from '../../records/schema.js';
import { searchName } from '../../records/schema-diff.js';
import { MARK_END, MARK_START, type SearchQuery, toTsquery } from '../../records/search.js';
import type { SearchBackend } from '../types.js';

const id = (name: string) => sql.id(name);
const names = (spec: SearchSpec) => ({
  index: searchName(spec.table),
  words: searchName(spec.table, 'words'),
  sync: searchName(spec.table, 'sync'),
});
/** The language is one of the built-in configurations (checked at startup), written as a literal. */
const config = (spec: SearchSpec) => sql`${sql.lit(spec.language)}::regconfig`;
const HEADLINE = `StartSel="${MARK_START}", StopSel="${MARK_END}", MaxWords=24, MinWords=8, MaxFragments=1, FragmentDelimiter=" … "`;

/** The weighted document of a row (`new` in the trigger, a table alias in a rebuild). */
function documentOf(spec: SearchSpec, row: string) {
  return sql.join(
    spec.fields.map((f) => sql`setweight(to_tsvector(${config(spec)}, coalesce(${sql.raw(row)}.${id(f.name)}, '')), ${sql.lit(f.weight)})`),
    sql` || `,
  );
}

function range(after: string | null, upto: string | null) {
  const conds = [sql`true`];
  if (after !== null) conds.push(sql`b.id > ${after}::uuid`);
  if (upto !== null) conds.push(sql`b.id <= ${upto}::uuid`);
  return sql.join(conds, sql` and `);
}

export const postgresSearch: SearchBackend = {
  async create(db, spec) {
    const n = names(spec);
    const t = id(spec.table);
    await sql`create extension if not exists pg_trgm`.execute(db);
    await sql`create table ${id(n.index)} (id uuid primary key references ${t}(id) on delete cascade, doc tsvector not null)`.execute(db);
    // fastupdate off: without it, recent entries wait in a pending list that every query scans
    // until vacuum merges it (milliseconds per query after a bulk load); inserts pay instead.
    await sql`create index ${id(searchName(spec.table, 'doc'))} on ${id(n.index)} using gin (doc) with (fastupdate = off)`.execute(db);
    await sql`create function ${id(n.sync)}() returns trigger language plpgsql as ${sql.lit(
      // The function body is SQL text: compile the document expression into it.
      `begin
        insert into ${quote(n.index)}(id, doc) values (new.id, ${inline(db, documentOf(spec, 'new'))})
        on conflict (id) do update set doc = excluded.doc;
        return null;
      end`,
    )}`.execute(db);
    const changed = sql.join(
      spec.fields.map((f) => sql`old.${id(f.name)} is distinct from new.${id(f.name)}`),
      sql` or `,
    );
    await sql`create trigger ${id(searchName(spec.table, 'ai'))} after insert on ${t}
      for each row execute function ${id(n.sync)}()`.execute(db);
    await sql`create trigger ${id(searchName(spec.table, 'au'))} after update on ${t}
      for each row when (${changed}) execute function ${id(n.sync)}()`.execute(db);
    await sql`create table ${id(n.words)} (word text primary key)`.execute(db);
    await sql`create index ${id(searchName(spec.table, 'trgm'))} on ${id(n.words)} using gin (word gin_trgm_ops) with (fastupdate = off)`.execute(
      db,
    );
  },

  async drop(db, spec) {
    const n = names(spec);
    await sql`drop trigger if exists ${id(searchName(spec.table, 'ai'))} on ${id(spec.table)}`.execute(db);
    await sql`drop trigger if exists ${id(searchName(spec.table, 'au'))} on ${id(spec.table)}`.execute(db);
    await sql`drop function if exists ${id(n.sync)}()`.execute(db);
    await sql`drop table if exists ${id(n.index)}`.execute(db);
    await sql`drop table if exists ${id(n.words)}`.execute(db);
  },

  queryText: (query: SearchQuery) => toTsquery(query),

  matches(spec, query, alias) {
    const q = sql`to_tsquery(${config(spec)}, ${query})`;
    // float8: the score goes into cursors and must compare equal when it comes back.
    return sql<{ _sid: string; _score: number }>`(select s.id as _sid, ts_rank_cd(s.doc, ${q})::float8 as _score
      from ${id(names(spec).index)} s where s.doc @@ ${q})`.as(alias);
  },

  snippets(spec, query, ids) {
    const q = sql`to_tsquery(${config(spec)}, ${query})`;
    const cols = spec.fields.map(
      (f, i) => sql`ts_headline(${config(spec)}, coalesce(b.${id(f.name)}, ''), ${q}, ${sql.lit(HEADLINE)}) as ${id(`s${i}`)}`,
    );
    return sql<Record<string, string>>`select b.id::text as id, ${sql.join(cols)}
      from ${id(spec.table)} b where b.id in (${sql.join(ids)})`;
  },

  async indexRange(db, spec, after, upto) {
    // Lock the rows first: the rebuild's statement then reads their latest committed text, and
    // a concurrent update (whose trigger writes the same entries) waits for this batch.
    await sql`select b.id from ${id(spec.table)} b where ${range(after, upto)} for share`.execute(db);
    await sql`insert into ${id(names(spec).index)}(id, doc) select b.id, ${documentOf(spec, 'b')}
      from ${id(spec.table)} b where ${range(after, upto)}
      on conflict (id) do update set doc = excluded.doc`.execute(db);
  },

  async optimize(storage, spec) {
    await sql`analyze ${id(names(spec).index)}`.execute(storage.db);
    await sql`analyze ${id(names(spec).words)}`.execute(storage.db);
  },

  async similarWords(db, spec, word, [min, max], limit) {
    // `%` is pg_trgm's similarity test (threshold 0.3); `<->` orders by trigram distance.
    const { rows } = await sql<{ word: string }>`select word from ${id(names(spec).words)}
      where word % ${word} and length(word) between ${min} and ${max}
      order by word <-> ${word}, word limit ${limit}`.execute(db);
    return rows.map((r) => r.word);
  },
};

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** SQL text of an expression made of identifiers and literals only (no bound values), for a function body. */
function inline(db: Kysely<any>, expr: RawBuilder<unknown>): string {
  const compiled = expr.compile(db);
  if (compiled.parameters.length > 0) throw new Error('a function body cannot hold bound values');
  return compiled.sql;
}
