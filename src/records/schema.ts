/**
 * Collection declarations. Field definitions are plain data (`{ type: 'text', max: 80 }`), so
 * an app can declare collections in TypeScript with the `f` helpers or in a JSON file.
 */

import type { EventsDef } from '../events/declare.js';
import type { JobDef, QueueDef, ScheduleDef } from '../jobs/define.js';
import type { ChannelDef } from '../realtime/channels.js';
import type { DependencyOptions } from '../resilience/http-client.js';
import type { RecordHooks } from './hooks.js';

/** What happens to referencing records when the referenced one is deleted. */
export type OnDelete = 'cascade' | 'set null' | 'restrict';

interface FieldBase {
  /** A value must be given on create and may not be null. */
  required?: boolean;
  /** No two live (not soft-deleted) records may share a value. */
  unique?: boolean;
  /** Value used on create when the client omits the field. */
  default?: unknown;
  /** One-line description, shown in the OpenAPI document. */
  description?: string;
  /** Never returned by the API, nor usable in client filters and sorts (password hashes, tokens). */
  hidden?: boolean;
  /** Clients other than admins cannot write it; server code and hooks can. */
  readOnly?: boolean;
  /**
   * Full-text searchable (text, email and url fields), with its weight in ranking: `A` (a title)
   * above `B`, `C` and `D` (a body). `true` is `A`.
   */
  search?: SearchWeight | true;
  /**
   * Stored encrypted (AES-256-GCM under a data key wrapped by RAMPART_MASTER_KEY) and decrypted
   * on read for callers allowed to read it. Text, email and url fields only; an encrypted field
   * cannot be unique, searchable, indexed, filtered or sorted (the database sees ciphertext).
   */
  encrypted?: boolean;
}

/** Search weights, highest first. */
export type SearchWeight = 'A' | 'B' | 'C' | 'D';
export const SEARCH_WEIGHTS: SearchWeight[] = ['A', 'B', 'C', 'D'];
/** Languages a collection's search can stem words for (PostgreSQL's built-in text search configurations). */
export const SEARCH_LANGUAGES = (
  'simple arabic armenian basque catalan danish dutch english finnish french german greek hindi hungarian indonesian irish ' +
  'italian lithuanian nepali norwegian portuguese romanian russian serbian spanish swedish tamil turkish yiddish'
).split(' ');

export interface TextField extends FieldBase {
  type: 'text';
  /** Minimum length in characters. */
  min?: number;
  /** Maximum length in characters. */
  max?: number;
  /** Regular expression the whole value must match. */
  pattern?: string;
}
export interface NumberField extends FieldBase {
  type: 'number' | 'integer';
  /** Smallest allowed value. */
  min?: number;
  /** Largest allowed value. */
  max?: number;
}
export interface SimpleField extends FieldBase {
  type: 'boolean' | 'datetime' | 'json' | 'email' | 'url';
}
export interface SelectField extends FieldBase {
  type: 'select';
  /** The allowed values. */
  values: string[];
}
export interface RelationField extends FieldBase {
  type: 'relation';
  /** Name of the referenced collection. */
  collection: string;
  /** Effect of deleting the referenced record (default `set null`, or `restrict` when required). */
  onDelete?: OnDelete;
  /** `auth`: set on create to the calling user's id (an owner field; implies readOnly). */
  auto?: 'auth';
}

export type FieldDef = TextField | NumberField | SimpleField | SelectField | RelationField;
export type FieldType = FieldDef['type'];

/** An index over one or more fields; `unique` indexes ignore soft-deleted records. */
export interface IndexDef {
  /** Field names in index order (base fields like `created_at` allowed). */
  fields: string[];
  /** Enforce uniqueness over live records. */
  unique?: boolean;
}

/** A collection as the app declares it. */
export interface CollectionDef {
  /** The fields, by name. */
  fields: Record<string, FieldDef>;
  /** Extra indexes: `[['room', 'created_at']]` or `{ fields, unique }`. */
  indexes?: Array<string[] | IndexDef>;
  /** Typed before/after hooks. */
  hooks?: RecordHooks;
  /**
   * Access rules per operation, as expressions (see rules.ts). An operation without a rule is
   * for admins only; `'true'` opens it to everyone, including anonymous callers.
   */
  rules?: CollectionRules;
  /** Search settings; the searchable fields are marked with `search` on the fields themselves. */
  search?: { language?: string };
}

/**
 * A collection's full-text index: its fields in index order with their weights, and the
 * language whose stemming applies (`english` unless declared).
 */
export interface SearchSpec {
  table: string;
  language: string;
  fields: Array<{ name: string; weight: SearchWeight }>;
}

/** The rule of each operation; admins pass every rule. */
export interface CollectionRules {
  /** Which records a list returns (compiled into the query's WHERE). */
  list?: string;
  /** Which records can be read one by one. */
  view?: string;
  /** Which new records can be created (tested against the record as it would be stored). */
  create?: string;
  /** Which records can be changed (tested against the stored record). */
  update?: string;
  /** Which records can be deleted and restored (tested against the stored record). */
  delete?: string;
}
export type RuleOp = keyof CollectionRules;
export const RULE_OPS: RuleOp[] = ['list', 'view', 'create', 'update', 'delete'];

/** Accounts settings of an app. */
export interface AuthDef {
  /** App-defined roles besides the built-in `admin` and `user`. */
  roles?: string[];
}

/** The app: its collections, accounts settings, jobs and cron schedules. */
export interface AppDef {
  /** Collections by name; `users` extends the built-in accounts collection. */
  collections: Record<string, CollectionDef>;
  /** Roles and other accounts settings. */
  auth?: AuthDef;
  /** Background jobs by name (`ctx.jobs.enqueue(name, payload)` in hooks). */
  jobs?: Record<string, JobDef>;
  /** Concurrency and rate limits of the jobs' queues. */
  queues?: Record<string, QueueDef>;
  /** Cron schedules by name; each tick enqueues one job, once across the cluster. */
  schedules?: Record<string, ScheduleDef>;
  /** Outbound HTTP dependencies by name (`ctx.http(name)` in hooks and jobs); `RAMPART_DEPENDENCIES` overrides per name. */
  dependencies?: Record<string, DependencyOptions>;
  /** Realtime channels by name: clients join `name` or `name:param` for messages and presence. */
  channels?: Record<string, ChannelDef>;
  /** Domain events to message brokers (RabbitMQ, NATS JetStream) and consumers of other services' events. */
  events?: EventsDef;
}

/** A normalized collection: the shape the storage layer, the service and migrations use. */
export interface CollectionSchema {
  name: string;
  fields: Record<string, FieldDef>;
  indexes: Array<Required<IndexDef>>;
  /** Rules as declared (validated at startup by the rule compiler). */
  rules: CollectionRules;
  /** The full-text index, when some fields are searchable. */
  search?: SearchSpec;
}

/** Field helpers: `f.text({ required: true, max: 80 })`. */
export const f = {
  text: (o: Omit<TextField, 'type'> = {}): TextField => ({ type: 'text', ...o }),
  number: (o: Omit<NumberField, 'type'> = {}): NumberField => ({ type: 'number', ...o }),
  integer: (o: Omit<NumberField, 'type'> = {}): NumberField => ({ type: 'integer', ...o }),
  boolean: (o: Omit<SimpleField, 'type'> = {}): SimpleField => ({ type: 'boolean', ...o }),
  datetime: (o: Omit<SimpleField, 'type'> = {}): SimpleField => ({ type: 'datetime', ...o }),
  json: (o: Omit<SimpleField, 'type'> = {}): SimpleField => ({ type: 'json', ...o }),
  email: (o: Omit<SimpleField, 'type'> = {}): SimpleField => ({ type: 'email', ...o }),
  url: (o: Omit<SimpleField, 'type'> = {}): SimpleField => ({ type: 'url', ...o }),
  select: (values: string[], o: Omit<SelectField, 'type' | 'values'> = {}): SelectField => ({
    type: 'select',
    values,
    ...o,
  }),
  relation: (collection: string, o: Omit<RelationField, 'type' | 'collection'> = {}): RelationField => ({
    type: 'relation',
    collection,
    ...o,
  }),
  /** The user who created the record: set by the server from the caller's identity, never by the client. */
  owner: (o: Omit<RelationField, 'type' | 'collection' | 'auto'> = {}): RelationField => ({
    type: 'relation',
    collection: 'users',
    auto: 'auth',
    readOnly: true,
    ...o,
  }),
};

/** Declare a collection (identity, for typing). */
export function collection(def: CollectionDef): CollectionDef {
  return def;
}

/** Declare the app (identity, for typing). */
export function defineApp<T extends AppDef>(def: T): T {
  return def;
}

/** Base fields every record has; the server sets them, clients cannot. */
export const BASE_FIELDS = ['id', 'created_at', 'updated_at', 'deleted_at', 'version'] as const;
const NAME_RE = /^[a-z][a-z0-9_]{0,62}$/;
const TYPES: FieldType[] = ['text', 'number', 'integer', 'boolean', 'datetime', 'json', 'email', 'url', 'select', 'relation'];

/** Thrown at startup for an invalid app declaration; the message names the collection and field. */
export class SchemaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchemaError';
  }
}

/** Validate and normalize the app's collections. Throws SchemaError with every problem found. */
export function normalizeCollections(app: AppDef): CollectionSchema[] {
  const problems: string[] = [];
  const names = Object.keys(app.collections ?? {});
  const out: CollectionSchema[] = [];
  for (const name of names) {
    const def = app.collections[name] as CollectionDef;
    const at = `collection ${JSON.stringify(name)}`;
    if (!NAME_RE.test(name)) problems.push(`${at}: name must match ${NAME_RE} (lower case, starts with a letter)`);
    if (typeof def !== 'object' || def === null || typeof def.fields !== 'object' || def.fields === null) {
      problems.push(`${at}: must have a "fields" object`);
      continue;
    }
    const fields: Record<string, FieldDef> = {};
    for (const [fname, fdef] of Object.entries(def.fields)) {
      const fat = `${at}, field ${JSON.stringify(fname)}`;
      if (!NAME_RE.test(fname)) problems.push(`${fat}: name must match ${NAME_RE}`);
      if ((BASE_FIELDS as readonly string[]).includes(fname)) problems.push(`${fat}: is a base field set by the server`);
      if (!fdef || !TYPES.includes(fdef.type)) {
        problems.push(`${fat}: type must be one of ${TYPES.join(', ')}`);
        continue;
      }
      problems.push(...checkField(fat, fdef, names));
      fields[fname] = normalizeField(fdef);
    }
    const indexes: Array<Required<IndexDef>> = [];
    for (const idx of def.indexes ?? []) {
      const norm = Array.isArray(idx) ? { fields: idx, unique: false } : { fields: idx.fields, unique: !!idx.unique };
      for (const fname of norm.fields) {
        if (!(fname in fields) && !(BASE_FIELDS as readonly string[]).includes(fname)) {
          problems.push(`${at}: index refers to unknown field ${JSON.stringify(fname)}`);
        }
      }
      if (norm.fields.length === 0) problems.push(`${at}: an index needs at least one field`);
      for (const fname of norm.fields) if (fields[fname]?.encrypted) problems.push(`${at}: encrypted field ${fname} cannot be indexed`);
      indexes.push(norm);
    }
    if (def.rules !== undefined && (typeof def.rules !== 'object' || def.rules === null)) {
      problems.push(`${at}: rules must be an object`);
    }
    const rules: CollectionRules = {};
    for (const [op, rule] of Object.entries(def.rules ?? {})) {
      if (!(RULE_OPS as string[]).includes(op)) problems.push(`${at}: unknown rule ${JSON.stringify(op)} (use ${RULE_OPS.join(', ')})`);
      else if (typeof rule !== 'string') problems.push(`${at}: rule ${op} must be a string expression`);
      else rules[op as RuleOp] = rule;
    }
    const search = searchSpecOf(name, fields, def.search, problems);
    out.push(search ? { name, fields, indexes, rules, search } : { name, fields, indexes, rules });
  }
  if (problems.length > 0) throw new SchemaError(`Invalid app schema:\n  ${problems.join('\n  ')}`);
  return out;
}

function searchSpecOf(
  name: string,
  fields: Record<string, FieldDef>,
  settings: CollectionDef['search'],
  problems: string[],
): SearchSpec | undefined {
  const at = `collection ${JSON.stringify(name)}`;
  const searchable = Object.entries(fields)
    .filter(([, d]) => d.search !== undefined)
    .map(([field, d]) => ({ name: field, weight: d.search === true ? 'A' : (d.search as SearchWeight) }));
  if (settings !== undefined && (typeof settings !== 'object' || settings === null)) problems.push(`${at}: search must be an object`);
  const language = settings?.language ?? 'english';
  if (!SEARCH_LANGUAGES.includes(language)) {
    problems.push(`${at}: search language ${JSON.stringify(language)} is not one of ${SEARCH_LANGUAGES.join(', ')}`);
  }
  if (settings !== undefined && searchable.length === 0) problems.push(`${at}: search settings, but no field is marked searchable`);
  return searchable.length > 0 ? { table: name, language, fields: searchable } : undefined;
}

function checkField(at: string, def: FieldDef, collections: string[]): string[] {
  const p: string[] = [];
  if (def.encrypted !== undefined && typeof def.encrypted !== 'boolean') p.push(`${at}: encrypted must be true or false`);
  if (def.encrypted) {
    if (!['text', 'email', 'url'].includes(def.type)) p.push(`${at}: only text, email and url fields can be encrypted`);
    if (def.unique) p.push(`${at}: an encrypted field cannot be unique (each value is encrypted with a random nonce)`);
    if (def.search !== undefined) p.push(`${at}: an encrypted field cannot be searchable`);
  }
  if (def.search !== undefined) {
    if (def.search !== true && !SEARCH_WEIGHTS.includes(def.search)) p.push(`${at}: search must be true or a weight A, B, C or D`);
    if (!['text', 'email', 'url'].includes(def.type)) p.push(`${at}: only text, email and url fields can be searchable`);
    if (def.hidden) p.push(`${at}: a hidden field cannot be searchable (its words would show in results)`);
  }
  if (def.type === 'select' && (!Array.isArray(def.values) || def.values.length === 0)) {
    p.push(`${at}: select needs a non-empty "values" list`);
  }
  if (def.type === 'relation') {
    if (!collections.includes(def.collection)) p.push(`${at}: relation to unknown collection ${JSON.stringify(def.collection)}`);
    if (def.onDelete && !['cascade', 'set null', 'restrict'].includes(def.onDelete)) {
      p.push(`${at}: onDelete must be cascade, set null or restrict`);
    }
    if (def.required && def.onDelete === 'set null') p.push(`${at}: a required relation cannot use onDelete "set null"`);
    if (def.auto !== undefined && (def.auto !== 'auth' || def.collection !== 'users')) {
      p.push(`${at}: auto "auth" is only for relations to users`);
    }
  }
  if (def.type === 'text' && def.pattern !== undefined) {
    try {
      new RegExp(def.pattern, 'u');
    } catch {
      p.push(`${at}: pattern is not a valid regular expression`);
    }
  }
  if ('min' in def && 'max' in def && def.min !== undefined && def.max !== undefined && def.min > def.max) {
    p.push(`${at}: min is greater than max`);
  }
  return p;
}

function normalizeField(def: FieldDef): FieldDef {
  const copy = JSON.parse(JSON.stringify(def)) as FieldDef;
  if (copy.type === 'relation' && !copy.onDelete) copy.onDelete = copy.required ? 'restrict' : 'set null';
  if (copy.type === 'relation' && copy.auto) copy.readOnly = true;
  return copy;
}

/** JSON Schema (OpenAPI 3.1 dialect) of one field's value. */
export function fieldJsonSchema(def: FieldDef): Record<string, unknown> {
  const s: Record<string, unknown> = {};
  switch (def.type) {
    case 'text':
      Object.assign(s, { type: 'string', minLength: def.min, maxLength: def.max, pattern: def.pattern });
      break;
    case 'number':
    case 'integer':
      Object.assign(s, { type: def.type, minimum: def.min, maximum: def.max });
      break;
    case 'boolean':
      s.type = 'boolean';
      break;
    case 'datetime':
      Object.assign(s, { type: 'string', format: 'date-time' });
      break;
    case 'json':
      break;
    case 'email':
      Object.assign(s, { type: 'string', format: 'email' });
      break;
    case 'url':
      Object.assign(s, { type: 'string', format: 'uri' });
      break;
    case 'select':
      Object.assign(s, { type: 'string', enum: def.values });
      break;
    case 'relation':
      Object.assign(s, { type: 'string', format: 'uuid', description: `id of a ${def.collection} record` });
      break;
  }
  if (!def.required && typeof s.type === 'string') s.type = [s.type, 'null'];
  if (def.description) s.description = def.description;
  if (def.default !== undefined) s.default = def.default;
  for (const k of Object.keys(s)) if (s[k] === undefined) delete s[k];
  return s;
}

/** JSON Schemas of a collection: the record as returned, and the bodies of create and update. */
export function collectionJsonSchemas(c: CollectionSchema): Record<'record' | 'create' | 'update', Record<string, unknown>> {
  const props: Record<string, unknown> = {};
  const writable: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(c.fields)) {
    if (def.hidden) continue;
    props[name] = fieldJsonSchema(def);
    if (!def.readOnly) writable[name] = props[name];
  }
  const required = Object.entries(c.fields)
    .filter(([, d]) => d.required && d.default === undefined && !d.hidden && !d.readOnly)
    .map(([n]) => n);
  const base = {
    id: { type: 'string', format: 'uuid' },
    created_at: { type: 'string', format: 'date-time' },
    updated_at: { type: 'string', format: 'date-time' },
    deleted_at: { type: ['string', 'null'], format: 'date-time' },
    version: { type: 'integer', minimum: 1 },
  };
  return {
    record: { type: 'object', properties: { ...base, ...props }, required: ['id', 'created_at', 'updated_at', 'version'] },
    create: { type: 'object', properties: writable, required, additionalProperties: false },
    update: { type: 'object', properties: writable, additionalProperties: false },
  };
}
