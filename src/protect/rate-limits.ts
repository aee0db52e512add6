/**
 * Rate limits per client IP (anonymous callers), per user, and per route tier (sign-up, login,
 * password reset: per IP, on top), each with several windows (a per-minute burst and a daily
 * quota). Counters come from rate-limiter-flexible, in memory (one node), Redis or PostgreSQL
 * (shared by every node). While the shared store is unreachable a per-node in-process limiter
 * takes over, or requests pass (`open`), or get a 503 (`closed`), as configured; the shared
 * store is used again as soon as it answers.
 *
 * Answers carry `RateLimit-Policy` (every window that applies) and `RateLimit` (the window
 * closest to its limit) in the form of the IETF httpapi draft (`"name";q=;w=` / `"name";r=;t=`);
 * a refused request gets `429 E_RATE_LIMITED` with `Retry-After`.
 */
import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterPostgres, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { LimitWindow, ProtectConfig, RateLimitRules } from '../core/config.js';

/** A class of caller (or route tier) limits are kept for. */
export type LimitClass = keyof RateLimitRules;

/** Where shared counters live. */
export type LimitStore = { kind: 'memory' } | { kind: 'redis'; client: unknown } | { kind: 'postgres'; pool: unknown };

/** What a check found. */
export interface LimitDecision {
  /** False when a window is exhausted (429), or when the store is down and the fallback is `closed`. */
  allowed: boolean;
  /** Why it was refused. */
  reason?: 'limited' | 'store-down';
  /** Seconds until a retry can succeed. */
  retryAfterS: number;
  /** Response headers (`RateLimit-Policy`, `RateLimit`). */
  headers: Record<string, string>;
}

/** Where the limiter reports. */
export interface LimitObserver {
  /** One decision per request and class: allowed or limited. */
  onDecision(cls: LimitClass, outcome: 'allowed' | 'limited'): void;
  /** The shared store failed (first failure of an outage) or answered again. */
  onStoreState(up: boolean, err?: unknown): void;
}

interface Window {
  cls: LimitClass;
  /** The policy name in the headers, such as `user-minute`. */
  name: string;
  points: number;
  durationS: number;
  shared: RateLimiterAbstract;
  /** The per-node limiter used while the shared store is down. */
  local: RateLimiterAbstract;
}

const UNIT_NAMES: Record<number, string> = { 1: 'second', 60: 'minute', 3600: 'hour', 86400: 'day' };
const windowName = (cls: LimitClass, w: LimitWindow) => `${cls}-${UNIT_NAMES[w.durationS] ?? `${w.durationS}s`}`;

/** The counter of one request against one window. */
interface Count {
  window: Window;
  remaining: number;
  resetMs: number;
  limited: boolean;
}

export class RateLimits {
  private readonly windows: Record<LimitClass, Window[]>;
  private readonly policyHeaders = new Map<string, string>();
  private storeUp = true;

  constructor(
    rules: RateLimitRules,
    private readonly store: LimitStore,
    private readonly fallback: ProtectConfig['rateLimitFallback'],
    private readonly observer?: LimitObserver,
  ) {
    const make = (cls: LimitClass, w: LimitWindow): Window => {
      const opts = { keyPrefix: `rl:${cls}:${w.durationS}`, points: w.points, duration: w.durationS };
      const local = new RateLimiterMemory(opts);
      const shared =
        store.kind === 'redis'
          ? new RateLimiterRedis({ ...opts, storeClient: store.client, rejectIfRedisNotReady: true })
          : store.kind === 'postgres'
            ? new RateLimiterPostgres({
                ...opts,
                storeClient: store.pool,
                storeType: 'pool',
                tableName: '_rampart_rate_limits',
                tableCreated: true,
                clearExpiredByTimeout: true,
              })
            : local;
      return { cls, name: windowName(cls, w), points: w.points, durationS: w.durationS, shared, local };
    };
    this.windows = {
      anonymous: rules.anonymous.map((w) => make('anonymous', w)),
      user: rules.user.map((w) => make('user', w)),
      auth: rules.auth.map((w) => make('auth', w)),
    };
  }

  /** Whether any limit is configured for this class. */
  applies(cls: LimitClass): boolean {
    return this.windows[cls].length > 0;
  }

  /** Where the counters live (for logs and /readyz details). */
  describe(): string {
    return this.store.kind === 'memory' ? 'memory' : `${this.store.kind} (fallback: ${this.fallback})`;
  }

  /**
   * Count one request against every window of every (class, key) pair and decide. Refused
   * requests count too, so hammering a closed window keeps it closed.
   */
  async check(subjects: Array<[LimitClass, string]>): Promise<LimitDecision> {
    const tasks: Array<Promise<Count | 'store-down'>> = [];
    for (const [cls, key] of subjects) for (const w of this.windows[cls]) tasks.push(this.count(w, key));
    const counts = await Promise.all(tasks);
    const classes = subjects.length === 1 ? (subjects[0] as [LimitClass, string])[0] : subjects.map((s) => s[0]).join();
    let policy = this.policyHeaders.get(classes);
    if (policy === undefined) {
      policy = subjects.flatMap(([cls]) => this.windows[cls].map((w) => `"${w.name}";q=${w.points};w=${w.durationS}`)).join(', ');
      this.policyHeaders.set(classes, policy);
    }
    if (counts.includes('store-down')) {
      return { allowed: false, reason: 'store-down', retryAfterS: 2, headers: { 'ratelimit-policy': policy } };
    }
    let tightest: Count | undefined;
    let retryMs = 0;
    let limitedClass: LimitClass | undefined;
    for (const c of counts as Count[]) {
      if (!tightest || c.remaining < tightest.remaining || (c.remaining === tightest.remaining && c.resetMs > tightest.resetMs))
        tightest = c;
      if (c.limited) {
        retryMs = Math.max(retryMs, c.resetMs);
        limitedClass ??= c.window.cls;
      }
    }
    for (const [cls] of subjects) this.observer?.onDecision(cls, limitedClass === cls ? 'limited' : 'allowed');
    const headers: Record<string, string> = {};
    if (tightest) {
      headers.ratelimit = `"${tightest.window.name}";r=${tightest.remaining};t=${Math.ceil(tightest.resetMs / 1000)}`;
      // The policies (longer) go out once a window is half used, and with every refusal: a
      // client far from its limits is not sent them on every answer.
      if (limitedClass || tightest.remaining * 2 < tightest.window.points) headers['ratelimit-policy'] = policy;
    }
    const retryAfterS = Math.max(1, Math.ceil(retryMs / 1000));
    return limitedClass ? { allowed: false, reason: 'limited', retryAfterS, headers } : { allowed: true, retryAfterS: 0, headers };
  }

  private async count(w: Window, key: string): Promise<Count | 'store-down'> {
    const settle = (res: RateLimiterRes, limited: boolean): Count => ({
      window: w,
      remaining: Math.max(0, res.remainingPoints),
      resetMs: res.msBeforeNext,
      limited,
    });
    try {
      const res = await w.shared.consume(key);
      if (!this.storeUp && w.shared !== w.local) this.setStoreUp(true);
      return settle(res, false);
    } catch (err) {
      if (err instanceof RateLimiterRes) {
        if (!this.storeUp && w.shared !== w.local) this.setStoreUp(true);
        return settle(err, true);
      }
      // The shared store failed: the configured fallback decides.
      this.setStoreUp(false, err);
      if (this.fallback === 'closed') return 'store-down';
      if (this.fallback === 'open') return { window: w, remaining: w.points, resetMs: w.durationS * 1000, limited: false };
      try {
        return settle(await w.local.consume(key), false);
      } catch (local) {
        if (local instanceof RateLimiterRes) return settle(local, true);
        throw local;
      }
    }
  }

  private setStoreUp(up: boolean, err?: unknown): void {
    if (this.storeUp === up) return;
    this.storeUp = up;
    this.observer?.onStoreState(up, err);
  }
}
