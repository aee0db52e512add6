/**
 * Validation of client input against a collection. This is the single gate for record
 * bodies: the REST routes, the batch endpoint and app code all come through here, so the
 * rules (and the error codes) are the same everywhere.
 */
import { type FieldError, validationError } from '../core/errors.js';
import { isUuid } from '../core/ids.js';
import type { Access } from './access.js';
import { BASE_FIELDS, type CollectionSchema, type FieldDef } from './schema.js';

const MAX_JSON_DEPTH = 32;
const ISO_RE = /^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?$/;
const EMAIL_RE =
  /^[^\s@"<>()[\],;:]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;

/** Parse a date-time into UTC ISO 8601 with milliseconds, or undefined when invalid. */
export function normalizeDateTime(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > 40 || !ISO_RE.test(value)) return undefined;
  // A date-time without an offset is ambiguous; only a bare date (midnight UTC) is accepted.
  if (value.length > 10 && !/(?:[Zz]|[+-]\d{2}:?\d{2})$/.test(value)) return undefined;
  const ms = Date.parse(value.length === 10 ? `${value}T00:00:00Z` : value.replace(' ', 'T'));
  if (!Number.isFinite(ms)) return undefined;
  const iso = new Date(ms).toISOString();
  // Date.parse rolls 2024-02-30 over to March; refuse dates that do not exist.
  return iso.slice(0, 10) === value.slice(0, 10) || value.length > 10 ? iso : undefined;
}

function jsonDepth(value: unknown, depth = 0): number {
  if (depth > MAX_JSON_DEPTH) return depth;
  if (value === null || typeof value !== 'object') return depth;
  let max = depth + 1;
  for (const v of Object.values(value as object)) {
    max = Math.max(max, jsonDepth(v, depth + 1));
    if (max > MAX_JSON_DEPTH) break;
  }
  return max;
}

type Check = { ok: true; value: unknown } | { ok: false; code: string; message: string };
const bad = (code: string, message: string): Check => ({ ok: false, code, message });

/** Check and normalize one non-null value for a field. */
export function checkValue(def: FieldDef, value: unknown): Check {
  switch (def.type) {
    case 'text':
    case 'email':
    case 'url':
    case 'select': {
      if (typeof value !== 'string') return bad('type', 'must be a string');
      if (def.type === 'text') {
        const len = [...value].length;
        if (def.min !== undefined && len < def.min) return bad('min_length', `must be at least ${def.min} characters`);
        if (def.max !== undefined && len > def.max) return bad('max_length', `must be at most ${def.max} characters`);
        if (def.pattern !== undefined && !new RegExp(`^(?:${def.pattern})$`, 'u').test(value)) {
          return bad('pattern', 'does not match the required pattern');
        }
      }
      if (def.type === 'email' && (value.length > 254 || !EMAIL_RE.test(value))) return bad('format', 'must be an email address');
      if (def.type === 'url') {
        let ok = false;
        try {
          const u = new URL(value);
          ok = (u.protocol === 'http:' || u.protocol === 'https:') && value.length <= 2048;
        } catch {}
        if (!ok) return bad('format', 'must be an http or https URL');
      }
      if (def.type === 'select' && !def.values.includes(value)) {
        return bad('enum', `must be one of ${def.values.map((v) => JSON.stringify(v)).join(', ')}`);
      }
      return { ok: true, value };
    }
    case 'number':
    case 'integer': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return bad('type', 'must be a finite number');
      if (def.type === 'integer' && !Number.isSafeInteger(value)) return bad('type', 'must be an integer within ±2^53');
      if (def.min !== undefined && value < def.min) return bad('min', `must be at least ${def.min}`);
      if (def.max !== undefined && value > def.max) return bad('max', `must be at most ${def.max}`);
      return { ok: true, value };
    }
    case 'boolean':
      return typeof value === 'boolean' ? { ok: true, value } : bad('type', 'must be true or false');
    case 'datetime': {
      const iso = normalizeDateTime(value);
      return iso ? { ok: true, value: iso } : bad('format', 'must be an ISO 8601 date-time with a time zone');
    }
    case 'json':
      return jsonDepth(value) > MAX_JSON_DEPTH ? bad('depth', `must nest at most ${MAX_JSON_DEPTH} levels`) : { ok: true, value };
    case 'relation':
      return isUuid(value) ? { ok: true, value } : bad('type', `must be the id of a ${def.collection} record`);
  }
}

/**
 * Validate a create or update body. Returns the normalized data (defaults applied on create)
 * or throws E_VALIDATION listing every bad field. Base fields and unknown fields are refused,
 * so a client can never mass-assign `id`, `version`, timestamps or anything undeclared; hidden
 * fields do not exist for API callers, and read-only ones are refused to non-admin clients.
 * Fields the server sets (`auto`, and for API callers hidden or read-only ones) are not
 * required here: the service checks them after its hooks have run.
 */
export function validateInput(
  schema: CollectionSchema,
  body: unknown,
  mode: 'create' | 'update',
  path = '',
  access: Access = 'system',
): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw validationError([{ field: path || 'body', code: 'type', message: 'must be a JSON object' }]);
  }
  const errors: FieldError[] = [];
  const data: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(body)) {
    const value = (body as Record<string, unknown>)[key];
    const field = path ? `${path}/${key}` : key;
    if ((BASE_FIELDS as readonly string[]).includes(key)) {
      errors.push({ field, code: 'read_only', message: 'is set by the server and cannot be written' });
      continue;
    }
    const def = Object.hasOwn(schema.fields, key) ? schema.fields[key] : undefined;
    if (!def || (def.hidden && access !== 'system')) {
      errors.push({ field, code: 'unknown_field', message: `is not a field of ${schema.name}` });
      continue;
    }
    if (def.readOnly && access === 'client') {
      errors.push({ field, code: 'read_only', message: 'is set by the server and cannot be written' });
      continue;
    }
    if (value === null) {
      if (def.required) errors.push({ field, code: 'required', message: 'is required and cannot be null' });
      else data[key] = null;
      continue;
    }
    const r = checkValue(def, value);
    if (r.ok) data[key] = r.value;
    else errors.push({ field, code: r.code, message: r.message });
  }
  if (mode === 'create') {
    for (const [name, def] of Object.entries(schema.fields)) {
      if (name in data || errors.some((e) => e.field === (path ? `${path}/${name}` : name))) continue;
      if (def.default !== undefined) data[name] = structuredClone(def.default);
      else if (def.required && !serverSet(def, access))
        errors.push({ field: path ? `${path}/${name}` : name, code: 'required', message: 'is required' });
    }
  }
  if (errors.length > 0) throw validationError(errors);
  return { ...data };
}

/** A field the server fills in for this caller, so its absence from the body is not an error. */
export function serverSet(def: FieldDef, access: Access): boolean {
  return (
    (def.type === 'relation' && def.auto !== undefined) ||
    (access !== 'system' && (!!def.hidden || (access === 'client' && !!def.readOnly)))
  );
}
