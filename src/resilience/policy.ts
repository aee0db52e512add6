/**
 * The policy every call to a third party goes through: a per-attempt timeout (the call gets an
 * AbortSignal and is aborted when it fires) inside a circuit breaker (after `failures`
 * consecutive failures calls fail at once for `halfOpenAfterMs`, then one trial call decides).
 * Built on cockatiel. The breaker's state and each failure are reported to the observer, so
 * they show up in metrics and logs.
 */
import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhen,
  TaskCancelledError,
  TimeoutStrategy,
  timeout,
  wrap,
} from 'cockatiel';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Why an outbound call failed. */
export type OutboundFailure = 'timeout' | 'open' | 'error';

/** A failed outbound call, with the reason; callers turn it into their own 503. */
export class OutboundError extends Error {
  constructor(
    readonly dependency: string,
    readonly reason: OutboundFailure,
    cause?: unknown,
  ) {
    super(`${dependency}: ${reason === 'open' ? 'circuit open (failing fast)' : reason === 'timeout' ? 'timed out' : 'failed'}`, { cause });
    this.name = 'OutboundError';
  }
}

/** Where a policy reports what happens to it. */
export interface PolicyObserver {
  onState(dependency: string, state: BreakerState): void;
  onFailure(dependency: string, reason: OutboundFailure, err: unknown): void;
}

export interface OutboundPolicy {
  readonly dependency: string;
  /** Run `fn` under the policy; rejects with OutboundError. */
  execute<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T>;
  state(): BreakerState;
}

export interface PolicyOptions {
  /** Per-call timeout in ms. */
  timeoutMs: number;
  /** Consecutive failures that open the breaker (default 5). */
  failures?: number;
  /** How long the breaker stays open before a trial call, ms (default 30 s). */
  halfOpenAfterMs?: number;
  /**
   * Whether an error means the dependency is failing (default: every error). Errors for which
   * it says no (the dependency answered and refused this request) neither count towards the
   * breaker nor become OutboundErrors: they reach the caller as they are.
   */
  isFailure?: (err: unknown) => boolean;
}

const STATES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half-open',
  [CircuitState.Isolated]: 'open',
};

export function outboundPolicy(dependency: string, opts: PolicyOptions, observer?: PolicyObserver): OutboundPolicy {
  const isFailure = (err: unknown) => err instanceof TaskCancelledError || (opts.isFailure?.(err) ?? true);
  const breaker = circuitBreaker(handleWhen(isFailure), {
    halfOpenAfter: opts.halfOpenAfterMs ?? 30_000,
    breaker: new ConsecutiveBreaker(opts.failures ?? 5),
  });
  breaker.onStateChange((s) => observer?.onState(dependency, STATES[s]));
  const policy = wrap(breaker, timeout(opts.timeoutMs, TimeoutStrategy.Aggressive));
  observer?.onState(dependency, 'closed');
  return {
    dependency,
    state: () => STATES[breaker.state],
    async execute(fn) {
      try {
        return await policy.execute(({ signal }) => fn(signal));
      } catch (err) {
        if (!(err instanceof BrokenCircuitError) && !isFailure(err)) throw err;
        const reason: OutboundFailure =
          err instanceof BrokenCircuitError ? 'open' : err instanceof TaskCancelledError ? 'timeout' : 'error';
        observer?.onFailure(dependency, reason, err);
        throw new OutboundError(dependency, reason, err);
      }
    },
  };
}
