/**
 * Outbound HTTP for app code (hooks, jobs) and providers: a `fetch` per named dependency, on
 * undici (a connection pool per dependency) under the dependency's policy (policy.ts): timeout
 * per attempt, retries only for requests that are safe to repeat (GET, HEAD, OPTIONS, PUT,
 * DELETE, or any request carrying an `Idempotency-Key`) honouring `Retry-After`, a circuit
 * breaker, a bulkhead, and an optional fallback per call.
 *
 * Answers 5xx, 429 and 408 count as failures (retried, counted by the breaker); when retries run
 * out the last such answer is returned (or the fallback's). Network errors and timeouts reject
 * with OutboundError (or go to the fallback).
 */
import { Agent, fetch, Headers, type RequestInit, type Response } from 'undici';
import { currentTraceparent, inSpan, SpanKind, tracingEnabled } from '../observability/tracing.js';
import {
  type BreakerOptions,
  type OutboundError,
  type OutboundPolicy,
  outboundPolicy,
  type PolicyObserver,
  type PolicyStats,
} from './policy.js';

/** How one named dependency is called; every field has a default. */
export interface DependencyOptions {
  /** Relative URLs given to `fetch` are resolved against it. */
  baseUrl?: string;
  /** Per-attempt timeout, ms (default 5000). */
  timeoutMs?: number;
  /** Retries of requests that are safe to repeat (default 2). */
  retries?: number;
  /** First retry delay, ms (doubling, full jitter; default 200). */
  retryBaseMs?: number;
  /** Longest wait between attempts, ms, including a `Retry-After` (default 10000). */
  retryMaxDelayMs?: number;
  /** Circuit breaker: `{ failures: 5 }` consecutive (default), `{ threshold: 0.5, windowMs: 10000, minimumRps: 2 }` sampling, or `false`. */
  breaker?: BreakerOptions;
  /** How long an open breaker fails fast before a trial call, ms (default 30000). */
  halfOpenAfterMs?: number;
  /** Requests in flight at once (default 20). */
  concurrency?: number;
  /** Requests waiting for a slot; more are refused at once (default 50). */
  queue?: number;
  /** Headers sent with every request (an API key, say). */
  headers?: Record<string, string>;
}

/** `fetch` options, plus the policy's. */
export interface OutboundInit extends RequestInit {
  /** Retry this request even though its method is not idempotent (the server deduplicates it). */
  idempotent?: boolean;
  /** The answer to use when the call fails (an OutboundError, or a failed answer after the retries). */
  fallback?: (failure: OutboundError | Response) => Response | Promise<Response>;
}

/** One named dependency. */
export interface HttpDependency {
  readonly name: string;
  fetch(input: string | URL, init?: OutboundInit): Promise<Response>;
  stats(): PolicyStats;
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
const isFailedAnswer = (r: unknown) => {
  const status = (r as Response | undefined)?.status;
  return status !== undefined && (status >= 500 || status === 429 || status === 408);
};

/** `Retry-After` of an answer, in ms: seconds or an HTTP date. */
export function retryAfterMs(r: unknown): number | undefined {
  const h = (r as Response | undefined)?.headers?.get?.('retry-after');
  if (!h) return undefined;
  if (/^\d+$/.test(h.trim())) return Number(h) * 1000;
  const at = Date.parse(h);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function hasIdempotencyKey(headers: RequestInit['headers']): boolean {
  if (!headers) return false;
  if (Array.isArray(headers)) return headers.some(([k]) => String(k).toLowerCase() === 'idempotency-key');
  if (typeof (headers as { has?: unknown }).has === 'function') return (headers as { has(n: string): boolean }).has('idempotency-key');
  return Object.keys(headers).some((k) => k.toLowerCase() === 'idempotency-key');
}

function dependency(name: string, o: DependencyOptions, observer?: PolicyObserver): HttpDependency & { close(): Promise<void> } {
  const timeoutMs = o.timeoutMs ?? 5000;
  const agent = new Agent({
    connect: { timeout: Math.min(timeoutMs, 10_000) },
    // A body that stops arriving for as long as the timeout fails its read.
    bodyTimeout: timeoutMs,
    connections: o.concurrency ?? 20,
    keepAliveTimeout: 10_000,
  });
  const policy: OutboundPolicy = outboundPolicy(
    name,
    {
      timeoutMs,
      breaker: o.breaker ?? { failures: 5 },
      halfOpenAfterMs: o.halfOpenAfterMs ?? 30_000,
      isFailureResult: isFailedAnswer,
      retry: {
        attempts: o.retries ?? 2,
        baseMs: o.retryBaseMs ?? 200,
        maxDelayMs: o.retryMaxDelayMs ?? 10_000,
        delayOf: retryAfterMs,
        // A failed answer that is retried is dropped: its connection goes back to the pool.
        discard: (r) => void (r as Response).body?.cancel().catch(() => {}),
      },
      bulkhead: { concurrency: o.concurrency ?? 20, queue: o.queue ?? 50 },
    },
    observer,
  );
  return {
    name,
    stats: () => policy.stats(),
    close: () => agent.close(),
    async fetch(input, init = {}) {
      if (!tracingEnabled()) return send(input, init);
      // Traced: a client span, and its context to the dependency in `traceparent`.
      const method = (init.method ?? 'GET').toUpperCase();
      return inSpan(
        `${method} ${name}`,
        { 'http.request.method': method, 'rampart.dependency': name },
        async (span) => {
          const headers = new Headers(init.headers as ConstructorParameters<typeof Headers>[0]);
          const tp = currentTraceparent();
          if (tp) headers.set('traceparent', tp);
          const res = await send(input, { ...init, headers: Object.fromEntries(headers) });
          span.setAttribute('http.response.status_code', res.status);
          return res;
        },
        { kind: SpanKind.CLIENT },
      );
    },
  };

  async function send(
    input: Parameters<HttpDependency['fetch']>[0],
    init: NonNullable<Parameters<HttpDependency['fetch']>[1]>,
  ): Promise<Response> {
    const { fallback, idempotent, ...rest } = init;
    const url = o.baseUrl && typeof input === 'string' && !/^[a-z][a-z0-9+.-]*:/i.test(input) ? new URL(input, o.baseUrl) : input;
    const method = (rest.method ?? 'GET').toUpperCase();
    const safe = idempotent === true || SAFE.has(method) || hasIdempotencyKey(rest.headers);
    const headers = o.headers ? { ...o.headers, ...(rest.headers as Record<string, string> | undefined) } : rest.headers;
    let answer: Response;
    try {
      answer = await policy.execute(
        (signal) => {
          // The policy aborts its signal when an attempt times out, and also once it has finished
          // (to stop leftovers): only the first may cancel the request, or the answer's body
          // could not be read. A stalled body is cut off by the agent's body timeout instead.
          const attempt = new AbortController();
          const onTimeout = () => attempt.abort(signal.reason);
          signal.addEventListener('abort', onTimeout, { once: true });
          return fetch(url, {
            ...rest,
            headers,
            dispatcher: agent,
            signal: rest.signal ? AbortSignal.any([attempt.signal, rest.signal as AbortSignal]) : attempt.signal,
          }).finally(() => signal.removeEventListener('abort', onTimeout));
        },
        { retry: safe },
      );
    } catch (err) {
      if (fallback && (err as Error).name === 'OutboundError') return fallback(err as OutboundError);
      throw err;
    }
    if (fallback && isFailedAnswer(answer)) {
      await answer.body?.cancel().catch(() => {});
      return fallback(answer);
    }
    return answer;
  }
}

/** Every named dependency of an app, with its pool and policy. */
export class OutboundHttp {
  private readonly deps = new Map<string, HttpDependency & { close(): Promise<void> }>();

  constructor(
    defs: Record<string, DependencyOptions>,
    private readonly observer?: PolicyObserver,
  ) {
    for (const [name, o] of Object.entries(defs)) this.deps.set(name, dependency(name, o, observer));
  }

  /** Add a dependency (built-ins: OAuth providers). */
  add(name: string, o: DependencyOptions): HttpDependency {
    const d = dependency(name, o, this.observer);
    this.deps.set(name, d);
    return d;
  }

  /** The dependency of this name; throws naming the known ones. */
  get(name: string): HttpDependency {
    const d = this.deps.get(name);
    if (!d) throw new Error(`no outbound dependency ${JSON.stringify(name)}; declared: ${[...this.deps.keys()].join(', ') || 'none'}`);
    return d;
  }

  /** Breaker state and bulkhead use of each dependency (for /readyz and metrics). */
  stats(): Record<string, PolicyStats> {
    return Object.fromEntries([...this.deps].map(([n, d]) => [n, d.stats()]));
  }

  async close(): Promise<void> {
    await Promise.all([...this.deps.values()].map((d) => d.close().catch(() => {})));
  }
}
