import type { FastifyRequest } from 'fastify';
import { RampartError } from '../core/errors.js';

/** OpenAPI reference to the shared problem schema. */
export const problemRef = { $ref: 'Problem#' };

/**
 * The query string as single string values, refusing names the route does not know and
 * names given twice: a typo in a parameter must not silently change what a request does.
 */
export function queryParams<K extends string>(req: FastifyRequest, allowed: readonly K[]): Partial<Record<K, string>> {
  const q = (req.query ?? {}) as Record<string, unknown>;
  const out: Partial<Record<K, string>> = {};
  for (const key of Object.keys(q)) {
    if (!(allowed as readonly string[]).includes(key)) {
      throw new RampartError(
        'E_INVALID_QUERY',
        `unknown query parameter ${JSON.stringify(key.slice(0, 64))}${allowed.length ? `; expected ${allowed.join(', ')}` : ''}`,
      );
    }
    const v = q[key];
    if (typeof v !== 'string') throw new RampartError('E_INVALID_QUERY', `query parameter ${key} is given more than once`);
    out[key as K] = v;
  }
  return out;
}
