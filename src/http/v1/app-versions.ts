/**
 * App-version policy over HTTP:
 *  - `GET /api/vN/app/version-check?platform=&version=`: none, soft or hard, with the store URL;
 *  - requests carrying `X-App-Platform` and `X-App-Version`: below the minimum they get `426`
 *    (problem+json with the store URL), below the latest an `X-App-Update: soft` header;
 *  - `/api/vN/admin/app-versions[/{platform}]`: admins read, set and remove policies at runtime.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Guard, requireAdmin } from '../../auth/guard.js';
import { RampartError } from '../../core/errors.js';
import type { Metrics } from '../../observability/metrics.js';
import {
  type AppVersionPolicies,
  type AppVersionPolicy,
  isPlatform,
  PLATFORMS,
  parseVersion,
  type UpdateStatus,
  updateStatus,
} from '../../protect/app-versions.js';
import { problemRef, queryParams } from '../params.js';

/** The version check answers every app, even one that must update. */
const CHECK_ROUTE = /^\/api\/v\d+\/app\/version-check/;

/** What a client at a version must do, and how. */
function verdict(policy: AppVersionPolicy | undefined, status: UpdateStatus) {
  return {
    status,
    latest: policy?.latest ?? null,
    minimum: policy?.minimum ?? null,
    store_url: policy?.store_url ?? null,
    message: policy?.message ?? null,
  };
}

/**
 * Every API request from an app that says what it is: refuse versions below the minimum, mark
 * those below the latest. The version check itself always answers.
 */
export function registerAppVersionHook(app: FastifyInstance, policies: AppVersionPolicies, metrics: Metrics): void {
  app.addHook('onRequest', (req, reply, done) => {
    const platform = req.headers['x-app-platform'];
    const version = req.headers['x-app-version'];
    if (platform === undefined || version === undefined || !req.url.startsWith('/api/') || CHECK_ROUTE.test(req.url)) {
      done();
      return;
    }
    // Unknown platforms have no policy; a version that is not one is a client bug worth seeing.
    if (!isPlatform(platform)) {
      done();
      return;
    }
    const parsed = parseVersion(version);
    if (!parsed) {
      done(new RampartError('E_BAD_REQUEST', 'X-App-Version must be a semantic version (1.4.0, 2.0.0-beta.1)'));
      return;
    }
    const policy = policies.get(platform);
    const status = updateStatus(policy, parsed);
    metrics.countAppVersion(platform, status);
    if (status === 'hard') {
      done(
        new RampartError(
          'E_UPGRADE_REQUIRED',
          policy?.message ?? `version ${parsed} of the ${platform} app is no longer supported; update to ${policy?.latest}`,
          { extras: verdict(policy, status), headers: { Upgrade: `${platform}-app/${policy?.latest}` } },
        ),
      );
      return;
    }
    if (status === 'soft' && policy) {
      reply.header('x-app-update', 'soft');
      reply.header('x-app-latest-version', policy.latest);
    }
    done();
  });
}

/** The version check and the admins' routes, under one API version's prefix. */
export function registerAppVersionRoutes(
  app: FastifyInstance,
  policies: AppVersionPolicies,
  guard: Guard,
  metrics: Metrics,
  root: string,
): void {
  app.get(`${root}/app/version-check`, {
    schema: {
      tags: ['app'],
      summary: 'Whether an app version must (hard) or may (soft) update',
      querystring: {
        type: 'object',
        properties: { platform: { type: 'string', enum: [...PLATFORMS] }, version: { type: 'string' } },
        required: ['platform', 'version'],
      },
      response: {
        200: {
          type: 'object',
          properties: {
            status: { type: 'string', enum: ['none', 'soft', 'hard'] },
            latest: { type: ['string', 'null'] },
            minimum: { type: ['string', 'null'] },
            store_url: { type: ['string', 'null'] },
            message: { type: ['string', 'null'] },
          },
        },
        400: problemRef,
      },
    },
    handler: async (req) => {
      const { platform, version } = queryParams(req, ['platform', 'version']);
      if (!isPlatform(platform)) throw new RampartError('E_INVALID_QUERY', `platform must be one of ${PLATFORMS.join(', ')}`);
      const parsed = parseVersion(version);
      if (!parsed) throw new RampartError('E_INVALID_QUERY', 'version must be a semantic version (1.4.0, 2.0.0-beta.1)');
      const policy = policies.get(platform);
      const status = updateStatus(policy, parsed);
      metrics.countAppVersion(platform, status);
      return verdict(policy, status);
    },
  });

  const admin = (req: FastifyRequest, what: string) => requireAdmin(guard, req, what);
  const platformOf = (req: FastifyRequest) => {
    const { platform } = req.params as { platform: string };
    if (!isPlatform(platform)) throw new RampartError('E_POLICY_NOT_FOUND', `platform must be one of ${PLATFORMS.join(', ')}`);
    return platform;
  };
  const policySchema = {
    type: 'object',
    properties: {
      platform: { type: 'string', enum: [...PLATFORMS] },
      latest: { type: 'string' },
      minimum: { type: 'string' },
      store_url: { type: ['string', 'null'] },
      message: { type: ['string', 'null'] },
      updated_at: { type: 'string', format: 'date-time' },
      updated_by: { type: ['string', 'null'] },
    },
  };
  const platformParam = { type: 'object', properties: { platform: { type: 'string', enum: [...PLATFORMS] } } };

  app.get(`${root}/admin/app-versions`, {
    schema: {
      tags: ['admin'],
      summary: 'App-version policies',
      response: { 200: { type: 'object', properties: { items: { type: 'array', items: policySchema } } } },
    },
    handler: async (req) => {
      queryParams(req, []);
      await admin(req, 'read app-version policies');
      return { items: policies.list() };
    },
  });

  app.put(`${root}/admin/app-versions/:platform`, {
    schema: {
      tags: ['admin'],
      summary: "Set a platform's latest and minimum supported app version (applied on every node at once)",
      params: platformParam,
      body: {
        type: 'object',
        properties: {
          latest: { type: 'string' },
          minimum: { type: 'string' },
          store_url: { type: ['string', 'null'] },
          message: { type: ['string', 'null'] },
        },
        required: ['latest', 'minimum'],
      },
      response: { 200: policySchema, 400: problemRef, 403: problemRef },
    },
    handler: async (req) => {
      queryParams(req, []);
      const p = await admin(req, 'change app-version policies');
      return policies.set(platformOf(req), req.body, p.kind === 'user' ? p.id : null);
    },
  });

  app.delete(`${root}/admin/app-versions/:platform`, {
    schema: {
      tags: ['admin'],
      summary: "Remove a platform's policy",
      params: platformParam,
      response: { 204: { type: 'null' }, 404: problemRef },
    },
    handler: async (req, reply) => {
      queryParams(req, []);
      await admin(req, 'change app-version policies');
      await policies.remove(platformOf(req));
      return reply.code(204).send();
    },
  });
}
