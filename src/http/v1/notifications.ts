/**
 * `/api/vN/notifications…` (a signed-in user's inbox: list, read, read all, delete) and
 * `/api/vN/devices…` (register, list and remove push tokens). See notify/notifications.ts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Guard } from '../../auth/guard.js';
import { RampartError } from '../../core/errors.js';
import type { Notifications } from '../../notify/notifications.js';
import { denied } from '../../records/access.js';
import { problemRef, queryParams } from '../params.js';

const idParam = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] };

export function registerNotificationRoutes(app: FastifyInstance, notes: Notifications, guard: Guard, root: string): void {
  const user = async (req: FastifyRequest, what: string) => {
    const p = await guard(req);
    if (p.kind !== 'user') throw denied(p, what);
    return p.id;
  };
  const id = (req: FastifyRequest) => (req.params as { id: string }).id;

  app.get(`${root}/notifications`, {
    schema: {
      tags: ['notifications'],
      summary: 'Your notifications, newest first (`unread=true`, `limit`, `cursor`)',
      response: { 401: problemRef },
    },
    handler: async (req) => {
      const q = queryParams(req, ['unread', 'limit', 'cursor']);
      const who = await user(req, 'read notifications');
      const limit = q.limit === undefined ? 20 : /^\d{1,3}$/.test(q.limit) ? Number(q.limit) : Number.NaN;
      if (!(limit >= 1 && limit <= 100)) throw new RampartError('E_INVALID_QUERY', 'limit must be an integer from 1 to 100');
      if (q.unread !== undefined && !['true', 'false'].includes(q.unread))
        throw new RampartError('E_INVALID_QUERY', 'unread must be true or false');
      if (q.cursor !== undefined && !/^[0-9a-f-]{36}$/.test(q.cursor))
        throw new RampartError('E_INVALID_CURSOR', 'cursor must be the next_cursor of a page');
      return notes.list(who, { unread: q.unread === 'true', limit, cursor: q.cursor });
    },
  });
  app.post(`${root}/notifications/read-all`, {
    schema: { tags: ['notifications'], summary: 'Mark every notification read', response: { 401: problemRef } },
    handler: async (req) => {
      queryParams(req, []);
      return { marked: await notes.markAllRead(await user(req, 'read notifications')) };
    },
  });
  app.post(`${root}/notifications/:id/read`, {
    schema: {
      tags: ['notifications'],
      summary: 'Mark a notification read',
      params: idParam,
      response: { 401: problemRef, 404: problemRef },
    },
    handler: async (req) => {
      queryParams(req, []);
      return notes.markRead(await user(req, 'read notifications'), id(req));
    },
  });
  app.delete(`${root}/notifications/:id`, {
    schema: {
      tags: ['notifications'],
      summary: 'Delete a notification',
      params: idParam,
      response: { 204: { type: 'null' }, 401: problemRef, 404: problemRef },
    },
    handler: async (req, reply) => {
      queryParams(req, []);
      await notes.remove(await user(req, 'delete notifications'), id(req));
      return reply.code(204).send();
    },
  });

  app.post(`${root}/devices`, {
    schema: {
      tags: ['notifications'],
      summary:
        'Register a push token: `{provider: "fcm"|"apns", token}` or `{provider: "webpush", subscription}`, with app_platform and app_version',
      response: { 201: { type: 'object', additionalProperties: true }, 400: problemRef, 401: problemRef },
    },
    handler: async (req, reply) => {
      queryParams(req, []);
      return reply.code(201).send(await notes.register(await user(req, 'register devices'), req.body));
    },
  });
  app.get(`${root}/devices`, {
    schema: { tags: ['notifications'], summary: 'Your registered devices', response: { 401: problemRef } },
    handler: async (req) => {
      queryParams(req, []);
      return { items: await notes.devices(await user(req, 'list devices')) };
    },
  });
  app.delete(`${root}/devices/:id`, {
    schema: {
      tags: ['notifications'],
      summary: 'Remove a device (no more pushes to it)',
      params: idParam,
      response: { 204: { type: 'null' }, 401: problemRef, 404: problemRef },
    },
    handler: async (req, reply) => {
      queryParams(req, []);
      await notes.unregister(await user(req, 'remove devices'), id(req));
      return reply.code(204).send();
    },
  });
}
