/**
 * Outgoing webhooks, on each backend, against a local receiver that fails on demand: admin-only
 * subscriptions, signed deliveries (Standard Webhooks) from the write's transaction, retries with
 * the same webhook-id, the delivery log, hidden fields never sent, a subscription disabled after
 * failing deliveries (its owner mailed) and re-enabled, and private addresses refused by default.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import chat from '../fixtures/open-chat.ts';
import { type SignedIn, startTestApp, type TestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

class Receiver {
  server: Server;
  url = '';
  got: Received[] = [];
  /** Status to answer per path, first to last; 200 after. */
  plan = new Map<string, number[]>();
  constructor() {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        const path = req.url ?? '/';
        this.got.push({ path, headers: req.headers, body });
        const status = this.plan.get(path)?.shift() ?? (path.startsWith('/broken') ? 500 : 200);
        res.writeHead(status).end();
      });
    });
  }
  async start() {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }
  at(path: string) {
    return this.got.filter((g) => g.path === path);
  }
  close() {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(r));
  }
}

const verify = (secret: string, r: Received) => {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key)
    .update(`${r.headers['webhook-id']}.${r.headers['webhook-timestamp']}.${r.body}`)
    .digest('base64');
  return String(r.headers['webhook-signature']) === `v1,${expected}`;
};

for (const { name, skip } of await backendMatrix()) {
  describe(`webhooks (${name})`, { skip }, () => {
    const receiver = new Receiver();
    let t: TestApp;
    let admin: SignedIn;
    before(async () => {
      await receiver.start();
      t = await startTestApp(name, chat, {
        RAMPART_WEBHOOKS_ALLOW_PRIVATE: 'true',
        RAMPART_WEBHOOK_RETRIES: '2',
        RAMPART_WEBHOOK_RETRY_BASE_MS: '20',
        RAMPART_WEBHOOK_DISABLE_AFTER: '2',
        RAMPART_JOBS_POLL_MS: '20',
      });
      admin = await t.signIn({ role: 'admin' });
    });
    after(async () => {
      await t?.close();
      await receiver.close();
    });
    const hooks = '/api/v1/admin/webhooks';
    const settle = () => t.app.jobs.settle({ queues: ['rampart.webhooks', 'rampart.mail'], delayed: true });

    test('only admins subscribe; bad subscriptions are 400s naming each field', async () => {
      const user = await t.signIn();
      assert.equal((await t.req('POST', hooks, { url: `${receiver.url}/x`, events: ['*'] }, user.auth)).status, 403);
      assert.equal((await t.req('GET', hooks)).status, 401);
      const bad = await t.req('POST', hooks, { url: 'ftp://x', events: ['nope.created', 'rooms.exploded'], extra: 1 }, admin.auth);
      assert.equal(bad.status, 400);
      assert.deepEqual(bad.body.errors.map((e: { field: string }) => e.field).sort(), ['events', 'extra', 'url']);
    });

    test('a write is delivered once, signed, with the visible record; the log says so', async () => {
      const created = await t.req(
        'POST',
        hooks,
        { url: `${receiver.url}/rooms`, events: ['rooms.created'], description: 'rooms' },
        admin.auth,
      );
      assert.equal(created.status, 201);
      assert.match(created.body.secret, /^whsec_[A-Za-z0-9+/=]{32}$/);
      assert.equal(
        (await t.req('GET', `${hooks}/${created.body.id}`, undefined, admin.auth)).body.secret,
        undefined,
        'the secret is shown once',
      );
      const room = await t.req('POST', '/api/v1/collections/rooms/records', { name: 'hooked' });
      await t.req('PATCH', `/api/v1/collections/rooms/records/${room.body.id}`, { topic: 'not subscribed' });
      // A batch that fails writes nothing, and sends nothing.
      const failed = await t.req('POST', '/api/v1/batch', {
        operations: [
          { op: 'create', collection: 'rooms', data: { name: 'never' } },
          { op: 'create', collection: 'rooms', data: { name: 'hooked' } },
        ],
      });
      assert.equal(failed.status, 409);
      await settle();
      const got = receiver.at('/rooms');
      assert.equal(got.length, 1);
      const [r] = got as [Received];
      assert.ok(verify(created.body.secret, r), 'the signature verifies with the secret');
      assert.ok(Math.abs(Number(r.headers['webhook-timestamp']) - Date.now() / 1000) < 300);
      assert.match(String(r.headers['webhook-id']), /^msg_[0-9a-f]{32}$/);
      const event = JSON.parse(r.body);
      assert.equal(event.type, 'rooms.created');
      assert.equal(event.data.collection, 'rooms');
      assert.equal(event.data.record.id, room.body.id);
      assert.equal(event.data.record.name, 'hooked');
      const log = await t.req('GET', `${hooks}/${created.body.id}/deliveries`, undefined, admin.auth);
      assert.equal(log.body.items.length, 1);
      assert.equal(log.body.items[0].state, 'succeeded');
      assert.equal(log.body.items[0].attempts, 1);
      assert.equal(log.body.items[0].last_status, 200);
      assert.equal(log.body.items[0].id, r.headers['webhook-id']);
    });

    test('hidden fields never leave: a users subscription gets no password hash', async () => {
      const sub = await t.req('POST', hooks, { url: `${receiver.url}/users`, events: ['users.created'] }, admin.auth);
      await t.signIn();
      await settle();
      const [r] = receiver.at('/users') as [Received];
      const record = JSON.parse(r.body).data.record;
      assert.ok(record.email);
      assert.equal(record.password_hash, undefined);
      await t.req('DELETE', `${hooks}/${sub.body.id}`, undefined, admin.auth);
    });

    test('a failing receiver: retried with the same webhook-id until it answers', async () => {
      const sub = await t.req('POST', hooks, { url: `${receiver.url}/flaky`, events: ['messages.*'] }, admin.auth);
      receiver.plan.set('/flaky', [503, 500]);
      const room = await t.req('POST', '/api/v1/collections/rooms/records', { name: 'flaky-room' });
      await t.req('POST', '/api/v1/collections/messages/records', { room: room.body.id, body: 'hi', author: 'a' });
      await settle();
      const got = receiver.at('/flaky');
      assert.equal(got.length, 3);
      assert.equal(new Set(got.map((g) => g.headers['webhook-id'])).size, 1, 'one webhook-id on every attempt');
      const log = await t.req('GET', `${hooks}/${sub.body.id}/deliveries`, undefined, admin.auth);
      assert.deepEqual(
        log.body.items.map((d: { state: string; attempts: number; last_status: number }) => [d.state, d.attempts, d.last_status]),
        [['succeeded', 3, 200]],
      );
      await t.req('DELETE', `${hooks}/${sub.body.id}`, undefined, admin.auth);
    });

    test('a subscription that keeps failing is disabled and its owner mailed; re-enabled by an admin', async () => {
      const sub = await t.req('POST', hooks, { url: `${receiver.url}/broken`, events: ['rooms.deleted'] }, admin.auth);
      for (let i = 0; i < 3; i++) {
        const room = await t.req('POST', '/api/v1/collections/rooms/records', { name: `doomed-${i}` });
        await t.req('DELETE', `/api/v1/collections/rooms/records/${room.body.id}`);
        await settle();
      }
      const after = await t.req('GET', `${hooks}/${sub.body.id}`, undefined, admin.auth);
      assert.equal(after.body.active, false);
      assert.match(after.body.disabled_reason, /2 deliveries in a row failed \(last: answered 500\)/);
      assert.equal(receiver.at('/broken').length, 6, 'two deliveries of 3 attempts; the third event found it disabled');
      const log = (await t.req('GET', `${hooks}/${sub.body.id}/deliveries`, undefined, admin.auth)).body.items;
      assert.deepEqual(
        log.map((d: { state: string }) => d.state),
        ['failed', 'failed'],
        'no delivery is recorded for an event after the subscription was disabled',
      );
      const mails = await t.mails(admin.email);
      assert.ok(
        mails.some((m) => /webhook/i.test(m) && m.includes(`${receiver.url}/broken`)),
        'the owner was mailed',
      );
      assert.match((await t.req('GET', '/metrics')).raw, /rampart_webhook_deliveries_total\{outcome="subscription-disabled"\} 1/);

      receiver.plan.set('/broken', [200]);
      const enabled = await t.req('PATCH', `${hooks}/${sub.body.id}`, { active: true }, admin.auth);
      assert.equal(enabled.body.active, true);
      assert.equal(enabled.body.consecutive_failures, 0);
      const room = await t.req('POST', '/api/v1/collections/rooms/records', { name: 'revived' });
      await t.req('DELETE', `/api/v1/collections/rooms/records/${room.body.id}`);
      await settle();
      assert.equal(receiver.at('/broken').length, 7);
      assert.equal(
        (await t.req('GET', `${hooks}/${sub.body.id}/deliveries?limit=1`, undefined, admin.auth)).body.items[0].state,
        'succeeded',
      );
    });
  });
}

describe('webhooks to private addresses', () => {
  test('are refused unless allowed (the delivery fails, naming why)', async () => {
    const t = await startTestApp('sqlite', chat, { RAMPART_WEBHOOK_RETRIES: '0', RAMPART_JOBS_POLL_MS: '20' });
    try {
      const admin = await t.signIn({ role: 'admin' });
      const sub = await t.req('POST', '/api/v1/admin/webhooks', { url: 'http://127.0.0.1:9/x', events: ['rooms.created'] }, admin.auth);
      await t.req('POST', '/api/v1/collections/rooms/records', { name: 'private' });
      await t.app.jobs.settle({ queues: ['rampart.webhooks'], delayed: true });
      const [d] = (await t.req('GET', `/api/v1/admin/webhooks/${sub.body.id}/deliveries`, undefined, admin.auth)).body.items;
      assert.equal(d.state, 'failed');
      assert.match(d.last_error, /private address/);
    } finally {
      await t.close();
    }
  });
});
