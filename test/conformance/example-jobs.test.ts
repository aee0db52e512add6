/** The example chat's jobs: a welcome mail from the sign-up's transaction, and the weekly report. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import chat from '../../examples/chat/rampart.config.ts';
import { startTestApp, type TestApp } from '../helpers/app.js';

describe('example chat jobs', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp('sqlite', chat, { RAMPART_JOBS_POLL_MS: '50' });
  });
  after(async () => t?.close());

  test('signing up enqueues the welcome mail with the account; it is sent by the worker', async () => {
    const me = await t.signIn({ email: 'welcome@example.com' });
    const mails = await t.mails('welcome@example.com');
    assert.ok(
      mails.some((m) => /Subject: Welcome to Chat/.test(m)),
      'the welcome mail was sent',
    );
    const jobs = await t.app.jobs.queue.list({ queue: 'email', limit: 10 });
    const welcome = jobs.find((j) => j.name === 'welcomeEmail' && j.payload.includes(me.id));
    assert.equal(welcome?.state, 'completed');
    assert.equal(welcome?.unique_key, `welcome:${me.id}`);
  });

  test('the weekly report counts the week of messages per room and mails the admins', async () => {
    const admin = await t.signIn({ role: 'admin', email: 'ops@example.com' });
    const room = await t.req('POST', '/api/v1/collections/rooms/records', { name: 'general' }, admin.auth);
    for (const body of ['one', 'two', 'three']) {
      assert.equal((await t.req('POST', '/api/v1/collections/messages/records', { room: room.body.id, body }, admin.auth)).status, 201);
    }
    const schedules = await t.req('GET', '/api/v1/admin/schedules', undefined, admin.auth);
    const weekly = schedules.body.items.find((s: { name: string }) => s.name === 'weeklyReport');
    assert.equal(weekly.tz, 'Europe/Berlin');
    assert.equal(new Date(weekly.next_tick).getUTCDay(), 1, 'next run is a Monday');
    const run = await t.req('POST', '/api/v1/admin/schedules/weeklyReport/run', undefined, admin.auth);
    assert.equal(run.status, 202);
    await t.app.jobs.settle();
    const report = await t.app.jobs.queue.get(run.body.job_id);
    assert.equal(report.state, 'completed');
    assert.deepEqual(JSON.parse(report.result as string), { messages: 3, rooms: 1, mailed: 1 });
    const mails = await t.mails('ops@example.com');
    assert.ok(
      mails.some((m) => /3 messages in the past week/.test(m) && /general: 3/.test(m)),
      'the admin got the report',
    );
  });
});
