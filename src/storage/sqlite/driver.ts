/**
 * The better-sqlite3 build for the running Node. Two major lines are installed because neither
 * works everywhere: 12.x (V8 ObjectWrap) aborts the process when statements are finalized at
 * exit on Node 24, and 13.x (Node-API, prebuilt binaries) segfaults on Node 20. Node 22 and later
 * get 13.x; Node 20 gets 12.x. The API is the same.
 */
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';

const require = createRequire(import.meta.url);
const major = Number(process.versions.node.split('.')[0]);

/** The driver's Database constructor. */
export const SqliteDatabase: typeof BetterSqlite3 = require(major >= 22 ? 'better-sqlite3-napi' : 'better-sqlite3');
/** Its instances. */
export type SqliteConnection = BetterSqlite3.Database;
/** Its prepared statements. */
export type SqliteStatement = BetterSqlite3.Statement;
