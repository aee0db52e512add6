/**
 * Full-text search, the same assertions on every backend (FTS5 on SQLite, tsvector + pg_trgm on
 * PostgreSQL): which records match must agree; only scores may differ. Relevance, phrases,
 * prefixes, exclusions, typos, facets, soft delete and restore, rules and counts, pagination,
 * snippets, online rebuilds, and a fuzz of `q` that must never produce a 5xx.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { sql } from 'kysely';
import type { SearchSpec } from '../../src/records/schema.js';
import { searchName } from '../../src/records/schema-diff.js';
import { rebuildSearch } from '../../src/records/search-index.js';
import searchApp from '../fixtures/search-app.js';
import { type SignedIn, startTestApp, type TestApp } from '../helpers/app.js';
import { backendMatrix } from '../helpers/backends.js';

const A = '/api/v1/collections/articles/records';
const S = '/api/v1/collections/shelves/records';

for (const { name, skip } of await backendMatrix()) {
  describe(`search conformance (${name})`, { skip }, () => {
    let t: TestApp;
    let alice: SignedIn;
    let bob: SignedIn;
    let shelf1: string;
    let shelf2: string;
    const ids: Record<string, string> = {};
    const search = async (query: string, who: SignedIn | null, extra = '') => {
      const r = await t.req('GET', `${A}?q=${encodeURIComponent(query)}${extra}`, undefined, who?.auth ?? {});
      assert.equal(r.status, 200, r.raw);
      return r.body as { items: any[]; total?: number; facets?: any; typo_corrections?: Record<string, string[]>; next_cursor: string };
    };
    const titles = async (query: string, who: SignedIn | null, extra = '') =>
      (await search(query, who, extra)).items.map((i) => i.title).sort();

    before(async () => {
      t = await startTestApp(name, searchApp);
      alice = await t.signIn();
      bob = await t.signIn();
      shelf1 = (await t.req('POST', S, { name: 'one' }, alice.auth)).body.id;
      shelf2 = (await t.req('POST', S, { name: 'two' }, alice.auth)).body.id;
      const docs: Array<[string, string, string, string, boolean?]> = [
        ['resilient', 'Resilient systems', 'How to build software that keeps working when parts fail.', 'guide'],
        ['body-only', 'Kitchen notes', 'A resilient sourdough starter survives a week in the fridge.', 'note'],
        ['breaker', 'Circuit breaker basics', 'The circuit breaker opens after repeated failures.', 'guide'],
        ['apart', 'Wiring', 'The circuit in the hall has a new breaker installed.', 'faq'],
        ['resilience', 'Resilience engineering', 'Chaos experiments measure how a system absorbs failures.', 'guide'],
        ['flaky', 'Flaky networks', 'Retries with jitter make clients resilient to flaky networks.', 'faq'],
        ['private', 'Secret resilient plan', 'Only the owner may find this document.', 'note', true],
        ['escape', 'Markup <b>bold</b> & friends', 'Snippets must escape <script>alert(1)</script> markup safely.', 'note'],
      ];
      for (const [key, title, body, kind, priv] of docs) {
        const shelf = ['breaker', 'apart'].includes(key) ? shelf2 : shelf1;
        const r = await t.req('POST', A, { title, body, kind, shelf, private: priv ?? false }, alice.auth);
        assert.equal(r.status, 201, r.raw);
        ids[key] = r.body.id;
      }
    });
    after(async () => t?.close());

    test('relevance: a title match ranks above a body-only match; scores descend', async () => {
      const r = await search('resilient', bob);
      const order = r.items.map((i) => i.id);
      assert.ok(order.indexOf(ids.resilient) < order.indexOf(ids['body-only']), 'title match first');
      const scores = r.items.map((i) => i._search.score);
      assert.deepEqual(
        scores,
        [...scores].sort((a, b) => b - a),
      );
      assert.ok(scores.every((s) => Number.isFinite(s) && s > 0));
    });

    test('words match by stem; a phrase needs its words together; a prefix matches word starts; -word excludes', async () => {
      assert.deepEqual(await titles('failures', bob), ['Circuit breaker basics', 'Resilience engineering']);
      assert.deepEqual(await titles('fail', bob), ['Resilient systems'], 'stemmed: fail matches fail, not failures on both');
      assert.deepEqual(await titles('"circuit breaker"', bob), ['Circuit breaker basics']);
      assert.deepEqual(await titles('circuit breaker', bob), ['Circuit breaker basics', 'Wiring']);
      assert.deepEqual(await titles('resil*', bob), ['Flaky networks', 'Kitchen notes', 'Resilience engineering', 'Resilient systems']);
      // resilient and resilience share a stem, on both backends.
      assert.deepEqual(await titles('resilient -flaky', bob), ['Kitchen notes', 'Resilience engineering', 'Resilient systems']);
      assert.deepEqual(await titles('circuit -"new breaker"', bob), ['Circuit breaker basics']);
      assert.deepEqual(await titles('RESILIENT Software', bob), ['Resilient systems'], 'case-insensitive, all words required');
      assert.deepEqual(await titles('the', bob), [], 'stop words alone match nothing, on every backend');
      assert.deepEqual(await titles('the circuit in breaker', bob), ['Circuit breaker basics', 'Wiring']);
    });

    test('typo tolerance: an unknown word is widened to the closest known words; typos=false turns it off', async () => {
      const r = await search('resilent', bob);
      assert.deepEqual(r.items.map((i) => i.title).sort(), [
        'Flaky networks',
        'Kitchen notes',
        'Resilience engineering',
        'Resilient systems',
      ]);
      assert.deepEqual(r.typo_corrections, { resilent: ['resilient'] });
      assert.deepEqual(await titles('sourdogh starter', bob), ['Kitchen notes']);
      assert.deepEqual(await titles('expreiments', bob), ['Resilience engineering'], 'a transposition is one typo');
      assert.deepEqual(await titles('resilent', bob, '&typos=false'), []);
      assert.deepEqual(await titles('qwzrtplk', bob), [], 'nothing close: nothing found');
      assert.deepEqual(await titles('jitr', bob), [], 'under 5 letters: no typo tolerance');
    });

    test('snippets mark the matches in escaped HTML, per matching field', async () => {
      const r = await search('breaker', bob);
      const hit = r.items.find((i) => i.id === ids.breaker);
      assert.match(hit._search.snippets.title, /<mark>breaker<\/mark>/i);
      assert.match(hit._search.snippets.body, /<mark>breaker<\/mark>/i);
      const esc = (await search('markup', bob)).items[0];
      assert.equal(esc.id, ids.escape);
      assert.match(esc._search.snippets.title, /^<mark>Markup<\/mark>/);
      for (const html of Object.values(esc._search.snippets) as string[]) {
        assert.ok(!html.replace(/<\/?mark>/g, '').includes('<'), `only <mark> tags: ${html}`);
      }
    });

    test('combined with filters, sort, counts and facets', async () => {
      const r = await search('resilient', bob, `&filter=${encodeURIComponent('kind = "faq"')}&count=true`);
      assert.deepEqual(
        r.items.map((i) => i.title),
        ['Flaky networks'],
      );
      assert.equal(r.total, 1);
      const sorted = await search('circuit', bob, '&sort=created_at');
      assert.deepEqual(
        sorted.items.map((i) => i.id),
        [ids.breaker, ids.apart],
      );
      const f = await search('resil* circuit', bob, '&facets=kind,shelf');
      assert.deepEqual(f.items, []);
      const facets = await search('resil*', bob, '&facets=kind,shelf&count=true');
      assert.equal(facets.total, 4);
      assert.deepEqual(facets.facets.kind, [
        { value: 'guide', count: 2 },
        { value: 'faq', count: 1 },
        { value: 'note', count: 1 },
      ]);
      assert.deepEqual(facets.facets.shelf, [{ value: shelf1, count: 4 }]);
      const circuit = await search('circuit', bob, '&facets=shelf,kind');
      assert.deepEqual(circuit.facets.shelf, [{ value: shelf2, count: 2 }]);
      const noQ = await t.req('GET', `${A}?facets=shelf&limit=1`, undefined, bob.auth);
      assert.deepEqual(noQ.body.facets.shelf, [
        { value: shelf1, count: 5 },
        { value: shelf2, count: 2 },
      ]);
    });

    test('rules: nobody finds what they cannot view, and counts and facets agree', async () => {
      assert.ok(!(await titles('secret', bob)).includes('Secret resilient plan'));
      assert.deepEqual(await titles('secret', alice), ['Secret resilient plan']);
      assert.equal((await search('resilient', bob, '&count=true')).total, 4);
      assert.equal((await search('resilient', alice, '&count=true')).total, 5);
      assert.deepEqual((await search('secret', bob, '&facets=kind&count=true')).facets.kind, []);
      assert.deepEqual(await titles('secret', null), [], 'anonymous');
      assert.equal((await search('secret', bob, '&deleted=include&count=true')).total, 0);
    });

    test('a write is searchable at once; an edit replaces the old words; delete hides, restore brings back, purge removes', async () => {
      const c = await t.req('POST', A, { title: 'Zeppelin maintenance', body: 'helium checks' }, alice.auth);
      assert.deepEqual(await titles('zeppelin', bob), ['Zeppelin maintenance']);
      const id = c.body.id;
      await t.req('PATCH', `${A}/${id}`, { title: 'Blimp maintenance' }, alice.auth);
      assert.deepEqual(await titles('zeppelin', bob, '&typos=false'), []);
      assert.deepEqual(await titles('blimp', bob), ['Blimp maintenance']);
      assert.equal((await t.req('DELETE', `${A}/${id}`, undefined, alice.auth)).status, 200);
      assert.deepEqual(await titles('blimp', bob), []);
      assert.deepEqual(await titles('blimp', alice, '&deleted=only'), ['Blimp maintenance'], 'the trash is searchable');
      assert.equal((await t.req('POST', `${A}/${id}/restore`, undefined, alice.auth)).status, 200);
      assert.deepEqual(await titles('blimp', bob), ['Blimp maintenance']);
      const admin = await t.signIn({ role: 'admin' });
      assert.equal((await t.req('DELETE', `${A}/${id}?purge=true`, undefined, admin.auth)).status, 204);
      assert.deepEqual(await titles('blimp', admin, '&deleted=include'), []);
      // A batch's writes are indexed in its transaction, and a failed batch leaves nothing behind.
      const failed = await t.req(
        'POST',
        '/api/v1/batch',
        {
          operations: [
            { op: 'create', collection: 'articles', data: { title: 'Quokka census' } },
            { op: 'create', collection: 'articles', data: { title: 123 } },
          ],
        },
        alice.auth,
      );
      assert.equal(failed.status, 400);
      assert.equal(failed.body.failed_operation, 1);
      assert.deepEqual(await titles('quokka', bob), []);
    });

    test('pagination by relevance visits every match once, in the order of a single page', async () => {
      for (let i = 0; i < 33; i++) {
        const words = Array.from({ length: 1 + (i % 5) }, () => 'pagination').join(' ');
        const r = await t.req('POST', A, { title: `Page ${i}`, body: `${words} filler ${'text '.repeat(i % 7)}` }, alice.auth);
        assert.equal(r.status, 201);
      }
      // A sort of three keys takes the plain path (every match joined and sorted in one query);
      // pages by relevance first rank the matches on the index, then read the best candidates.
      const all = (await search('pagination', bob, '&limit=200&sort=-_score,-id,created_at')).items.map((i) => i.id);
      assert.equal(all.length, 33);
      assert.deepEqual(
        (await search('pagination', bob, '&limit=200')).items.map((i) => i.id),
        all,
      );
      // Many candidates, few of which pass the filter: the page falls back to the plain path.
      const one = await search('pagination', bob, `&limit=2&filter=${encodeURIComponent('title = "Page 31"')}`);
      assert.deepEqual(
        one.items.map((i) => i.title),
        ['Page 31'],
      );
      const seen: string[] = [];
      let cursor = '';
      for (let page = 0; page < 10; page++) {
        const r = await search('pagination', bob, `&limit=7${cursor ? `&cursor=${cursor}` : ''}`);
        seen.push(...r.items.map((i) => i.id));
        if (!r.next_cursor) break;
        cursor = r.next_cursor;
      }
      assert.deepEqual(seen, all);
      const bad = await t.req('GET', `${A}?q=pagination&sort=title&cursor=${cursor}`, undefined, bob.auth);
      assert.equal(bad.status, 400, 'a cursor is tied to its sort');
    });

    test('bad input is a 400 with a stable code, never a 5xx', async () => {
      for (const [q, why] of <Array<[string, string]>>[
        ['-flaky', 'only exclusions'],
        ['""', 'nothing to look for'],
        ['* - " ( ) : ^', 'operators only'],
        ['x'.repeat(201), 'too long'],
        ['r*', 'prefix too short'],
      ]) {
        const r = await t.req('GET', `${A}?q=${encodeURIComponent(q)}`, undefined, bob.auth);
        assert.equal(r.status, 400, `${why}: ${r.raw}`);
        assert.equal(r.body.code, 'E_INVALID_QUERY');
      }
      for (const q of ['"unbalanced quote', 'NEAR(a b)', 'a:b^c', 'title:resilient', "don't", 'AND OR NOT', '{a}', 'a"b"c']) {
        const r = await t.req('GET', `${A}?q=${encodeURIComponent(q)}`, undefined, bob.auth);
        assert.equal(r.status, 200, `${q}: ${r.raw}`);
      }
      const noIndex = await t.req('GET', `${S}?q=one`, undefined, bob.auth);
      assert.equal(noIndex.status, 400);
      assert.match(noIndex.body.detail, /no searchable fields/);
      for (const extra of ['&facets=title', '&facets=nope', '&facets=a,b,c,d,e', '&typos=maybe', '&sort=_score']) {
        const r = await t.req('GET', `${extra.includes('_score') ? `${A}?limit=1` : `${A}?q=circuit`}${extra}`, undefined, bob.auth);
        assert.equal(r.status, 400, `${extra}: ${r.raw}`);
      }
    });

    test('fuzz: random query strings built from FTS syntax never produce a 5xx', async () => {
      const piece = fc.oneof(
        fc.constantFrom('"', '*', '-', '(', ')', ':', '^', '+', 'NEAR', 'AND', 'OR', 'NOT', "'", '\\', '&', '|', '!', '<->', ' ', '\u0000'),
        fc.constantFrom('resilient', 'circuit', 'resil', 'breaker', 'the', 'é', '東京', 'ab'),
        fc.string({ maxLength: 6 }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(piece, { maxLength: 40 }), async (parts) => {
          const q = parts.join('');
          const r = await t.req('GET', `${A}?q=${encodeURIComponent(q)}&facets=kind&count=true`, undefined, bob.auth);
          assert.ok(r.status === 200 || (r.status === 400 && r.body.code === 'E_INVALID_QUERY'), `${JSON.stringify(q)} -> ${r.raw}`);
        }),
        { numRuns: 300 },
      );
    });

    test('an online rebuild repairs a damaged index while writes go on', async () => {
      const spec = t.app.records.schema('articles').search as SearchSpec;
      const storage = t.app.storage;
      // Damage: remove every index entry (as a lost or corrupt index would).
      await sql`delete from ${sql.id(searchName('articles'))}`.execute(storage.db);
      assert.deepEqual(await titles('circuit', bob), []);
      let writes = 0;
      let stop = false;
      const writer = (async () => {
        while (!stop) {
          const r = await t.req('POST', A, { title: `Concurrent write ${writes}`, body: 'rebuild overlap' }, alice.auth);
          assert.equal(r.status, 201, r.raw);
          writes++;
        }
      })();
      const result = await rebuildSearch(storage, spec, { batch: 5 });
      stop = true;
      await writer;
      assert.ok(result.records >= 40, `rebuilt ${result.records}`);
      assert.deepEqual(await titles('circuit', bob), ['Circuit breaker basics', 'Wiring']);
      assert.equal((await search('overlap', bob, '&count=true')).total, writes, `every concurrent write findable (${writes})`);
      const { rows } = await sql<{ n: number }>`select count(*) as n from ${sql.id(searchName('articles'))}`.execute(storage.db);
      const live = await sql<{ n: number }>`select count(*) as n from articles`.execute(storage.db);
      assert.equal(Number(rows[0]?.n), Number(live.rows[0]?.n), 'one index entry per record, none stale');
    });
  });
}
