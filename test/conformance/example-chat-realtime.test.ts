/**
 * The example chat as a real chat: messages appear live to members, members who are not connected
 * get a push and an inbox entry, typing indicators and presence per room (members only), read
 * receipts live.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import chatApp from '../../examples/chat/rampart.config.ts';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';
import { FakePush } from '../helpers/fake-push.js';
import { RtClient } from '../helpers/realtime.js';

for (const b of await backendMatrix()) {
  describe(`example chat, live (${b.name})`, { skip: b.skip }, () => {
    let t: TestApp;
    const fake = new FakePush();
    const clients: RtClient[] = [];
    before(async () => {
      await fake.start();
      t = await startTestApp(b.name, chatApp, { ...fake.env(), RAMPART_JOBS_POLL_MS: '50' });
    });
    after(async () => {
      for (const c of clients) c.close();
      await t?.close();
      await fake.stop();
    });

    test('live messages, pushes to offline members, typing, presence and read receipts', async () => {
      const [alice, bob, carol] = [await t.signIn(), await t.signIn(), await t.signIn()];
      const room = (await t.req('POST', '/api/v1/collections/rooms/records', { name: `live-${b.name}-${Date.now()}` }, alice.auth)).body;
      assert.equal((await t.req('POST', '/api/v1/collections/members/records', { room: room.id, user: bob.id }, alice.auth)).status, 201);
      assert.equal((await t.req('POST', '/api/v1/devices', { provider: 'fcm', token: `fcm-bob-${b.name}-device` }, bob.auth)).status, 201);

      const a = await RtClient.connect(t.url, alice.access);
      clients.push(a);
      await a.subscribe({ id: 'msgs', collection: 'messages', filter: `room = "${room.id}"` });
      await a.subscribe({ id: 'reads', collection: 'receipts', filter: `room = "${room.id}"` });
      await a.subscribe({ id: 'inbox', notifications: true });
      a.send({ type: 'join', channel: `room:${room.id}` });
      await a.next((m) => m.type === 'joined');
      await t.app.realtime.online.flush();

      // Bob (offline) writes: Alice sees the message and a notification live; no push for her.
      const m1 = await t.req('POST', '/api/v1/collections/messages/records', { room: room.id, body: 'hi from bob' }, bob.auth);
      assert.equal(m1.status, 201, m1.raw);
      const live = await a.next((m) => m.type === 'event' && m.record.id === m1.body.id);
      assert.equal(live.record.body, 'hi from bob');
      const note = await a.next((m) => m.type === 'notification');
      assert.deepEqual(note.notification.data, { room: room.id, message: m1.body.id });

      // Alice writes: Bob is not connected, so he gets a push and an inbox entry.
      const m2 = await t.req('POST', '/api/v1/collections/messages/records', { room: room.id, body: 'hello bob' }, alice.auth);
      await t.app.jobs.settle({ queues: ['rampart.push'] });
      const pushed = fake.calls.filter((c) => c.token === `fcm-bob-${b.name}-device` && c.status === 200);
      assert.equal(pushed.length, 1, 'one push to Bob');
      const inbox = await t.req('GET', '/api/v1/notifications', undefined, bob.auth);
      assert.equal(inbox.body.items[0].data.message, m2.body.id);

      // Carol is not in the room: she cannot join its channel.
      const c = await RtClient.connect(t.url, carol.access);
      clients.push(c);
      c.send({ type: 'join', id: 'j', channel: `room:${room.id}` });
      assert.equal((await c.next((m) => m.type === 'error')).code, 'E_FORBIDDEN');

      // Bob comes online: presence, typing, and a read receipt reach Alice.
      const bc = await RtClient.connect(t.url, bob.access);
      clients.push(bc);
      bc.send({ type: 'join', channel: `room:${room.id}`, meta: { name: 'Bob' } });
      await bc.next((m) => m.type === 'joined');
      await a.next((m) => m.type === 'presence' && m.joins.some((j: { user: string }) => j.user === bob.id));
      bc.send({ type: 'publish', channel: `room:${room.id}`, event: 'typing', data: { typing: true } });
      const typing = await a.next((m) => m.type === 'message' && m.event === 'typing');
      assert.equal(typing.from, bob.id);
      const receipt = await t.req('POST', '/api/v1/collections/receipts/records', { room: room.id, last_read: m2.body.id }, bob.auth);
      assert.equal(receipt.status, 201, receipt.raw);
      const seen = await a.next((m) => m.type === 'event' && m.subs.includes('reads'));
      assert.equal(seen.record.last_read, m2.body.id);
      assert.equal(seen.record.user, bob.id);
    });
  });
}
