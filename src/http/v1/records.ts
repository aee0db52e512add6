/**
 * `/api/v1/collections/{name}/records…`. Each collection gets its own static routes so that
 * the OpenAPI document shows its exact record and body schemas; a parametric fallback answers
 * unknown collections. Route schemas document the API; input is validated by the records
 * service (the one gate shared with batch and app code).
 */
import { hash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Guard } from '../../auth/guard.js';
import { RampartError } from '../../core/errors.js';
import { requestLog } from '../../observability/logger.js';
import { inSpan, tracingEnabled } from '../../observability/tracing.js';
import type { CachedAnswer, CacheOutcome, ReadCache } from '../../protect/read-cache.js';
import { accessOf } from '../../records/access.js';
import type { RecordData } from '../../records/hooks.js';
import { type CollectionSchema, collectionJsonSchemas } from '../../records/schema.js';
import { MAX_QUERY_LENGTH } from '../../records/search.js';
import type { ListParams, RecordsService } from '../../records/service.js';
import { type ApiVersion, listBody, listSchema } from '../api-versions.js';
import { appliedRecorder } from '../idempotency.js';
import { problemRef, queryParams } from '../params.js';
import type { ReadAfterWrites } from '../read-after-writes.js';

/** What the routes need besides the service. */
export interface RecordRouteDeps {
  records: RecordsService;
  /** The read cache of record reads and lists (absent when turned off). */
  cache: ReadCache | undefined;
  /** Whether the database is known to be down (reads then go to the cache's stale entries). */
  dbDown(): boolean;
  /** The caller of a request. */
  guard: Guard;
  /** The API version these routes serve (see api-versions.ts). */
  api: ApiVersion;
  /** Where reads may go when replicas are configured. */
  readAfterWrites?: ReadAfterWrites;
}

const LIST_PARAMS = ['filter', 'sort', 'limit', 'cursor', 'count', 'fields', 'deleted', 'q', 'typos', 'facets'] as const;

/** The ETag of a record: its version, which every write increments. */
export const etagOf = (r: Pick<RecordData, 'version'>) => `"${r.version}"`;

/** `If-Match: "3"` → 3; `*` or absent → undefined; anything else can never match → 412. */
export function parseIfMatch(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const value = (Array.isArray(header) ? header.join(',') : header).trim();
  if (value === '*') return undefined;
  const m = /^(?:W\/)?"(\d{1,15})"$/.exec(value);
  if (!m) throw new RampartError('E_PRECONDITION_FAILED', 'If-Match must be the ETag of the record ("<version>")');
  return Number(m[1]);
}

function ifNoneMatches(req: FastifyRequest, etag: string): boolean {
  const h = req.headers['if-none-match'];
  if (!h) return false;
  const bare = etag.replace(/^W\//, '');
  return h.split(',').some((t) => {
    const v = t.trim();
    return v === '*' || v.replace(/^W\//, '') === bare;
  });
}

const CACHE_STATUS: Record<CacheOutcome, string> = {
  hit: 'rampart; hit',
  'shared-hit': 'rampart; hit; detail=shared',
  miss: 'rampart; fwd=miss',
  stale: 'rampart; hit; detail=stale-if-error',
};

/** Send a JSON answer with its ETag, or 304 when the client has it. */
function sendAnswer(req: FastifyRequest, reply: FastifyReply, answer: CachedAnswer) {
  reply.header('etag', answer.etag);
  if (ifNoneMatches(req, answer.etag)) return reply.code(304).send();
  return reply.type('application/json; charset=utf-8').send(answer.body);
}

const isOutage = (err: unknown) => err instanceof RampartError && err.code === 'E_DB_UNAVAILABLE';
const dbUnavailable = () =>
  new RampartError('E_DB_UNAVAILABLE', 'the database is unavailable; retry shortly', { headers: { 'Retry-After': '2' } });

function sendRecord(req: FastifyRequest, reply: FastifyReply, record: RecordData, status = 200) {
  const etag = etagOf(record);
  reply.header('etag', etag);
  if (status === 200 && req.method === 'GET' && ifNoneMatches(req, etag)) return reply.code(304).send();
  return reply.code(status).send(record);
}

export function registerRecordRoutes(app: FastifyInstance, deps: RecordRouteDeps): void {
  // The service acts for the caller; its log lines go to the request's logger (with its request id).
  // Reads (GET) may use read replicas, after the caller's own last write.
  const ryw = deps.readAfterWrites;
  const svc = async (req: FastifyRequest) =>
    deps.records.forRequest(
      requestLog(req),
      await deps.guard(req),
      ryw && req.method === 'GET' ? await ryw.planFor(req, deps.guard) : undefined,
      appliedRecorder(req),
    );
  const { records, api, cache } = deps;
  // What a read's answer depends on, per collection and rule (computed once).
  const footprints = new Map<string, ReturnType<RecordsService['readFootprint']>>();
  const footprint = (collection: string, op: 'list' | 'view') => {
    let fp = footprints.get(`${op} ${collection}`);
    if (!fp) {
      fp = records.readFootprint(collection, op);
      footprints.set(`${op} ${collection}`, fp);
    }
    return fp;
  };
  /**
   * A read through the cache: keyed by the URL and by who asks — the caller when the rule
   * reads auth.*, else only their access level (admins see hidden fields); while the database
   * is down, only the cache answers (stale entries, marked so), else 503.
   */
  const cachedRead = async (
    req: FastifyRequest,
    reply: FastifyReply,
    collection: string,
    op: 'list' | 'view',
    produce: () => Promise<CachedAnswer>,
  ) => {
    // Collections with encrypted fields are never cached: answers hold their plaintext, and the
    // shared cache is Redis.
    if (!cache || !records.has(collection) || records.hasEncrypted(collection)) {
      if (deps.dbDown()) throw dbUnavailable();
      return sendAnswer(req, reply, await produce());
    }
    const p = await deps.guard(req);
    const fp = footprint(collection, op);
    const who = fp.usesAuth ? (p.kind === 'user' ? `u:${p.id}:${p.role}:${p.email}:${p.verified}` : 'anon') : accessOf(p);
    const lookup = () =>
      cache.read(`${who}|${req.url}`, fp.collections, () => (deps.dbDown() ? Promise.reject(dbUnavailable()) : produce()), isOutage);
    const { answer, outcome, ageS } = tracingEnabled()
      ? await inSpan('cache read', { 'rampart.collection': collection }, async (span) => {
          const r = await lookup();
          span.setAttribute('rampart.cache.outcome', r.outcome);
          return r;
        })
      : await lookup();
    reply.header('cache-status', CACHE_STATUS[outcome]);
    if (outcome !== 'miss') reply.header('age', String(ageS));
    return sendAnswer(req, reply, answer);
  };
  const idParam = { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] };
  const ifMatchHeader = {
    type: 'object',
    properties: { 'if-match': { type: 'string', description: 'ETag of the version being changed' } },
  };

  const register = (name: string | undefined, schema: CollectionSchema | undefined) => {
    const base = name ? `${api.root}/collections/${name}/records` : `${api.root}/collections/:collection/records`;
    const col = (req: FastifyRequest) => name ?? (req.params as { collection: string }).collection;
    const js = schema ? collectionJsonSchemas(schema) : undefined;
    const tags = [name ?? 'records'];
    const doc = (extra: Record<string, unknown>) => (js ? { tags, ...extra } : { hide: true });
    const record = js?.record ?? {};
    const errors = { 400: problemRef, 404: problemRef };

    app.get(base, {
      config: { staleIfError: true },
      schema: doc({
        summary: `List ${name} records`,
        querystring: {
          type: 'object',
          properties: {
            filter: { type: 'string', description: 'e.g. `room = "…" && created_at > "2026-01-01T00:00:00Z"`' },
            sort: { type: 'string', description: 'comma-separated fields, `-` for descending; default `-created_at`' },
            limit: { type: 'integer', minimum: 1, maximum: 200, default: 20 },
            cursor: { type: 'string', description: 'next_cursor of the previous page' },
            count: { type: 'boolean', description: 'include the total number of matching records' },
            fields: { type: 'string', description: 'comma-separated fields to return' },
            deleted: { type: 'string', enum: ['exclude', 'only', 'include'], description: '`only` lists the trash' },
            ...(schema?.search
              ? {
                  q: {
                    type: 'string',
                    maxLength: MAX_QUERY_LENGTH,
                    description: `full-text search of ${schema.search.fields.map((f) => f.name).join(', ')}: words, "a phrase", prefix*, -excluded; best match first`,
                  },
                  typos: { type: 'boolean', default: true, description: '`false`: match the words of q only as typed' },
                }
              : {}),
            facets: { type: 'string', description: 'comma-separated select, relation or boolean fields: counts per value' },
          },
        },
        response: {
          200: listSchema(api, {
            items: {
              type: 'array',
              items: schema?.search
                ? {
                    ...record,
                    properties: {
                      ...(record as { properties: object }).properties,
                      _search: {
                        type: 'object',
                        description: 'with q: relevance and snippets (HTML, text escaped, matches in <mark>) of matching fields',
                        properties: { score: { type: 'number' }, snippets: { type: 'object', additionalProperties: { type: 'string' } } },
                      },
                    },
                  }
                : record,
            },
            next_cursor: { type: ['string', 'null'] },
            total: { type: 'integer' },
            facets: {
              type: 'object',
              additionalProperties: {
                type: 'array',
                items: { type: 'object', properties: { value: {}, count: { type: 'integer' } } },
              },
            },
            typo_corrections: { type: 'object', additionalProperties: { type: 'array', items: { type: 'string' } } },
          }),
          ...errors,
        },
      }),
      handler: async (req, reply) => {
        const params = queryParams(req, LIST_PARAMS) as ListParams;
        return cachedRead(req, reply, col(req), 'list', async () => {
          const s = await svc(req);
          const body = JSON.stringify(listBody(api, await s.list(col(req), params)));
          // One-shot hash: no Hash object per request (this runs on every list).
          return { body, etag: `W/"${hash('sha1', body, 'base64url')}"`, noStore: s.readFromReplica() };
        });
      },
    });

    app.post(base, {
      schema: doc({ summary: `Create a ${name} record`, body: js?.create, response: { 201: record, ...errors, 409: problemRef } }),
      handler: async (req, reply) => {
        queryParams(req, []);
        const created = await (await svc(req)).create(col(req), req.body);
        reply.header('location', `${base.replace(':collection', col(req))}/${created.id}`);
        return sendRecord(req, reply, created, 201);
      },
    });

    app.get(`${base}/:id`, {
      config: { staleIfError: true },
      schema: doc({
        summary: `Get a ${name} record`,
        params: idParam,
        querystring: { type: 'object', properties: { deleted: { type: 'string', enum: ['only'] } } },
        response: { 200: record, 404: problemRef },
      }),
      handler: async (req, reply) => {
        const { deleted } = queryParams(req, ['deleted']);
        if (deleted !== undefined && deleted !== 'only') throw new RampartError('E_INVALID_QUERY', 'deleted must be "only"');
        return cachedRead(req, reply, col(req), 'view', async () => {
          const s = await svc(req);
          const rec = await s.get(col(req), (req.params as { id: string }).id, { trashed: deleted === 'only' });
          return { body: JSON.stringify(rec), etag: etagOf(rec), noStore: s.readFromReplica() };
        });
      },
    });

    app.patch(`${base}/:id`, {
      schema: doc({
        summary: `Update a ${name} record`,
        params: idParam,
        headers: ifMatchHeader,
        body: js?.update,
        response: { 200: record, ...errors, 409: problemRef, 412: problemRef },
      }),
      handler: async (req, reply) => {
        queryParams(req, []);
        const ifMatch = parseIfMatch(req.headers['if-match']);
        const rec = await (await svc(req)).update(col(req), (req.params as { id: string }).id, req.body, { ifMatch });
        return sendRecord(req, reply, rec);
      },
    });

    app.delete(`${base}/:id`, {
      schema: doc({
        summary: `Delete a ${name} record (soft; \`?purge=true\` removes it for good, admins only)`,
        params: idParam,
        headers: ifMatchHeader,
        querystring: { type: 'object', properties: { purge: { type: 'boolean' } } },
        response: { 200: record, 204: { type: 'null' }, 403: problemRef, 404: problemRef, 409: problemRef, 412: problemRef },
      }),
      handler: async (req, reply) => {
        const { purge } = queryParams(req, ['purge']);
        if (purge !== undefined && purge !== 'true' && purge !== 'false')
          throw new RampartError('E_INVALID_QUERY', 'purge must be true or false');
        const ifMatch = parseIfMatch(req.headers['if-match']);
        const id = (req.params as { id: string }).id;
        if (purge === 'true') {
          await (await svc(req)).purge(col(req), id, { ifMatch });
          return reply.code(204).send();
        }
        return sendRecord(req, reply, await (await svc(req)).delete(col(req), id, { ifMatch }));
      },
    });

    app.post(`${base}/:id/restore`, {
      schema: doc({
        summary: `Restore a deleted ${name} record`,
        params: idParam,
        response: { 200: record, 404: problemRef, 409: problemRef },
      }),
      handler: async (req, reply) => {
        queryParams(req, []);
        return sendRecord(req, reply, await (await svc(req)).restore(col(req), (req.params as { id: string }).id));
      },
    });
  };

  for (const schema of records.collections()) register(schema.name, schema);
  register(undefined, undefined);

  app.get(`${api.root}/collections`, {
    schema: { tags: ['schema'], summary: 'The collections and their fields' },
    handler: async (req) => {
      queryParams(req, []);
      return {
        items: records.collections().map((c) => ({ name: c.name, fields: records.visibleSchema(c.name).fields, indexes: c.indexes })),
      };
    },
  });
}
