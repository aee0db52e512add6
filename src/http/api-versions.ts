/**
 * API versions served side by side from the same core: `/api/v1` and `/api/v2` have the same
 * routes and handlers; a version changes only how some answers are shaped. Changes are listed
 * in docs/api-changelog.md (served at `/api/changelog`).
 *
 * v2: a list answers `{ data, page: { next_cursor, total } }` (v1: `{ items, next_cursor, total }`).
 *
 * A version can be marked deprecated (RAMPART_API_DEPRECATIONS): its answers then carry
 * `Deprecation` (RFC 9745), `Sunset` (RFC 8594) and a `Link` to the changelog.
 */
import type { ListResult } from '../records/service.js';

export interface ApiVersion {
  version: 1 | 2;
  /** Path prefix: `/api/v1`. */
  root: string;
}

export const API_VERSIONS: ApiVersion[] = [
  { version: 1, root: '/api/v1' },
  { version: 2, root: '/api/v2' },
];

/** Where the changelog is served. */
export const CHANGELOG_PATH = '/api/changelog';

/** The version of an API path (`/api/v2/…` → 2), or undefined off the versioned API. */
export function versionOf(url: string): number | undefined {
  const m = /^\/api\/v(\d{1,3})\//.exec(url);
  return m ? Number(m[1]) : undefined;
}

/** A list result in this version's shape. */
export function listBody(api: ApiVersion, result: ListResult): unknown {
  if (api.version === 1) return result;
  const { items, next_cursor, total, ...rest } = result;
  return { data: items, page: total === undefined ? { next_cursor } : { next_cursor, total }, ...rest };
}

/** The JSON Schema of a list answer in this version's shape, from the v1 properties. */
export function listSchema(api: ApiVersion, v1: { items: unknown; next_cursor: unknown; total: unknown } & Record<string, unknown>) {
  if (api.version === 1) return { type: 'object', properties: v1 };
  const { items, next_cursor, total, ...rest } = v1;
  return {
    type: 'object',
    properties: { data: items, page: { type: 'object', properties: { next_cursor, total }, required: ['next_cursor'] }, ...rest },
  };
}

/** A deprecated version: since when (may be ahead), and when it goes away. */
export interface Deprecation {
  deprecated: Date;
  sunset?: Date;
}

/** The headers every answer of a deprecated version carries. */
export function deprecationHeaders(d: Deprecation): Record<string, string> {
  const link = [`<${CHANGELOG_PATH}>; rel="deprecation"; type="text/markdown"`];
  const headers: Record<string, string> = { deprecation: `@${Math.floor(d.deprecated.getTime() / 1000)}` };
  if (d.sunset) {
    headers.sunset = d.sunset.toUTCString();
    link.push(`<${CHANGELOG_PATH}>; rel="sunset"; type="text/markdown"`);
  }
  headers.link = link.join(', ');
  return headers;
}
