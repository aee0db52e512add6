/**
 * The policy every call to a third party goes through, built from cockatiel's policies, outermost
 * first: a bulkhead (at most `concurrency` calls at once and `queue` waiting; more are refused
 * at once), retries with exponential backoff and full jitter (only for calls the caller marks as
 * safe to repeat; a delay the dependency asks for, such as HTTP `Retry-After`, is honoured), a
 * circuit breaker (consecutive failures, or a failure ratio over a sampling window; open, it
 * fails calls at once for `halfOpenAfterMs`, then one trial call decides) and a per-attempt
 * timeout (the call gets an AbortSignal that fires with it).
 *
 * A call may also *return* a failure (an HTTP 503): such results are retried and counted by the
 * breaker like errors, and the last one is returned when retries run out. The breaker's state,
 * each failure and each call are reported to the observer (metrics and logs).
 */
import {
  BrokenCircuitError,
  BulkheadRejectedError,
  bulkhead,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  DelegateBackoff,
  handleWhen,
  type IPolicy,
  noop,
  retry,
  SamplingBreaker,
  TaskCancelledError,
  TimeoutStrategy,
  timeout,
  wrap,
} from 'cockatiel';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Why an outbound call failed. */
export type OutboundFailure = 'timeout' | 'open' | 'bulkhead' | 'error';

/** A failed outbound call, with the reason; callers turn it into their own 503. */
export class OutboundError extends Error {
  constructor(
    readonly dependency: string,
    readonly reason: OutboundFailure,
    cause?: unknown,
  ) {
    const what = {
      open: 'circuit open (failing fast)',
      timeout: 'timed out',
      bulkhead: 'too many calls in flight (bulkhead full)',
      error: 'failed',
    }[reason];
    super(`${dependency}: ${what}`, { cause });
    this.name = 'OutboundError';
  }
}

/** Where a policy reports what happens to it. */
export interface PolicyObserver {
  onState(dependency: string, state: BreakerState): void;
  onFailure(dependency: string, reason: OutboundFailure, err: unknown): void;
  /** One finished call (all its attempts): `ok`, `failed-result`, or a failure reason. */
  onCall?(dependency: string, outcome: string, seconds: number): void;
}

/** How calls are running right now. */
export interface PolicyStats {
  state: BreakerState;
  /** Calls running. */
  executing: number;
  /** Calls waiting for a slot. */
  queued: number;
}

export interface OutboundPolicy {
  readonly dependency: string;
  /**
   * Run `fn` under the policy; rejects with OutboundError. `retry: true` (only for calls that
   * are safe to repeat) enables the retries.
   */
  execute<T>(fn: (signal: AbortSignal) => Promise<T>, opts?: { retry?: boolean }): Promise<T>;
  state(): BreakerState;
  stats(): PolicyStats;
}

/** The breaker: `{ failures }` consecutive, `{ threshold, windowMs, minimumRps }` sampling, or `false` for none. */
export type BreakerOptions = { failures: number } | { threshold: number; windowMs: number; minimumRps?: number } | false;

export interface PolicyOptions {
  /** Per-attempt timeout in ms. */
  timeoutMs: number;
  /** Consecutive failures that open the breaker (default 5); ignored when `breaker` is given. */
  failures?: number;
  /** The breaker (default: 5 consecutive failures). */
  breaker?: BreakerOptions;
  /** How long the breaker stays open before a trial call, ms (default 30 s). */
  halfOpenAfterMs?: number;
  /**
   * Whether an error means the dependency is failing (default: every error). Errors for which
   * it says no (the dependency answered and refused this request) neither count towards the
   * breaker nor become OutboundErrors: they reach the caller as they are.
   */
  isFailure?: (err: unknown) => boolean;
  /** Whether a returned result is a failure (retried, counted by the breaker). */
  isFailureResult?: (result: unknown) => boolean;
  /** Retries of calls run with `retry: true`. */
  retry?: {
    /** Attempts after the first. */
    attempts: number;
    /** First backoff, ms (doubling, full jitter). */
    baseMs: number;
    /** Longest wait between attempts, ms (a longer delay asked for by the dependency is cut to it). */
    maxDelayMs: number;
    /** The delay a failed result asks for (Retry-After), in ms. */
    delayOf?: (result: unknown) => number | undefined;
    /** Called with a failed result that is about to be retried (to release it). */
    discard?: (result: unknown) => void;
  };
  /** At most `concurrency` calls at once, `queue` more waiting. */
  bulkhead?: { concurrency: number; queue: number };
}

const STATES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half-open',
  [CircuitState.Isolated]: 'open',
};

export function outboundPolicy(dependency: string, opts: PolicyOptions, observer?: PolicyObserver): OutboundPolicy {
  const isFailure = (err: unknown) => err instanceof TaskCancelledError || (opts.isFailure?.(err) ?? true);
  const failureResult = opts.isFailureResult ?? (() => false);
  const handled = handleWhen(isFailure).orWhenResult(failureResult);
  const b = opts.breaker ?? { failures: opts.failures ?? 5 };
  const breaker =
    b === false
      ? undefined
      : circuitBreaker(handled, {
          halfOpenAfter: opts.halfOpenAfterMs ?? 30_000,
          breaker:
            'failures' in b
              ? new ConsecutiveBreaker(b.failures)
              : new SamplingBreaker({ threshold: b.threshold, duration: b.windowMs, minimumRps: b.minimumRps }),
        });
  breaker?.onStateChange((s) => observer?.onState(dependency, STATES[s]));
  const state = (): BreakerState => (breaker ? STATES[breaker.state] : 'closed');
  const perAttempt = wrap(breaker ?? noop, timeout(opts.timeoutMs, TimeoutStrategy.Aggressive));
  const limiter = opts.bulkhead ? bulkhead(opts.bulkhead.concurrency, opts.bulkhead.queue) : undefined;
  const outer: IPolicy = limiter ?? noop;
  /** What `execute` needs of a composed policy. */
  type Runner = { execute<T>(fn: (ctx: { signal: AbortSignal }) => Promise<T>, signal?: AbortSignal): Promise<T> };
  const plain: Runner = wrap(outer, perAttempt);
  let retrying: Runner = plain;
  const r = opts.retry;
  if (r && r.attempts > 0) {
    const policy = retry(
      // An open breaker and a full bulkhead are not retried: they say "not now".
      handleWhen((err) => !(err instanceof BrokenCircuitError) && isFailure(err)).orWhenResult(failureResult),
      {
        maxAttempts: r.attempts,
        backoff: new DelegateBackoff((ctx) => {
          const asked = 'value' in ctx.result ? r.delayOf?.(ctx.result.value) : undefined;
          // Full jitter: a random wait up to the doubled base, so many clients do not retry in step.
          const delay = asked ?? Math.random() * Math.min(r.maxDelayMs, r.baseMs * 2 ** (ctx.attempt - 1));
          return Math.min(delay, r.maxDelayMs);
        }),
      },
    );
    policy.onRetry((e) => {
      if ('value' in e) r.discard?.(e.value);
    });
    retrying = wrap(outer, policy, perAttempt);
  }
  if (breaker) observer?.onState(dependency, 'closed');
  return {
    dependency,
    state,
    stats: () => ({
      state: state(),
      executing: limiter && opts.bulkhead ? opts.bulkhead.concurrency - limiter.executionSlots : 0,
      queued: limiter && opts.bulkhead ? opts.bulkhead.queue - limiter.queueSlots : 0,
    }),
    async execute(fn, callOpts) {
      const started = performance.now();
      const done = (outcome: string) => observer?.onCall?.(dependency, outcome, (performance.now() - started) / 1000);
      try {
        // A signal of this call's own: without one, cockatiel derives every call's signal from one
        // shared module-level signal, which then collects a listener per call in flight.
        const result = await (callOpts?.retry ? retrying : plain).execute(({ signal }) => fn(signal), new AbortController().signal);
        done(failureResult(result) ? 'failed-result' : 'ok');
        return result;
      } catch (err) {
        if (!(err instanceof BrokenCircuitError) && !(err instanceof BulkheadRejectedError) && !isFailure(err)) {
          done('ok');
          throw err;
        }
        const reason: OutboundFailure =
          err instanceof BrokenCircuitError
            ? 'open'
            : err instanceof BulkheadRejectedError
              ? 'bulkhead'
              : err instanceof TaskCancelledError
                ? 'timeout'
                : 'error';
        done(reason);
        observer?.onFailure(dependency, reason, err);
        throw new OutboundError(dependency, reason, err);
      }
    },
  };
}
