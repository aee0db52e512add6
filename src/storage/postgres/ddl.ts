import type { ColumnTypes } from '../types.js';

/** PostgreSQL column types; timestamps keep millisecond precision to match the API. */
export const POSTGRES_COLUMN_TYPES: ColumnTypes = {
  text: 'text',
  number: 'double precision',
  integer: 'bigint',
  boolean: 'boolean',
  datetime: 'timestamptz(3)',
  json: 'jsonb',
  uuid: 'uuid',
};
