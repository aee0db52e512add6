import type { StorageConfig } from '../core/config.js';
import { openPostgres } from './postgres/database.js';

export { openSidePool } from './postgres/database.js';

import { openSqlite } from './sqlite/database.js';
import type { Storage, StorageHooks } from './types.js';

/** Open the backend the configuration selects: PostgreSQL when a URL is given, else SQLite. */
export function openStorage(config: StorageConfig, hooks: StorageHooks = {}): Storage {
  return config.databaseUrl ? openPostgres(config, hooks) : openSqlite(config, hooks);
}
