/**
 * The figures each process reports (its NodeStats: counters since it started, as on the wire
 * from /admin/nodes and the console channel) and what the console derives from two of them.
 */
export interface NodeStats {
  at: number;
  requests: number;
  errors: number;
  latency: number[];
  latencyBounds: number[];
  rateLimits: Record<string, number>;
  apiVersions: Record<string, number>;
  appVersions: Record<string, number>;
  shed: Record<string, number>;
  breakers: Record<string, string>;
  breakerHistory?: Array<{ dependency: string; from: string; to: string; at: number }>;
}

export interface NodeInfo {
  node: string;
  kind: string;
  started_at: number;
  seen_at: number;
  stale: boolean;
  stats: NodeStats | null;
  prev_stats: NodeStats | null;
}

/** What happened between two reports of one process. */
export interface Interval {
  seconds: number;
  requests: number;
  errors: number;
  /** Requests per duration bucket in the interval. */
  latency: number[];
  bounds: number[];
}

export function interval(prev: NodeStats | null | undefined, cur: NodeStats): Interval | undefined {
  // A restarted process starts again from zero: no interval across the restart.
  if (!prev || cur.at <= prev.at || cur.requests < prev.requests) return undefined;
  return {
    seconds: (cur.at - prev.at) / 1000,
    requests: cur.requests - prev.requests,
    errors: cur.errors - prev.errors,
    latency: cur.latency.map((n, i) => n - (prev.latency[i] ?? 0)),
    bounds: cur.latencyBounds,
  };
}

/** Several processes' intervals as one (rates add up; buckets add up). */
export function combine(list: Interval[]): {
  rps: number;
  errorPct: number;
  p50: number | undefined;
  p99: number | undefined;
  requests: number;
} {
  let rps = 0;
  let requests = 0;
  let errors = 0;
  const buckets: number[] = [];
  let bounds: number[] = [];
  for (const i of list) {
    rps += i.requests / Math.max(i.seconds, 0.001);
    requests += i.requests;
    errors += i.errors;
    bounds = i.bounds;
    i.latency.forEach((n, b) => {
      buckets[b] = (buckets[b] ?? 0) + n;
    });
  }
  return {
    rps,
    requests,
    errorPct: requests > 0 ? (errors / requests) * 100 : 0,
    p50: quantile(buckets, bounds, 0.5),
    p99: quantile(buckets, bounds, 0.99),
  };
}

/** The q-quantile of bucketed durations, in ms, interpolated inside its bucket (as Prometheus does). */
export function quantile(buckets: number[], bounds: number[], q: number): number | undefined {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const rank = q * total;
  let seen = 0;
  for (let b = 0; b < buckets.length; b++) {
    const n = buckets[b] ?? 0;
    if (seen + n >= rank && n > 0) {
      const lo = b === 0 ? 0 : (bounds[b - 1] ?? 0);
      // Past the last bound: the last bound is all that is known.
      const hi = bounds[b] ?? bounds[bounds.length - 1] ?? lo;
      return (lo + (hi - lo) * ((rank - seen) / n)) * 1000;
    }
    seen += n;
  }
  return (bounds[bounds.length - 1] ?? 0) * 1000;
}

/** Counters of every process added up. */
export function sumBy(nodes: NodeInfo[], pick: (s: NodeStats) => Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of nodes) if (n.stats) for (const [k, v] of Object.entries(pick(n.stats))) out[k] = (out[k] ?? 0) + v;
  return out;
}
