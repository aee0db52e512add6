/**
 * What every backend's full-text index shares: filling and rebuilding it in batches, the
 * vocabulary of each collection (the words typos are corrected to), and widening a query's
 * misspelled words to the vocabulary words they may mean.
 */
import { type CompiledQuery, type Kysely, sql } from 'kysely';
import type { Progress } from '../core/progress.js';
import type { Storage } from '../storage/types.js';
import { cached } from './query.js';
import type { SearchSpec } from './schema.js';
import { searchName } from './schema-diff.js';
import { closestWords, fuzzyWords, type SearchQuery, typosFor, vocabularyOf, withAlternatives } from './search.js';

/** Records read and indexed per rebuild step (each step is one short transaction). */
export const REBUILD_BATCH = 500;
/** Vocabulary candidates fetched by trigram similarity before the edit distance picks. */
const CANDIDATES = 64;

const words = (spec: SearchSpec) => sql.id(searchName(spec.table, 'words'));

/** Add words to a collection's vocabulary (in sorted order: concurrent writers lock them in one order). */
export async function addWords(db: Kysely<any>, spec: SearchSpec, list: Iterable<string>): Promise<void> {
  const sorted = [...new Set(list)].sort();
  for (let i = 0; i < sorted.length; i += 500) {
    const chunk = sorted.slice(i, i + 500);
    await sql`insert into ${words(spec)}(word) values ${sql.join(chunk.map((w) => sql`(${w})`))} on conflict do nothing`.execute(db);
  }
}

/** The vocabulary words of a record's searchable fields. */
export function recordVocabulary(spec: SearchSpec, record: Record<string, unknown>): Set<string> {
  return vocabularyOf(spec.fields.map((f) => record[f.name]));
}

/** Compiled vocabulary lookups, by storage, collection and word count (on the path of every search). */
const lookups = new WeakMap<Storage, Map<string, CompiledQuery>>();

/** `select word from <vocabulary> where word = $1 union all …`, for `n` words. */
function knownWordsQuery(storage: Storage, spec: SearchSpec, n: number): CompiledQuery {
  const byKey = lookups.get(storage) ?? new Map<string, CompiledQuery>();
  lookups.set(storage, byKey);
  return cached(byKey, `${spec.table}:${n}`, () => {
    // One equality per word: an IN list can lead PostgreSQL's planner to the trigram index instead of the key.
    // The words are bound by position when it runs; these are placeholders.
    const parts = Array.from({ length: n }, (_, i) => sql`select word from ${words(spec)} where word = ${`$${i}`}`);
    return sql`${sql.join(parts, sql` union all `)}`.compile(storage.reader);
  });
}

/**
 * Typo tolerance: each plain word of the query that is long enough to misspell and that no
 * record contains is widened to the closest vocabulary words (within one typo from 5 letters,
 * two from 9). A word some record contains is taken as meant. Returns the widened query and
 * the corrections made, by word.
 */
export async function correctTypos(
  storage: Storage,
  spec: SearchSpec,
  query: SearchQuery,
): Promise<{ query: SearchQuery; corrections: Record<string, string[]> }> {
  const fuzzy = [...new Set(fuzzyWords(query))];
  if (fuzzy.length === 0) return { query, corrections: {} };
  const db = storage.reader;
  const rows = await storage.read<{ word: string }>(knownWordsQuery(storage, spec, fuzzy.length), fuzzy);
  const known = new Set(rows.map((r) => r.word));
  const corrections: Record<string, string[]> = {};
  for (const word of fuzzy.filter((w) => !known.has(w))) {
    const length = [...word].length;
    const max = typosFor(length);
    const candidates = await storage.search.similarWords(db, spec, word, [length - max, length + max], CANDIDATES);
    const closest = closestWords(word, candidates);
    if (closest.length > 0) corrections[word] = closest;
  }
  const alternatives = new Map(Object.entries(corrections));
  return { query: alternatives.size > 0 ? withAlternatives(query, alternatives) : query, corrections };
}

/**
 * Fill or rebuild a collection's index and vocabulary from its records, in id order, a batch
 * per step. Online by default: each step is its own short transaction, so writes go on between
 * steps (and the index's triggers keep the records written meanwhile in step). Given `db`, every
 * step runs in that transaction instead (a migration creating the index).
 */
export async function rebuildSearch(
  storage: Storage,
  spec: SearchSpec,
  opts: { db?: Kysely<any>; progress?: (total: number) => Progress; batch?: number } = {},
): Promise<{ records: number; words: number }> {
  const batch = opts.batch ?? REBUILD_BATCH;
  const step = <T>(fn: (db: Kysely<any>) => Promise<T>) => (opts.db ? fn(opts.db) : storage.transaction(fn));
  const table = sql.id(spec.table);
  const counted = await sql<{ n: number }>`select count(*) as n from ${table}`.execute(opts.db ?? storage.db);
  const progress = opts.progress?.(Number(counted.rows[0]?.n ?? 0));
  const vocabulary = new Set<string>();
  let after: string | null = null;
  let done = 0;
  for (;;) {
    const rows = await step(async (db) => {
      const cols = sql.join(['id', ...spec.fields.map((f) => f.name)].map((c) => sql.id(c)));
      const where = after === null ? sql`` : sql`where id > ${after}`;
      const { rows } = await sql<Record<string, unknown>>`select ${cols} from ${table} ${where} order by id limit ${batch}`.execute(db);
      const last = rows.at(-1);
      // The last step also clears entries past the last record (records purged meanwhile).
      await storage.search.indexRange(db, spec, after, rows.length < batch ? null : (last?.id as string));
      const found = vocabularyOf(rows.flatMap((r) => spec.fields.map((f) => r[f.name])));
      await addWords(db, spec, found);
      for (const w of found) vocabulary.add(w);
      return rows;
    });
    done += rows.length;
    progress?.update(done);
    if (rows.length < batch) break;
    after = String(rows.at(-1)?.id);
  }
  await pruneVocabulary(storage, spec, vocabulary, opts.db);
  if (!opts.db) await storage.search.optimize(storage, spec);
  progress?.finish(`${done} records, ${vocabulary.size} words`);
  return { records: done, words: vocabulary.size };
}

/** Remove vocabulary words no record holds any more (a typo must not be corrected to a deleted word). */
async function pruneVocabulary(storage: Storage, spec: SearchSpec, keep: Set<string>, inTx?: Kysely<any>): Promise<void> {
  let after = '';
  for (;;) {
    const { rows } = await sql<{ word: string }>`select word from ${words(spec)} where word > ${after} order by word limit 1000`.execute(
      inTx ?? storage.db,
    );
    const gone = rows.map((r) => r.word).filter((w) => !keep.has(w));
    if (gone.length > 0) {
      const remove = (db: Kysely<any>) => sql`delete from ${words(spec)} where word in (${sql.join(gone)})`.execute(db);
      await (inTx ? remove(inTx) : storage.transaction(remove));
    }
    if (rows.length < 1000) return;
    after = rows.at(-1)?.word as string;
  }
}
