/**
 * Every HTTP call of the SDK: the access token, the app's version headers, an Idempotency-Key on
 * every mutation, a timeout per attempt, the caller's AbortSignal, retries with exponential
 * backoff and full jitter (network errors, 429, 502, 503, 504; `Retry-After` honoured) for
 * requests that are safe to repeat (GET, HEAD, PUT, DELETE, OPTIONS, or any carrying an
 * Idempotency-Key), and a circuit breaker per endpoint so a failing server is not hammered.
 */
import { AbortedError, ApiError, CircuitOpenError, NetworkError, type Problem, TimeoutError } from './errors.js';

export interface TransportOptions {
  /** The server's base URL (`https://api.example.com`). */
  url: string;
  /** API version prefix (default `v1`). */
  apiVersion?: 'v1' | 'v2';
  /** A fetch implementation (default the global one). */
  fetch?: typeof fetch;
  /** Per-attempt timeout, ms (default 15000). */
  timeoutMs?: number;
  /** Retries after the first attempt, for requests safe to repeat (default 4). */
  retries?: number;
  /** First backoff, ms; doubles per retry, with full jitter (default 250). */
  retryBaseMs?: number;
  /** Longest wait between attempts, ms; a longer `Retry-After` is not waited for (default 30000). */
  retryMaxDelayMs?: number;
  /** Per-endpoint breaker: opens after `failures` consecutive failures, for `openMs` (default 5 and 10000); `false` for none. */
  breaker?: { failures?: number; openMs?: number } | false;
  /** Sent as `X-App-Platform` / `X-App-Version` on every request: the server's app-version policy applies. */
  app?: { platform: string; version: string };
  /** The server says a newer version exists (`X-App-Update: soft`); called once per latest version. */
  onSoftUpdate?: (info: { latest: string }) => void;
  /** The server refuses this version (`426`): the app must be updated to go on. */
  onHardUpdate?: (info: { latest?: string; minimum?: string; storeUrl?: string; message?: string }) => void;
  /** The clock (tests). */
  now?: () => number;
}

/** One call. */
export interface RequestOptions {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  /** Under the API prefix: `/collections/messages/records`. */
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  /** Mutations get a fresh key unless one is given (the offline queue passes its own); `false` sends none. */
  idempotencyKey?: string | false;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Send the access token (default true). */
  auth?: boolean;
}

export interface Answer<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

/** What the transport asks of the auth layer. */
export interface TokenSource {
  /** A valid access token, refreshed first when it is about to expire; undefined when signed out. */
  token(signal?: AbortSignal): Promise<string | undefined>;
  /** The server refused `used` (401): refresh if nobody has yet; true when a retry may succeed. */
  rejected(used: string, problem: Problem): Promise<boolean>;
}

const SAFE = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);
const MUTATION = new Set(['POST', 'PATCH', 'PUT', 'DELETE']);
const RETRY_STATUS = new Set([429, 502, 503, 504]);

/** A random UUID (v4), where crypto.randomUUID is missing too (older React Native). */
export function newKey(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  const hex = Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16));
  hex[12] = '4';
  hex[16] = ((Number.parseInt(hex[16] as string, 16) & 0x3) | 0x8).toString(16);
  const s = hex.join('');
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

/** Wait `ms`, or reject when `signal` fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError(signal.reason));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortedError(signal?.reason));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `Retry-After` as ms: seconds or an HTTP date. */
export function retryAfterMs(value: string | null, now: number): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The endpoint a path belongs to, for its breaker: ids become `:id`. */
export function endpointOf(method: string, path: string): string {
  const shape = path
    .split('/')
    .map((seg) => (/^[0-9a-f]{8}-[0-9a-f]{4}-|^\d+$|^[0-9a-z_-]{20,}$/i.test(seg) ? ':id' : seg))
    .join('/');
  return `${method} ${shape}`;
}

interface BreakerState {
  failures: number;
  openUntil: number;
  trial: boolean;
}

export class Transport {
  readonly base: string;
  private readonly fetchFn: typeof fetch;
  private readonly breakers = new Map<string, BreakerState>();
  private softSeen?: string;
  tokens?: TokenSource;
  /** Called with every answer's status and the endpoint (for the offline queue and tests). */
  observer?: (e: { endpoint: string; status: number | 'network' | 'timeout' | 'circuit-open'; attempt: number }) => void;

  constructor(private readonly o: TransportOptions) {
    this.base = `${o.url.replace(/\/+$/, '')}/api/${o.apiVersion ?? 'v1'}`;
    const f = o.fetch ?? (globalThis as { fetch?: typeof fetch }).fetch;
    if (!f) throw new Error('no fetch here: pass `fetch` in the options');
    this.fetchFn = f.bind(globalThis);
  }

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  /** Whether the endpoint's breaker lets a call through now (a half-open breaker lets one). */
  private admit(endpoint: string): void {
    const b = this.breakers.get(endpoint);
    if (!b || b.openUntil === 0) return;
    const wait = b.openUntil - this.now();
    if (wait > 0 || b.trial) throw new CircuitOpenError(endpoint, Math.max(wait, 0));
    b.trial = true;
  }

  private outcome(endpoint: string, failed: boolean): void {
    const opts = this.o.breaker === false ? undefined : { failures: 5, openMs: 10_000, ...this.o.breaker };
    if (!opts) return;
    let b = this.breakers.get(endpoint);
    if (!failed) {
      if (b) this.breakers.delete(endpoint);
      return;
    }
    if (!b) {
      b = { failures: 0, openUntil: 0, trial: false };
      this.breakers.set(endpoint, b);
    }
    b.failures++;
    if (b.trial || b.failures >= opts.failures) b.openUntil = this.now() + opts.openMs;
    b.trial = false;
  }

  /** The state of each endpoint's breaker (for diagnostics). */
  breakerStates(): Record<string, 'closed' | 'open' | 'half-open'> {
    const out: Record<string, 'closed' | 'open' | 'half-open'> = {};
    for (const [e, b] of this.breakers) out[e] = b.openUntil === 0 ? 'closed' : b.openUntil > this.now() ? 'open' : 'half-open';
    return out;
  }

  async request<T = unknown>(r: RequestOptions): Promise<Answer<T>> {
    const endpoint = endpointOf(r.method, r.path);
    const key = MUTATION.has(r.method) && r.idempotencyKey !== false ? (r.idempotencyKey ?? newKey()) : undefined;
    const repeatable = SAFE.has(r.method) || key !== undefined;
    const retries = repeatable ? (this.o.retries ?? 4) : 0;
    const url = new URL(this.base + r.path);
    for (const [k, v] of Object.entries(r.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      if (r.signal?.aborted) throw new AbortedError(r.signal.reason);
      try {
        this.admit(endpoint);
      } catch (err) {
        this.observer?.({ endpoint, status: 'circuit-open', attempt });
        throw err;
      }
      const headers: Record<string, string> = { accept: 'application/json', ...r.headers };
      if (r.body !== undefined) headers['content-type'] = 'application/json';
      if (key) headers['idempotency-key'] = key;
      if (this.o.app) {
        headers['x-app-platform'] = this.o.app.platform;
        headers['x-app-version'] = this.o.app.version;
      }
      const token = r.auth === false ? undefined : await this.tokens?.token(r.signal);
      if (token) headers.authorization = `Bearer ${token}`;
      let res: Response;
      const timeoutMs = r.timeoutMs ?? this.o.timeoutMs ?? 15_000;
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(new TimeoutError(timeoutMs)), timeoutMs);
      const onAbort = () => ctl.abort(r.signal?.reason);
      r.signal?.addEventListener('abort', onAbort, { once: true });
      let failure: Error | undefined;
      try {
        res = await this.fetchFn(url, {
          method: r.method,
          headers,
          body: r.body === undefined ? undefined : JSON.stringify(r.body),
          signal: ctl.signal,
        });
      } catch (err) {
        if (r.signal?.aborted) throw new AbortedError(r.signal.reason);
        failure =
          ctl.signal.reason instanceof TimeoutError
            ? ctl.signal.reason
            : new NetworkError(`${r.method} ${url.pathname}: ${(err as Error).message}`, err);
        res = undefined as unknown as Response;
      } finally {
        clearTimeout(timer);
        r.signal?.removeEventListener('abort', onAbort);
      }
      if (failure) {
        this.outcome(endpoint, true);
        this.observer?.({ endpoint, status: failure instanceof TimeoutError ? 'timeout' : 'network', attempt });
        if (attempt >= retries) throw failure;
        await sleep(this.backoff(attempt), r.signal);
        continue;
      }
      this.observer?.({ endpoint, status: res.status, attempt });
      // A proxy or the server itself failing counts against the endpoint; a refusal (4xx, 429) does not.
      this.outcome(endpoint, res.status >= 500);
      const soft = res.headers.get('x-app-update');
      const latest = res.headers.get('x-app-latest-version');
      if (soft === 'soft' && latest && latest !== this.softSeen) {
        this.softSeen = latest;
        this.o.onSoftUpdate?.({ latest });
      }
      if (res.ok || res.status === 304) {
        const text = res.status === 204 || res.status === 304 ? '' : await res.text();
        return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : undefined) as T };
      }
      const problem = await problemOf(res);
      const wait = retryAfterMs(res.headers.get('retry-after'), this.now());
      if (res.status === 401 && token && !refreshed && this.tokens && (await this.tokens.rejected(token, problem))) {
        refreshed = true;
        attempt--;
        continue;
      }
      if (res.status === 426) {
        this.o.onHardUpdate?.({
          latest: problem.latest as string | undefined,
          minimum: problem.minimum as string | undefined,
          storeUrl: problem.store_url as string | undefined,
          message: problem.detail,
        });
      }
      if (RETRY_STATUS.has(res.status) && attempt < retries) {
        // Never sooner than the server asked; a little later at random, so clients told the same
        // thing at the same moment do not all come back together.
        const delay = wait === undefined ? this.backoff(attempt) : wait + this.backoff(attempt) / 2;
        if (delay <= (this.o.retryMaxDelayMs ?? 30_000)) {
          await sleep(delay, r.signal);
          continue;
        }
      }
      throw new ApiError(res.status, problem, wait);
    }
  }

  /** Full jitter: a random wait up to the doubled base. */
  private backoff(attempt: number): number {
    return Math.random() * Math.min(this.o.retryMaxDelayMs ?? 30_000, (this.o.retryBaseMs ?? 250) * 2 ** attempt);
  }
}

async function problemOf(res: Response): Promise<Problem> {
  const text = await res.text().catch(() => '');
  try {
    const p = JSON.parse(text) as Problem;
    if (p && typeof p.code === 'string') return { ...p, status: res.status };
  } catch {}
  return { status: res.status, code: `E_HTTP_${res.status}`, title: res.statusText, detail: text.slice(0, 200) || undefined };
}
