/**
 * `/api/vN/admin/webhooks…`: admins subscribe URLs to record events, change, disable, re-enable
 * and remove subscriptions, and read each one's delivery log. See notify/webhooks.ts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Guard, requireAdmin } from '../../auth/guard.js';
import { RampartError } from '../../core/errors.js';
import type { Webhooks } from '../../notify/webhooks.js';
import { problemRef, queryParams } from '../params.js';

const tags = ['admin'];
const idParam = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] };
const webhookSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    url: { type: 'string' },
    events: { type: 'array', items: { type: 'string' } },
    description: { type: ['string', 'null'] },
    active: { type: 'boolean' },
    disabled_reason: { type: ['string', 'null'] },
    consecutive_failures: { type: 'integer' },
    owner: { type: ['string', 'null'] },
    created_at: { type: 'string' },
    updated_at: { type: 'string' },
    secret: { type: 'string', description: 'whsec_… signing key; only in the answer that creates the subscription' },
  },
};
const body = {
  type: 'object',
  properties: {
    url: { type: 'string', format: 'uri' },
    events: { type: 'array', items: { type: 'string' }, description: '"messages.created", "rooms.*", "*.deleted" or "*"' },
    description: { type: ['string', 'null'] },
    active: { type: 'boolean', description: 'false disables; true re-enables (the failure count starts over)' },
  },
};

export function registerWebhookRoutes(app: FastifyInstance, webhooks: Webhooks, guard: Guard, root: string): void {
  const base = `${root}/admin/webhooks`;
  const id = (req: FastifyRequest) => (req.params as { id: string }).id;

  app.post(base, {
    schema: {
      tags,
      summary: 'Subscribe a URL to record events (the answer holds the signing secret, shown once)',
      body: { ...body, required: ['url', 'events'] },
      response: { 201: webhookSchema, 400: problemRef, 403: problemRef },
    },
    handler: async (req, reply) => {
      queryParams(req, []);
      const p = await requireAdmin(guard, req, 'manage webhooks');
      return reply
        .code(201)
        .header('cache-control', 'no-store')
        .send(await webhooks.create(p.kind === 'user' ? p.id : null, req.body));
    },
  });

  app.get(base, {
    schema: {
      tags,
      summary: 'Webhook subscriptions',
      response: { 200: { type: 'object', properties: { items: { type: 'array', items: webhookSchema } } } },
    },
    handler: async (req) => {
      queryParams(req, []);
      await requireAdmin(guard, req, 'read webhooks');
      return { items: await webhooks.list() };
    },
  });

  app.get(`${base}/:id`, {
    schema: { tags, summary: 'One webhook subscription', params: idParam, response: { 200: webhookSchema, 404: problemRef } },
    handler: async (req) => {
      queryParams(req, []);
      await requireAdmin(guard, req, 'read webhooks');
      return webhooks.get(id(req));
    },
  });

  app.patch(`${base}/:id`, {
    schema: {
      tags,
      summary: 'Change, disable or re-enable a subscription',
      params: idParam,
      body,
      response: { 200: webhookSchema, 400: problemRef, 404: problemRef },
    },
    handler: async (req) => {
      queryParams(req, []);
      await requireAdmin(guard, req, 'manage webhooks');
      return webhooks.update(id(req), req.body);
    },
  });

  app.delete(`${base}/:id`, {
    schema: {
      tags,
      summary: 'Remove a subscription and its delivery log',
      params: idParam,
      response: { 204: { type: 'null' }, 404: problemRef },
    },
    handler: async (req, reply) => {
      queryParams(req, []);
      await requireAdmin(guard, req, 'manage webhooks');
      await webhooks.remove(id(req));
      return reply.code(204).send();
    },
  });

  app.get(`${base}/:id/deliveries`, {
    schema: {
      tags,
      summary: 'The delivery log of a subscription, newest first',
      params: idParam,
      querystring: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: 200 }, cursor: { type: 'string' } } },
      response: { 404: problemRef },
    },
    handler: async (req) => {
      const q = queryParams(req, ['limit', 'cursor']);
      await requireAdmin(guard, req, 'read webhooks');
      const limit = q.limit === undefined ? 50 : Number(q.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 200)
        throw new RampartError('E_INVALID_QUERY', 'limit must be an integer from 1 to 200');
      if (q.cursor !== undefined && !/^msg_[0-9a-f]{32}$/.test(q.cursor))
        throw new RampartError('E_INVALID_CURSOR', 'cursor must be a next_cursor of this log');
      return webhooks.deliveries(id(req), { limit, before: q.cursor });
    },
  });
}
