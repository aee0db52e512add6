import type { ColumnTypes } from '../types.js';

/**
 * SQLite column types. Date-times are ISO 8601 text in UTC with milliseconds: fixed width,
 * so text order is time order and range filters and keyset cursors compare correctly.
 */
export const SQLITE_COLUMN_TYPES: ColumnTypes = {
  text: 'text',
  number: 'real',
  integer: 'integer',
  boolean: 'integer',
  datetime: 'text',
  json: 'text',
  uuid: 'text',
};
