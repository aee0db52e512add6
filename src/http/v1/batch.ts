import type { FastifyInstance } from 'fastify';
import type { Guard } from '../../auth/guard.js';
import { validationError } from '../../core/errors.js';
import { requestLog } from '../../observability/logger.js';
import { BATCH_MAX, type RecordsService } from '../../records/service.js';
import { appliedRecorder } from '../idempotency.js';
import { problemRef, queryParams } from '../params.js';

/** `POST /api/vN/batch`: up to 100 writes in one transaction, all or nothing. */
export function registerBatchRoute(app: FastifyInstance, records: RecordsService, guard: Guard, root: string): void {
  app.post(`${root}/batch`, {
    schema: {
      tags: ['batch'],
      summary: `Run up to ${BATCH_MAX} writes in one transaction`,
      description:
        'All operations commit together or none does. On failure the problem names `failed_operation` ' +
        "and gives every operation's outcome in `results`.",
      body: {
        type: 'object',
        required: ['operations'],
        properties: {
          operations: {
            type: 'array',
            minItems: 1,
            maxItems: BATCH_MAX,
            items: {
              type: 'object',
              required: ['op', 'collection'],
              properties: {
                op: { type: 'string', enum: ['create', 'update', 'delete', 'restore'] },
                collection: { type: 'string' },
                id: { type: 'string', format: 'uuid' },
                data: { type: 'object' },
                if_match: { type: 'integer', minimum: 1, description: 'expected version (update, delete)' },
              },
            },
          },
        },
      },
      response: {
        200: {
          type: 'object',
          properties: {
            results: { type: 'array', items: { type: 'object', properties: { status: { type: 'integer' }, record: { type: 'object' } } } },
          },
        },
        400: problemRef,
        404: problemRef,
        409: problemRef,
        412: problemRef,
      },
    },
    handler: async (req) => {
      queryParams(req, []);
      const body = req.body as { operations?: unknown } | null;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw validationError([{ field: 'body', code: 'type', message: 'must be an object with "operations"' }]);
      }
      const extra = Object.keys(body).filter((k) => k !== 'operations');
      if (extra.length > 0) throw validationError(extra.map((k) => ({ field: k, code: 'unknown_field', message: 'is not a batch field' })));
      return {
        results: await records.forRequest(requestLog(req), await guard(req), undefined, appliedRecorder(req)).batch(body.operations),
      };
    },
  });
}
