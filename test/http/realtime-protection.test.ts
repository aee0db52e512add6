/**
 * Realtime protection: frame size, slow consumers, heartbeats, token expiry and re-authentication,
 * ended sessions, and the limits on subscriptions and connections. Real sockets, one node.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { startTestApp, type TestApp, TestClock } from '../helpers/app.js';
import { RtClient } from '../helpers/realtime.js';

describe('realtime protection', () => {
  let t: TestApp;
  // The clock tokens are issued by: tests set it (27 s behind: tokens expire 3 s after issue).
  const clock = new TestClock(Date.now());
  const clients: RtClient[] = [];
  const connect = async (token?: string) => {
    const c = await RtClient.connect(t.url, token);
    clients.push(c);
    return c;
  };
  before(async () => {
    t = await startTestApp(
      'sqlite',
      undefined,
      {
        RAMPART_REALTIME_MAX_FRAME: '1024',
        RAMPART_REALTIME_SEND_BUFFER: '65536',
        RAMPART_REALTIME_HEARTBEAT_MS: '300',
        RAMPART_REALTIME_MAX_SUBSCRIPTIONS: '3',
        RAMPART_REALTIME_MAX_CONNECTIONS_PER_USER: '2',
        RAMPART_ACCESS_TOKEN_TTL_S: '30',
        RAMPART_REALTIME_MESSAGES_PER_S: '20',
      },
      { clock },
    );
  });
  after(async () => {
    for (const c of clients) c.close();
    await t?.close();
  });

  test('a frame over the limit closes the connection with 1009; bad messages get an error and the connection stays', async () => {
    const c = await connect();
    c.ws.send('not json');
    assert.equal((await c.next((m) => m.type === 'error')).code, 'E_INVALID_MESSAGE');
    c.send({ type: 'dance' });
    assert.match((await c.next((m) => m.type === 'error' && /unknown/.test(m.message))).message, /dance/);
    c.send({ type: 'ping', id: 'p' });
    await c.next((m) => m.type === 'pong');
    c.ws.send(JSON.stringify({ type: 'ping', pad: 'x'.repeat(2000) }));
    assert.equal((await c.closedWith()).code, 1009);
  });

  test('a client that sends more messages than its rate allows is closed with 1008; one within it is not', async () => {
    const calm = await connect();
    for (let i = 0; i < 30; i++) {
      calm.send({ type: 'ping', id: String(i) });
      await new Promise((r) => setTimeout(r, 60));
    }
    await calm.next((m) => m.type === 'pong' && m.id === '29');
    const noisy = await connect();
    for (let i = 0; i < 200; i++) noisy.send({ type: 'ping', id: String(i) });
    const closed = await noisy.closedWith();
    assert.deepEqual(closed, { code: 1008, reason: 'too many messages' });
    assert.ok(noisy.messages.filter((m) => m.type === 'pong').length <= 41, 'at most the burst was answered');
    assert.equal(calm.closed, undefined);
    // Anonymous connections count per address (limit 2 here): free them for the next tests.
    calm.close();
    await calm.closedWith();
  });

  test('a client that stops reading is dropped at its buffer cap; server memory stays bounded; others keep receiving', async () => {
    // Tokens issued from here live their full 30 s.
    clock.advance(Date.now() - clock.now());
    const user = await t.signIn();
    const slow = await connect(user.access);
    const fine = await connect();
    const other = await t.signIn();
    const fast = await RtClient.connect(t.url, other.access);
    clients.push(fast);
    for (const c of [slow, fast]) {
      c.send({ type: 'join', channel: 'room:flood' });
      await c.next((m) => m.type === 'joined');
    }
    // The reading client only counts (keeping 134 MB of messages would measure the test, not the server).
    let received = 0;
    let lastSeen = -1;
    fast.ws.removeAllListeners('message');
    fast.ws.on('message', (data: Buffer) => {
      if (data.subarray(0, 17).toString() !== '{"type":"message"') return;
      received++;
      if (received % 1000 === 0) lastSeen = received;
    });
    // The slow client's socket stops reading: the kernel buffers fill, then the server's queue.
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const rssBefore = process.memoryUsage().rss;
    const blob = 'y'.repeat(7000);
    let sent = 0;
    for (let i = 0; i < 20_000; i++) {
      t.app.realtime.channels.publishAsServer('room:flood', 'blob', { i, blob });
      sent += 7000;
      // The reading client lives in this process too: let it read between small bursts.
      if (i % 4 === 0) await new Promise((r) => setImmediate(r));
      if (i % 400 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    const grew = (process.memoryUsage().rss - rssBefore) / 1_048_576;
    const deadline = Date.now() + 20_000;
    while (lastSeen < 20_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    const dropped = /rampart_realtime_dropped_total\{reason="slow-consumer"\} (\d+)/.exec(metrics);
    process.stdout.write(
      `# slow consumer: ${(sent / 1_048_576).toFixed(0)} MB published to it; dropped at the 64 KB cap; process RSS grew ${grew.toFixed(1)} MB\n`,
    );
    assert.equal(dropped?.[1], '1', 'one slow consumer dropped');
    assert.ok(grew < 64, `memory stays bounded (RSS grew ${grew.toFixed(1)} MB for ${(sent / 1_048_576).toFixed(0)} MB published)`);
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const closed = await slow.closedWith(5000);
    assert.ok([4008, 1006].includes(closed.code), `closed (${closed.code})`);
    assert.equal(received, 20_000, 'the reading client got every message');
    fine.close();
  });

  test('a peer that stops answering pings is dropped by the heartbeat', async () => {
    const c = await connect();
    // Paused: pings are not read, so no pong goes back.
    (c.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const started = Date.now();
    while (t.app.realtime.hub.connections() > 0 && Date.now() - started < 5000) {
      const n = await (await fetch(`${t.url}/metrics`)).text();
      if (/rampart_realtime_dropped_total\{reason="heartbeat"\} [1-9]/.test(n)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const n = await (await fetch(`${t.url}/metrics`)).text();
    assert.match(n, /rampart_realtime_dropped_total\{reason="heartbeat"\} [1-9]/);
  });

  test('an expiring token is announced; re-authenticating keeps the connection; otherwise it closes with 4001', async () => {
    // Tokens issued from here expire 3 s later (the clock stands 27 s behind, tokens live 30 s).
    clock.advance(Date.now() - 27_000 - clock.now());
    const u = await t.signIn();
    const keeps = await connect(u.access);
    const lapses = await connect(u.access);
    await keeps.next((m) => m.type === 'token_expiring', 5000);
    // A fresh token (from a real refresh) on the open connection.
    clock.advance(25_000);
    const fresh = await t.req('POST', '/api/v1/auth/refresh', { refresh_token: u.refresh });
    assert.equal(fresh.status, 200, fresh.raw);
    keeps.send({ type: 'auth', token: fresh.body.access_token });
    await keeps.next((m) => m.type === 'authenticated');
    const closed = await lapses.closedWith(6000);
    assert.deepEqual(closed, { code: 4001, reason: 'token expired' });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(keeps.closed, undefined, 'the re-authenticated connection stays open');
    // Someone else's token on this connection: refused and closed.
    const v = await t.signIn();
    keeps.send({ type: 'auth', token: v.access });
    assert.equal((await keeps.closedWith()).code, 4003);
  });

  test('an ended session closes its connections (4001) at the next heartbeat', async () => {
    clock.advance(Date.now() - clock.now());
    const u = await t.signIn();
    const c = await connect(u.access);
    const out = await t.req('POST', '/api/v1/auth/logout', undefined, u.auth);
    assert.ok(out.status < 300, out.raw);
    assert.deepEqual(await c.closedWith(3000), { code: 4001, reason: 'session ended' });
  });

  test('subscriptions per connection and connections per user are limited', async () => {
    clock.advance(Date.now() - clock.now());
    const u = await t.signIn();
    const c = await connect(u.access);
    for (const id of ['a', 'b', 'c']) assert.equal((await c.subscribe({ id, collection: 'rooms' })).type, 'subscribed');
    const fourth = await c.subscribe({ id: 'd', collection: 'rooms' });
    assert.equal(fourth.code, 'E_TOO_MANY_SUBSCRIPTIONS');
    await connect(u.access);
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${t.url.replace('http', 'ws')}/api/v1/realtime`, { headers: { authorization: `Bearer ${u.access}` } });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => {});
    });
    assert.equal(refused, 429);
    // A broken token is refused before the upgrade.
    const bad = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${t.url.replace('http', 'ws')}/api/v1/realtime`, { headers: { authorization: 'Bearer nope' } });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => {});
    });
    assert.equal(bad, 401);
  });
});
