/**
 * The admin console in a real browser (Debian's Chromium through playwright-core) against a real
 * server on loopback: an admin signs in with the keyboard, creates and edits a record, deletes and
 * restores it, retries a dead-lettered job, changes the app-version policy (and an SDK client on
 * that version then gets 426), and revokes a user's session (whose token then stops working).
 * Every page is visited at laptop and phone width (no sideways scrolling) and saved as a
 * screenshot in test-artifacts/console/; the browser must log no error at all.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import WebSocket from 'ws';
import { ApiError, createClient } from '../../sdk/src/index.js';
import { job } from '../../src/jobs/define.js';
import { collection, defineApp, f } from '../../src/records/schema.js';
import { type SignedIn, startTestApp, type TestApp } from '../helpers/app.js';
import { browserUnavailable, launchBrowser } from '../helpers/browser.js';
import { ROOT } from '../helpers/processes.js';

const skip = browserUnavailable();
const SHOTS = join(ROOT, 'test-artifacts', 'console');

/** The `flaky` job fails until the test mends it: its one attempt dead-letters it. */
let mended = false;
const app = defineApp({
  collections: {
    notes: collection({
      fields: {
        title: f.text({ required: true, max: 200, search: true }),
        body: f.text({ max: 4000 }),
        pinned: f.boolean({ default: false }),
      },
    }),
  },
  jobs: {
    flaky: job({
      retries: 0,
      handler() {
        if (!mended) throw new Error('the partner API said no');
      },
    }),
  },
});

const PAGES = [
  ['Overview', ''],
  ['Collections', 'collections/notes'],
  ['Users & sessions', 'users'],
  ['Jobs', 'jobs'],
  ['Schedules', 'schedules'],
  ['Traffic', 'traffic'],
  ['Dependencies', 'dependencies'],
  ['Backups & audit', 'backups'],
] as const;

describe('admin console in Chromium', { skip, timeout: 240_000 }, () => {
  let t: TestApp;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let admin: SignedIn;
  const problems: string[] = [];

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    t = await startTestApp('sqlite', app, { RAMPART_BACKUP_KEY: Buffer.alloc(32, 7).toString('base64') });
    admin = await t.signIn({ role: 'admin', email: 'ops@example.com', password: 'console admin password' });
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    // A page left while its data loads cancels the fetch (ERR_ABORTED): that is the console tidying up.
    page.on('requestfailed', (r) => {
      if (r.failure()?.errorText !== 'net::ERR_ABORTED') problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
    });
  });

  after(async () => {
    await browser?.close();
    await t?.close();
  });

  const go = async (hash: string) => {
    await page.goto(`${t.url}/_/#/${hash}`);
  };
  const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  const notes = async () => (await t.req('GET', '/api/v1/collections/notes/records?deleted=include', undefined, admin.auth)).body.items;

  test('signs in with the keyboard alone; the overview draws live figures from the realtime channel', async () => {
    await page.goto(`${t.url}/_/`);
    await page.getByRole('heading', { name: 'Rampart console' }).waitFor();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => (globalThis as any).document.activeElement?.getAttribute('name')), 'email');
    await page.keyboard.type(admin.email);
    await page.keyboard.press('Tab');
    await page.keyboard.type(admin.password);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    // From the top of the page, Tab reaches the skip button first; it takes the focus to the content.
    // (A reload keeps the session: it is in this tab's sessionStorage.)
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => (globalThis as any).document.activeElement?.textContent), 'Skip to content');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => (globalThis as any).document.activeElement?.id), 'main');
    // Traffic while the charts draw: about 20 requests a second.
    let load = true;
    const traffic = (async () => {
      while (load) {
        await fetch(`${t.url}/api/v1/collections/notes/records`, { headers: admin.auth });
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const live = page.getByText(/^live · 1 API nodes$/);
    await live.waitFor({ timeout: 20_000 });
    await page.getByRole('img', { name: /Requests\/s, last [2-9]\d* samples/ }).waitFor({ timeout: 20_000 });
    const rps = page.locator('figure.spark').first().locator('strong');
    await page.waitForFunction((el) => Number.parseFloat(el?.textContent ?? '0') > 5, await rps.elementHandle(), { timeout: 20_000 });
    load = false;
    await traffic;
    console.log(`# overview live: ${await live.textContent()}, requests/s shown ${await rps.textContent()} (about 20/s sent)`);
    const deps = await page.getByRole('table', { name: 'Dependencies as this node sees them' }).textContent();
    for (const d of ['database', 'realtime fan-out', 'alerts (outbound)']) assert.ok(deps?.includes(d), `${d} in ${deps}`);
    assert.ok((await page.getByRole('table', { name: 'Processes of the cluster' }).textContent())?.includes('api'));
  });

  test('creates, edits, deletes and restores a record', async () => {
    await go('collections/notes');
    await page.getByRole('button', { name: 'New record' }).click();
    await page.getByLabel('title *').fill('first note');
    await page.getByLabel('body').fill('written in the console');
    await page.getByRole('button', { name: 'Create', exact: true }).click();
    const row = page.getByRole('row', { name: /first note/ });
    await row.waitFor();
    let [rec] = await notes();
    assert.equal(rec.title, 'first note');
    assert.equal(rec.version, 1);

    await row.getByRole('button', { name: 'Edit' }).click();
    await page.getByLabel('title').fill('edited note');
    await page.getByRole('checkbox', { name: 'pinned' }).check();
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await page.getByRole('row', { name: /edited note/ }).waitFor();
    [rec] = await notes();
    assert.deepEqual([rec.title, rec.pinned, rec.body, rec.version], ['edited note', true, 'written in the console', 2]);

    await page
      .getByRole('row', { name: /edited note/ })
      .getByRole('button', { name: 'Delete' })
      .click();
    await page.getByText('No records match.').waitFor();
    [rec] = await notes();
    assert.ok(rec.deleted_at, 'soft-deleted');

    await page.getByRole('tab', { name: 'Trash' }).click();
    await page
      .getByRole('row', { name: /edited note/ })
      .getByRole('button', { name: 'Restore' })
      .click();
    await page.getByText(/Restore .*: done/).waitFor();
    [rec] = await notes();
    assert.equal(rec.deleted_at, null);
    await page.getByRole('tab', { name: 'Records' }).click();
    await page.getByRole('row', { name: /edited note/ }).waitFor();
    await page.getByRole('tab', { name: 'Schema' }).click();
    await page.getByRole('cell', { name: 'searchable' }).waitFor();
  });

  test('retries a dead-lettered job', async () => {
    const { id } = await t.app.jobs.enqueue('flaky', {});
    await t.app.jobs.settle({ delayed: true });
    assert.equal((await t.app.jobs.queue.get(id)).state, 'dead');
    mended = true;
    await go('jobs');
    await page.getByLabel('State').selectOption('dead');
    const row = page.getByRole('row', { name: /flaky/ });
    await row.getByRole('button', { name: 'Retry' }).click();
    await page.getByText('Retry flaky: done').waitFor();
    await t.app.jobs.settle();
    const job = await t.app.jobs.queue.get(id);
    assert.equal(job.state, 'completed');
    // Its history keeps the failed attempt.
    await page.getByLabel('State').selectOption('completed');
    await page.getByRole('button', { name: 'flaky' }).first().click();
    await page.getByRole('cell', { name: 'the partner API said no' }).waitFor();
  });

  test('changes the app-version policy; a client on an older version then gets 426', async () => {
    await go('traffic');
    const web = page.getByRole('group', { name: /web/ });
    await web.getByLabel('Latest (soft update below)').fill('2.1.0');
    await web.getByLabel('Minimum (426 below)').fill('2.0.0');
    await web.getByLabel('Message').fill('Please reload');
    await web.getByRole('button', { name: 'Save web' }).click();
    await page.getByText('Save the web policy: done').waitFor();

    let hard: unknown;
    const old = createClient({ url: t.url, app: { platform: 'web', version: '1.9.0' }, onHardUpdate: (info) => (hard = info) });
    const err = await old
      .collection('notes')
      .list()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(err instanceof ApiError && err.status === 426, String(err));
    assert.equal(err.code, 'E_UPGRADE_REQUIRED');
    assert.deepEqual(hard && { minimum: (hard as { minimum?: string }).minimum }, { minimum: '2.0.0' });
    const current = await fetch(`${t.url}/api/v1/collections/notes/records`, {
      headers: { ...admin.auth, 'x-app-platform': 'web', 'x-app-version': '2.0.5' },
    });
    assert.equal(current.status, 200);
    assert.equal(current.headers.get('x-app-update'), 'soft');
    console.log('# policy web latest 2.1.0 minimum 2.0.0: 1.9.0 → 426 E_UPGRADE_REQUIRED, 2.0.5 → 200 with a soft update');
    old.close();
  });

  test("revokes a user's session: their token stops working at once", async () => {
    const bob = await t.signIn({ email: 'bob@example.com' });
    assert.equal((await fetch(`${t.url}/api/v1/auth/me`, { headers: bob.auth })).status, 200);
    await go('users');
    await page.getByLabel('Email contains').fill('bob@');
    await page.getByRole('button', { name: 'Find' }).click();
    await page.getByRole('link', { name: 'bob@example.com' }).click();
    // Two sessions (the sign-up's and the sign-in's): the sign-in's is revoked.
    const sessions = page.getByRole('table', { name: 'Live sessions' });
    await sessions.getByRole('button', { name: 'Revoke' }).first().waitFor();
    assert.equal(await sessions.getByRole('button', { name: 'Revoke' }).count(), 2);
    await sessions
      .getByRole('row', { name: new RegExp(bob.sessionId.slice(-8)) })
      .getByRole('button', { name: 'Revoke' })
      .click();
    await page.getByText('Revoke the session: done').waitFor();
    for (let i = 0; i < 100 && (await sessions.getByRole('button', { name: 'Revoke' }).count()) !== 1; i++) await page.waitForTimeout(100);
    assert.equal(await sessions.getByRole('button', { name: 'Revoke' }).count(), 1, 'the other session is still listed');
    const me = await fetch(`${t.url}/api/v1/auth/me`, { headers: bob.auth });
    assert.equal(me.status, 401);
    assert.equal(((await me.json()) as { code: string }).code, 'E_SESSION_REVOKED');
    const refresh = await fetch(`${t.url}/api/v1/auth/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: bob.refresh }),
    });
    assert.equal(refresh.status, 401);
    // In the audit log (written just after the answer): who ended whose session.
    let entry: any;
    for (let i = 0; i < 50 && !entry; i++) {
      entry = (await t.req('GET', '/api/v1/admin/audit?action=admin.users.sessions.delete', undefined, admin.auth)).body.items[0];
      if (!entry) await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(
      [entry?.actor, entry?.target],
      [
        { type: 'admin', id: admin.id },
        { type: 'users', id: bob.id },
      ],
    );
  });

  test("the console's figures are for admins: a user may not join its channel nor list the nodes", async () => {
    const carol = await t.signIn({ email: 'carol@example.com' });
    assert.equal((await fetch(`${t.url}/api/v1/admin/nodes`, { headers: carol.auth })).status, 403);
    const nodes = (await t.req('GET', '/api/v1/admin/nodes', undefined, admin.auth)).body.items;
    assert.equal(nodes[0]?.kind, 'api');
    assert.equal(
      nodes[0]?.stats.latency.length,
      nodes[0]?.stats.latencyBounds.length + 1,
      'a count per latency bucket, and one past the last',
    );
    const user = createClient({ url: t.url, WebSocket: WebSocket as never });
    await user.auth.logIn(carol.email, carol.password);
    const refused = await new Promise<{ code: string }>((resolve) => user.realtime.join('rampart-console', { onError: resolve }));
    assert.equal(refused.code, 'E_FORBIDDEN');
    user.close();
  });

  test('every page at laptop and phone width, with screenshots; no browser error anywhere', async () => {
    const widths = [
      ['laptop', 1280, 860],
      ['phone', 390, 844],
    ] as const;
    for (const [label, width, height] of widths) {
      await page.setViewportSize({ width, height });
      for (const [title, hash] of PAGES) {
        await go(hash);
        await page.getByRole('heading', { level: 1, name: title }).waitFor();
        // Every table loaded (none still says "Loading…") before the picture.
        await page.waitForFunction(() => !(globalThis as any).document.querySelector('.loading'));
        await page.waitForLoadState('networkidle');
        const overflow = await page.evaluate(
          () => (globalThis as any).document.documentElement.scrollWidth - (globalThis as any).innerWidth,
        );
        assert.ok(overflow <= 1, `${title} at ${width}px scrolls sideways by ${overflow}px`);
        await shot(`${label}-${hash.split('/')[0] || 'overview'}`);
      }
    }
    console.log(`# ${PAGES.length * widths.length} screenshots in ${SHOTS}`);
    // The console's assets come from this server only, with its content security policy.
    const res = await fetch(`${t.url}/_/`);
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    const html = await res.text();
    assert.doesNotMatch(html, /https?:\/\//, 'no asset from another host');
    assert.deepEqual(problems, []);
  });
});
