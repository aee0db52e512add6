import type { LogEvent } from 'kysely';
import type { QueryEvent } from './types.js';

/** A Kysely `log` callback that reports each query's kind, duration and outcome. */
export function kyselyLogger(onQuery: ((e: QueryEvent) => void) | undefined) {
  if (!onQuery) return undefined;
  return (event: LogEvent): void => {
    const text = event.query.sql;
    const word = text.slice(0, 8).trimStart().split(/\s/, 1)[0]?.toLowerCase() ?? '';
    const op = ['select', 'insert', 'update', 'delete', 'with'].includes(word) ? (word === 'with' ? 'select' : word) : 'other';
    onQuery({ op, durationMs: event.queryDurationMillis, failed: event.level === 'error', sql: text });
  };
}
