/**
 * Nobody receives a record they may not view: the example chat's rules (owners and members of a
 * room read its messages) over realtime, for owners, members, outsiders, admins and anonymous
 * clients, on WebSocket and Server-Sent Events, before and after a membership changes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import chatApp from '../../examples/chat/rampart.config.ts';
import { type SignedIn, startTestApp, type TestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';
import { RtClient } from '../helpers/realtime.js';

for (const b of await backendMatrix()) {
  describe(`realtime access rules (${b.name})`, { skip: b.skip }, () => {
    let t: TestApp;
    let owner: SignedIn;
    let member: SignedIn;
    let outsider: SignedIn;
    let admin: SignedIn;
    const clients: RtClient[] = [];
    const as = async (who: SignedIn | undefined) => {
      const c = await RtClient.connect(t.url, who?.access);
      clients.push(c);
      await c.subscribe({ id: 'm', collection: 'messages' });
      return c;
    };
    before(async () => {
      t = await startTestApp(b.name, chatApp, { RAMPART_REALTIME_POLL_MS: '200' });
      [owner, member, outsider, admin] = [await t.signIn(), await t.signIn(), await t.signIn(), await t.signIn({ role: 'admin' })];
    });
    after(async () => {
      for (const c of clients) c.close();
      await t?.close();
    });

    test('each subscriber receives exactly the messages its view rule allows, also after a member is removed', async () => {
      const room = (await t.req('POST', '/api/v1/collections/rooms/records', { name: `r-${b.name}-${Date.now()}` }, owner.auth)).body;
      const other = (await t.req('POST', '/api/v1/collections/rooms/records', { name: `o-${b.name}-${Date.now()}` }, outsider.auth)).body;
      const membership = await t.req('POST', '/api/v1/collections/members/records', { room: room.id, user: member.id }, owner.auth);
      assert.equal(membership.status, 201, membership.raw);
      const clientsByName = {
        owner: await as(owner),
        member: await as(member),
        outsider: await as(outsider),
        admin: await as(admin),
        anonymous: await RtClient.connect(t.url),
      };
      clients.push(clientsByName.anonymous);
      const anonSub = await clientsByName.anonymous.subscribe({ id: 'm', collection: 'messages' });
      const say = async (who: SignedIn, roomId: string, body: string) => {
        const r = await t.req('POST', '/api/v1/collections/messages/records', { room: roomId, body }, who.auth);
        assert.equal(r.status, 201, r.raw);
        return r.body.id as string;
      };
      const inRoom = [await say(owner, room.id, 'one'), await say(member, room.id, 'two')];
      const elsewhere = await say(outsider, other.id, 'private');
      // The membership ends; what is said afterwards must not reach the former member.
      const left = await t.req('DELETE', `/api/v1/collections/members/records/${membership.body.id}`, undefined, owner.auth);
      assert.equal(left.status, 200, left.raw);
      const afterLeaving = await say(owner, room.id, 'three');
      const marker = await say(outsider, other.id, 'marker');
      for (const c of Object.values(clientsByName)) {
        if (c === clientsByName.anonymous) continue;
        await c.until((e) => e.some((m) => m.record.id === marker || m.record.id === afterLeaving), 5000).catch(() => {});
      }
      await clientsByName.admin.until((e) => e.some((m) => m.record.id === marker));
      await new Promise((r) => setTimeout(r, 300));
      const got = (name: keyof typeof clientsByName) => clientsByName[name].events('m').map((e) => e.record.id);
      const table = {
        owner: got('owner'),
        member: got('member'),
        outsider: got('outsider'),
        admin: got('admin'),
        anonymous: got('anonymous'),
      };
      assert.deepEqual(table.owner, [...inRoom, afterLeaving]);
      assert.deepEqual(table.member, inRoom, 'a removed member receives nothing said after the removal');
      assert.deepEqual(table.outsider, [elsewhere, marker]);
      assert.deepEqual(table.admin, [...inRoom, elsewhere, afterLeaving, marker]);
      assert.equal(anonSub.type, 'subscribed');
      assert.deepEqual(table.anonymous, []);
      process.stdout.write(
        `# rules over realtime (${b.name}): ${Object.entries(table)
          .map(([k, v]) => `${k} ${v.length}`)
          .join(', ')} events; every one allowed by the view rule\n`,
      );
    });

    test('Server-Sent Events: the same rules, and Last-Event-ID resumes', async () => {
      const room = (await t.req('POST', '/api/v1/collections/rooms/records', { name: `sse-${b.name}-${Date.now()}` }, owner.auth)).body;
      const first = (await t.req('POST', '/api/v1/collections/messages/records', { room: room.id, body: 'first' }, owner.auth)).body;
      const firstEvent = await t.app.realtime.log.head();
      const second = (await t.req('POST', '/api/v1/collections/messages/records', { room: room.id, body: 'second' }, owner.auth)).body;
      const read = async (who: SignedIn, query: string, headers: Record<string, string> = {}) => {
        const ac = new AbortController();
        const r = await fetch(`${t.url}/api/v1/realtime/events?${query}`, {
          headers: { ...(who && { authorization: `Bearer ${who.access}` }), ...headers },
          signal: ac.signal,
        });
        return { r, ac };
      };
      const { r, ac } = await read(owner, 'collection=messages', { 'last-event-id': String(firstEvent) });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /text\/event-stream/);
      const reader = r.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
      let text = '';
      const third = (await t.req('POST', '/api/v1/collections/messages/records', { room: room.id, body: 'third' }, owner.auth)).body;
      const deadline = Date.now() + 5000;
      while (!text.includes(third.id) && Date.now() < deadline) {
        const { value } = await reader.read();
        text += new TextDecoder().decode(value);
      }
      ac.abort();
      assert.ok(!text.includes(first.id), 'events up to Last-Event-ID are not sent again');
      assert.ok(text.includes(second.id) && text.includes(third.id));
      assert.match(text, /id: \d+\nevent: created\ndata: \{"type":"event"/);
      assert.ok(text.indexOf(second.id) < text.indexOf('event: subscribed') && text.indexOf('event: subscribed') < text.indexOf(third.id));
      // An outsider's stream carries none of them; a bad filter is a 400 before any stream starts.
      const o = await read(outsider, 'collection=messages&filter=nope%20%3D%201');
      assert.equal(o.r.status, 400);
      assert.equal(((await o.r.json()) as { code: string }).code, 'E_INVALID_FILTER');
    });
  });
}
