/**
 * The storage port. Two backends implement it (sqlite/, postgres/) with the same file roles:
 * `database.ts` (connections, transactions, locks), `errors.ts` (classify driver errors),
 * `ddl.ts` (column types and schema SQL). Shared code branches on `capabilities`, never on `kind`.
 */
import type { AliasedRawBuilder, CompiledQuery, Kysely, RawBuilder } from 'kysely';
import type { SearchSpec } from '../records/schema.js';
import type { SearchQuery } from '../records/search.js';

/** What a backend can do natively; shared code adapts to these flags. */
export interface StorageCapabilities {
  /** Booleans round-trip as booleans (else 0/1 integers). */
  nativeBoolean: boolean;
  /** JSON columns come back parsed (else as text). */
  nativeJson: boolean;
  /** Timestamps come back as Date objects (else as ISO text). */
  nativeTimestamp: boolean;
  /** Case-insensitive pattern match operator (`ilike` or `like`). */
  caseInsensitiveLike: 'ilike' | 'like';
  /** Readers use a separate connection from the single writer. */
  separateReader: boolean;
  /**
   * Row locks that other transactions can skip (`FOR UPDATE SKIP LOCKED`); without them a
   * write transaction already excludes every other writer.
   */
  skipLocked: boolean;
  /** Notifications reach other processes (PostgreSQL NOTIFY); otherwise only this process hears them. */
  crossProcessNotify: boolean;
}

/** Column types for each field kind; used by the migration builder. */
export interface ColumnTypes {
  text: string;
  number: string;
  integer: string;
  boolean: string;
  datetime: string;
  json: string;
  uuid: string;
}

/** Connection pool figures for metrics. */
export interface PoolStats {
  /** Open connections. */
  total: number;
  /** Connections waiting for work. */
  idle: number;
  /** Callers waiting for a connection. */
  waiting: number;
}

/** What kind of failure a driver error is. */
export type DbErrorKind = 'unique' | 'foreign_key' | 'unavailable' | 'busy' | 'timeout' | 'other';

/** A classified driver error; `constraint` names the violated index or key when known. */
export interface DbErrorInfo {
  kind: DbErrorKind;
  constraint?: string;
}

/** One executed query, for metrics. */
export interface QueryEvent {
  /** `select`, `insert`, `update`, `delete` or `other`. */
  op: string;
  /** Duration in milliseconds. */
  durationMs: number;
  /** The query failed. */
  failed: boolean;
  /** The statement's text (placeholders, never values). */
  sql?: string;
}

/** Options every backend accepts. */
export interface StorageHooks {
  /** Called after every query. */
  onQuery?: (e: QueryEvent) => void;
  /** Called for connection-level problems that did not reach a caller (idle client died…). */
  onBackgroundError?: (err: Error) => void;
  /** Called when new connections go to another host: the primary moved (a failover). */
  onFailover?: (from: string, to: string) => void;
}

/**
 * A backend's full-text indexes (sqlite/search.ts: FTS5; postgres/search.ts: tsvector + GIN).
 * Each collection with searchable fields has an index kept in step with its table by triggers,
 * in the writing transaction, and a vocabulary of its words with a trigram index for typos.
 */
export interface SearchBackend {
  /** Create a collection's index, its triggers and its vocabulary (empty: fill with `indexRange`). */
  create(db: Kysely<any>, spec: SearchSpec): Promise<void>;
  /** Drop a collection's index, triggers and vocabulary. */
  drop(db: Kysely<any>, spec: SearchSpec): Promise<void>;
  /** The query in this backend's full-text syntax, to bind as the `query` of `matches`. */
  queryText(query: SearchQuery): string;
  /**
   * A FROM item for the records matching `query` (a bound value): columns `_sid` (the record's
   * id) and `_score` (relevance, higher is better), aliased `alias`.
   */
  matches(spec: SearchSpec, query: unknown, alias: string): AliasedRawBuilder<{ _sid: string; _score: number }, string>;
  /**
   * A query for snippets of each searchable field of the records `ids` around what `query`
   * matched, with MARK_START / MARK_END around each match: columns `id`, then `s0`, `s1`… in the
   * order of the spec's fields. Values are bound (the caller compiles it once per id count).
   */
  snippets(spec: SearchSpec, query: unknown, ids: unknown[]): RawBuilder<Record<string, string>>;
  /**
   * Re-index the records with `after < id <= upto` (null: unbounded) from their stored values,
   * and forget index entries of records in that range that no longer exist. The records are
   * locked against change meanwhile, so a concurrent write is never overwritten by older text.
   */
  indexRange(db: Kysely<any>, spec: SearchSpec, after: string | null, upto: string | null): Promise<void>;
  /** Tidy the index after a rebuild (merge segments, refresh statistics), in short steps. */
  optimize(storage: Storage, spec: SearchSpec): Promise<void>;
  /** Up to `limit` vocabulary words sharing letter trigrams with `word`, of a length in the range. */
  similarWords(db: Kysely<any>, spec: SearchSpec, word: string, length: [number, number], limit: number): Promise<string[]>;
}

/** One read replica as /readyz and the metrics show it. */
export interface ReplicaStatus {
  /** host:port */
  name: string;
  /** Answering, and a standby. */
  up: boolean;
  /** How far its replay is behind the primary's last sampled position, in bytes. */
  lagBytes: number;
  /** Reads it has served. */
  reads: number;
  /** Why it is not up. */
  error?: string;
}

/** How a request's record reads may use replicas. */
export interface ReadPlan {
  /** Replicas may serve them. */
  replica: true;
  /** A WAL position the replica must have replayed (the caller's last write). */
  after?: string;
}

/** Read replicas (PostgreSQL streaming standbys), when configured. */
export interface ReplicaRouter {
  /**
   * Run a read on a replica that is fresh enough (and has replayed `after`, a WAL position,
   * when given); undefined when none is, or it failed: then the caller reads from the primary.
   */
  read<R = Record<string, unknown>>(query: CompiledQuery, parameters: readonly unknown[], after?: string): Promise<R[] | undefined>;
  /** The primary's WAL position now: every write acknowledged before this call is at or below it. */
  position(): Promise<string>;
  status(): ReplicaStatus[];
  /** Reads that went to the primary because no replica could take them. */
  fallbacks(): number;
  close(): Promise<void>;
}

/** The storage a Rampart app runs on. */
export interface Storage {
  /** Backend name, for logs and metric labels only. */
  readonly kind: 'sqlite' | 'postgres';
  /** What the backend supports. */
  readonly capabilities: StorageCapabilities;
  /** Column types by field kind. */
  readonly columnTypes: ColumnTypes;
  /** Full-text indexes. */
  readonly search: SearchBackend;
  /** Connection for writes (and for reads that must see this node's latest writes). */
  readonly db: Kysely<any>;
  /** Connection for plain reads outside transactions. */
  readonly reader: Kysely<any>;
  /**
   * Run a compiled read on the read path with these parameters: the hot lane for point reads
   * and lists, which may skip the query builder's executor where the driver allows.
   */
  read<R = Record<string, unknown>>(query: CompiledQuery, parameters: readonly unknown[]): Promise<R[]>;
  /** Read replicas for reads that may be slightly stale (see postgres/replicas.ts); none by default. */
  readonly replicas?: ReplicaRouter;
  /** Run `fn` in one transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (trx: Kysely<any>) => Promise<T>): Promise<T>;
  /**
   * Inside a transaction opened by `transaction()`: run `fn` after the transaction's own work,
   * as its last statements before COMMIT (skipped if it fails first).
   */
  beforeCommit(trx: Kysely<any>, fn: () => Promise<void>): void;
  /** Inside a transaction opened by `transaction()`: run `fn` once it has committed or rolled back. */
  afterEnd(trx: Kysely<any>, fn: () => void): void;
  /**
   * Run `fn` in one transaction that also holds the cluster-wide migration lock, so that
   * many nodes starting at once apply each migration exactly once.
   */
  withMigrationLock<T>(fn: (trx: Kysely<any>) => Promise<T>): Promise<T>;
  /**
   * Inside a transaction, take exclusive locks on these names until it ends (in one global
   * order, so two transactions never wait for each other in a cycle). Where a write transaction
   * already excludes every other writer (SQLite) this does nothing.
   */
  lockNames(trx: Kysely<any>, names: string[]): Promise<void>;
  /**
   * The database's clock in epoch milliseconds, as an SQL expression. It is the one clock of a
   * cluster: leases, due times and cron ticks are judged by it, never by a node's own clock.
   */
  readonly nowMs: RawBuilder<number>;
  /** Read the database's clock (epoch ms). */
  dbNow(): Promise<number>;
  /**
   * Wake the listeners of `channel` with `payload` once `trx` commits (not at all if it rolls
   * back). Outside a transaction, pass `db`: listeners are woken at once.
   */
  notify(trx: Kysely<any>, channel: string, payload: string): Promise<void>;
  /**
   * Listen on a channel. `onState(true)` is called whenever the listening connection is
   * (re)established; notifications sent while it was down are lost, so callers look for
   * missed work then. Resolves to a function that stops listening.
   */
  listen(channel: string, fn: (payload: string) => void, onState?: (connected: boolean) => void): Promise<() => void>;
  /** Refresh the query planner's statistics (after bulk loads, restores). */
  analyze(): Promise<void>;
  /** Check the database answers; rejects after `timeoutMs`. */
  ping(timeoutMs: number): Promise<void>;
  /** Classify a driver error. */
  classifyError(err: unknown): DbErrorInfo;
  /** Pool figures. */
  poolStats(): PoolStats;
  /** Close every connection. */
  close(): Promise<void>;
}
