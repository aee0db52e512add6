/**
 * The client SDK (sdk/) against real Rampart servers — in-process on real sockets, and `rampart
 * serve` processes that are killed and restarted: one refresh for 20 concurrent calls (token about
 * to expire, and token refused by the server), a reused refresh token signs the client out, typed
 * collections with pages, search and batch, realtime that resumes after the server restarts
 * mid-stream without missing or repeating an event, the offline queue replayed while the server is
 * killed during the replay (nothing applied twice), 429 and 503 retried after `Retry-After`, a dead
 * server's endpoint breaker, timeouts and cancellation, and the app-version callbacks.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fakeIndexedDB from 'fake-indexeddb';
import WebSocket from 'ws';
import {
  AbortedError,
  type ApiError,
  type AuthEvent,
  CircuitOpenError,
  createClient,
  indexedDbStore,
  type KeyValueStore,
  localStorageStore,
  memoryStore,
  NetworkError,
  type RecordEvent,
  TimeoutError,
} from '../../sdk/src/index.ts';
import chat from '../fixtures/open-chat.ts';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { freePort, type RampartProcess, startRampart } from '../helpers/processes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const print = (s: string) => process.stdout.write(`# ${s}\n`);
const WS = WebSocket as never;
const until = async (what: string, ok: () => boolean | Promise<boolean>, ms = 15_000) => {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
};

/** A fetch that counts requests by path. */
function countingFetch() {
  const counts = new Map<string, number>();
  const f = (async (input: URL | string, init?: RequestInit) => {
    const path = new URL(String(input)).pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
    return fetch(input, init);
  }) as typeof fetch;
  return { fetch: f, count: (path: string) => counts.get(path) ?? 0 };
}

describe('client SDK against an in-process server', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp('sqlite', chat, { RAMPART_REFRESH_GRACE_S: '0' });
  });
  after(async () => {
    await t?.close();
  });

  test('20 concurrent calls with the access token about to expire, then refused by the server: one refresh each time', async () => {
    let skew = 0;
    const c = countingFetch();
    const client = createClient({ url: t.url, fetch: c.fetch, now: () => Date.now() + skew });
    await client.auth.signUp(`sdk-${Date.now()}@example.com`, 'correct horse battery');
    const rooms = client.collection('rooms');
    const first = await rooms.list();
    assert.ok(Array.isArray(first.items));
    // The client's clock says the token expires in 30 s (within the 60 s margin).
    const s = await client.auth.current();
    skew = (s?.expiresAt ?? 0) - Date.now() - 30_000;
    const answers = await Promise.all(Array.from({ length: 20 }, () => rooms.list({ limit: 1 })));
    assert.equal(answers.length, 20);
    assert.equal(c.count('/api/v1/auth/refresh'), 1, 'one refresh for 20 calls');
    assert.equal(client.auth.refreshes, 1);
    // Now the server refuses the token the client holds (as after a clock jump): 401, one refresh, retried.
    skew = 0;
    const store = memoryStore();
    const c2 = countingFetch();
    const client2 = createClient({ url: t.url, fetch: c2.fetch, storage: store });
    await client2.auth.logIn((s?.user.email as string) ?? '', 'correct horse battery');
    const session = JSON.parse((await store.get('session')) as string);
    // A token signed by nobody the server trusts, in the stored session (as after a key rotation past its grace).
    const [h, p] = session.accessToken.split('.');
    await store.set('session', JSON.stringify({ ...session, accessToken: `${h}.${p}.${'A'.repeat(86)}` }));
    const fresh = createClient({ url: t.url, fetch: c2.fetch, storage: store });
    const again = await Promise.all(Array.from({ length: 20 }, () => fresh.collection('rooms').list({ limit: 1 })));
    assert.equal(again.length, 20);
    assert.equal(c2.count('/api/v1/auth/refresh'), 1, 'one refresh after 20 refusals');
    print(
      `refresh: 20 calls near expiry -> ${c.count('/api/v1/auth/refresh')} refresh; 20 calls refused (401) -> ${c2.count('/api/v1/auth/refresh')} refresh`,
    );
  });

  test('a refresh token used twice ends the session: the client hears signed-out, with the reason', async () => {
    const store = memoryStore();
    const client = createClient({ url: t.url, storage: store });
    const events: AuthEvent[] = [];
    client.auth.onChange((e) => events.push(e));
    await client.auth.signUp(`reuse-${Date.now()}@example.com`, 'correct horse battery');
    const stolen = JSON.parse((await store.get('session')) as string).refreshToken;
    // Someone else (a thief) uses the refresh token first.
    const r = await fetch(`${t.url}/api/v1/auth/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: stolen }),
    });
    assert.equal(r.status, 200);
    await assert.rejects(client.auth.refresh(), (e: Error) => e.name === 'SignedOutError');
    const out = events.find((e) => e.type === 'signed-out');
    assert.equal(out?.type, 'signed-out');
    assert.equal(out.type === 'signed-out' && out.reason, 'refresh-token-reused');
    assert.equal(await client.auth.current(), undefined);
    assert.equal(await store.get('session'), null, 'the tokens are gone from the store');
    // And the thief's session is ended too.
    const thief = (await r.json()) as { refresh_token: string };
    const again = await fetch(`${t.url}/api/v1/auth/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: thief.refresh_token }),
    });
    assert.equal(again.status, 401);
  });

  test('typed collections: create, update with If-Match (412 on a stale version), pages as an async iterator, count, batch, delete and restore', async () => {
    type Rooms = { name: string; topic?: string | null };
    type Messages = { room: string; body: string; author: string };
    const client = createClient<{ rooms: Rooms; messages: Messages }>({ url: t.url });
    const room = await client.collection('rooms').create({ name: `sdk-room-${Date.now()}` });
    const updated = await client.collection('rooms').update(room.id, { topic: 'resilience' }, { ifMatch: room.version });
    assert.equal(updated.version, room.version + 1);
    await assert.rejects(client.collection('rooms').update(room.id, { topic: 'stale' }, { ifMatch: room.version }), (e: ApiError) => {
      assert.equal(e.status, 412);
      assert.equal(e.code, 'E_PRECONDITION_FAILED');
      return true;
    });
    const results = await client.batch(
      Array.from({ length: 45 }, (_, i) => ({
        op: 'create' as const,
        collection: 'messages',
        data: { room: room.id, body: `lighthouse ${i}`, author: 'sdk' },
      })),
    );
    assert.equal(results.length, 45);
    const seen: string[] = [];
    for await (const m of client.collection('messages').iterate({ filter: `room = "${room.id}"`, limit: 10, sort: 'created_at' }))
      seen.push(m.body);
    assert.equal(seen.length, 45, 'five pages of ten, every message once');
    assert.equal(new Set(seen).size, 45);
    const counted = await client
      .collection('messages')
      .list({ filter: `room = "${room.id}" && body prefix "lighthouse 1"`, count: true, limit: 1 });
    assert.equal(counted.total, 11, 'lighthouse 1 and 10–19');
    assert.equal(counted.items.length, 1);
    const one = results[0]?.record.id as string;
    await client.collection('messages').delete(one);
    await assert.rejects(client.collection('messages').get(one), (e: ApiError) => e.status === 404);
    const back = await client.collection('messages').restore(one);
    assert.equal(back.deleted_at, null);
  });

  test('app-version headers: a soft update is announced once, a version below the minimum gets the hard-update callback and 426', async () => {
    const admin = await t.signIn({ role: 'admin' });
    const put = await t.req(
      'PUT',
      '/api/v1/admin/app-versions/ios',
      { latest: '2.3.0', minimum: '2.0.0', store_url: 'https://apps.example.com/x' },
      admin.auth,
    );
    assert.equal(put.status, 200, put.raw);
    try {
      const soft: string[] = [];
      const ok = createClient({ url: t.url, app: { platform: 'ios', version: '2.1.0' }, onSoftUpdate: (i) => soft.push(i.latest) });
      await ok.collection('rooms').list();
      await ok.collection('rooms').list();
      assert.deepEqual(soft, ['2.3.0'], 'soft update announced once');
      const hard: unknown[] = [];
      const old = createClient({ url: t.url, app: { platform: 'ios', version: '1.9.0' }, onHardUpdate: (i) => hard.push(i) });
      await assert.rejects(old.collection('rooms').list(), (e: ApiError) => e.status === 426 && e.code === 'E_UPGRADE_REQUIRED');
      assert.deepEqual(hard, [
        { latest: '2.3.0', minimum: '2.0.0', storeUrl: 'https://apps.example.com/x', message: (hard[0] as { message?: string }).message },
      ]);
    } finally {
      await t.req('DELETE', '/api/v1/admin/app-versions/ios', undefined, admin.auth);
    }
  });

  test('realtime in process: a record subscription, a clean unsubscribe, and resync when the gap is no longer in the log', async () => {
    const client = createClient({ url: t.url, WebSocket: WS, reconnectBaseMs: 50, reconnectMaxMs: 200 });
    const room = await client.collection('rooms').create({ name: `rt-in-${Date.now()}` });
    const one: RecordEvent[] = [];
    const all: RecordEvent[] = [];
    let resyncs = 0;
    let subscribed = 0;
    const recordSub = client.realtime.subscribe(
      { collection: 'rooms', record: room.id },
      { onEvent: (e) => one.push(e as RecordEvent), onSubscribed: () => subscribed++ },
    );
    const roomsSub = client.realtime.subscribe(
      { collection: 'rooms' },
      { onEvent: (e) => all.push(e as RecordEvent), onResync: () => resyncs++, onSubscribed: () => subscribed++ },
    );
    await until('subscribed', () => subscribed >= 2);
    await client.collection('rooms').update(room.id, { topic: 'a' });
    await client.collection('rooms').create({ name: `rt-other-${Date.now()}` });
    await until('events', () => one.length === 1 && all.length === 2);
    assert.equal(one[0]?.record.id, room.id, 'the record subscription sees only its record');
    recordSub.unsubscribe();
    await client.collection('rooms').update(room.id, { topic: 'b' });
    await until('the collection event', () => all.length === 3);
    assert.equal(one.length, 1, 'nothing after unsubscribe');
    // The server drops the connection; meanwhile events are written and the log loses them (retention).
    t.app.realtime.dropClients();
    await client.collection('rooms').update(room.id, { topic: 'c' });
    await t.app.storage.db.deleteFrom('_rampart_events').execute();
    await until('resync', () => resyncs === 1);
    await client.collection('rooms').update(room.id, { topic: 'd' });
    await until('live again after the resync', () => all.at(-1)?.record.topic === 'd');
    roomsSub.unsubscribe();
    assert.equal(client.realtime.state, 'closed', 'the socket closes with the last subscription');
  });

  test('offline queue: a stale If-Match is reported as a conflict and dropped; a refused write as a failure; the rest applied in order', async () => {
    const conflicts: string[] = [];
    const failed: string[] = [];
    const client = createClient({
      url: t.url,
      offline: {
        retryMs: 0,
        onConflict: (w, p) => conflicts.push(`${w.what.op}:${p.code}`),
        onFailed: (w, e) => failed.push(`${w.what.op}:${e.code}`),
      },
    });
    const room = await client.collection('rooms').create({ name: `offline-c-${Date.now()}` });
    await client.collection('rooms').update(room.id, { topic: 'changed elsewhere' });
    await client.offline.update('rooms', room.id, { topic: 'mine' }, { ifMatch: room.version });
    await client.offline.create('rooms', { name: '' });
    await client.offline.update('rooms', room.id, { topic: 'last' });
    await until('replayed', async () => (await client.offline.pending()).length === 0);
    assert.deepEqual(conflicts, ['update:E_PRECONDITION_FAILED']);
    assert.deepEqual(failed, ['create:E_VALIDATION']);
    assert.equal((await client.collection('rooms').get(room.id)).topic, 'last');
    client.close();
  });

  test('stores: localStorage and IndexedDB keep the session across clients', async () => {
    const backing = new Map<string, string>();
    const webStorage = {
      getItem: (k: string) => backing.get(k) ?? null,
      setItem: (k: string, v: string) => void backing.set(k, v),
      removeItem: (k: string) => void backing.delete(k),
    };
    const stores: Array<[string, KeyValueStore]> = [
      ['localStorage', localStorageStore('app:', webStorage)],
      ['IndexedDB', indexedDbStore(`rampart-test-${Date.now()}`, fakeIndexedDB as never)],
    ];
    for (const [name, store] of stores) {
      const email = `store-${name.toLowerCase()}-${Date.now()}@example.com`;
      const a = createClient({ url: t.url, storage: store, offline: { retryMs: 0 } });
      await a.auth.signUp(email, 'correct horse battery');
      const b = createClient({ url: t.url, storage: store, offline: { retryMs: 0 } });
      assert.equal((await b.auth.current())?.user.email, email, `${name}: the session outlives the client`);
      // The second client acts with the stored session.
      assert.equal((await b.http.request<{ email: string }>({ method: 'GET', path: '/auth/me' })).body.email, email);
      await store.set('probe', 'x');
      assert.equal(await store.get('probe'), 'x');
      await store.delete('probe');
      assert.equal(await store.get('probe'), null);
      a.close();
      b.close();
    }
    assert.ok(
      [...backing.keys()].every((k) => k.startsWith('app:')),
      'keys carry the prefix',
    );
  });

  test('timeouts and cancellation: a hung attempt ends at the timeout; an AbortSignal cancels at once', async () => {
    const { createServer } = await import('node:http');
    const hung = createServer(() => {});
    await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(hung.address() as { port: number }).port}`;
    try {
      const client = createClient({ url, timeoutMs: 200, retries: 0 });
      const t0 = Date.now();
      await assert.rejects(client.collection('rooms').list(), (e) => e instanceof TimeoutError);
      assert.ok(Date.now() - t0 < 1000, `timed out after ${Date.now() - t0} ms`);
      const ctl = new AbortController();
      setTimeout(() => ctl.abort(), 50);
      const t1 = Date.now();
      await assert.rejects(
        createClient({ url, timeoutMs: 10_000 }).collection('rooms').list({ signal: ctl.signal }),
        (e) => e instanceof AbortedError,
      );
      assert.ok(Date.now() - t1 < 1000);
    } finally {
      hung.closeAllConnections();
      hung.close();
    }
  });
});

describe('client SDK against server processes that fail', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-sdk-'));
  let port: number;
  let server: RampartProcess | undefined;
  const env = () => ({ RAMPART_DATA_DIR: dir, PORT: String(port), RAMPART_REALTIME_HEARTBEAT_MS: '2000' });
  const start = async (extra: Record<string, string> = {}) => {
    server = await startRampart({ ...env(), ...extra }, ['serve', '--app', 'test/fixtures/open-chat.ts']);
    return server;
  };
  const kill = async () => {
    const s = server;
    server = undefined;
    s?.child.kill('SIGKILL');
    await s?.exited;
  };
  before(async () => {
    port = await freePort();
  });
  after(async () => {
    await kill();
    rmSync(dir, { recursive: true, force: true });
  });

  test('realtime: the server is SIGKILLed and restarted mid-stream; the client resumes and misses nothing, twice nothing', {
    timeout: 90_000,
  }, async () => {
    await start();
    const url = `http://127.0.0.1:${port}`;
    const client = createClient({ url, WebSocket: WS, reconnectBaseMs: 200, reconnectMaxMs: 2000 });
    await client.auth.signUp(`rt-${Date.now()}@example.com`, 'correct horse battery');
    const room = await client.collection('rooms').create({ name: `resume-${Date.now()}` });
    const got: RecordEvent[] = [];
    let subscribed = 0;
    client.realtime.subscribe(
      { collection: 'messages', filter: `room = "${room.id}"` },
      {
        onEvent: (e) => got.push(e as RecordEvent),
        onSubscribed: () => subscribed++,
      },
    );
    await until('subscribed', () => subscribed === 1);
    const written: string[] = [];
    const write = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const r = await fetch(`${url}/api/v1/collections/messages/records`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ room: room.id, body: `m${written.length}`, author: 'w' }),
        });
        assert.equal(r.status, 201);
        written.push(((await r.json()) as { id: string }).id);
      }
    };
    await write(15);
    await until('the first 15', () => got.length >= 15);
    await kill();
    const down = Date.now();
    await start();
    // Written before the client is back: it must get them from the log when it resumes.
    await write(15);
    await until('all 30 after the restart', () => got.length >= 30, 30_000);
    await write(5);
    await until('the live ones after resuming', () => got.length >= 35);
    await sleep(300);
    const ids = got.map((e) => e.record.id);
    print(
      `realtime resume: ${written.length} messages written (15 while the client was away), ${got.length} received, ${new Set(ids).size} distinct, ${client.realtime.connections} connections, back ${Date.now() - down} ms after the kill`,
    );
    assert.deepEqual(ids, written, 'every message, once, in order');
    assert.ok(client.realtime.connections >= 2, 'it reconnected');
    client.close();
  });

  test('offline queue: 40 creates queued while the server is down, replayed, the server SIGKILLed during the replay: each applied once', {
    timeout: 120_000,
  }, async () => {
    await kill();
    const url = `http://127.0.0.1:${port}`;
    const store = memoryStore();
    let applied = 0;
    // As an app would run it: the queue retries every 300 ms; the endpoint breaker (open 1 s after 5 failures) paces it against a dead server.
    const client = createClient({
      url,
      storage: store,
      retries: 1,
      retryBaseMs: 50,
      breaker: { failures: 5, openMs: 1000 },
      offline: { retryMs: 300, onApplied: () => applied++ },
    });
    const marker = `offline-${Date.now()}`;
    // The room exists before (created with the server up).
    await start();
    const room = await client.collection('rooms').create({ name: marker });
    await kill();
    for (let i = 0; i < 40; i++) await client.offline.create('messages', { room: room.id, body: `${marker} ${i}`, author: 'offline' });
    assert.equal((await client.offline.pending()).length, 40, 'queued while down');
    assert.equal((await client.offline.flush()).applied, 0, 'nothing goes while the server is down');
    await start();
    await until('some applied', () => applied >= 15, 30_000);
    await kill();
    const atKill = applied;
    await sleep(1000);
    const left = (await client.offline.pending()).length;
    assert.ok(left > 0 && left < 40, `stopped mid-way (${left} left)`);
    await start();
    await until('the queue replayed', async () => (await client.offline.pending()).length === 0, 30_000);
    const res = await fetch(
      `${url}/api/v1/collections/messages/records?filter=${encodeURIComponent(`room = "${room.id}"`)}&limit=200&count=true`,
    );
    const body = (await res.json()) as { items: Array<{ body: string }>; total: number };
    const bodies = body.items.map((m) => m.body);
    print(
      `offline replay: 40 queued; ${atKill} applied when the server was killed, ${left} still queued; ${applied} applied in all; server has ${body.total} (${new Set(bodies).size} distinct)`,
    );
    assert.equal(body.total, 40, 'exactly 40 records: none lost, none applied twice');
    assert.equal(new Set(bodies).size, 40);
    client.close();
  });

  test('429 and 503 are retried after Retry-After; a dead server opens the endpoint breaker, so calls fail fast', {
    timeout: 60_000,
  }, async () => {
    await kill();
    await start({ RAMPART_RATE_LIMITS: JSON.stringify({ anonymous: '5/s' }) });
    const url = `http://127.0.0.1:${port}`;
    const statuses: Array<number | string> = [];
    const client = createClient({ url, retries: 5 });
    client.http.observer = (e) => statuses.push(e.status);
    const t0 = Date.now();
    const lists = await Promise.all(Array.from({ length: 12 }, () => client.collection('rooms').list({ limit: 1 })));
    const took = Date.now() - t0;
    const limited = statuses.filter((s) => s === 429).length;
    print(`429: 12 calls over a 5/s limit -> ${limited} answers 429, all 12 succeeded after Retry-After, in ${took} ms`);
    assert.equal(lists.length, 12);
    assert.ok(limited > 0, 'the limit was hit');
    assert.ok(took >= 900, 'the retries waited for the window');
    // 503: the server sheds a request it cannot serve (a full queue of password checks) with Retry-After.
    await kill();
    await start({ RAMPART_PASSWORD_CONCURRENCY: '1', RAMPART_PASSWORD_QUEUE: '0' });
    const c503 = createClient({ url, retries: 6, retryBaseMs: 50 });
    const s503: Array<number | string> = [];
    c503.http.observer = (e) => s503.push(e.status);
    const email = `busy-${Date.now()}@example.com`;
    await c503.auth.signUp(email, 'correct horse battery');
    const logins = await Promise.allSettled(
      Array.from({ length: 6 }, () => createClient({ url, retries: 6 }).auth.logIn(email, 'correct horse battery')),
    );
    const raw = await Promise.all(
      Array.from({ length: 6 }, () =>
        fetch(`${url}/api/v1/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ email, password: 'correct horse battery' }),
        }).then((r) => r.status),
      ),
    );
    print(
      `503: 6 concurrent logins with room for one password check: raw answers ${JSON.stringify(raw)}; through the SDK ${logins.filter((l) => l.status === 'fulfilled').length}/6 signed in`,
    );
    assert.ok(raw.includes(503), 'the server shed some');
    assert.equal(logins.filter((l) => l.status === 'fulfilled').length, 6, 'the SDK retried them all to success');
    // A dead server: after 5 network failures the endpoint's breaker opens and calls fail at once.
    await kill();
    const dead = createClient({ url, retries: 0, breaker: { failures: 5, openMs: 5000 } });
    const tried: Array<string> = [];
    for (let i = 0; i < 8; i++) {
      await dead
        .collection('rooms')
        .list()
        .catch((e: Error) => tried.push(e instanceof CircuitOpenError ? 'open' : e instanceof NetworkError ? 'network' : e.name));
    }
    print(`breaker: a dead server, 8 calls -> ${tried.join(' ')}`);
    assert.deepEqual(tried, ['network', 'network', 'network', 'network', 'network', 'open', 'open', 'open']);
    assert.deepEqual(dead.http.breakerStates(), { 'GET /collections/rooms/records': 'open' });
  });
});
