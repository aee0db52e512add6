import type { DbErrorInfo } from '../types.js';

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN']);
const UNAVAILABLE_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'not queryable',
  'Client was closed',
  'Cannot use a pool after calling end',
];

/** Classify a pg error by SQLSTATE, then by socket error code and message. */
export function classifyPostgresError(err: unknown): DbErrorInfo {
  const e = err as { code?: unknown; constraint?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  if (code === '23505') return { kind: 'unique', constraint: typeof e.constraint === 'string' ? e.constraint : undefined };
  if (code === '23503') return { kind: 'foreign_key', constraint: typeof e.constraint === 'string' ? e.constraint : undefined };
  if (code === '57014') return { kind: 'timeout' };
  // The session was ended for idling in a transaction (this process froze mid-write), or the
  // server is a standby now (a failover moved the primary): either way, reconnect (the
  // availability check then asks whether the database itself answers).
  if (code === '25P03' || code === '25006') return { kind: 'unavailable' };
  if (code === '40001' || code === '40P01' || code === '55P03') return { kind: 'busy' };
  // 08xxx connection exceptions, 57P0x shutdown/crash/starting up, 53xxx out of resources.
  if (/^(08|57P|53)/.test(code) || NETWORK_CODES.has(code)) return { kind: 'unavailable' };
  const message = typeof e?.message === 'string' ? e.message : '';
  if (UNAVAILABLE_MESSAGES.some((m) => message.includes(m))) return { kind: 'unavailable' };
  // The driver's own deadline (query_timeout), past the server's statement timeout.
  if (message === 'Query read timeout') return { kind: 'timeout' };
  return { kind: 'other' };
}
