/**
 * Errors as application/problem+json (RFC 9457). Every client-visible failure has a stable
 * `code` from the registry; unknown errors become a generic 500 that is logged with its cause
 * and never returned.
 */

import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS, type ErrorCode, type FieldError, RampartError } from '../core/errors.js';
import { OutboundError } from '../resilience/policy.js';

export const PROBLEM_TYPE = 'application/problem+json; charset=utf-8';

/** JSON Schema of a problem document, for OpenAPI. */
export const problemSchema = {
  $id: 'Problem',
  type: 'object',
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    instance: { type: 'string' },
    code: { type: 'string', enum: Object.keys(ERRORS) },
    request_id: { type: 'string' },
    errors: {
      type: 'array',
      items: {
        type: 'object',
        properties: { field: { type: 'string' }, code: { type: 'string' }, message: { type: 'string' } },
      },
    },
  },
  required: ['type', 'title', 'status', 'code'],
} as const;

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'E_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_TYPE: 'E_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'E_PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'E_INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'E_INVALID_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'E_BAD_REQUEST',
  FST_ERR_CTP_INVALID_CHARSET: 'E_UNSUPPORTED_MEDIA_TYPE',
};

/** Turn anything thrown by a handler or by Fastify itself into a RampartError. */
export function toRampartError(err: unknown): RampartError | undefined {
  if (err instanceof RampartError) return err;
  // A hook or handler whose outbound call failed: the dependency is the problem, not the request.
  if (err instanceof OutboundError) {
    return new RampartError('E_DEPENDENCY_UNAVAILABLE', `${err.message}; retry shortly`, { headers: { 'Retry-After': '5' }, cause: err });
  }
  const e = err as FastifyError & { validation?: Array<{ instancePath?: string; message?: string; keyword?: string }> };
  if (e?.validation) {
    const errors: FieldError[] = e.validation.map((v) => ({
      field: (v.instancePath ?? '').replace(/^\//, '') || (e.validationContext ?? 'body'),
      code: v.keyword ?? 'invalid',
      message: v.message ?? 'is invalid',
    }));
    return new RampartError('E_VALIDATION', 'The request has invalid fields.', { extras: { errors } });
  }
  const mapped = e?.code ? FASTIFY_CODES[e.code] : undefined;
  if (mapped === 'E_INVALID_JSON') return new RampartError(mapped, 'The body is not valid JSON.');
  if (mapped) return new RampartError(mapped, e.message);
  // JSON.parse errors and prototype-poisoning refusals arrive as plain 400s.
  if (e instanceof SyntaxError || /prototype property|JSON/i.test(e?.message ?? '')) {
    if ((e as { statusCode?: number }).statusCode === 400 || e instanceof SyntaxError) {
      return new RampartError('E_INVALID_JSON', 'The body is not valid JSON (or uses a forbidden key such as __proto__).');
    }
  }
  const status = (e as { statusCode?: number })?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code = (Object.keys(ERRORS) as ErrorCode[]).find((k) => ERRORS[k].status === status && k !== 'E_VALIDATION');
    return new RampartError(code ?? 'E_BAD_REQUEST', typeof e.message === 'string' ? e.message.slice(0, 300) : undefined);
  }
  return undefined;
}

const PROBLEM = Symbol('problem');

/** The error a request was answered with, if any (for the audit log). */
export function problemOf(req: FastifyRequest): RampartError | undefined {
  return (req as FastifyRequest & { [PROBLEM]?: RampartError })[PROBLEM];
}

/** Send a problem document. */
export function sendProblem(req: FastifyRequest, reply: FastifyReply, err: RampartError): FastifyReply {
  (req as FastifyRequest & { [PROBLEM]?: RampartError })[PROBLEM] = err;
  for (const [k, v] of Object.entries(err.headers)) reply.header(k, v);
  return reply
    .code(err.status)
    .type(PROBLEM_TYPE)
    .send({
      type: `urn:rampart:problem:${err.code}`,
      title: ERRORS[err.code].title,
      status: err.status,
      detail: err.message,
      instance: req.url.split('?')[0]?.slice(0, 512),
      code: err.code,
      request_id: req.id,
      ...err.extras,
    });
}

/** Route patterns by method, for telling 404 (no such path) from 405 (path exists, method does not). */
export class RouteTable {
  private readonly routes: Array<{ re: RegExp; methods: Set<string> }> = [];

  add(url: string, methods: string | string[]): void {
    const pattern = url
      .split('/')
      .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/');
    const re = new RegExp(`^${pattern}/?$`);
    const list = Array.isArray(methods) ? methods : [methods];
    const existing = this.routes.find((r) => r.re.source === re.source);
    if (existing) for (const m of list) existing.methods.add(m);
    else this.routes.push({ re, methods: new Set(list) });
  }

  /** Methods allowed on a concrete path (empty when no route matches). */
  allowed(path: string): string[] {
    const out = new Set<string>();
    for (const r of this.routes) if (r.re.test(path)) for (const m of r.methods) out.add(m);
    return [...out];
  }
}
