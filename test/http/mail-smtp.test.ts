/** Account mail through a real SMTP server (the `smtp-server` package on a loopback port). */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { freePort } from '../helpers/processes.js';

describe('mail over SMTP', () => {
  let t: TestApp;
  let smtp: SMTPServer;
  const received: Array<{ from: string; to: string[]; body: string }> = [];
  before(async () => {
    const port = await freePort();
    smtp = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData(stream, session, done) {
        let body = '';
        stream.on('data', (c: Buffer) => {
          body += c.toString();
        });
        stream.on('end', () => {
          received.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            body,
          });
          done();
        });
      },
    });
    await new Promise<void>((r) => smtp.listen(port, '127.0.0.1', r));
    t = await startTestApp('sqlite', undefined, {
      RAMPART_SMTP_URL: `smtp://127.0.0.1:${port}`,
      RAMPART_MAIL_FROM: 'Chat <no-reply@chat.example>',
      RAMPART_PUBLIC_URL: 'https://chat.example',
    });
  });
  after(async () => {
    await t?.close();
    await new Promise<void>((r) => smtp.close(() => r()));
  });

  test('sign-up sends the verification link through SMTP; the link verifies the address', async () => {
    const r = await t.req('POST', '/api/v1/auth/signup', { email: 'smtp@example.com', password: 'long enough pw' });
    assert.equal(r.status, 201);
    await t.app.jobs.settle({ queues: ['rampart.mail'] });
    const mail = received.find((m) => m.to.includes('smtp@example.com'));
    assert.ok(mail, 'the SMTP server received the mail');
    assert.equal(mail.from, 'no-reply@chat.example');
    assert.match(mail.body, /Subject: Confirm your email address/);
    // The body is quoted-printable: join soft line breaks, decode =XX.
    const text = mail.body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)));
    const link = /https:\/\/chat\.example\/auth\/verify-email\?token=(ot_[A-Za-z0-9_-]+)/.exec(text);
    assert.ok(link, `the link points at the public URL: ${mail.body}`);
    assert.equal((await t.req('POST', '/api/v1/auth/verify-email', { token: link[1] })).status, 204);
    assert.doesNotMatch((await t.req('GET', '/metrics')).raw, /rampart_mail_total\{outcome="failed"\}/);
  });

  test('the pages the links open are served, with a CSP that allows exactly their script', async () => {
    for (const page of ['verify-email', 'confirm-email', 'reset-password']) {
      const r = await t.req('GET', `/auth/${page}?token=ot_abc`);
      assert.equal(r.status, 200);
      assert.match(String(r.headers['content-type']), /text\/html/);
      assert.equal(r.headers['referrer-policy'], 'no-referrer');
      const script = /<script>([\s\S]*)<\/script>/.exec(r.raw)?.[1] as string;
      const hash = createHash('sha256').update(script).digest('base64');
      assert.ok(String(r.headers['content-security-policy']).includes(`script-src 'sha256-${hash}'`), page);
      assert.doesNotMatch(r.raw, /ot_abc/, 'the token is not echoed into the page');
    }
  });
});

describe('mail server down', () => {
  let t: TestApp;
  before(async () => {
    // Retries start at 10 ms here (5 s by default), so the six attempts fit in a test.
    t = await startTestApp('sqlite', undefined, {
      RAMPART_SMTP_URL: `smtp://127.0.0.1:${await freePort()}`,
      RAMPART_MAIL_RETRY_BASE_MS: '10',
    });
  });
  after(async () => t?.close());

  test('sign-up and reset answer at once; the mail job is retried, then dead-lettered and counted as failed', async () => {
    const started = performance.now();
    const r = await t.req('POST', '/api/v1/auth/signup', { email: 'nomail@example.com', password: 'long enough pw' });
    const reset = await t.req('POST', '/api/v1/auth/password-reset/request', { email: 'nomail@example.com' });
    const ms = performance.now() - started;
    assert.equal(r.status, 201);
    assert.equal(reset.status, 202);
    await t.app.jobs.settle({ queues: ['rampart.mail'], delayed: true });
    const dead = await t.app.jobs.queue.list({ queue: 'rampart.mail', state: 'dead', limit: 10 });
    process.stdout.write(
      `# SMTP down: sign-up + reset answered in ${ms.toFixed(0)} ms; mail jobs dead-lettered after ${dead.map((d) => d.attempts).join(', ')} attempts\n`,
    );
    assert.ok(ms < 1000, `the API did not wait for the mail server (${ms.toFixed(0)} ms)`);
    assert.equal(dead.length, 2);
    for (const d of dead) {
      assert.equal(d.attempts, 6);
      assert.equal(JSON.parse(d.errors).length, 6, 'each attempt left its error');
    }
    const metrics = (await t.req('GET', '/metrics')).raw;
    assert.match(metrics, /rampart_mail_total\{outcome="failed"\} 2/);
    assert.doesNotMatch(metrics, /rampart_mail_total\{outcome="sent"\}/);
  });
});
