/** What the SDK throws. Every error has a `code`; API errors carry the server's problem document. */

/** A problem document (RFC 9457) as Rampart sends it. */
export interface Problem {
  type?: string;
  title?: string;
  status: number;
  code: string;
  detail?: string;
  errors?: Array<{ field: string; code: string; message: string }>;
  [k: string]: unknown;
}

/** Base class of the SDK's errors. */
export class RampartClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RampartClientError';
  }
}

/** The server answered with an error status. */
export class ApiError extends RampartClientError {
  constructor(
    readonly status: number,
    readonly problem: Problem,
    /** How long the server asked to wait before trying again (`Retry-After`), ms. */
    readonly retryAfterMs?: number,
  ) {
    super(problem.code, problem.detail ?? problem.title ?? `HTTP ${status}`);
    this.name = 'ApiError';
  }
}

/** The request did not get an answer (no connection, reset, DNS). */
export class NetworkError extends RampartClientError {
  constructor(message: string, cause?: unknown) {
    super('E_NETWORK', message, { cause });
    this.name = 'NetworkError';
  }
}

/** An attempt took longer than the timeout. */
export class TimeoutError extends RampartClientError {
  constructor(ms: number) {
    super('E_TIMEOUT', `no answer within ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

/** The caller's AbortSignal fired. */
export class AbortedError extends RampartClientError {
  constructor(reason?: unknown) {
    super('E_ABORTED', 'the request was cancelled', { cause: reason });
    this.name = 'AbortedError';
  }
}

/** The endpoint's circuit breaker is open: the server failed repeatedly, so the SDK does not call it for a while. */
export class CircuitOpenError extends RampartClientError {
  constructor(
    readonly endpoint: string,
    readonly retryInMs: number,
  ) {
    super('E_CIRCUIT_OPEN', `${endpoint} failed repeatedly; not calling it for ${Math.ceil(retryInMs / 1000)} s`);
    this.name = 'CircuitOpenError';
  }
}

/** Not signed in (or the session ended). */
export class SignedOutError extends RampartClientError {
  constructor(message = 'not signed in') {
    super('E_SIGNED_OUT', message);
    this.name = 'SignedOutError';
  }
}
