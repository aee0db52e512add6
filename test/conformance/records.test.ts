/**
 * The records API, the same assertions on every backend: CRUD, validation, unique and
 * relation rules, soft delete / restore / purge with cascades, filters, sort, keyset
 * pagination, counts, field selection, ETags and If-Match, and batches.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';
import { kitchen } from '../helpers/fixtures.js';

const T = '/api/v1/collections/things/records';
const O = '/api/v1/collections/owners/records';

for (const { name, skip } of await backendMatrix()) {
  describe(`records conformance (${name})`, { skip }, () => {
    let t: TestApp;
    let admin: Record<string, string>;
    let user: Record<string, string>;
    before(async () => {
      t = await startTestApp(name, kitchen);
      admin = (await t.signIn({ role: 'admin' })).auth;
      user = (await t.signIn()).auth;
    });
    after(async () => t?.close());

    test('create returns the record with server-set base fields, Location and ETag', async () => {
      const r = await t.req('POST', T, {
        title: 'first',
        score: 1.5,
        rank: 3,
        due: '2026-03-01T10:00:00+02:00',
        meta: { a: [1, { b: null }] },
      });
      assert.equal(r.status, 201);
      assert.match(r.body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(r.body.version, 1);
      assert.equal(r.body.deleted_at, null);
      assert.match(r.body.created_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      assert.equal(r.body.due, '2026-03-01T08:00:00.000Z', 'date-times are stored and returned in UTC with ms');
      assert.equal(r.body.active, true, 'default applied');
      assert.deepEqual(r.body.meta, { a: [1, { b: null }] });
      assert.equal(r.headers.etag, '"1"');
      assert.equal(r.headers.location, `${T}/${r.body.id}`);
      const g = await t.req('GET', `${T}/${r.body.id}`);
      assert.equal(g.status, 200);
      assert.deepEqual(g.body, r.body);
      const nm = await t.req('GET', `${T}/${r.body.id}`, undefined, { 'if-none-match': '"1"' });
      assert.equal(nm.status, 304);
    });

    test('validation lists every bad field and writes nothing', async () => {
      const before = (await t.req('GET', `${T}?count=true&limit=1`)).body.total;
      const r = await t.req('POST', T, {
        title: 'x',
        score: 'high',
        rank: 1.5,
        active: 'yes',
        due: 'tomorrow',
        contact: 'not-an-email',
        site: 'javascript:alert(1)',
        kind: 'z',
        owner: 'nope',
        id: '00000000-0000-7000-8000-000000000000',
        version: 9,
        hacker: true,
      });
      assert.equal(r.status, 400);
      assert.equal(r.body.code, 'E_VALIDATION');
      assert.match(r.headers['content-type'] as string, /application\/problem\+json/);
      const fields = Object.fromEntries(r.body.errors.map((e: { field: string; code: string }) => [e.field, e.code]));
      assert.deepEqual(fields, {
        title: 'min_length',
        score: 'type',
        rank: 'type',
        active: 'type',
        due: 'format',
        contact: 'format',
        site: 'format',
        kind: 'enum',
        owner: 'type',
        id: 'read_only',
        version: 'read_only',
        hacker: 'unknown_field',
      });
      assert.equal((await t.req('GET', `${T}?count=true&limit=1`)).body.total, before);
      const missing = await t.req('POST', T, {});
      assert.deepEqual(missing.body.errors, [{ field: 'title', code: 'required', message: 'is required' }]);
      const pattern = await t.req('POST', T, { title: 'bad!!' });
      assert.equal(pattern.body.errors[0].code, 'pattern');
      const big = await t.req('POST', T, { title: 'ok', score: 1001 });
      assert.equal(big.body.errors[0].code, 'max');
      const deep = await t.req('POST', T, { title: 'ok', meta: JSON.parse(`${'['.repeat(40)}${']'.repeat(40)}`) });
      assert.equal(deep.body.errors[0].code, 'depth');
    });

    test('unique fields: 409 naming the field; the trash does not count; restore can conflict', async () => {
      const a = await t.req('POST', T, { title: 'u1', code: 'X1' });
      assert.equal(a.status, 201);
      const dup = await t.req('POST', T, { title: 'u2', code: 'X1' });
      assert.equal(dup.status, 409);
      assert.equal(dup.body.code, 'E_UNIQUE_VIOLATION');
      assert.deepEqual(
        dup.body.errors.map((e: { field: string }) => e.field),
        ['code'],
      );
      assert.equal((await t.req('DELETE', `${T}/${a.body.id}`)).status, 200);
      const again = await t.req('POST', T, { title: 'u3', code: 'X1' });
      assert.equal(again.status, 201, 'a soft-deleted record does not hold its unique value');
      const restore = await t.req('POST', `${T}/${a.body.id}/restore`);
      assert.equal(restore.status, 409);
      assert.equal(restore.body.code, 'E_UNIQUE_VIOLATION');
    });

    test('relations must point at live records', async () => {
      const missing = await t.req('POST', T, { title: 'rel', owner: '01900000-0000-7000-8000-000000000000' });
      assert.equal(missing.status, 400);
      assert.equal(missing.body.errors[0].code, 'relation_not_found');
      const o = await t.req('POST', O, { name: 'gone' });
      await t.req('DELETE', `${O}/${o.body.id}`);
      const trashed = await t.req('POST', T, { title: 'rel', owner: o.body.id });
      assert.equal(trashed.status, 400);
    });

    test('If-Match: a stale version is refused with 412 and nothing is written', async () => {
      const c = await t.req('POST', T, { title: 'ver', rank: 1 });
      const ok = await t.req('PATCH', `${T}/${c.body.id}`, { rank: 2 }, { 'if-match': '"1"' });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.version, 2);
      assert.equal(ok.headers.etag, '"2"');
      const stale = await t.req('PATCH', `${T}/${c.body.id}`, { rank: 3 }, { 'if-match': '"1"' });
      assert.equal(stale.status, 412);
      assert.equal(stale.body.code, 'E_PRECONDITION_FAILED');
      assert.equal(stale.body.current_version, 2);
      const garbage = await t.req('PATCH', `${T}/${c.body.id}`, { rank: 3 }, { 'if-match': 'abc' });
      assert.equal(garbage.status, 412);
      const staleDelete = await t.req('DELETE', `${T}/${c.body.id}`, undefined, { 'if-match': '"1"' });
      assert.equal(staleDelete.status, 412);
      const now = await t.req('GET', `${T}/${c.body.id}`);
      assert.equal(now.body.rank, 2);
      assert.equal(now.body.version, 2);
      const noHeader = await t.req('PATCH', `${T}/${c.body.id}`, { rank: 4 }, { 'content-type': 'application/merge-patch+json' });
      assert.equal(noHeader.status, 200);
      assert.equal(noHeader.body.version, 3);
      assert.ok(noHeader.body.updated_at >= now.body.updated_at);
      assert.equal(noHeader.body.created_at, c.body.created_at);
    });

    test('soft delete, the trash, restore; purge needs operator credentials', async () => {
      const c = await t.req('POST', T, { title: 'trash me' });
      const d = await t.req('DELETE', `${T}/${c.body.id}`);
      assert.equal(d.status, 200);
      assert.ok(d.body.deleted_at);
      assert.equal((await t.req('GET', `${T}/${c.body.id}`)).status, 404);
      assert.equal((await t.req('DELETE', `${T}/${c.body.id}`)).status, 404, 'deleting twice is a 404');
      const trash = await t.req('GET', `${T}?deleted=only&filter=${encodeURIComponent(`id = "${c.body.id}"`)}`);
      assert.deepEqual(
        trash.body.items.map((r: { id: string }) => r.id),
        [c.body.id],
      );
      assert.equal((await t.req('GET', `${T}/${c.body.id}?deleted=only`)).status, 200);
      const live = await t.req('GET', `${T}?filter=${encodeURIComponent(`id = "${c.body.id}"`)}`);
      assert.equal(live.body.items.length, 0);
      const r = await t.req('POST', `${T}/${c.body.id}/restore`);
      assert.equal(r.status, 200);
      assert.equal(r.body.deleted_at, null);
      assert.equal(r.body.version, 3);
      assert.equal((await t.req('POST', `${T}/${c.body.id}/restore`)).status, 404, 'restoring a live record is a 404');
      const anon = await t.req('DELETE', `${T}/${c.body.id}?purge=true`);
      assert.equal(anon.status, 401);
      assert.equal(anon.body.code, 'E_UNAUTHENTICATED');
      const notAdmin = await t.req('DELETE', `${T}/${c.body.id}?purge=true`, undefined, user);
      assert.equal(notAdmin.status, 403);
      assert.equal(notAdmin.body.code, 'E_FORBIDDEN');
      const forged = await t.req('DELETE', `${T}/${c.body.id}?purge=true`, undefined, { authorization: `Bearer ${'b'.repeat(40)}` });
      assert.equal(forged.status, 401);
      assert.equal(forged.body.code, 'E_INVALID_TOKEN');
      const purge = await t.req('DELETE', `${T}/${c.body.id}?purge=true`, undefined, admin);
      assert.equal(purge.status, 204);
      assert.equal((await t.req('GET', `${T}/${c.body.id}?deleted=only`)).status, 404);
    });

    test('onDelete restrict refuses while live records refer; purge is refused by the database too', async () => {
      const o = await t.req('POST', O, { name: 'owner' });
      const th = await t.req('POST', T, { title: 'owned', owner: o.body.id });
      const del = await t.req('DELETE', `${O}/${o.body.id}`);
      assert.equal(del.status, 409);
      assert.equal(del.body.code, 'E_RELATION_RESTRICT');
      const purge = await t.req('DELETE', `${O}/${o.body.id}?purge=true`, undefined, admin);
      assert.equal(purge.status, 409);
      assert.equal(purge.body.code, 'E_RELATION_RESTRICT');
      await t.req('DELETE', `${T}/${th.body.id}`);
      assert.equal((await t.req('DELETE', `${O}/${o.body.id}`)).status, 200, 'a trashed referrer does not restrict');
    });

    test('filters: every operator, and/or, and clear 400s', async () => {
      const mk = (b: Record<string, unknown>) => t.req('POST', T, { title: 'flt', ...b });
      const ids = [
        (await mk({ code: 'F-alpha', score: 10, rank: 1, kind: 'a', active: true, due: '2030-01-01T00:00:00Z' })).body.id,
        (await mk({ code: 'F-beta', score: 20, rank: 2, kind: 'b', active: false, due: '2030-06-01T00:00:00Z' })).body.id,
        (await mk({ code: 'F-Gamma_%', score: 30, rank: 3, kind: 'c', active: true })).body.id,
      ];
      const q = async (filter: string) => {
        const r = await t.req('GET', `${T}?limit=200&sort=rank&filter=${encodeURIComponent(`code prefix "F-" && (${filter})`)}`);
        assert.equal(r.status, 200, `${filter}: ${JSON.stringify(r.body)}`);
        return r.body.items.map((x: { id: string }) => ids.indexOf(x.id));
      };
      assert.deepEqual(await q('score = 20'), [1]);
      // Same shape, other values: compiled queries are cached per shape, values never are.
      assert.deepEqual(await q('score = 10'), [0]);
      assert.deepEqual(await q('kind in ("a", "b")'), [0, 1]);
      assert.deepEqual(await q('kind in ("c", "b")'), [1, 2]);
      assert.deepEqual(await q('score != 20'), [0, 2]);
      assert.deepEqual(await q('score < 20'), [0]);
      assert.deepEqual(await q('score <= 20'), [0, 1]);
      assert.deepEqual(await q('rank > 1'), [1, 2]);
      assert.deepEqual(await q('rank >= 3'), [2]);
      assert.deepEqual(await q('kind in ("a", "c")'), [0, 2]);
      assert.deepEqual(await q('code contains "ALPHA"'), [0], 'contains is case-insensitive');
      assert.deepEqual(await q('code contains "_%"'), [2], 'LIKE wildcards in values are literal');
      assert.deepEqual(await q('code contains "%"'), [2]);
      assert.deepEqual(await q('due is null'), [2]);
      assert.deepEqual(await q('due is not null and due < "2030-03-01T00:00:00Z"'), [0]);
      assert.deepEqual(await q('active = false || kind = "c"'), [1, 2]);
      assert.deepEqual(await q('(kind = "a" or kind = "b") and score > 15'), [1]);
      assert.deepEqual(await q('due = null'), [2]);
      assert.deepEqual(await q(`id = "${ids[1]}"`), [1]);
      const bad = async (filter: string, code = 'E_INVALID_FILTER') => {
        const r = await t.req('GET', `${T}?filter=${encodeURIComponent(filter)}`);
        assert.equal(r.status, 400, filter);
        assert.equal(r.body.code, code, filter);
        return r.body.detail as string;
      };
      assert.match(await bad('nope = 1'), /unknown field "nope"/);
      assert.match(await bad('meta = 1'), /operator "=" cannot be used on json/);
      assert.match(await bad('score contains "1"'), /cannot be used on number/);
      assert.match(await bad('score = "1"'), /must be a number/);
      assert.match(await bad('id = "1 or 1=1"'), /UUID/);
      await bad('title = "x" or');
      await bad('title = "unterminated');
      await bad('(title = "x"');
      await bad("title = 'x'; drop table things; --'");
      await bad('title ~ "x"');
      await bad('due > "not a date"');
      const inj = await t.req('GET', `${T}?filter=${encodeURIComponent(`title = "x' OR '1'='1"`)}`);
      assert.equal(inj.status, 200);
      assert.equal(inj.body.items.length, 0, 'quotes in values are data, not SQL');
    });

    test('sort, keyset pagination, count and field selection', async () => {
      for (let i = 0; i < 25; i++) {
        await t.req('POST', T, { title: 'page', code: `P-${String(i).padStart(2, '0')}`, rank: i % 5, score: i % 3 === 0 ? null : i });
      }
      const walk = async (sort: string) => {
        const seen: Array<Record<string, unknown>> = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const qs: string = `filter=${encodeURIComponent('title = "page"')}&sort=${sort}&limit=7${cursor ? `&cursor=${cursor}` : ''}`;
          const r = await t.req('GET', `${T}?${qs}`);
          assert.equal(r.status, 200, JSON.stringify(r.body));
          seen.push(...r.body.items);
          cursor = r.body.next_cursor;
          pages++;
        } while (cursor && pages < 20);
        return seen;
      };
      for (const sort of ['-created_at', 'rank,-code', '-score', 'score,rank', 'code']) {
        const rows = await walk(sort);
        assert.equal(rows.length, 25, sort);
        assert.equal(new Set(rows.map((r) => r.id)).size, 25, `${sort}: no duplicates`);
        const keys = sort.split(',').map((s) => ({ f: s.replace('-', ''), desc: s.startsWith('-') }));
        const cmp = (a: Record<string, any>, b: Record<string, any>) => {
          for (const k of keys) {
            const x = a[k.f];
            const y = b[k.f];
            if (x === y) continue;
            if (x === null) return k.desc ? -1 : 1; // nulls last ascending, first descending
            if (y === null) return k.desc ? 1 : -1;
            return (x < y ? -1 : 1) * (k.desc ? -1 : 1);
          }
          return 0;
        };
        for (let i = 1; i < rows.length; i++) assert.ok(cmp(rows[i - 1] as any, rows[i] as any) <= 0, `${sort}: order at ${i}`);
      }
      const counted = await t.req('GET', `${T}?filter=${encodeURIComponent('title = "page" && rank = 0')}&count=true&fields=code,rank`);
      assert.equal(counted.body.total, 5);
      assert.deepEqual(Object.keys(counted.body.items[0]).sort(), ['code', 'id', 'rank']);
      const badCursor = await t.req('GET', `${T}?cursor=${Buffer.from('{"s":"-created_at,-id","v":["x","y"]}').toString('base64url')}`);
      assert.equal(badCursor.status, 400);
      assert.equal(badCursor.body.code, 'E_INVALID_CURSOR');
      const first = await t.req('GET', `${T}?sort=rank&limit=1`);
      const otherSort = await t.req('GET', `${T}?sort=code&cursor=${first.body.next_cursor}`);
      assert.equal(otherSort.body.code, 'E_INVALID_CURSOR');
      for (const [qs, code] of [
        ['limit=0', 'E_INVALID_QUERY'],
        ['limit=201', 'E_INVALID_QUERY'],
        ['limit=abc', 'E_INVALID_QUERY'],
        ['sort=nope', 'E_INVALID_SORT'],
        ['sort=meta', 'E_INVALID_SORT'],
        ['sort=a,b,c,d,e', 'E_INVALID_SORT'],
        ['fields=nope', 'E_INVALID_FIELDS'],
        ['deleted=maybe', 'E_INVALID_QUERY'],
        ['count=perhaps', 'E_INVALID_QUERY'],
        ['bogus=1', 'E_INVALID_QUERY'],
        ['limit=1&limit=2', 'E_INVALID_QUERY'],
        ['cursor=%00%01', 'E_INVALID_CURSOR'],
      ]) {
        const r = await t.req('GET', `${T}?${qs}`);
        assert.equal(r.status, 400, qs);
        assert.equal(r.body.code, code, qs);
      }
      const max = await t.req('GET', `${T}?limit=200`);
      assert.equal(max.status, 200);
      const dflt = await t.req('GET', T);
      assert.equal(dflt.body.items.length, 20, 'default limit is 20');
      const etag = dflt.headers.etag as string;
      assert.match(etag, /^W\/"/);
      assert.equal((await t.req('GET', T, undefined, { 'if-none-match': etag })).status, 304);
    });

    test('batch: all or nothing, with per-operation results', async () => {
      const o = await t.req('POST', O, { name: 'batch owner' });
      const ok = await t.req('POST', '/api/v1/batch', {
        operations: [
          { op: 'create', collection: 'things', data: { title: 'b1', owner: o.body.id } },
          { op: 'update', collection: 'owners', id: o.body.id, data: { name: 'renamed' }, if_match: 1 },
          { op: 'create', collection: 'owners', data: { name: 'second' } },
        ],
      });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.deepEqual(
        ok.body.results.map((r: { status: number }) => r.status),
        [201, 200, 201],
      );
      assert.equal(ok.body.results[1].record.name, 'renamed');
      const count = async () => (await t.req('GET', `${O}?count=true&limit=1`)).body.total;
      const before = await count();
      const fail = await t.req('POST', '/api/v1/batch', {
        operations: [
          { op: 'create', collection: 'owners', data: { name: 'never' } },
          { op: 'update', collection: 'owners', id: o.body.id, data: { name: 'never' }, if_match: 1 },
          { op: 'create', collection: 'owners', data: { name: 'never either' } },
        ],
      });
      assert.equal(fail.status, 412);
      assert.equal(fail.body.code, 'E_PRECONDITION_FAILED');
      assert.equal(fail.body.failed_operation, 1);
      assert.deepEqual(fail.body.results, [
        { status: 'rolled_back' },
        { status: 412, code: 'E_PRECONDITION_FAILED' },
        { status: 'not_run' },
      ]);
      assert.equal(await count(), before, 'nothing of a failed batch is written');
      assert.equal((await t.req('GET', `${O}/${o.body.id}`)).body.name, 'renamed');
      const invalid = await t.req('POST', '/api/v1/batch', { operations: [{ op: 'create', collection: 'owners', data: { name: 5 } }] });
      assert.equal(invalid.status, 400);
      assert.equal(invalid.body.failed_operation, 0);
      const tooMany = await t.req('POST', '/api/v1/batch', {
        operations: Array.from({ length: 101 }, () => ({ op: 'create', collection: 'owners', data: { name: 'x' } })),
      });
      assert.equal(tooMany.status, 400);
      assert.equal(await count(), before);
      for (const body of [
        {},
        { operations: [] },
        { operations: [{ op: 'explode', collection: 'owners' }] },
        { operations: [{ op: 'update', collection: 'owners' }] },
        { operations: 'x', extra: 1 },
      ]) {
        const r = await t.req('POST', '/api/v1/batch', body);
        assert.equal(r.status, 400, JSON.stringify(body));
      }
      const unknown = await t.req('POST', '/api/v1/batch', { operations: [{ op: 'create', collection: 'ghosts', data: {} }] });
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.code, 'E_COLLECTION_NOT_FOUND');
    });
  });
}
