/**
 * Full-text search on SQLite: an FTS5 table per collection (bm25 ranking; the porter stemmer
 * for English, unicode61 word splitting for every language) and an FTS5 trigram index over the
 * collection's vocabulary for typo tolerance.
 *
 * FTS5 rows are keyed by integer rowids, and a collection's own rowids may change on VACUUM
 * (its key is a text id), so `<index>_ids` maps record ids to stable rowids. Triggers on the
 * collection keep both in step with every insert, update and delete, inside the write's
 * transaction. The index holds trashed records too: lists filter on `deleted_at`, so a delete
 * hides a record at once, a restore brings it back, and the trash can be searched.
 */
import { sql } from 'kysely';
import type { SearchSpec, SearchWeight } from '../../records/schema.js';
import { searchName } from '../../records/schema-diff.js';
import { MARK_END, MARK_START, type SearchQuery, toFts5 } from '../../records/search.js';
import type { SearchBackend } from '../types.js';

/** bm25 column weights: PostgreSQL's default ratios of A, B, C and D. */
const BM25_WEIGHT: Record<SearchWeight, number> = { A: 10, B: 4, C: 2, D: 1 };
/** Words of context around a match in a snippet. */
const SNIPPET_TOKENS = 16;

const id = (name: string) => sql.id(name);
const names = (spec: SearchSpec) => ({
  index: searchName(spec.table),
  ids: searchName(spec.table, 'ids'),
  words: searchName(spec.table, 'words'),
  grams: searchName(spec.table, 'grams'),
});
/** FTS5 columns are positional (`c0`, `c1`…): a field may be called `rank`, which FTS5 reserves. */
const columns = (spec: SearchSpec) => spec.fields.map((_, i) => `c${i}`);
const list = (items: string[]) => sql.join(items.map(id));

/** Range bounds on `col`; null is unbounded. */
function range(col: string, after: string | null, upto: string | null) {
  const conds = [sql`1 = 1`];
  if (after !== null) conds.push(sql`${sql.ref(col)} > ${after}`);
  if (upto !== null) conds.push(sql`${sql.ref(col)} <= ${upto}`);
  return sql.join(conds, sql` and `);
}

export const sqliteSearch: SearchBackend = {
  async create(db, spec) {
    const n = names(spec);
    const t = id(spec.table);
    // Porter stems English only; remove_diacritics 2 folds accents for every language.
    const tokenize = `${spec.language === 'english' ? 'porter ' : ''}unicode61 remove_diacritics 2`;
    await sql`create table ${id(n.ids)} (rowid integer primary key, id text not null unique)`.execute(db);
    await sql`create virtual table ${id(n.index)} using fts5(${list(columns(spec))}, tokenize = ${sql.lit(tokenize)})`.execute(db);
    const values = (row: 'new') => sql.join(spec.fields.map((f) => sql`${sql.raw(row)}.${id(f.name)}`));
    const rowidOf = (row: 'new' | 'old') => sql`(select rowid from ${id(n.ids)} where id = ${sql.raw(row)}.id)`;
    const insert = sql`insert into ${id(n.ids)}(id) values (new.id);
      insert into ${id(n.index)}(rowid, ${list(columns(spec))}) values (${rowidOf('new')}, ${values('new')});`;
    const remove = sql`delete from ${id(n.index)} where rowid = ${rowidOf('old')};
      delete from ${id(n.ids)} where id = old.id;`;
    const changed = sql.join(
      spec.fields.map((f) => sql`old.${id(f.name)} is not new.${id(f.name)}`),
      sql` or `,
    );
    await sql`create trigger ${id(searchName(spec.table, 'ai'))} after insert on ${t} begin ${insert} end`.execute(db);
    await sql`create trigger ${id(searchName(spec.table, 'au'))} after update on ${t} when ${changed} begin ${remove} ${insert} end`.execute(
      db,
    );
    await sql`create trigger ${id(searchName(spec.table, 'ad'))} after delete on ${t} begin ${remove} end`.execute(db);
    // The vocabulary: one row per word, and a trigram index over it (external content).
    await sql`create table ${id(n.words)} (rowid integer primary key, word text not null unique)`.execute(db);
    await sql`create virtual table ${id(n.grams)} using fts5(word, content = ${sql.lit(n.words)}, content_rowid = 'rowid', tokenize = 'trigram')`.execute(
      db,
    );
    await sql`create trigger ${id(searchName(spec.table, 'words_ai'))} after insert on ${id(n.words)} begin
      insert into ${id(n.grams)}(rowid, word) values (new.rowid, new.word); end`.execute(db);
    await sql`create trigger ${id(searchName(spec.table, 'words_ad'))} after delete on ${id(n.words)} begin
      insert into ${id(n.grams)}(${id(n.grams)}, rowid, word) values ('delete', old.rowid, old.word); end`.execute(db);
  },

  async drop(db, spec) {
    const n = names(spec);
    for (const trigger of ['ai', 'au', 'ad', 'words_ai', 'words_ad']) {
      await sql`drop trigger if exists ${id(searchName(spec.table, trigger))}`.execute(db);
    }
    for (const table of [n.grams, n.words, n.index, n.ids]) await sql`drop table if exists ${id(table)}`.execute(db);
  },

  queryText: (query: SearchQuery) => toFts5(query),

  matches(spec, query, alias) {
    const n = names(spec);
    const weights = sql.join(spec.fields.map((f) => sql.lit(BM25_WEIGHT[f.weight])));
    // bm25 is lower-is-better: negated, so every backend's score sorts descending.
    return sql<{ _sid: string; _score: number }>`(select d.id as _sid, -bm25(${id(n.index)}, ${weights}) as _score
      from ${id(n.index)} join ${id(n.ids)} d on d.rowid = ${id(n.index)}.rowid where ${id(n.index)} match ${query})`.as(alias);
  },

  snippets(spec, query, ids) {
    const n = names(spec);
    const cols = spec.fields.map(
      (_, i) =>
        sql`snippet(${id(n.index)}, ${sql.lit(i)}, ${sql.lit(MARK_START)}, ${sql.lit(MARK_END)}, '…', ${sql.lit(SNIPPET_TOKENS)}) as ${id(`s${i}`)}`,
    );
    return sql<Record<string, string>>`select d.id as id, ${sql.join(cols)}
      from ${id(n.index)} join ${id(n.ids)} d on d.rowid = ${id(n.index)}.rowid
      where ${id(n.index)} match ${query} and d.id in (${sql.join(ids)})`;
  },

  async indexRange(db, spec, after, upto) {
    // The caller holds SQLite's write lock (one writer at a time), so nothing changes meanwhile.
    const n = names(spec);
    await sql`delete from ${id(n.index)} where rowid in (select rowid from ${id(n.ids)} where ${range('id', after, upto)})`.execute(db);
    await sql`delete from ${id(n.ids)} where ${range('id', after, upto)}`.execute(db);
    await sql`insert into ${id(n.ids)}(id) select id from ${id(spec.table)} where ${range('id', after, upto)} order by id`.execute(db);
    const fields = sql.join(spec.fields.map((f) => sql`b.${id(f.name)}`));
    await sql`insert into ${id(n.index)}(rowid, ${list(columns(spec))})
      select d.rowid, ${fields} from ${id(spec.table)} b join ${id(n.ids)} d on d.id = b.id
      where ${range('b.id', after, upto)}`.execute(db);
  },

  async optimize(storage, spec) {
    // 'merge' does a bounded amount of work per call (about 256 pages): short transactions,
    // writes go on between them. A negative amount merges whatever segments there are (a
    // positive one waits for several on one level); a step that changes nothing means done.
    const index = id(names(spec).index);
    for (let step = 0; step < 1000; step++) {
      const changed = await storage.transaction(async (db) => {
        const before = await sql<{ n: number }>`select total_changes() as n`.execute(db);
        await sql`insert into ${index}(${index}, rank) values ('merge', -256)`.execute(db);
        const after = await sql<{ n: number }>`select total_changes() as n`.execute(db);
        return Number(after.rows[0]?.n) - Number(before.rows[0]?.n) > 1;
      });
      if (!changed) break;
    }
  },

  async similarWords(db, spec, word, [min, max], limit) {
    const n = names(spec);
    const letters = [...word];
    const grams = new Set<string>();
    for (let i = 0; i + 3 <= letters.length; i++) grams.add(letters.slice(i, i + 3).join(''));
    if (grams.size === 0) return [];
    const match = [...grams].map((g) => `"${g}"`).join(' OR ');
    const { rows } = await sql<{ word: string }>`select w.word from ${id(n.grams)} g join ${id(n.words)} w on w.rowid = g.rowid
      where ${id(n.grams)} match ${match} and length(w.word) between ${min} and ${max}
      order by g.rank limit ${limit}`.execute(db);
    return rows.map((r) => r.word);
  },
};
