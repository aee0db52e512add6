/**
 * SQLite backup work in a worker thread: `VACUUM INTO`, `PRAGMA integrity_check` and hashing
 * every row are synchronous in better-sqlite3, and an embedded app serves from the same process;
 * here they block only this thread. Messages: `{ progress: [label, done, total] }`, then
 * `{ result }` or `{ error, corrupt }`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteDatabase } from '../storage/sqlite/driver.js';
import { digestSqliteFile, sqliteTables } from './digest.js';

/** What the thread is asked to do. */
export interface SqliteTask {
  /** `snapshot`: copy `src` into `dest` then digest `dest`; `check`: integrity of `src`, then digest it. */
  op: 'snapshot' | 'check';
  src: string;
  dest?: string;
}

function digest(file: string) {
  const db = new SqliteDatabase(file, { readonly: true });
  let total = 0;
  try {
    for (const t of sqliteTables(db))
      total += Number((db.prepare(`select count(*) as n from "${t.replaceAll('"', '""')}"`).get() as { n: number }).n);
  } finally {
    db.close();
  }
  parentPort?.postMessage({ progress: ['hash rows', 0, total] });
  return digestSqliteFile(file, (n) => parentPort?.postMessage({ progress: ['hash rows', n, total] }));
}

function run(task: SqliteTask) {
  if (task.op === 'snapshot') {
    // VACUUM INTO reads in one transaction: a consistent copy while writers go on (WAL).
    const src = new SqliteDatabase(task.src, { readonly: true });
    try {
      src.prepare('vacuum into ?').run(task.dest);
    } finally {
      src.close();
    }
    return digest(task.dest as string);
  }
  let problems: string[];
  try {
    const db = new SqliteDatabase(task.src);
    try {
      const r = db.pragma('integrity_check') as Array<{ integrity_check: string }>;
      problems = r.length === 1 && r[0]?.integrity_check === 'ok' ? [] : r.map((x) => x.integrity_check).slice(0, 5);
    } finally {
      db.close();
    }
  } catch (err) {
    throw Object.assign(new Error(`the restored file is not a sound SQLite database: ${(err as Error).message}`), { corrupt: true });
  }
  if (problems.length > 0) throw Object.assign(new Error(`integrity_check: ${problems.join('; ')}`), { corrupt: true });
  return digest(task.src);
}

if (parentPort && workerData) {
  try {
    parentPort.postMessage({ result: run(workerData as SqliteTask) });
  } catch (err) {
    parentPort.postMessage({ error: (err as Error).message, corrupt: (err as { corrupt?: boolean }).corrupt === true });
  }
}
