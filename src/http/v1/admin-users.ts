/**
 * `/api/vN/admin/users/{id}/…`: an admin sees a user's sessions and devices and ends their
 * sessions (a stolen phone, a departing employee). Disabling an account is a PATCH of the user
 * record (`disabled`), which ends its sessions too. Every change is in the audit log.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Guard, requireAdmin } from '../../auth/guard.js';
import type { SessionStore } from '../../auth/sessions.js';
import { RampartError } from '../../core/errors.js';
import { isUuid } from '../../core/ids.js';
import { problemRef, queryParams } from '../params.js';

export interface AdminUsersDeps {
  sessions: SessionStore;
  guard: Guard;
  /** A user's registered push devices. */
  devices(userId: string): Promise<Array<Record<string, unknown>>>;
  /** Tell every node the session ended (its access tokens stop working at once). */
  onRevoked(sessionId: string): void;
}

export function registerAdminUserRoutes(app: FastifyInstance, d: AdminUsersDeps, root: string): void {
  const admin = async (req: FastifyRequest, what: string) => {
    await requireAdmin(d.guard, req, what);
    queryParams(req, []);
    const { id } = req.params as { id: string };
    if (!isUuid(id)) throw new RampartError('E_BAD_REQUEST', 'the user id must be a UUID');
    return id;
  };
  const tags = ['users'];
  const errors: Record<number, unknown> = { 400: problemRef, 401: problemRef, 403: problemRef, 404: problemRef };
  const uuid = { type: 'string', format: 'uuid' };
  const userParam = { type: 'object', properties: { id: uuid }, required: ['id'] };

  app.get(
    `${root}/admin/users/:id/sessions`,
    { schema: { tags, summary: "A user's live sessions", params: userParam, response: errors } },
    async (req) => {
      return { items: await d.sessions.list(await admin(req, "list a user's sessions")) };
    },
  );

  app.delete(
    `${root}/admin/users/:id/sessions/:sid`,
    {
      schema: {
        tags,
        summary: "End one of a user's sessions",
        params: { type: 'object', properties: { id: uuid, sid: { type: 'string', maxLength: 100 } }, required: ['id', 'sid'] },
        response: { 204: { type: 'null' }, ...errors },
      },
    },
    async (req, reply) => {
      const id = await admin(req, "end a user's sessions");
      const { sid } = req.params as { sid: string };
      if (!(await d.sessions.revoke(id, sid, 'ended_by_admin')))
        throw new RampartError('E_RECORD_NOT_FOUND', 'this user has no live session with this id');
      d.onRevoked(sid);
      return reply.code(204).send();
    },
  );

  app.delete(
    `${root}/admin/users/:id/sessions`,
    { schema: { tags, summary: 'End every session of a user', params: userParam, response: errors } },
    async (req) => {
      const id = await admin(req, "end a user's sessions");
      const live = await d.sessions.list(id);
      const ended = await d.sessions.revokeAll(id, 'ended_by_admin');
      for (const s of live) d.onRevoked(s.id);
      return { ended };
    },
  );

  app.get(
    `${root}/admin/users/:id/devices`,
    { schema: { tags, summary: "A user's push devices", params: userParam, response: errors } },
    async (req) => {
      return { items: await d.devices(await admin(req, "list a user's devices")) };
    },
  );
}
