/**
 * bench/search: full-text search over 100k chat messages on SQLite (FTS5) and PostgreSQL
 * (tsvector + GIN), through the HTTP API of a `rampart serve` process, driven by autocannon from
 * this one over loopback.
 *
 * Messages are 6 to 20 words drawn from a 5,000-word vocabulary with a Zipf distribution (a few
 * words are everywhere, most are rare, as in real text; the most frequent are English stop words),
 * spread over 100 rooms; seeding goes through the records service in batches (so through the
 * index triggers), with a progress bar. Queries, each drawn at random from 2,000 prepared ones,
 * words picked by their frequency in the text:
 *  - two words: two words (not stop words) of one random message, so every query has results;
 *  - prefix: a word of 6+ letters without its last two, with `*` (as typed into a search box);
 *  - typo: a word of 6+ letters with two adjacent letters swapped (corrected by typo tolerance);
 *  - two words + count + facets=room: the same, with the total and the per-room counts.
 *
 *   npm run bench:search                                   # both backends, 100k messages
 *   npm run bench:search -- --messages 20000 --backends sqlite --duration 5
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type autocannon from 'autocannon';
import { createApp } from '../../src/app.js';
import { createProgress } from '../../src/core/progress.js';
import { backendMatrix, makeBackend } from '../../test/helpers/backends.js';
import { freePort, ROOT } from '../../test/helpers/processes.js';
import { type Figures, log, measure, rssMb, spawnServer, waitReady } from '../lib.ts';
import benchApp from './app.ts';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '100000' },
    backends: { type: 'string', default: 'sqlite,postgres' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '10' },
  },
});
const MESSAGES = Number(values.messages);
const duration = Number(values.duration);
const warmup = Number(values.warmup);
const connections = Number(values.connections);
const wanted = values.backends.split(',');

/** A seeded PRNG (mulberry32): the same corpus and queries on every run and backend. */
function rng(seed: number) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(42);
/**
 * The vocabulary: English stop words take the most frequent ranks (as in real text, where they
 * are left out of queries), then 4,900 made-up words.
 */
const STOP = 'the a to and of in is it you that i for on with this be are have was not at but so we my your can do'.split(' ');
const SYLLABLES = 'ka lo mi ren tas vo pel dri nu shan gor fe lix tam qui zor bel mar sto wen'.split(' ');
const vocabulary: string[] = [...STOP];
const known = new Set(vocabulary);
while (vocabulary.length < 5000) {
  const n = 2 + Math.floor(random() * 3);
  const w = Array.from({ length: n }, () => SYLLABLES[Math.floor(random() * SYLLABLES.length)]).join('');
  if (!known.has(w)) {
    known.add(w);
    vocabulary.push(w);
  }
}
// Zipf: the word of rank r has weight 1/r.
const cumulative: number[] = [];
let sum = 0;
for (let r = 1; r <= vocabulary.length; r++) {
  sum += 1 / r;
  cumulative.push(sum);
}
const zipfWord = () => {
  const x = random() * sum;
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((cumulative[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return vocabulary[lo] as string;
};
/** A word a user would search for: not a stop word. */
const contentWord = (minLength = 1) => {
  for (;;) {
    const w = zipfWord();
    if (!STOP.includes(w) && w.length >= minLength) return w;
  }
};
const message = () => Array.from({ length: 6 + Math.floor(random() * 15) }, zipfWord).join(' ');
const pick = <T>(a: T[]) => a[Math.floor(Math.random() * a.length)] as T;

const bodies = Array.from({ length: MESSAGES }, message);
const queries = {
  two: Array.from({ length: 2000 }, () => {
    for (;;) {
      const words = [...new Set((bodies[Math.floor(random() * bodies.length)] as string).split(' '))].filter((w) => !STOP.includes(w));
      if (words.length < 2) continue;
      const a = words[Math.floor(random() * words.length)] as string;
      const rest = words.filter((w) => w !== a);
      return `${a} ${rest[Math.floor(random() * rest.length)]}`;
    }
  }),
  // As typed into a search box: the first letters of a word, two short of the whole.
  prefix: Array.from({ length: 2000 }, () => {
    const w = contentWord(6);
    return `${w.slice(0, w.length - 2)}*`;
  }),
  typo: Array.from({ length: 2000 }, () => {
    const w = contentWord(6);
    const i = 1 + Math.floor(random() * (w.length - 3));
    return w.slice(0, i) + w[i + 1] + w[i] + w.slice(i + 2);
  }),
};

interface Row extends Figures {
  backend: string;
  op: string;
  rssMb: number;
}
const rows: Row[] = [];
const seeding: Array<{ backend: string; seconds: number; perS: number }> = [];

const matrix = (await backendMatrix()).filter((b) => wanted.includes(b.name) && !b.skip);
for (const { name } of matrix) {
  log(`\n${name}: seeding ${MESSAGES} messages…`);
  const backend = await makeBackend(name, { LOG_LEVEL: 'warn' });
  const seeder = await createApp(backend.config, benchApp);
  await seeder.migrator.up();
  const rooms = (
    await seeder.records.batch(Array.from({ length: 100 }, (_, i) => ({ op: 'create', collection: 'rooms', data: { name: `room ${i}` } })))
  ).map((r) => r.record.id);
  const started = Date.now();
  const progress = createProgress('seed messages', MESSAGES);
  for (let i = 0; i < MESSAGES; i += 100) {
    const ops = bodies.slice(i, i + 100).map((body, j) => ({
      op: 'create',
      collection: 'messages',
      data: { room: rooms[(i + j) % rooms.length], body, author: `user${(i + j) % 500}` },
    }));
    await seeder.records.batch(ops);
    progress.update(Math.min(MESSAGES, i + 100));
  }
  progress.finish();
  const seconds = (Date.now() - started) / 1000;
  seeding.push({ backend: name, seconds: Math.round(seconds), perS: Math.round(MESSAGES / seconds) });
  await seeder.records.analyze();
  await seeder.stop();

  const port = await freePort();
  const env = { ...backend.env, PORT: String(port), LOG_LEVEL: 'warn', RAMPART_JOBS_IN_PROCESS: 'false', RAMPART_SCHEDULER: 'false' };
  const child = spawnServer([join(ROOT, 'bin/rampart.js'), 'serve', '--app', 'bench/search/app.ts'], env);
  const base = `http://127.0.0.1:${port}`;
  await waitReady(`${base}/readyz`, child);
  const M = '/api/v1/collections/messages/records';
  const search = (list: string[], extra = ''): autocannon.Request => ({
    method: 'GET',
    setupRequest: (r) => ({ ...r, path: `${M}?q=${encodeURIComponent(pick(list))}${extra}` }),
  });
  const plan: Array<[string, autocannon.Request]> = [
    ['two words', search(queries.two)],
    ['prefix', search(queries.prefix)],
    ['typo', search(queries.typo)],
    ['two words + count + facets', search(queries.two, '&count=true&facets=room')],
  ];
  for (const [op, request] of plan) {
    const figures = await measure({ url: base, connections, warmup, duration, request: () => request });
    const row = { backend: name, op, ...figures, rssMb: rssMb(child.pid as number) };
    rows.push(row);
    log(
      `  ${name.padEnd(9)} ${op.padEnd(28)} ${String(row.rps).padStart(6)} q/s  p50 ${row.p50} ms  p99 ${row.p99} ms  non-2xx ${row.non2xx}  RSS ${row.rssMb} MB`,
    );
  }
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await backend.cleanup();
}

const out: string[] = [];
out.push(
  `bench/search — ${MESSAGES} messages, ${connections} connections, ${duration} s per query kind after ${warmup} s warm-up, Node ${process.version}, ${(await import('node:os')).cpus().length} cores`,
);
out.push('');
out.push('| backend | query | queries/s | p50 ms | p99 ms | non-2xx | errors | server RSS MB |');
out.push('|---|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows) out.push(`| ${r.backend} | ${r.op} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${r.errors} | ${r.rssMb} |`);
out.push('');
out.push('| backend | seeding (indexed writes, batches of 100) | messages/s |');
out.push('|---|---:|---:|');
for (const s of seeding) out.push(`| ${s.backend} | ${s.seconds} s | ${s.perS} |`);
process.stdout.write(`\n${out.join('\n')}\n`);
