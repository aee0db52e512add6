/**
 * Row counts and content hashes per table: written into a backup's manifest from the snapshot
 * the backup holds, and computed again from a restored copy to prove it equal. A table's hash
 * is the sum (mod 2^256) of its rows' SHA-256, so it does not depend on the order rows come
 * back in, and it streams: nothing is held but one batch.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { SqliteDatabase } from '../storage/sqlite/driver.js';

/** What a table held. */
export interface TableDigest {
  /** Number of rows. */
  rows: number;
  /** Order-independent content hash (hex). */
  hash: string;
}

export type Digests = Record<string, TableDigest>;

const MOD = 1n << 256n;
const RAW = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

function cell(v: unknown): unknown {
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return { b64: Buffer.from(v).toString('base64') };
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'bigint') return v.toString();
  return v;
}

class Accumulator {
  rows = 0;
  private sum = 0n;
  add(values: unknown[]): void {
    this.rows++;
    const h = createHash('sha256')
      .update(JSON.stringify(values.map(cell)))
      .digest('hex');
    this.sum = (this.sum + BigInt(`0x${h}`)) % MOD;
  }
  result(): TableDigest {
    return { rows: this.rows, hash: this.sum.toString(16).padStart(64, '0') };
  }
}

/** Tables of a SQLite file that hold data (derived full-text tables are rebuilt, not compared). */
export function sqliteTables(db: InstanceType<typeof SqliteDatabase>): string[] {
  const list = db.pragma('table_list') as Array<{ schema: string; name: string; type: string }>;
  return list
    .filter((t) => t.schema === 'main' && t.type === 'table' && !t.name.startsWith('sqlite_'))
    .map((t) => t.name)
    .sort();
}

/** Digest every table of a SQLite file. */
export function digestSqliteFile(path: string, onRows: (n: number) => void = () => {}): Digests {
  const db = new SqliteDatabase(path, { readonly: true });
  try {
    const out: Digests = {};
    let seen = 0;
    for (const name of sqliteTables(db)) {
      const acc = new Accumulator();
      const stmt = db.prepare(`select * from "${name.replaceAll('"', '""')}"`).raw(true);
      for (const row of stmt.iterate() as Iterable<unknown[]>) {
        acc.add(row);
        if (++seen % 1000 === 0) onRows(seen);
      }
      out[name] = acc.result();
    }
    onRows(seen);
    return out;
  } finally {
    db.close();
  }
}

/** Tables of the connection's current schema. */
export async function postgresTables(client: pg.ClientBase): Promise<string[]> {
  const r = await client.query<{ t: string }>(
    'select tablename as t from pg_tables where schemaname = current_schema() order by tablename',
  );
  return r.rows.map((x) => x.t);
}

/** Digest every table of the current schema, inside the caller's transaction (its snapshot). */
export async function digestPostgres(client: pg.ClientBase, onRows: (n: number) => void = () => {}): Promise<Digests> {
  const out: Digests = {};
  let seen = 0;
  for (const name of await postgresTables(client)) {
    const acc = new Accumulator();
    const cursor = `rampart_digest_${Object.keys(out).length}`;
    await client.query(`declare ${cursor} no scroll cursor for select * from "${name.replaceAll('"', '""')}"`);
    for (;;) {
      // Values as PostgreSQL prints them: the digest does not depend on a client's type parsers.
      const r = await client.query({ text: `fetch 2000 from ${cursor}`, rowMode: 'array', types: RAW });
      for (const row of r.rows as unknown[][]) acc.add(row);
      seen += r.rows.length;
      onRows(seen);
      if (r.rows.length < 2000) break;
    }
    await client.query(`close ${cursor}`);
    out[name] = acc.result();
  }
  return out;
}

/** The tables whose count or hash differ (or that one side lacks), for a clear refusal. */
export function compareDigests(expected: Digests, actual: Digests): string[] {
  const problems: string[] = [];
  for (const [name, e] of Object.entries(expected)) {
    const a = actual[name];
    if (!a) problems.push(`${name}: missing`);
    else if (a.rows !== e.rows) problems.push(`${name}: ${a.rows} rows, the manifest says ${e.rows}`);
    else if (a.hash !== e.hash) problems.push(`${name}: content differs from the manifest`);
  }
  for (const name of Object.keys(actual)) if (!(name in expected)) problems.push(`${name}: not in the manifest`);
  return problems;
}
