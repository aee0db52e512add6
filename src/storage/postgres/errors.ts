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
  if (code === '40001' || code === '40P01' || code === '55P03') return { kind: 'busy' };
  // 08xxx connection exceptions, 57P0x shutdown/crash/starting up, 53xxx out of resources.
  if (/^(08|57P|53)/.test(code) || NETWORK_CODES.has(code)) return { kind: 'unavailable' };
  const message = typeof e?.message === 'string' ? e.message : '';
  if (UNAVAILABLE_MESSAGES.some((m) => message.includes(m))) return { kind: 'unavailable' };
  return { kind: 'other' };
}
