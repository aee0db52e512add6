/**
 * The records service: every read and write of app collections goes through here, whether
 * it comes from a REST route, the batch endpoint or app code. It validates input, runs
 * hooks, keeps the soft-delete and optimistic-concurrency rules, and maps database errors to
 * stable error codes.
 */
import { type CompiledQuery, type ExpressionBuilder, type Kysely, sql } from 'kysely';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { RampartError, validationError } from '../core/errors.js';
import { isUuid, uuidv7 } from '../core/ids.js';
import type { JobsClient, NotifyFn } from '../jobs/define.js';
import type { HttpDependency } from '../resilience/http-client.js';
import type { ReadPlan, Storage } from '../storage/types.js';
import { type Access, accessOf, denied, type Principal, ruleAuthOf, SYSTEM } from './access.js';
import { type CipherFactory, RowCodec } from './codec.js';
import { parseFilter } from './filter.js';
import type { EmitFn, HookContext, HookRegistry, RecordData, WriteKind } from './hooks.js';
import {
  afterCursor,
  bindFilter,
  bindParameters,
  cached,
  decodeCursor,
  encodeCursor,
  filterExpression,
  orderTerms,
  parseSort,
  SCORE,
  Slot,
  type SortKey,
  sortSignature,
} from './query.js';
import { compileRules, type RuleExpr, type RuleFootprint, ruleFootprint } from './rules.js';
import { type BoundRule, bindRule, type RuleEnv, ruleSql } from './rules-sql.js';
import type { CollectionSchema, RuleOp, SearchSpec } from './schema.js';
import { BASE_FIELDS } from './schema.js';
import { indexesOf } from './schema-diff.js';
import { parseSearch, snippetHtml, withoutStopwords } from './search.js';
import { addWords, correctTypos, recordVocabulary } from './search-index.js';
import { validateInput } from './validate.js';

/** Listing parameters as they arrive in a query string. */
export interface ListParams {
  /** Filter expression (see filter.ts). */
  filter?: string;
  /** Sort spec: `-created_at,name`. */
  sort?: string;
  /** Page size, 1 to 200 (default 20). */
  limit?: string | number;
  /** Opaque cursor from a previous page. */
  cursor?: string;
  /** `true` to include the total count matching the filter. */
  count?: string | boolean;
  /** Comma-separated field names to return (`id` always included). */
  fields?: string;
  /** `only` lists the trash (soft-deleted records); `include` lists both. */
  deleted?: string;
  /** Full-text search (see search.ts): ranked by relevance unless `sort` says otherwise. */
  q?: string;
  /** `false` to match the words of `q` only as typed (no typo tolerance). */
  typos?: string | boolean;
  /** Comma-separated select, relation or boolean fields to count records per value of. */
  facets?: string;
}

/** How a search matched a record: its relevance and, per searchable field that matched, a snippet. */
export interface SearchHit {
  score: number;
  /** HTML: the field's text escaped, matches in `<mark>`. */
  snippets: Record<string, string>;
}

/** A facet's counts, most frequent values first. */
export type FacetCounts = Array<{ value: unknown; count: number }>;

/** One page of a list. */
export interface ListResult {
  items: Array<RecordData & { _search?: SearchHit }>;
  next_cursor: string | null;
  total?: number;
  /** Counts per value of each requested facet field, for the same query. */
  facets?: Record<string, FacetCounts>;
  /** Misspelled words of `q` and the known words they were widened to. */
  typo_corrections?: Record<string, string[]>;
}

/** A write operation of a batch. */
export type BatchOp =
  | { op: 'create'; collection: string; data: unknown }
  | { op: 'update'; collection: string; id: string; data: unknown; if_match?: number }
  | { op: 'delete'; collection: string; id: string; if_match?: number }
  | { op: 'restore'; collection: string; id: string };

/** A write's transaction and the after-commit work it queued. */
interface Tx {
  db: Kysely<any>;
  after: Array<() => Promise<void>>;
}

/** A collection with what is worked out once for it: codec and the compiled point reads. */
interface Prepared {
  schema: CollectionSchema;
  codec: RowCodec;
  /** The collection as API callers see it: hidden fields removed (from output, filters, sorts). */
  visible: { schema: CollectionSchema; codec: RowCodec };
  /** Checked access rules by operation. */
  rules: Partial<Record<RuleOp, RuleExpr>>;
  /** `select * … where id = ?` for live and for trashed records; only the id is bound per call. */
  byId: { live: CompiledQuery; trashed: CompiledQuery };
  /** Compiled list and count queries by shape (filter structure, sort, cursor nulls). */
  shapes: Map<string, CompiledQuery>;
  /** Parsed sort specs by their text. */
  sorts: Map<string, SortKey[]>;
}

export const LIST_LIMIT = { default: 20, max: 200 };
/**
 * A relevance-ordered page reads this many candidates per row it returns: the best matches,
 * ranked on the index alone, of which the filters and rules keep some.
 */
const RELEVANCE_CANDIDATES = 4;
/** The sort is best match first (score, then id, both descending). */
const byRelevance = (keys: SortKey[]) =>
  keys.length === 2 && keys[0]?.field === SCORE && keys[0].desc && keys[1]?.field === 'id' && keys[1].desc;
/** The same sort on the columns of a search's matches. */
const byRelevanceOnMatches: SortKey[] = [
  { field: SCORE, desc: true, nullable: false },
  { field: '_sid', desc: true, nullable: false },
];

/** Facet fields per request, and values returned per facet. */
export const FACETS = { fields: 4, values: 20 };

/** One write a transaction applied: what to answer when its request is retried after the answer was lost. */
export interface AppliedWrite {
  op: 'create' | 'update' | 'delete' | 'restore' | 'purge';
  collection: string;
  id: string;
  status: number;
}

/** Records, in a write's transaction, what it applied (`single` for one record's route, `batch` for /batch). */
export type AppliedRecorder = (db: Kysely<any>, kind: 'single' | 'batch', writes: AppliedWrite[]) => Promise<void>;

export const BATCH_MAX = 100;

export class RecordsService {
  private readonly prepared: Map<string, Prepared>;
  private readonly byName: Map<string, CollectionSchema>;
  /** Who this view of the service acts for (the base service acts for app code). */
  private readonly principal: Principal = SYSTEM;
  /** Whether (and after which write) reads may use replicas; never for app code and jobs. */
  private readonly reads: ReadPlan | undefined = undefined;
  /** Told, in each write's transaction, what it applied (a request with an Idempotency-Key: see protect/idempotency.ts). */
  private readonly applied: AppliedRecorder | undefined = undefined;
  /** Enqueues jobs on a connection or transaction; set by the app once the jobs component exists. */
  jobsFor: (db: Kysely<any>) => JobsClient = () => ({
    enqueue: async () => {
      throw new Error('jobs are not available in this process');
    },
  });
  /** Notifications on a connection or transaction (`ctx.notify`); set by the app. */
  notifyFor: (db: Kysely<any>) => NotifyFn = () => async () => {
    throw new Error('notifications are not available in this process');
  };
  /** Outbound HTTP dependencies for hooks (`ctx.http(name)`); set by the app. */
  /** Encrypts and decrypts fields declared `encrypted`; set by the app once its data keys are loaded. */
  cipher?: CipherFactory;
  http: (name: string) => HttpDependency = (name) => {
    throw new Error(`no outbound dependency ${JSON.stringify(name)} in this process`);
  };
  /** Domain events on a connection or transaction (`ctx.emit`); set by the app. */
  emitFor: (db: Kysely<any>) => EmitFn = () => async () => {
    throw new Error('domain events are not available in this process');
  };

  /** What a hook gets besides the record, on a transaction (or the database, after commit). */
  private hookContext(collection: string, db: Kysely<any>, change?: WriteKind): HookContext {
    return {
      collection,
      db,
      auth: this.principal,
      jobs: this.jobsFor(db),
      http: this.http,
      notify: this.notifyFor(db),
      emit: this.emitFor(db),
      ...(change ? { change } : {}),
    };
  }
  /** Relation fields pointing at each collection: who must react when it is deleted. */
  /**
   * Told, inside each write transaction, of the collections it wrote (and those its deletes may
   * cascade to); what it returns runs right after the commit. Read caches invalidate through it.
   */
  writeObserver: ((db: Kysely<any>, collections: string[]) => Promise<() => void>) | undefined;
  private readonly referrers = new Map<string, Array<{ collection: string; field: string; onDelete: string }>>();
  /** Hidden fields each collection's view rule reads (worked out once, for realtime checks). */
  private readonly hiddenRuleFields = new Map<string, string[]>();

  constructor(
    private readonly storage: Storage,
    collections: CollectionSchema[],
    private readonly hooks: HookRegistry,
    private readonly clock: Clock,
    private readonly log: Logger,
    /** Told when a query failed because the database is unreachable (not merely busy or slow). */
    private readonly onUnavailable: () => void = () => {},
  ) {
    const byId = (name: string, trashed: boolean) =>
      storage.reader
        .selectFrom(name)
        .selectAll()
        .where('id', '=', '')
        .where('deleted_at', trashed ? 'is not' : 'is', null)
        .compile();
    // Throws at startup, naming every bad rule.
    const rules = compileRules(collections);
    this.byName = new Map(collections.map((c) => [c.name, c]));
    const visibleOf = (c: CollectionSchema): CollectionSchema => ({
      ...c,
      fields: Object.fromEntries(Object.entries(c.fields).filter(([, d]) => !d.hidden)),
    });
    this.prepared = new Map(
      collections.map((c) => [
        c.name,
        {
          schema: c,
          codec: new RowCodec(storage.capabilities, c, () => this.cipher),
          visible: { schema: visibleOf(c), codec: new RowCodec(storage.capabilities, visibleOf(c), () => this.cipher) },
          rules: rules.get(c.name) ?? {},
          byId: { live: byId(c.name, false), trashed: byId(c.name, true) },
          shapes: new Map(),
          sorts: new Map(),
        },
      ]),
    );
    for (const c of collections) {
      for (const [field, def] of Object.entries(c.fields)) {
        if (def.type !== 'relation') continue;
        const list = this.referrers.get(def.collection) ?? [];
        list.push({ collection: c.name, field, onDelete: def.onDelete ?? 'set null' });
        this.referrers.set(def.collection, list);
      }
    }
  }

  /**
   * This service with its log lines going to `log` (a request's logger, so they carry the
   * request id). A view sharing everything else: one object per request, nothing copied.
   */
  withLog(log: Logger): RecordsService {
    return this.forRequest(log, this.principal);
  }

  /**
   * This service acting for `principal` (rules and field protection apply to API callers),
   * with its log lines going to the request's logger. One small object per request.
   */
  forRequest(log: Logger, principal: Principal, reads?: ReadPlan, applied?: AppliedRecorder): RecordsService {
    // Object.create(proto) then assignments: both take V8's cached fast paths (a property
    // descriptor argument would not), and this runs once per request.
    const view = Object.create(this) as {
      log: Logger;
      principal: Principal;
      reads: ReadPlan | undefined;
      applied: AppliedRecorder | undefined;
    };
    view.log = log;
    view.principal = principal;
    view.reads = reads;
    view.applied = applied;
    return view as unknown as RecordsService;
  }

  /**
   * A point read or a list page: on a read replica when this request allows it (an API read,
   * see read-after-writes.ts) and one is fresh enough, else on the primary.
   */
  private async hotRead<R = Record<string, unknown>>(query: CompiledQuery, params: readonly unknown[]): Promise<R[]> {
    const replicas = this.storage.replicas;
    if (replicas && this.reads) {
      const rows = await replicas.read<R>(query, params, this.reads.after);
      if (rows) {
        (this as unknown as { fromReplica: boolean }).fromReplica = true;
        return rows;
      }
    }
    return this.storage.read<R>(query, params);
  }

  /** Whether a read of this request view was answered by a replica (not to be cached as fresh). */
  readFromReplica(): boolean {
    return (this as unknown as { fromReplica?: boolean }).fromReplica === true;
  }

  /** This service acting for `principal`, for app code that acts on a user's behalf. */
  as(principal: Principal): RecordsService {
    return this.forRequest(this.log, principal);
  }

  private access(): Access {
    return accessOf(this.principal);
  }

  /** The schema and codec this caller sees. */
  private seen(c: Prepared): { schema: CollectionSchema; codec: RowCodec } {
    return this.access() === 'system' ? c : c.visible;
  }

  private ruleEnv(values?: Record<string, unknown>): RuleEnv {
    return {
      caps: this.storage.capabilities,
      byName: this.byName,
      auth: ruleAuthOf(this.principal),
      now: this.nowIso(),
      values,
    };
  }

  /**
   * The rule of `op` for this caller, folded: `true` when it does not restrict (app code,
   * admins, a rule that holds for every record), `false` when it holds for none, else a tree
   * for SQL whose values were appended to `values`. A missing rule means admins only.
   */
  private bindOp(c: Prepared, op: RuleOp, values: unknown[], record?: Record<string, unknown>): BoundRule | boolean {
    if (this.access() !== 'client') return true;
    const rule = c.rules[op];
    if (!rule) throw denied(this.principal, `${op === 'list' || op === 'view' ? 'read' : op} ${c.schema.name} records`);
    return bindRule(rule, this.ruleEnv(record), c.schema, values);
  }

  /** Refuse the operation unless the stored record `id` passes the rule of `op`. */
  private async checkRow(db: Kysely<any>, c: Prepared, op: RuleOp, id: string): Promise<void> {
    const values: unknown[] = [id];
    const bound = this.bindOp(c, op, values);
    if (bound === true) return;
    const what = `${op} this ${c.schema.name} record`;
    if (bound === false) throw denied(this.principal, what);
    const name = c.schema.name;
    const q = cached(c.shapes, `${op}:${JSON.stringify(bound)}`, () =>
      this.storage.reader
        .selectFrom(name)
        .select(`${name}.id`)
        .where(`${name}.id`, '=', new Slot(0) as unknown as string)
        .where((eb) => ruleSql(eb, bound, this.ruleEnv(), c.schema, name))
        .compile(),
    );
    const { rows } = await db.executeQuery({ ...q, parameters: bindParameters(q.parameters, values) });
    if (rows.length === 0) throw denied(this.principal, what);
  }

  /** Refuse a create unless the new record passes the create rule. */
  private async checkCreate(db: Kysely<any>, c: Prepared, record: Record<string, unknown>): Promise<void> {
    const values: unknown[] = [];
    const bound = this.bindOp(c, 'create', values, record);
    if (bound === true) return;
    const what = `create this ${c.schema.name} record`;
    if (bound === false) throw denied(this.principal, what);
    const q = db
      .selectNoFrom(sql.lit(1).as('ok'))
      .where((eb) => ruleSql(eb, bound, this.ruleEnv(record), c.schema, c.schema.name))
      .compile();
    const { rows } = await db.executeQuery({ ...q, parameters: bindParameters(q.parameters, values) });
    if (rows.length === 0) throw denied(this.principal, what);
  }

  /** Refresh the database's planner statistics, after a bulk load. */
  analyze(): Promise<void> {
    return this.storage.analyze();
  }

  /** The collections, in declaration order. */
  /** Whether an app collection of this name exists. */
  has(collection: string): boolean {
    return this.prepared.has(collection);
  }

  collections(): CollectionSchema[] {
    return [...this.prepared.values()].map((p) => p.schema);
  }

  /** A collection's schema, or E_COLLECTION_NOT_FOUND. */
  schema(name: string): CollectionSchema {
    return this.collection(name).schema;
  }

  /** A collection's schema as API callers see it (no hidden fields). */
  visibleSchema(name: string): CollectionSchema {
    return this.collection(name).visible.schema;
  }

  private collection(name: string): Prepared {
    const p = this.prepared.get(name);
    if (!p) throw new RampartError('E_COLLECTION_NOT_FOUND', `there is no collection ${JSON.stringify(name)}`);
    return p;
  }

  private notFound(collection: string, id: string, trashed = false): RampartError {
    return new RampartError(
      'E_RECORD_NOT_FOUND',
      `${collection} has no ${trashed ? 'deleted ' : ''}record ${JSON.stringify(id.slice(0, 64))}`,
    );
  }

  /** Map a driver error to a stable code; anything unknown is rethrown as is (a logged 500). */
  /**
   * A driver error as the client's problem (unique and relation violations, an unavailable or
   * busy database as 503 + Retry-After); anything else is returned as it is.
   */
  mapError(err: unknown, schema?: CollectionSchema, purge = false): unknown {
    if (err instanceof RampartError) return err;
    const info = this.storage.classifyError(err);
    if (info.kind === 'unique') {
      const index = schema
        ? indexesOf(schema).find((i) => i.name === info.constraint || `${i.table}.${i.columns[0]}` === info.constraint)
        : undefined;
      const fields = index?.columns ?? [];
      return new RampartError('E_UNIQUE_VIOLATION', `another record already has this ${fields.join(', ') || 'value'}`, {
        extras: { errors: fields.map((f) => ({ field: f, code: 'unique', message: 'must be unique' })) },
      });
    }
    if (info.kind === 'foreign_key') {
      return purge
        ? new RampartError('E_RELATION_RESTRICT', 'other records still refer to this record')
        : validationError([
            { field: info.constraint ?? 'relation', code: 'relation_not_found', message: 'refers to a record that does not exist' },
          ]);
    }
    if (info.kind === 'unavailable' || info.kind === 'busy' || info.kind === 'timeout') {
      // Only a lost database trips the node-wide fast-fail gate; a busy lock or a slow
      // statement fails this request alone.
      if (info.kind === 'unavailable') this.onUnavailable();
      this.log.warn({ err: (err as Error).message, kind: info.kind }, 'database error');
      return new RampartError('E_DB_UNAVAILABLE', 'the database is unavailable; retry shortly', {
        headers: { 'Retry-After': '2' },
        cause: err,
      });
    }
    return err;
  }

  /** Run a write in the caller's transaction, or a new one whose after-hooks run after commit. */
  private async write(
    outer: Tx | undefined,
    schema: CollectionSchema,
    op: AppliedWrite['op'],
    fn: (tx: Tx) => Promise<RecordData>,
  ): Promise<RecordData> {
    if (outer) return fn(outer);
    const after: Tx['after'] = [];
    let result: RecordData;
    try {
      result = await this.storage.transaction(async (db) => {
        const r = await fn({ db, after });
        await this.noteWrites(db, [schema.name], after);
        await this.applied?.(db, 'single', [{ op, collection: schema.name, id: r.id, status: op === 'create' ? 201 : 200 }]);
        return r;
      });
    } catch (err) {
      throw this.mapError(err, schema);
    }
    await this.runAfter(after);
    return result;
  }

  /** Tell the write observer what this transaction wrote, with everything a delete may cascade to. */
  private async noteWrites(db: Kysely<any>, names: Iterable<string>, after: Tx['after']): Promise<void> {
    if (!this.writeObserver) return;
    const all = new Set<string>();
    const add = (n: string) => {
      if (all.has(n)) return;
      all.add(n);
      for (const r of this.referrers.get(n) ?? []) add(r.collection);
    };
    for (const n of names) add(n);
    const done = await this.writeObserver(db, [...all]);
    after.unshift(async () => done());
  }

  /** What the list or view rule of a collection reads (for read caches); see ruleFootprint. */
  readFootprint(collection: string, op: 'list' | 'view'): RuleFootprint {
    const p = this.prepared.get(collection);
    return ruleFootprint(this.byName, collection, p?.rules[op]);
  }

  /**
   * For realtime delivery: whether this caller may view a record with these values (as it was
   * written), by the collection's view rule, judged against the database as it is now. Hidden
   * fields the rule reads are taken from the stored row (the values may lack them).
   */
  async mayView(collection: string, record: Record<string, unknown>): Promise<boolean> {
    const c = this.collection(collection);
    if (this.access() !== 'client') return true;
    const rule = c.rules.view;
    if (!rule) return false;
    let values = record;
    let hidden = this.hiddenRuleFields.get(collection);
    if (!hidden) {
      hidden = [...ruleFootprint(this.byName, collection, rule).recordFields].filter((f) => c.schema.fields[f]?.hidden);
      this.hiddenRuleFields.set(collection, hidden);
    }
    if (hidden.length > 0) {
      const row = await this.storage.reader.selectFrom(collection).select(hidden).where('id', '=', String(record.id)).executeTakeFirst();
      if (!row) return false;
      values = { ...record, ...c.codec.decode({ ...row, id: record.id }) };
    }
    const params: unknown[] = [];
    const env = this.ruleEnv(values);
    const bound = bindRule(rule, env, c.schema, params);
    if (typeof bound === 'boolean') return bound;
    const q = this.storage.reader
      .selectNoFrom(sql.lit(1).as('ok'))
      .where((eb) => ruleSql(eb, bound, env, c.schema, collection))
      .compile();
    const { rows } = await this.storage.reader.executeQuery({ ...q, parameters: bindParameters(q.parameters, params) });
    return rows.length > 0;
  }

  /** What the view rule of a collection depends on (see ruleFootprint); undefined: no rule (admins only). */
  viewFootprint(collection: string): RuleFootprint | undefined {
    const p = this.collection(collection);
    return p.rules.view ? ruleFootprint(this.byName, collection, p.rules.view) : undefined;
  }

  /** Whether a collection has fields declared `encrypted`. */
  hasEncrypted(collection: string): boolean {
    return Object.values(this.collection(collection).schema.fields).some((f) => f.encrypted);
  }

  /** The names of a collection's hidden fields (never sent to API callers). */
  hiddenFields(collection: string): string[] {
    const c = this.collection(collection);
    return Object.keys(c.schema.fields).filter((f) => c.schema.fields[f]?.hidden);
  }

  private async runAfter(after: Array<() => Promise<void>>): Promise<void> {
    for (const fn of after) {
      try {
        await fn();
      } catch (err) {
        this.log.error({ err }, 'after-hook failed (the write is committed)');
      }
    }
  }

  /**
   * Run the "on" hooks of a written row inside its transaction, and queue the "after" hooks
   * for after the commit.
   */
  private async written(
    tx: Tx,
    schema: CollectionSchema,
    event: 'Create' | 'Update' | 'Delete',
    record: RecordData,
    change: WriteKind = event === 'Create' ? 'create' : event === 'Update' ? 'update' : 'delete',
  ): Promise<void> {
    for (const h of this.hooks.get(schema.name, `on${event}`)) await h.fn(record, this.hookContext(schema.name, tx.db, change));
    for (const h of this.hooks.get(schema.name, `after${event}`)) {
      tx.after.push(async () => h.fn(record, this.hookContext(schema.name, this.storage.db, change)));
    }
  }

  private async runBeforeWrite(
    tx: Tx,
    schema: CollectionSchema,
    name: 'beforeCreate' | 'beforeUpdate',
    data: Record<string, unknown>,
    existing?: RecordData,
  ): Promise<Record<string, unknown>> {
    let current = data;
    for (const h of this.hooks.get(schema.name, name)) {
      const changed = await h.fn(current, { ...this.hookContext(schema.name, tx.db), existing });
      // A hook's change is checked like input (as server code): hooks cannot break the schema either.
      if (changed) current = validateInput(schema, changed, 'update');
    }
    if (name === 'beforeCreate') {
      const missing = Object.entries(schema.fields).filter(([f, d]) => d.required && (current[f] === undefined || current[f] === null));
      if (missing.length > 0) {
        throw validationError(missing.map(([f]) => ({ field: f, code: 'required', message: 'is required (and set by the server here)' })));
      }
    }
    return current;
  }

  /** Relation targets must exist and be live. */
  private async checkRelations(tx: Tx, schema: CollectionSchema, data: Record<string, unknown>): Promise<void> {
    const errors = [];
    for (const [field, def] of Object.entries(schema.fields)) {
      if (def.type !== 'relation' || data[field] === null || data[field] === undefined) continue;
      const found = await tx.db
        .selectFrom(def.collection)
        .select('id')
        .where('id', '=', data[field] as string)
        .where('deleted_at', 'is', null)
        .executeTakeFirst();
      if (!found) errors.push({ field, code: 'relation_not_found', message: `no ${def.collection} record has this id` });
    }
    if (errors.length > 0) throw validationError(errors);
  }

  private nowIso(): string {
    return new Date(this.clock.now()).toISOString();
  }

  /**
   * Read one record (live by default; `trashed` reads a soft-deleted one). A record the view
   * rule hides is reported as not found. `full` decodes hidden fields too (for the service's
   * own reads inside writes).
   */
  async get(collection: string, id: string, opts: { trashed?: boolean; db?: Kysely<any>; full?: boolean } = {}): Promise<RecordData> {
    const c = this.collection(collection);
    if (!isUuid(id)) throw this.notFound(collection, id, opts.trashed);
    const values: unknown[] = [id];
    const bound = this.bindOp(c, 'view', values);
    if (bound === false) throw this.notFound(collection, id, opts.trashed);
    let query = opts.trashed ? c.byId.trashed : c.byId.live;
    if (bound !== true) {
      query = cached(c.shapes, `view:${!!opts.trashed}:${JSON.stringify(bound)}`, () =>
        this.storage.reader
          .selectFrom(collection)
          .selectAll(collection)
          .where(`${collection}.id`, '=', new Slot(0) as unknown as string)
          .where(`${collection}.deleted_at`, opts.trashed ? 'is not' : 'is', null)
          .where((eb) => ruleSql(eb, bound, this.ruleEnv(), c.schema, collection))
          .compile(),
      );
    }
    const params = bound === true ? values : bindParameters(query.parameters, values);
    let row: Record<string, unknown> | undefined;
    try {
      row = opts.db
        ? (await opts.db.executeQuery<Record<string, unknown>>({ ...query, parameters: params })).rows[0]
        : (await this.hotRead(query, params))[0];
    } catch (err) {
      throw this.mapError(err, c.schema);
    }
    if (!row) throw this.notFound(collection, id, opts.trashed);
    return (opts.full ? c.codec : this.seen(c).codec).decode(row);
  }

  /**
   * One page of records with filter, sort, keyset cursor, field selection and optional count;
   * with `q`, the records matching a full-text search, best first, with snippets; with
   * `facets`, counts per value of those fields over everything the query matches.
   */
  async list(collection: string, params: ListParams = {}): Promise<ListResult> {
    const c = this.collection(collection);
    const { schema, codec } = this.seen(c);
    const caps = this.storage.capabilities;
    const limit = parseLimit(params.limit);
    const access = this.access();
    const search = params.q !== undefined && params.q !== '' ? await this.parseQ(c.schema, params) : undefined;
    const keys = cached(c.sorts, `${access === 'system'}:${!!search}:${params.sort ?? ''}`, () => parseSort(schema, params.sort, !!search));
    const only = parseFields(schema, params.fields);
    const facets = parseFacets(schema, params.facets);
    const deleted = params.deleted ?? 'exclude';
    if (!['exclude', 'only', 'include'].includes(deleted)) {
      throw new RampartError('E_INVALID_QUERY', 'deleted must be exclude, only or include');
    }
    const withCount = params.count === true || params.count === 'true' || params.count === '1';
    if (params.count !== undefined && !withCount && !['false', '0', false].includes(params.count)) {
      throw new RampartError('E_INVALID_QUERY', 'count must be true or false');
    }
    // Bind first (all checks, all values), then fetch the compiled SQL for this shape.
    const values: unknown[] = [];
    const rule = this.bindOp(c, 'list', values);
    if (rule === false || (search && search.text === undefined)) {
      return {
        items: [],
        next_cursor: null,
        ...(withCount ? { total: 0 } : {}),
        ...(facets.length > 0 ? { facets: Object.fromEntries(facets.map((f) => [f, []])) } : {}),
      };
    }
    const filter =
      params.filter !== undefined && params.filter !== '' ? bindFilter(caps, schema, parseFilter(params.filter), values) : undefined;
    const match = search ? new Slot(values.push(search.text) - 1) : undefined;
    const cursor = params.cursor
      ? decodeCursor(caps, schema, keys, params.cursor).map((v) => (v === null ? null : new Slot(values.push(v) - 1)))
      : undefined;
    const limitSlot = new Slot(values.push(limit + 1) - 1);
    const candidatesSlot = new Slot(values.push((limit + 1) * RELEVANCE_CANDIDATES) - 1);
    const shape = JSON.stringify([
      access === 'system',
      deleted,
      filter,
      !!search,
      sortSignature(keys),
      cursor?.map((s) => s !== null),
      rule,
    ]);
    const where = (eb: ExpressionBuilder<any, any>) => {
      const conds = [];
      if (deleted === 'exclude') conds.push(eb('deleted_at', 'is', null));
      if (deleted === 'only') conds.push(eb('deleted_at', 'is not', null));
      if (filter) conds.push(filterExpression(eb, caps, filter));
      if (rule !== true) conds.push(ruleSql(eb, rule, this.ruleEnv(), c.schema, collection));
      return eb.and(conds);
    };
    // The records to list: the collection, joined with the search's matches (columns `_sid`, `_score`).
    const from = () => {
      const q = this.storage.reader.selectFrom(collection);
      if (!match || !c.schema.search) return q;
      const matches = this.storage.search.matches(c.schema.search, match, '_m');
      return q.innerJoin(matches, (j) => j.onRef('_m._sid' as never, '=', `${collection}.id` as never)) as unknown as typeof q;
    };
    const pageQuery = cached(c.shapes, `page:${shape}`, () => {
      let q = from().where(where).selectAll(collection);
      if (match) q = q.select(sql.ref(`_m.${SCORE}`).as(SCORE));
      if (cursor) q = q.where((eb) => afterCursor(eb, keys, cursor));
      for (const t of orderTerms(keys)) q = q.orderBy(t.expr, t.desc ? 'desc' : 'asc');
      return q.limit(limitSlot as unknown as number).compile();
    });
    const countQuery = withCount
      ? cached(c.shapes, `count:${shape}`, () =>
          from()
            .where(where)
            .select((eb) => eb.fn.countAll().as('n'))
            .compile(),
        )
      : undefined;
    const facetQueries = facets.map((field) =>
      cached(c.shapes, `facet:${field}:${shape}`, () =>
        from()
          .where(where)
          .select((eb) => [sql.ref(field).as('value'), eb.fn.countAll().as('n')])
          .groupBy(sql.ref(field))
          .orderBy('n', 'desc')
          .orderBy(sql.ref(field))
          .limit(FACETS.values)
          .compile(),
      ),
    );
    // Best match first (the default with q): rank the matches on the index alone, then read and
    // check only the best candidates (pageRows below).
    const candidateQuery =
      match && c.schema.search && byRelevance(keys)
        ? cached(c.shapes, `candidates:${shape}`, () => {
            const matches = this.storage.search.matches(c.schema.search as SearchSpec, match, '_a');
            let best = this.storage.reader.selectFrom(matches).select(['_a._sid', `_a.${SCORE}`]);
            // The cursor's keys are the score and the id: both are columns of the matches.
            if (cursor) best = best.where((eb) => afterCursor(eb, byRelevanceOnMatches, cursor));
            best = best
              .orderBy(`_a.${SCORE}`, 'desc')
              .orderBy('_a._sid', 'desc')
              .limit(candidatesSlot as unknown as number);
            return this.storage.reader
              .selectFrom(best.as('_m'))
              .leftJoin(collection, `${collection}.id`, '_m._sid')
              .selectAll(collection)
              .select((eb) => [sql.ref(`_m.${SCORE}`).as(SCORE), where(eb).as('_ok')])
              .orderBy(`_m.${SCORE}`, 'desc')
              .orderBy('_m._sid', 'desc')
              .compile();
          })
        : undefined;
    const run = (q: CompiledQuery) => this.hotRead(q, bindParameters(q.parameters, values));
    const pageRows = async () => {
      if (!candidateQuery) return run(pageQuery);
      const candidates = await run(candidateQuery);
      const passed = candidates.filter((r) => r._ok === true || r._ok === 1);
      // Exact when every match was a candidate, or when enough candidates passed the filters and
      // rules: a record that was not a candidate ranks after all of them.
      if (candidates.length < (limit + 1) * RELEVANCE_CANDIDATES || passed.length > limit) return passed.slice(0, limit + 1);
      return run(pageQuery);
    };
    try {
      const [rows, count, ...facetRows] = await Promise.all([
        pageRows(),
        countQuery ? run(countQuery) : undefined,
        ...facetQueries.map((q) => run(q)),
      ]);
      const more = rows.length > limit;
      const page = more ? rows.slice(0, limit) : rows;
      const last = rows[limit - 1];
      const result: ListResult = {
        items: page.map((r) => codec.decode(r, only)),
        next_cursor: more && last ? encodeCursor(keys, last) : null,
      };
      if (count) result.total = Number(count[0]?.n ?? 0);
      if (facets.length > 0) {
        result.facets = Object.fromEntries(
          facets.map((field, i) => [
            field,
            (facetRows[i] ?? []).map((r) => ({ value: codec.decode({ [field]: r.value })[field] ?? null, count: Number(r.n) })),
          ]),
        );
      }
      if (search?.text !== undefined && c.schema.search) {
        await this.attachSnippets(c, c.schema.search, search.text, page, result.items);
        if (Object.keys(search.corrections).length > 0) result.typo_corrections = search.corrections;
      }
      return result;
    } catch (err) {
      throw this.mapError(err, schema);
    }
  }

  /** Give each item of a search's page its score and the snippets of the fields that matched. */
  private async attachSnippets(
    c: Prepared,
    spec: SearchSpec,
    text: string,
    rows: Array<Record<string, unknown>>,
    items: ListResult['items'],
  ): Promise<void> {
    const snippets = new Map<string, Record<string, string>>();
    if (rows.length > 0) {
      // Compiled once per page size; the query text and the page's ids are bound.
      const q = cached(c.shapes, `snippets:${rows.length}`, () =>
        this.storage.search
          .snippets(
            spec,
            new Slot(0),
            rows.map((_, i) => new Slot(i + 1)),
          )
          .compile(this.storage.reader),
      );
      const found = await this.storage.read<Record<string, string>>(q, bindParameters(q.parameters, [text, ...rows.map((r) => r.id)]));
      for (const r of found) snippets.set(String(r.id), Object.fromEntries(spec.fields.map((f, i) => [f.name, r[`s${i}`] ?? ''])));
    }
    items.forEach((item, i) => {
      const marked: Record<string, string> = {};
      for (const [field, raw] of Object.entries(snippets.get(String(item.id)) ?? {})) {
        const html = snippetHtml(raw);
        if (html !== undefined) marked[field] = html;
      }
      item._search = { score: Number(rows[i]?.[SCORE]), snippets: marked };
    });
  }

  /**
   * Parse `q` for a collection's index, correcting typos unless `typos=false`: the backend's
   * query text, undefined when only stop words were given (nothing matches).
   */
  private async parseQ(
    schema: CollectionSchema,
    params: ListParams,
  ): Promise<{ text: string | undefined; corrections: Record<string, string[]> }> {
    if (!schema.search) {
      throw new RampartError('E_INVALID_QUERY', `q: collection ${schema.name} has no searchable fields (mark fields with \`search\`)`);
    }
    if (typeof params.q !== 'string') throw new RampartError('E_INVALID_QUERY', 'q must be given once');
    if (params.typos !== undefined && !['true', 'false', true, false].includes(params.typos)) {
      throw new RampartError('E_INVALID_QUERY', 'typos must be true or false');
    }
    let query = withoutStopwords(parseSearch(params.q), schema.search.language);
    if (!query) return { text: undefined, corrections: {} };
    let corrections: Record<string, string[]> = {};
    if (params.typos !== false && params.typos !== 'false') {
      try {
        ({ query, corrections } = await correctTypos(this.storage, schema.search, query));
      } catch (err) {
        throw this.mapError(err, schema);
      }
    }
    return { text: this.storage.search.queryText(query), corrections };
  }

  /** Create a record; `tx` joins a caller's transaction (batch, hooks). */
  async create(collection: string, body: unknown, tx?: Tx): Promise<RecordData> {
    const c = this.collection(collection);
    const { schema, codec } = c;
    const input = validateInput(schema, body, 'create', '', this.access());
    const p = this.principal;
    for (const [field, def] of Object.entries(schema.fields)) {
      // An owner field is the caller, whatever the body says; admins and app code may set it.
      if (def.type === 'relation' && def.auto === 'auth' && p.kind !== 'system' && input[field] === undefined) {
        input[field] = p.kind === 'user' ? p.id : null;
      }
    }
    return this.write(tx, schema, 'create', async (t) => {
      const data = await this.runBeforeWrite(t, schema, 'beforeCreate', input);
      await this.checkRelations(t, schema, data);
      const now = this.nowIso();
      const id = uuidv7(this.clock.now());
      await this.checkCreate(t.db, c, { ...data, id, created_at: now, updated_at: now, version: 1, deleted_at: null });
      const row = await t.db
        .insertInto(collection)
        .values({ id, created_at: now, updated_at: now, version: 1, ...codec.encode(data) })
        .returningAll()
        .executeTakeFirstOrThrow();
      const record = this.seen(c).codec.decode(row);
      if (schema.search) await addWords(t.db, schema.search, recordVocabulary(schema.search, record));
      await this.written(t, schema, 'Create', record);
      return record;
    });
  }

  /** Change fields of a live record; with `ifMatch`, only if its version still matches (else 412). */
  async update(collection: string, id: string, body: unknown, opts: { ifMatch?: number } = {}, tx?: Tx): Promise<RecordData> {
    const c = this.collection(collection);
    const { schema, codec } = c;
    if (!isUuid(id)) throw this.notFound(collection, id);
    const input = validateInput(schema, body, 'update', '', this.access());
    return this.write(tx, schema, 'update', async (t) => {
      const existing = await this.get(collection, id, { db: t.db, full: true });
      await this.checkRow(t.db, c, 'update', id);
      if (opts.ifMatch !== undefined && existing.version !== opts.ifMatch) throw stale(existing.version);
      const data = await this.runBeforeWrite(t, schema, 'beforeUpdate', input, existing);
      await this.checkRelations(t, schema, data);
      let q = t.db
        .updateTable(collection)
        .set((eb) => ({
          ...codec.encode(data),
          updated_at: this.nowIso(),
          version: eb('version', '+', 1),
        }))
        .where('id', '=', id)
        .where('deleted_at', 'is', null);
      // The version test is in the UPDATE itself: of concurrent writers with one If-Match, one wins.
      if (opts.ifMatch !== undefined) q = q.where('version', '=', opts.ifMatch);
      const row = await q.returningAll().executeTakeFirst();
      if (!row) {
        if (opts.ifMatch !== undefined) throw stale();
        throw this.notFound(collection, id);
      }
      const record = this.seen(c).codec.decode(row);
      // The index itself is kept by triggers; the vocabulary (for typos) is kept here.
      if (schema.search?.fields.some((f) => f.name in data)) {
        await addWords(t.db, schema.search, recordVocabulary(schema.search, record));
      }
      await this.written(t, schema, 'Update', record);
      return record;
    });
  }

  /**
   * Soft-delete a live record (restorable), applying each referring relation's onDelete:
   * `cascade` soft-deletes the referrers too (with the same deleted_at, so a restore brings
   * them back), `restrict` refuses while live referrers exist, `set null` takes effect at purge.
   */
  async delete(collection: string, id: string, opts: { ifMatch?: number } = {}, tx?: Tx): Promise<RecordData> {
    const c = this.collection(collection);
    const { schema } = c;
    if (!isUuid(id)) throw this.notFound(collection, id);
    return this.write(tx, schema, 'delete', async (t) => {
      const existing = await this.get(collection, id, { db: t.db, full: true });
      await this.checkRow(t.db, c, 'delete', id);
      if (opts.ifMatch !== undefined && existing.version !== opts.ifMatch) throw stale(existing.version);
      for (const h of this.hooks.get(collection, 'beforeDelete')) {
        await h.fn(existing, this.hookContext(collection, t.db, 'delete'));
      }
      const now = this.nowIso();
      await this.cascadeDelete(t, collection, [id], now);
      let q = t.db
        .updateTable(collection)
        .set((eb) => ({ deleted_at: now, updated_at: now, version: eb('version', '+', 1) }))
        .where('id', '=', id)
        .where('deleted_at', 'is', null);
      if (opts.ifMatch !== undefined) q = q.where('version', '=', opts.ifMatch);
      const row = await q.returningAll().executeTakeFirst();
      if (!row) throw opts.ifMatch !== undefined ? stale() : this.notFound(collection, id);
      const record = this.seen(c).codec.decode(row);
      await this.written(t, schema, 'Delete', record);
      return record;
    });
  }

  private async cascadeDelete(t: Tx, collection: string, ids: string[], now: string): Promise<void> {
    for (const ref of this.referrers.get(collection) ?? []) {
      if (ref.onDelete === 'set null') continue;
      const live = await t.db.selectFrom(ref.collection).select('id').where(ref.field, 'in', ids).where('deleted_at', 'is', null).execute();
      if (live.length === 0) continue;
      if (ref.onDelete === 'restrict') {
        throw new RampartError(
          'E_RELATION_RESTRICT',
          `${live.length} ${ref.collection} record(s) still refer to this record through ${ref.field}`,
        );
      }
      const childIds = live.map((r) => r.id as string);
      await this.cascadeDelete(t, ref.collection, childIds, now);
      await t.db
        .updateTable(ref.collection)
        .set((eb) => ({ deleted_at: now, updated_at: now, version: eb('version', '+', 1) }))
        .where('id', 'in', childIds)
        .execute();
    }
  }

  /** Bring back a soft-deleted record and whatever its deletion cascaded to. */
  async restore(collection: string, id: string, tx?: Tx): Promise<RecordData> {
    const c = this.collection(collection);
    const { schema } = c;
    if (!isUuid(id)) throw this.notFound(collection, id, true);
    return this.write(tx, schema, 'restore', async (t) => {
      const existing = await this.get(collection, id, { db: t.db, trashed: true, full: true });
      // Whoever may delete a record may bring it back.
      await this.checkRow(t.db, c, 'delete', id);
      const dead = Object.entries(schema.fields).filter(([f, d]) => d.type === 'relation' && existing[f] !== null);
      for (const [field, def] of dead) {
        if (def.type !== 'relation') continue;
        const parent = await t.db
          .selectFrom(def.collection)
          .select('deleted_at')
          .where('id', '=', existing[field] as string)
          .executeTakeFirst();
        if (parent && parent.deleted_at !== null) {
          throw new RampartError('E_CONFLICT', `restore the ${def.collection} record this one refers to through ${field} first`);
        }
      }
      const deletedAt = existing.deleted_at as string;
      await this.cascadeRestore(t, collection, [id], deletedAt);
      const row = await t.db
        .updateTable(collection)
        .set((eb) => ({ deleted_at: null, updated_at: this.nowIso(), version: eb('version', '+', 1) }))
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow();
      const record = this.seen(c).codec.decode(row);
      await this.written(t, schema, 'Update', record, 'restore');
      return record;
    });
  }

  private async cascadeRestore(t: Tx, collection: string, ids: string[], deletedAt: string): Promise<void> {
    for (const ref of this.referrers.get(collection) ?? []) {
      if (ref.onDelete !== 'cascade') continue;
      const rows = await t.db
        .selectFrom(ref.collection)
        .select('id')
        .where(ref.field, 'in', ids)
        .where('deleted_at', '=', deletedAt)
        .execute();
      if (rows.length === 0) continue;
      const childIds = rows.map((r) => r.id as string);
      await this.cascadeRestore(t, ref.collection, childIds, deletedAt);
      await t.db
        .updateTable(ref.collection)
        .set((eb) => ({ deleted_at: null, updated_at: this.nowIso(), version: eb('version', '+', 1) }))
        .where('id', 'in', childIds)
        .execute();
    }
  }

  /** Remove a record for good (live or trashed); the database applies onDelete to referrers. */
  async purge(collection: string, id: string, opts: { ifMatch?: number } = {}): Promise<void> {
    const schema = this.schema(collection);
    if (this.access() === 'client') throw denied(this.principal, 'purge records (admins only)');
    if (!isUuid(id)) throw this.notFound(collection, id);
    const after: Tx['after'] = [];
    try {
      await this.storage.transaction(async (db) => {
        const row = await db.selectFrom(collection).selectAll().where('id', '=', id).executeTakeFirst();
        if (!row) throw this.notFound(collection, id);
        if (opts.ifMatch !== undefined && Number(row.version) !== opts.ifMatch) throw stale(Number(row.version));
        await db.deleteFrom(collection).where('id', '=', id).execute();
        await this.applied?.(db, 'single', [{ op: 'purge', collection, id, status: 204 }]);
        const hooks = this.hooks.get(collection, 'onPurge');
        if (hooks.length > 0) {
          const record = this.seen(this.collection(collection)).codec.decode(row);
          for (const h of hooks) await h.fn(record, this.hookContext(collection, db, 'purge'));
        }
        await this.noteWrites(db, [collection], after);
      });
    } catch (err) {
      throw this.mapError(err, schema, true);
    }
    await this.runAfter(after);
  }

  /**
   * Up to BATCH_MAX writes in one transaction: all commit or none do. On failure the error
   * carries the failing operation's index and each operation's outcome.
   */
  async batch(ops: unknown): Promise<Array<{ status: number; record: RecordData }>> {
    if (!Array.isArray(ops) || ops.length === 0 || ops.length > BATCH_MAX) {
      throw validationError([{ field: 'operations', code: 'type', message: `must be a list of 1 to ${BATCH_MAX} operations` }]);
    }
    const parsed = ops.map((op, i) => parseBatchOp(op, i, this));
    const after: Tx['after'] = [];
    const results: Array<{ status: number; record: RecordData }> = [];
    try {
      await this.storage.transaction(async (db) => {
        const t = { db, after };
        for (const [i, op] of parsed.entries()) {
          try {
            results.push(await this.runBatchOp(op, t));
          } catch (err) {
            throw Object.assign(this.mapError(err, this.prepared.get(op.collection)?.schema) as object, { batchIndex: i });
          }
        }
        await this.noteWrites(db, new Set(parsed.map((op) => op.collection)), after);
        await this.applied?.(
          db,
          'batch',
          parsed.map((op, i) => ({
            op: op.op,
            collection: op.collection,
            id: results[i]?.record.id as string,
            status: results[i]?.status as number,
          })),
        );
      });
    } catch (err) {
      const index = (err as { batchIndex?: number }).batchIndex;
      if (!(err instanceof RampartError) || index === undefined) throw this.mapError(err);
      throw new RampartError(err.code, `operation ${index} failed, so the batch was rolled back: ${err.message}`, {
        headers: err.headers,
        extras: {
          ...err.extras,
          failed_operation: index,
          results: parsed.map((_, i) =>
            i === index ? { status: err.status, code: err.code } : { status: i < index ? 'rolled_back' : 'not_run' },
          ),
        },
      });
    }
    await this.runAfter(after);
    return results;
  }

  private async runBatchOp(op: BatchOp, t: Tx): Promise<{ status: number; record: RecordData }> {
    switch (op.op) {
      case 'create':
        return { status: 201, record: await this.create(op.collection, op.data, t) };
      case 'update':
        return { status: 200, record: await this.update(op.collection, op.id, op.data, { ifMatch: op.if_match }, t) };
      case 'delete':
        return { status: 200, record: await this.delete(op.collection, op.id, { ifMatch: op.if_match }, t) };
      case 'restore':
        return { status: 200, record: await this.restore(op.collection, op.id, t) };
    }
  }
}

function stale(current?: number): RampartError {
  return new RampartError(
    'E_PRECONDITION_FAILED',
    current === undefined ? 'the record was changed by someone else' : `the record is at version ${current}`,
    { extras: current === undefined ? {} : { current_version: current } },
  );
}

function parseLimit(raw: string | number | undefined): number {
  if (raw === undefined || raw === '') return LIST_LIMIT.default;
  const n = typeof raw === 'number' ? raw : /^\d{1,4}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > LIST_LIMIT.max) {
    throw new RampartError('E_INVALID_QUERY', `limit must be an integer from 1 to ${LIST_LIMIT.max}`);
  }
  return n;
}

function parseFacets(schema: CollectionSchema, raw: string | undefined): string[] {
  if (raw === undefined || raw === '') return [];
  if (typeof raw !== 'string') throw new RampartError('E_INVALID_QUERY', 'facets must be given once');
  const names = [...new Set(raw.split(',').map((s) => s.trim()))];
  if (names.length > FACETS.fields) throw new RampartError('E_INVALID_QUERY', `facets takes at most ${FACETS.fields} fields`);
  for (const n of names) {
    const def = Object.hasOwn(schema.fields, n) ? schema.fields[n] : undefined;
    if (!def || !['select', 'relation', 'boolean'].includes(def.type)) {
      throw new RampartError('E_INVALID_QUERY', `facets: ${JSON.stringify(n.slice(0, 64))} is not a select, relation or boolean field`);
    }
  }
  return names;
}

function parseFields(schema: CollectionSchema, raw: string | undefined): Set<string> | undefined {
  if (raw === undefined || raw === '') return undefined;
  const names = raw.split(',').map((s) => s.trim());
  if (names.length > 100) throw new RampartError('E_INVALID_FIELDS', 'too many fields');
  for (const n of names) {
    if (!(BASE_FIELDS as readonly string[]).includes(n) && !Object.hasOwn(schema.fields, n)) {
      throw new RampartError('E_INVALID_FIELDS', `unknown field ${JSON.stringify(n.slice(0, 64))} in fields`);
    }
  }
  return new Set(['id', ...names]);
}

function parseBatchOp(op: unknown, i: number, svc: RecordsService): BatchOp {
  const at = `operations/${i}`;
  const fail = (field: string, message: string): never => {
    throw validationError([{ field: `${at}/${field}`, code: 'type', message }]);
  };
  if (typeof op !== 'object' || op === null || Array.isArray(op)) return fail('', 'must be an object');
  const o = op as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!['op', 'collection', 'id', 'data', 'if_match'].includes(k)) fail(k, 'is not an operation field');
  }
  if (!['create', 'update', 'delete', 'restore'].includes(o.op as string)) fail('op', 'must be create, update, delete or restore');
  if (typeof o.collection !== 'string') fail('collection', 'must be a collection name');
  svc.schema(o.collection as string);
  if (o.op !== 'create' && typeof o.id !== 'string') fail('id', 'is required for this operation');
  if (o.if_match !== undefined && !(Number.isSafeInteger(o.if_match) && (o.if_match as number) > 0)) {
    fail('if_match', 'must be a positive integer version');
  }
  if ((o.op === 'create' || o.op === 'update') && o.data === undefined) fail('data', 'is required for this operation');
  return o as unknown as BatchOp;
}
