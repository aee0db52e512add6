/**
 * Access rules of the example chat on every backend: an authorization matrix (user A, user B,
 * anonymous, admin x every record route x method) and mass assignment on every write route.
 * Rules compile into SQL, so lists and counts are checked as well as single reads.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import chat from '../../examples/chat/rampart.config.ts';
import { type SignedIn, startTestApp, type TestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';

const C = (name: string) => `/api/v1/collections/${name}/records`;

interface World {
  room: string;
  message: string;
  membership: string;
  trashedMessage: string;
}

for (const { name, skip } of await backendMatrix()) {
  describe(`access rules (${name})`, { skip }, () => {
    let t: TestApp;
    let a: SignedIn;
    let b: SignedIn;
    let admin: SignedIn;
    let c: SignedIn;
    let worldA: World;
    let worldB: World;

    /** A room owned by `u` with a member (`guest`), a message and a trashed message. */
    const build = async (u: SignedIn, guest: SignedIn): Promise<World> => {
      const room = (await t.req('POST', C('rooms'), { name: `room of ${u.email}` }, u.auth)).body.id;
      const membership = (await t.req('POST', C('members'), { room, user: guest.id }, u.auth)).body.id;
      const message = (await t.req('POST', C('messages'), { room, body: `secret of ${u.email}` }, u.auth)).body.id;
      const trashedMessage = (await t.req('POST', C('messages'), { room, body: 'trashed' }, u.auth)).body.id;
      assert.equal((await t.req('DELETE', `${C('messages')}/${trashedMessage}`, undefined, u.auth)).status, 200);
      return { room, message, membership, trashedMessage };
    };

    before(async () => {
      t = await startTestApp(name, chat);
      [a, b, admin] = [await t.signIn(), await t.signIn(), await t.signIn({ role: 'admin' })];
      c = await t.signIn();
      // Each owns a room where the third user is a member; A and B share nothing.
      worldA = await build(a, c);
      worldB = await build(b, c);
    });
    after(async () => t?.close());

    test('authorization matrix: nobody reads, lists, writes or deletes a record they may not', async () => {
      type Actor = { label: string; headers: Record<string, string>; others: World; self?: SignedIn };
      const actors: Actor[] = [
        { label: 'A', headers: a.auth, others: worldB, self: a },
        { label: 'B', headers: b.auth, others: worldA, self: b },
        { label: 'anonymous', headers: {}, others: worldA },
      ];
      let checks = 0;
      const breaches: string[] = [];
      const expectDenied = async (actor: Actor, method: string, url: string, body?: unknown) => {
        checks++;
        const r = await t.req(method, url, body, actor.headers);
        if (r.status < 400) breaches.push(`${actor.label}: ${method} ${url} -> ${r.status}`);
        else assert.ok([401, 403, 404].includes(r.status), `${actor.label} ${method} ${url} gave ${r.status} ${r.raw}`);
      };
      const expectInvisible = async (actor: Actor, collection: string, id: string) => {
        for (const deleted of ['exclude', 'include', 'only']) {
          checks++;
          const filter = encodeURIComponent(`id = "${id}"`);
          const r = await t.req('GET', `${C(collection)}?filter=${filter}&count=true&deleted=${deleted}`, undefined, actor.headers);
          if (r.status === 200 && (r.body.items.length > 0 || r.body.total > 0)) breaches.push(`${actor.label}: lists ${collection} ${id}`);
        }
      };
      for (const actor of actors) {
        const w = actor.others;
        const targets: Array<[string, string]> = [
          ['rooms', w.room],
          ['messages', w.message],
          ['members', w.membership],
        ];
        for (const [collection, id] of targets) {
          await expectDenied(actor, 'GET', `${C(collection)}/${id}`);
          const change = { rooms: { topic: 'pwned' }, messages: { body: 'pwned' }, members: { role: 'owner' } }[collection];
          await expectDenied(actor, 'PATCH', `${C(collection)}/${id}`, change);
          await expectDenied(actor, 'DELETE', `${C(collection)}/${id}`);
          await expectDenied(actor, 'DELETE', `${C(collection)}/${id}?purge=true`);
          await expectInvisible(actor, collection, id);
        }
        await expectDenied(actor, 'GET', `${C('messages')}/${w.trashedMessage}?deleted=only`);
        await expectDenied(actor, 'POST', `${C('messages')}/${w.trashedMessage}/restore`);
        await expectInvisible(actor, 'messages', w.trashedMessage);
        await expectDenied(actor, 'POST', C('messages'), { room: w.room, body: 'intrusion' });
        await expectDenied(actor, 'POST', C('members'), { room: w.room, user: actor.self?.id ?? a.id });
        await expectDenied(actor, 'POST', '/api/v1/batch', {
          operations: [{ op: 'update', collection: 'rooms', id: w.room, data: { topic: 'batch pwned' } }],
        });
        const victim = actor.self === a ? b : a;
        await expectDenied(actor, 'GET', `${C('users')}/${victim.id}`);
        await expectDenied(actor, 'PATCH', `${C('users')}/${victim.id}`, {});
        await expectInvisible(actor, 'users', victim.id);
        if (!actor.self) await expectDenied(actor, 'POST', C('rooms'), { name: 'anonymous room' });
      }
      // The rules let the rightful users through (so the denials above are the rules' doing).
      assert.equal((await t.req('GET', `${C('messages')}/${worldA.message}`, undefined, a.auth)).status, 200);
      const aList = await t.req('GET', `${C('messages')}?count=true`, undefined, a.auth);
      assert.equal(aList.body.total, 1, "A counts only the messages of A's room");
      const adminList = await t.req('GET', `${C('messages')}?count=true&deleted=include`, undefined, admin.auth);
      assert.ok(adminList.body.total >= 4, 'admins see everything');
      process.stdout.write(`# ${name}: authorization matrix ${checks} checks, ${breaches.length} unauthorized successes\n`);
      assert.deepEqual(breaches, []);
    });

    test('search: members find the messages of their rooms, per room; nobody else finds or counts them', async () => {
      const find = async (who: SignedIn | undefined, q: string) =>
        (await t.req('GET', `${C('messages')}?q=${encodeURIComponent(q)}&count=true&facets=room`, undefined, who?.auth ?? {})).body;
      const ofA = await find(a, 'secret');
      assert.deepEqual(
        ofA.items.map((m: { id: string }) => m.id),
        [worldA.message],
      );
      assert.match(ofA.items[0]._search.snippets.body, /<mark>secret<\/mark> of/);
      assert.deepEqual(ofA.facets.room, [{ value: worldA.room, count: 1 }]);
      const ofC = await find(c, 'secret');
      assert.equal(ofC.total, 2, 'a member of both rooms');
      assert.deepEqual(ofC.facets.room.map((f: { value: string }) => f.value).sort(), [worldA.room, worldB.room].sort());
      assert.equal((await find(b, `"secret of ${a.email}"`)).total, 0, "B never finds A's message");
      const anon = await t.req('GET', `${C('messages')}?q=secret`);
      assert.equal(anon.status, 200);
      assert.deepEqual(anon.body.items, []);
      assert.equal((await find(admin, 'secret')).total, 2);
      assert.equal((await find(a, 'trashed')).total, 0, 'a deleted message is not found');
    });

    test('a member reads the room and posts; leaving the room ends both', async () => {
      c = await t.signIn();
      const room = (await t.req('POST', C('rooms'), { name: `club ${name}` }, a.auth)).body.id;
      const m = await t.req('POST', C('members'), { room, user: c.id }, a.auth);
      assert.equal(m.status, 201);
      assert.equal((await t.req('POST', C('messages'), { room, body: 'hello' }, c.auth)).status, 201);
      const page = await t.req('GET', `${C('messages')}?filter=${encodeURIComponent(`room = "${room}"`)}&count=true`, undefined, c.auth);
      assert.equal(page.body.total, 1);
      assert.equal((await t.req('DELETE', `${C('members')}/${m.body.id}`, undefined, c.auth)).status, 200, 'a member may leave');
      assert.equal((await t.req('POST', C('messages'), { room, body: 'still here?' }, c.auth)).status, 403);
      const gone = await t.req('GET', `${C('messages')}?filter=${encodeURIComponent(`room = "${room}"`)}&count=true`, undefined, c.auth);
      assert.equal(gone.body.total, 0);
    });

    test('mass assignment: role, id, owner, author, created_at and __proto__ are never taken from a client', async () => {
      const email = `mass-${name}@example.com`;
      const attempts: Array<[string, string, unknown, Record<string, string>?]> = [
        ['POST', '/api/v1/auth/signup', { email, password: 'long enough', role: 'admin' }],
        ['POST', '/api/v1/auth/signup', { email, password: 'long enough', email_verified: true }],
        ['POST', '/api/v1/auth/signup', { email, password: 'long enough', id: '01a21608-90cd-73f0-97a8-8b95b855820d' }],
        ['POST', '/api/v1/auth/signup', { email, password: 'long enough', created_at: '2020-01-01T00:00:00Z' }],
        ['POST', '/api/v1/auth/signup', { email, password: 'long enough', password_hash: 'x' }],
        ['POST', '/api/v1/auth/signup', `{"email":"${email}","password":"long enough","__proto__":{"role":"admin"}}`],
        ['PATCH', `${C('users')}/${a.id}`, { role: 'admin' }, a.auth],
        ['PATCH', `${C('users')}/${a.id}`, { email_verified: true }, a.auth],
        ['PATCH', `${C('users')}/${a.id}`, { email: 'taken@example.com' }, a.auth],
        ['PATCH', `${C('users')}/${a.id}`, { password_hash: 'x' }, a.auth],
        ['PATCH', `${C('users')}/${a.id}`, '{"__proto__":{"role":"admin"}}', a.auth],
        ['POST', C('rooms'), { name: 'mine', owner: b.id }, a.auth],
        ['POST', C('rooms'), { name: 'mine', id: '01a21608-90cd-73f0-97a8-8b95b855820d' }, a.auth],
        ['PATCH', `${C('rooms')}/${worldA.room}`, { owner: b.id }, a.auth],
        ['PATCH', `${C('rooms')}/${worldA.room}`, { created_at: '2020-01-01T00:00:00Z' }, a.auth],
        ['POST', C('messages'), { room: worldA.room, body: 'x', author: b.id }, a.auth],
        ['PATCH', `${C('messages')}/${worldA.message}`, { author: b.id }, a.auth],
        ['PATCH', `${C('messages')}/${worldA.message}`, { edited_at: '2020-01-01T00:00:00Z' }, a.auth],
        ['POST', '/api/v1/batch', { operations: [{ op: 'create', collection: 'rooms', data: { name: 'batch', owner: b.id } }] }, a.auth],
        ['POST', '/api/v1/batch', { operations: [{ op: 'update', collection: 'users', id: a.id, data: { role: 'admin' } }] }, a.auth],
      ];
      for (const [method, url, body, headers] of attempts) {
        const r = await t.req(method, url, body, headers);
        assert.equal(r.status, 400, `${method} ${url} ${typeof body === 'string' ? body : JSON.stringify(body)} -> ${r.status}`);
      }
      assert.equal(await t.app.auth.accounts.findByEmail(email), undefined, 'no account was created');
      const me = (await t.req('GET', '/api/v1/auth/me', undefined, a.auth)).body;
      assert.equal(me.role, 'user');
      assert.equal(me.email_verified, false);
      const room = (await t.req('GET', `${C('rooms')}/${worldA.room}`, undefined, a.auth)).body;
      assert.equal(room.owner, a.id);
      assert.equal(room.version, 1);
      const msg = (await t.req('GET', `${C('messages')}/${worldA.message}`, undefined, a.auth)).body;
      assert.equal(msg.author, a.id);
      const rooms = await t.req(
        'GET',
        `${C('rooms')}?filter=${encodeURIComponent('name = "mine" || name = "batch"')}`,
        undefined,
        admin.auth,
      );
      assert.equal(rooms.body.items.length, 0, 'nothing was created');
      process.stdout.write(`# ${name}: mass assignment: ${attempts.length} attempts, 0 persisted\n`);
    });
  });
}
