/**
 * The example chat's client (examples/chat/client.ts, on the SDK) against the example app: two
 * users, a room its owner invites the other to, messages live both ways, presence and typing,
 * and the generated types in examples/chat/types.ts still match the app.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { type Chat, connectChat } from '../../examples/chat/client.ts';
import chatApp from '../../examples/chat/rampart.config.ts';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { ROOT } from '../helpers/processes.js';

const until = async (what: string, ok: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('the example chat client', () => {
  let t: TestApp;
  const chats: Chat[] = [];
  before(async () => {
    t = await startTestApp('sqlite', chatApp);
  });
  after(async () => {
    for (const c of chats) c.close();
    await t?.close();
  });

  test('two users chat in a room: messages live both ways, presence, typing', async () => {
    const password = 'correct horse battery';
    const alice = await connectChat({ url: t.url, email: `alice-${Date.now()}@example.com`, password, WebSocket });
    const bob = await connectChat({ url: t.url, email: `bob-${Date.now()}@example.com`, password, WebSocket });
    chats.push(alice, bob);
    const aliceGot: string[] = [];
    const bobGot: string[] = [];
    const typing: string[] = [];
    const room = await alice.open(`lobby-${Date.now()}`, { message: (m) => aliceGot.push(m.body) });
    await alice.invite(room.id, bob.userId);
    let bobSees: string[] = [];
    const bobRoom = await bob.open(room.name, {
      message: (m) => bobGot.push(m.body),
      typing: (u) => typing.push(u),
      presence: (members) => {
        bobSees = members;
      },
    });
    assert.equal(bobRoom.id, room.id, 'bob opened the room he was invited to');
    await until('both present', () => bobSees.length === 2);
    assert.deepEqual([...bobSees].sort(), [alice.userId, bob.userId].sort());
    room.typing();
    await until('typing seen', () => typing.length > 0);
    assert.equal(typing[0], alice.userId);
    await room.send('hello bob');
    await bobRoom.send('hi alice');
    await until('both messages on both sides', () => aliceGot.length >= 2 && bobGot.length >= 2);
    assert.deepEqual(aliceGot, ['hello bob', 'hi alice']);
    assert.deepEqual(bobGot, ['hello bob', 'hi alice']);
    // Search (messages are searchable in the example), under the same rules as lists.
    const found = await bob.client.collection('messages').search('alice', { filter: `room = "${room.id}"`, count: true });
    assert.deepEqual(
      found.items.map((m) => m.body),
      ['hi alice'],
    );
  });

  test('examples/chat/types.ts is what `rampart types` makes of the app today', () => {
    const r = spawnSync(
      process.execPath,
      ['--conditions=rampart-source', '--import', 'tsx', join(ROOT, 'src/cli/bin.ts'), 'types', '--app', 'examples/chat/rampart.config.ts'],
      {
        cwd: ROOT,
        encoding: 'utf8',
        env: { PATH: process.env.PATH ?? '' },
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(
      r.stdout,
      readFileSync(join(ROOT, 'examples/chat/types.ts'), 'utf8'),
      'run: rampart types --app examples/chat/rampart.config.ts --out examples/chat/types.ts',
    );
  });
});
