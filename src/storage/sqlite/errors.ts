import type { DbErrorInfo } from '../types.js';

/** Classify a better-sqlite3 error by its extended result code. */
export function classifySqliteError(err: unknown): DbErrorInfo {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return { kind: 'other' };
  const message = (err as Error).message ?? '';
  if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    // "UNIQUE constraint failed: index 'ux_rooms_name'" or "UNIQUE constraint failed: rooms.name"
    const idx = /index '([^']+)'/.exec(message)?.[1];
    const col = /failed: ([\w.]+)/.exec(message)?.[1];
    return { kind: 'unique', constraint: idx ?? col };
  }
  // ON DELETE RESTRICT reports SQLITE_CONSTRAINT_TRIGGER with the foreign-key message.
  if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY' || message.includes('FOREIGN KEY constraint failed')) return { kind: 'foreign_key' };
  if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code.startsWith('SQLITE_LOCKED')) return { kind: 'busy' };
  if (
    code.startsWith('SQLITE_IOERR') ||
    code === 'SQLITE_FULL' ||
    code.startsWith('SQLITE_CANTOPEN') ||
    code.startsWith('SQLITE_READONLY')
  ) {
    return { kind: 'unavailable' };
  }
  return { kind: 'other' };
}
