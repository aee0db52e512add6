/**
 * The console's connection to the server: our own SDK (token refresh, safe retries, realtime),
 * on this page's origin, the session kept in this tab's sessionStorage. Every call goes through
 * the public API and its rules, as any client's would.
 */
import { ApiError, createClient, localStorageStore, type RampartClient } from '../../sdk/src/index.js';

export const client: RampartClient = createClient({
  url: location.origin,
  storage: localStorageStore('rampart-console:', sessionStorage),
  // An operator wants to see a failure, not wait through a long backoff.
  retries: 2,
  timeoutMs: 20_000,
});

type Query = Record<string, string | number | boolean | undefined>;

/** GET a JSON document under /api/v1. */
export async function get<T>(path: string, query?: Query, signal?: AbortSignal): Promise<T> {
  return (await client.http.request<T>({ method: 'GET', path, query, signal })).body;
}

/** A mutation under /api/v1 (the SDK gives it an Idempotency-Key). */
export async function send<T = unknown>(method: 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T> {
  return (await client.http.request<T>({ method, path, body })).body;
}

/** What to tell the operator about a failed call: the server's problem title and detail, or the error. */
export function describeError(err: unknown): string {
  if (err instanceof ApiError) {
    const p = err.problem as { title?: string; detail?: string; code?: string } | undefined;
    return `${p?.title ?? `HTTP ${err.status}`}${p?.detail ? `: ${p.detail}` : ''}${err.code ? ` (${err.code})` : ''}`;
  }
  return err instanceof Error ? err.message : String(err);
}

export const seg = (s: string) => encodeURIComponent(s);
