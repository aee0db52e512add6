/**
 * The example chat's client, on the Rampart SDK (what an app imports as `@rampart/client`; here
 * from the repository's sdk/ sources). `connectChat` is what a web or React Native screen would
 * do: sign in, open a room, follow its messages live (resuming after any disconnect), see who is
 * there and who is typing, send messages — through the offline queue, so a message written on a
 * train goes out when the connection is back, once.
 *
 * Run it against `npm start` (two terminals, two users; a room's owner invites the others by id):
 *   node --conditions=rampart-source --import tsx examples/chat/client.ts --email bob@example.com --password 'correct horse battery' --room bobs
 *     (prints bob's id)
 *   node --conditions=rampart-source --import tsx examples/chat/client.ts --email alice@example.com --password 'correct horse battery' --room lobby --invite <bob's id>
 *   node --conditions=rampart-source --import tsx examples/chat/client.ts --email bob@example.com --password 'correct horse battery' --room lobby
 * then type lines to send them.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import {
  ApiError,
  type Channel,
  createClient,
  type KeyValueStore,
  memoryStore,
  type RampartClient,
  type Rec,
} from '../../sdk/src/index.ts';
import type { Collections, Messages } from './types.ts';

export interface ChatOptions {
  url: string;
  email: string;
  password: string;
  /** Where the session and the unsent messages are kept (localStorageStore() in a browser, AsyncStorage in React Native). */
  storage?: KeyValueStore;
  /** The WebSocket implementation (browsers and React Native have one; Node 20 needs `ws`). */
  WebSocket?: unknown;
}

export interface ChatRoom {
  id: string;
  name: string;
  /** Messages so far (newest last) and as they arrive. */
  messages: Rec<Messages>[];
  /** Who is in the room now. */
  members(): string[];
  /** Send a message (queued while offline; sent once). */
  send(body: string): Promise<void>;
  /** Tell the others you are typing. */
  typing(): void;
  close(): void;
}

export interface Chat {
  client: RampartClient<Collections>;
  userId: string;
  /** Open a room by name (created, owned by you, when it does not exist). */
  open(
    name: string,
    on: { message?(m: Rec<Messages>): void; typing?(user: string): void; presence?(members: string[]): void },
  ): Promise<ChatRoom>;
  /** Add a user (by id) to a room you own. */
  invite(roomId: string, userId: string): Promise<void>;
  close(): void;
}

/** Sign in (or sign up on first use) and return the chat. */
export async function connectChat(o: ChatOptions): Promise<Chat> {
  const client = createClient<Collections>({
    url: o.url,
    storage: o.storage ?? memoryStore(),
    WebSocket: o.WebSocket as never,
    app: { platform: 'web', version: '1.0.0' },
    onHardUpdate: (u) => console.error(`This version is no longer supported: update (${u.storeUrl ?? 'see the store'}).`),
  });
  const session =
    (await client.auth.current()) ??
    (await client.auth.logIn(o.email, o.password).catch((err) => {
      if (err instanceof ApiError && err.status === 401) return client.auth.signUp(o.email, o.password);
      throw err;
    }));
  const rooms = client.collection('rooms');
  return {
    client,
    userId: session.user.id,
    async open(name, on) {
      const found = await rooms.list({ filter: `name = ${JSON.stringify(name)}`, limit: 1 });
      const room = found.items[0] ?? (await rooms.create({ name }));
      const messages: Rec<Messages>[] = [];
      const load = async () => {
        messages.length = 0;
        for await (const m of client.collection('messages').iterate({ filter: `room = "${room.id}"`, sort: 'created_at', limit: 100 }))
          messages.push(m);
      };
      await load();
      const sub = client.realtime.subscribe<Messages>(
        { collection: 'messages', filter: `room = "${room.id}"` },
        {
          onEvent: (e) => {
            if (e.action !== 'created') return;
            messages.push(e.record);
            on.message?.(e.record);
          },
          // Away longer than the server keeps events: reload the room.
          onResync: () => void load(),
        },
      );
      const channel: Channel = client.realtime.join(`room:${room.id}`, {
        onMessage: (m) => {
          if (m.event === 'typing' && m.from) on.typing?.(m.from);
        },
        onPresence: (p) => on.presence?.(p.members.map((x) => x.user)),
      });
      return {
        id: room.id,
        name: room.name,
        messages,
        members: () => channel.members().map((m) => m.user),
        async send(body) {
          await client.offline.create('messages', { room: room.id, body });
        },
        typing: () => channel.publish('typing'),
        close() {
          sub.unsubscribe();
          channel.leave();
        },
      };
    },
    async invite(roomId, userId) {
      await client.collection('members').create({ room: roomId, user: userId });
    },
    close: () => client.close(),
  };
}

async function main() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string', default: 'http://127.0.0.1:8090' },
      email: { type: 'string' },
      password: { type: 'string' },
      room: { type: 'string', default: 'lobby' },
      invite: { type: 'string' },
    },
  });
  if (!values.email || !values.password) throw new Error('--email and --password are required');
  const chat = await connectChat({ url: values.url as string, email: values.email, password: values.password, WebSocket });
  const room = await chat.open(values.room as string, {
    message: (m) => console.log(`${m.author === chat.userId ? 'you' : m.author?.slice(0, 8)}: ${m.body}`),
    typing: (u) => console.log(`(${u.slice(0, 8)} is typing)`),
    presence: (members) => console.log(`in the room: ${members.map((u) => u.slice(0, 8)).join(', ')}`),
  });
  if (values.invite) {
    await chat.invite(room.id, values.invite);
    console.log(`invited ${values.invite} to ${room.name}`);
  }
  for (const m of room.messages.slice(-20)) console.log(`${m.author === chat.userId ? 'you' : m.author?.slice(0, 8)}: ${m.body}`);
  console.log(`room ${room.name} (${room.id}); your id ${chat.userId}. Type to send; Ctrl-D to quit.`);
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line.trim()) void room.send(line.trim());
  });
  rl.on('close', () => chat.close());
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
