import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { PoolStats, QueryEvent, ReplicaStatus } from '../storage/types.js';
import { FastHistogram, type HistogramSeries } from './fast-histogram.js';

/** The app's metrics; one registry per app instance (no global state, so tests can run several). */
export interface Metrics {
  /** The registry `/metrics` renders. */
  registry: Registry;
  /** Record one finished HTTP request. */
  observeRequest(method: string, route: string, status: number, seconds: number): void;
  /** What this process reports of itself to the console: its counters since it started (read from its series). */
  nodeStats(): Promise<NodeStats>;
  /** Record one database query. */
  observeQuery(e: QueryEvent): void;
  /** Set whether the database is currently reachable. */
  setDbAvailable(up: boolean): void;
  /** Set the circuit breaker state of an outbound dependency. */
  setBreakerState(dependency: string, state: 'closed' | 'open' | 'half-open'): void;
  /** Count a failed outbound call. */
  countOutboundFailure(dependency: string, reason: string): void;
  /** Record one outbound call (all its attempts) by outcome: ok, failed-result, timeout, open, bulkhead, error. */
  observeOutbound(dependency: string, outcome: string, seconds: number): void;
  /** Where the bulkheads' figures come from (read at scrape time). */
  watchOutbound(read: () => Record<string, { executing: number; queued: number }>): void;
  /** Read the replicas' state at each scrape. */
  watchReplicas(read: () => { status: ReplicaStatus[]; fallbacks: number }): void;
  /** Count a sign-in attempt by method and outcome. */
  countLogin(method: string, outcome: string): void;
  /** Count an outgoing mail by final outcome (sent, or failed after its retries). */
  countMail(outcome: 'sent' | 'failed'): void;
  /** Record one job attempt: completed, failed (retrying), dead, or fenced (late result refused). */
  observeJob(queue: string, name: string, outcome: string, seconds: number): void;
  /** Count a job taken back after its worker's lease expired. */
  countLeaseExpired(queue: string): void;
  /** Count a cron tick by outcome (fired, skipped, duplicate). */
  countCronTick(schedule: string, outcome: string): void;
  /** Set whether this node fires the cron schedules. */
  setSchedulerLeader(leader: boolean): void;
  /** Count an API request refused because the node was overloaded, by reason (event-loop delay, heap, RSS). */
  countShed(reason: string): void;
  /** Count a request to a version of the API (so an operator knows when an old one can go). */
  countApiRequest(version: number): void;
  /** Count a request from an app that sent its platform and version, by what it must do (none, soft, hard). */
  countAppVersion(platform: string, status: string): void;
  /** Count a rate-limit decision by class of caller and outcome (allowed, limited). */
  countRateLimit(cls: string, outcome: string): void;
  /** Set whether the shared rate-limit store answers (0 while the fallback decides). */
  setRateLimitStoreUp(up: boolean): void;
  /** Count a request that carried an Idempotency-Key, by what happened (claimed, replay, in-progress, mismatch). */
  countIdempotency(outcome: string): void;
  /** Count a cached read by outcome (hit, shared-hit, miss, stale). */
  countCache(outcome: string): void;
  /** Count a webhook delivery attempt by outcome (succeeded, retrying, failed, cancelled, subscription-disabled). */
  countWebhook(outcome: string): void;
  /** Set whether the Redis connection is ready. */
  setRedisUp(up: boolean): void;
  /** Where queue depth figures come from (read at scrape time, cached for a few seconds). */
  watchQueues(read: () => Promise<QueueFigures[]>): void;
}

/** Bounds (seconds) of the latency buckets a node reports (the console's p50 and p99 come from them). */
export const LATENCY_BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** How many circuit-breaker transitions a node remembers. */
const BREAKER_HISTORY = 50;

/**
 * A process's figures since it started, as the console reads them (from `_rampart_nodes` and
 * live on the console's realtime channel): rates come from the difference of two of them.
 */
export interface NodeStats {
  /** When it was taken (epoch ms). */
  at: number;
  requests: number;
  /** Requests answered with a 5xx. */
  errors: number;
  /** Requests by duration: one count per bound (seconds) of `latencyBounds`, then one for longer. */
  latency: number[];
  latencyBounds: number[];
  /** Rate-limit decisions by `class/outcome`. */
  rateLimits: Record<string, number>;
  /** Requests by API version (`v1`). */
  apiVersions: Record<string, number>;
  /** Requests from apps by `platform/status` (none, soft, hard). */
  appVersions: Record<string, number>;
  /** Requests shed by reason. */
  shed: Record<string, number>;
  /** Each outbound dependency's breaker now. */
  breakers: Record<string, 'closed' | 'open' | 'half-open'>;
  /** The latest breaker transitions, oldest first. */
  breakerHistory: Array<{ dependency: string; from: string; to: string; at: number }>;
}

/** Depth figures of one queue. */
export interface QueueFigures {
  queue: string;
  paused: boolean;
  counts: Record<string, number>;
  oldestDueMs: number;
}

export function createMetrics(backend: string, pool: () => PoolStats): Metrics {
  const registry = new Registry();
  /** A counter on this app's registry. */
  const counter = (name: string, help: string, labelNames: string[]) => new Counter({ name, help, labelNames, registers: [registry] });
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
  const http = new FastHistogram(
    'rampart_http_request_duration_seconds',
    'HTTP request duration by route pattern, method and status',
    LATENCY_BOUNDS,
    registry,
  );
  const query = new FastHistogram(
    'rampart_db_query_duration_seconds',
    'Database query duration by statement kind',
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
    registry,
  );
  const queryErrors = counter('rampart_db_query_errors_total', 'Database queries that failed', ['backend']);
  new Gauge({
    name: 'rampart_db_pool_connections',
    help: 'Database connections by state (total, idle) and callers waiting for one',
    labelNames: ['backend', 'state'],
    registers: [registry],
    collect() {
      const s = pool();
      this.set({ backend, state: 'total' }, s.total);
      this.set({ backend, state: 'idle' }, s.idle);
      this.set({ backend, state: 'waiting' }, s.waiting);
    },
  });
  const available = new Gauge({
    name: 'rampart_db_available',
    help: '1 while the database answers, 0 while requests are failed fast',
    labelNames: ['backend'],
    registers: [registry],
  });
  available.set({ backend }, 1);
  const breakers = new Gauge({
    name: 'rampart_circuit_breaker_state',
    help: 'Circuit breaker of each outbound dependency: 0 closed, 1 half-open, 2 open',
    labelNames: ['dependency'],
    registers: [registry],
  });
  const outboundFailures = counter(
    'rampart_outbound_failures_total',
    'Failed calls to outbound dependencies by reason (timeout, open, error)',
    ['dependency', 'reason'],
  );
  const outboundCalls = counter(
    'rampart_outbound_requests_total',
    'Outbound calls by dependency and outcome: ok, failed-result (5xx/429 after retries), timeout, open (breaker), bulkhead (refused), error',
    ['dependency', 'outcome'],
  );
  const outboundDuration = new Histogram({
    name: 'rampart_outbound_request_duration_seconds',
    help: 'Outbound call duration (all attempts) by dependency',
    labelNames: ['dependency'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  let readOutbound: (() => Record<string, { executing: number; queued: number }>) | undefined;
  new Gauge({
    name: 'rampart_outbound_in_flight',
    help: "Outbound calls running and waiting in each dependency's bulkhead",
    labelNames: ['dependency', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [dependency, s] of Object.entries(readOutbound?.() ?? {})) {
        this.set({ dependency, state: 'executing' }, s.executing);
        this.set({ dependency, state: 'queued' }, s.queued);
      }
    },
  });
  let readReplicas: (() => { status: ReplicaStatus[]; fallbacks: number }) | undefined;
  new Gauge({
    name: 'rampart_db_replica_up',
    help: '1 while a read replica answers and is a standby (it then serves reads while fresh enough)',
    labelNames: ['replica'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of readReplicas?.().status ?? []) this.set({ replica: r.name }, r.up ? 1 : 0);
    },
  });
  new Gauge({
    name: 'rampart_db_replica_lag_bytes',
    help: "How far a read replica's replay is behind the primary's WAL, in bytes",
    labelNames: ['replica'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of readReplicas?.().status ?? []) this.set({ replica: r.name }, r.lagBytes);
    },
  });
  new Gauge({
    name: 'rampart_db_replica_reads',
    help: 'Reads served by each read replica, and (replica="primary") reads that fell back to the primary',
    labelNames: ['replica'],
    registers: [registry],
    collect() {
      this.reset();
      const r = readReplicas?.();
      if (!r) return;
      for (const s of r.status) this.set({ replica: s.name }, s.reads);
      this.set({ replica: 'primary' }, r.fallbacks);
    },
  });
  const mails = counter('rampart_mail_total', 'Outgoing mails by final outcome (sent, or failed after retries)', ['outcome']);
  const logins = counter('rampart_auth_logins_total', 'Sign-in attempts by method and outcome', ['method', 'outcome']);
  const jobDuration = new Histogram({
    name: 'rampart_job_duration_seconds',
    help: 'Job attempt duration by queue, job and outcome (completed, failed, dead, fenced)',
    labelNames: ['queue', 'job', 'outcome'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  const jobAttempts = counter(
    'rampart_job_attempts_total',
    'Job attempts by queue, job and outcome; outcome "dead" counts dead letters, "fenced" late results refused',
    ['queue', 'job', 'outcome'],
  );
  const leaseExpired = counter(
    'rampart_job_lease_expired_total',
    'Jobs taken back because their worker stopped renewing the lease (crashed, paused, cut off)',
    ['queue'],
  );
  const cronTicks = counter(
    'rampart_cron_ticks_total',
    'Cron ticks by schedule and outcome (fired, skipped after an outage, duplicate refused)',
    ['schedule', 'outcome'],
  );
  const appVersions = counter(
    'rampart_app_version_requests_total',
    'Requests from apps that sent X-App-Platform and X-App-Version (and version checks), by platform and update status',
    ['platform', 'status'],
  );
  const apiRequests = counter('rampart_api_requests_total', 'Requests by API version (/api/v1, /api/v2)', ['version']);
  const countVersion = perLabelSet(apiRequests, ['version']);
  const shed = counter('rampart_shed_requests_total', 'API requests answered 503 because this node was overloaded, by reason', ['reason']);
  const rateLimits = counter(
    'rampart_rate_limit_decisions_total',
    'Rate-limit decisions by class of caller (anonymous, user, auth) and outcome (allowed, limited)',
    ['class', 'outcome'],
  );
  const countDecision = perLabelSet(rateLimits, ['class', 'outcome']);
  const rateStoreUp = new Gauge({
    name: 'rampart_rate_limit_store_up',
    help: '1 while the shared rate-limit store (Redis, PostgreSQL) answers; 0 while the fallback decides',
    registers: [registry],
  });
  rateStoreUp.set(1);
  const idempotency = counter(
    'rampart_idempotency_requests_total',
    'Mutations with an Idempotency-Key by outcome: claimed (ran), replay (stored answer sent), in-progress (409), mismatch (422)',
    ['outcome'],
  );
  const cacheReads = counter(
    'rampart_cache_reads_total',
    'Record reads and lists through the read cache by outcome: hit, shared-hit (Redis), miss, stale (served while the database failed)',
    ['outcome'],
  );
  const countCacheRead = perLabelSet(cacheReads, ['outcome']);
  const webhookDeliveries = counter(
    'rampart_webhook_deliveries_total',
    'Webhook delivery attempts by outcome: succeeded, retrying, failed (after retries), cancelled, subscription-disabled',
    ['outcome'],
  );
  const redisUp = new Gauge({ name: 'rampart_redis_up', help: '1 while the Redis connection is ready', registers: [registry] });
  const leader = new Gauge({ name: 'rampart_scheduler_leader', help: '1 while this node fires the cron schedules', registers: [registry] });
  let readQueues: (() => Promise<QueueFigures[]>) | undefined;
  let cachedQueues: { at: number; figures: Promise<QueueFigures[]> } | undefined;
  const queueFigures = (): Promise<QueueFigures[]> => {
    if (!readQueues) return Promise.resolve([]);
    if (!cachedQueues || Date.now() - cachedQueues.at > 5000) {
      const figures = readQueues().catch(() => [] as QueueFigures[]);
      cachedQueues = { at: Date.now(), figures };
    }
    return cachedQueues.figures;
  };
  // Queue figures are read at scrape time (one query set, cached) into three gauges.
  const queueGauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge, q: QueueFigures) => void) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        for (const q of await queueFigures()) fill(this, q);
      },
    });
  queueGauge('rampart_jobs', 'Jobs by queue and state (waiting, active, completed, dead, cancelled)', ['queue', 'state'], (g, q) => {
    for (const [state, n] of Object.entries(q.counts)) g.set({ queue: q.queue, state }, n);
  });
  queueGauge('rampart_jobs_oldest_due_seconds', 'Age of the oldest due job that has not started, by queue (queue lag)', ['queue'], (g, q) =>
    g.set({ queue: q.queue }, q.oldestDueMs / 1000),
  );
  queueGauge('rampart_queue_paused', '1 while a queue is paused', ['queue'], (g, q) => g.set({ queue: q.queue }, q.paused ? 1 : 0));
  // A series is resolved once per label set; observing on it is then a few additions.
  const httpSeries = new Map<string, HistogramSeries>();
  const querySeries = new Map<string, HistogramSeries>();
  // Each breaker's last state, to record its transitions for the console's history.
  const breakerNow: Record<string, string> = {};
  const breakerHistory: NodeStats['breakerHistory'] = [];
  /** A metric's values by its label values joined with `/` (`user/limited`). */
  const byLabels = async (c: Counter<string> | Gauge<string>, names: string[]) => {
    const out: Record<string, number> = {};
    for (const v of (await c.get()).values) out[names.map((n) => String(v.labels[n])).join('/')] = v.value;
    return out;
  };
  const BREAKER_NAMES = ['closed', 'half-open', 'open'] as const;
  return {
    registry,
    async nodeStats() {
      // Read from the series that already count (nothing extra on the request path).
      const { counts, count, picked } = http.totals((labels) => Number(labels.status) >= 500);
      const states = await byLabels(breakers, ['dependency']);
      return {
        at: Date.now(),
        requests: count,
        errors: picked,
        latency: counts,
        latencyBounds: LATENCY_BOUNDS,
        rateLimits: await byLabels(rateLimits, ['class', 'outcome']),
        apiVersions: await byLabels(apiRequests, ['version']),
        appVersions: await byLabels(appVersions, ['platform', 'status']),
        shed: await byLabels(shed, ['reason']),
        breakers: Object.fromEntries(Object.entries(states).map(([d, v]) => [d, BREAKER_NAMES[v] ?? 'open'])) as NodeStats['breakers'],
        breakerHistory: [...breakerHistory],
      };
    },
    observeRequest(method, route, status, seconds) {
      const key = `${method} ${status} ${route}`;
      let series = httpSeries.get(key);
      if (!series) {
        series = http.labelled(key, { method, route, status: String(status) });
        httpSeries.set(key, series);
      }
      series.observe(seconds);
    },
    observeQuery(e) {
      let series = querySeries.get(e.op);
      if (!series) {
        series = query.labelled(e.op, { backend, op: e.op });
        querySeries.set(e.op, series);
      }
      series.observe(e.durationMs / 1000);
      if (e.failed) queryErrors.inc({ backend });
    },
    setDbAvailable: (up) => available.set({ backend }, up ? 1 : 0),
    setBreakerState(dependency, state) {
      breakers.set({ dependency }, state === 'closed' ? 0 : state === 'half-open' ? 1 : 2);
      const from = breakerNow[dependency] ?? 'closed';
      breakerNow[dependency] = state;
      if (from === state) return;
      breakerHistory.push({ dependency, from, to: state, at: Date.now() });
      if (breakerHistory.length > BREAKER_HISTORY) breakerHistory.shift();
    },
    countOutboundFailure: (dependency, reason) => outboundFailures.inc({ dependency, reason }),
    observeOutbound(dependency, outcome, seconds) {
      outboundCalls.inc({ dependency, outcome });
      outboundDuration.observe({ dependency }, seconds);
    },
    watchOutbound(read) {
      readOutbound = read;
    },
    watchReplicas(read) {
      readReplicas = read;
    },
    countLogin: (method, outcome) => logins.inc({ method, outcome }),
    countMail: (outcome) => mails.inc({ outcome }),
    observeJob(queue, job, outcome, seconds) {
      jobDuration.observe({ queue, job, outcome }, seconds);
      jobAttempts.inc({ queue, job, outcome });
    },
    countLeaseExpired: (queue) => leaseExpired.inc({ queue }),
    countCronTick: (schedule, outcome) => cronTicks.inc({ schedule, outcome }),
    setSchedulerLeader: (is) => leader.set(is ? 1 : 0),
    countAppVersion: (platform, status) => appVersions.inc({ platform, status }),
    countShed: (reason) => shed.inc({ reason }),
    countApiRequest: (version) => countVersion(`v${version}`),
    countRateLimit: (cls, outcome) => countDecision(cls, outcome),
    setRateLimitStoreUp: (up) => rateStoreUp.set(up ? 1 : 0),
    countIdempotency: (outcome) => idempotency.inc({ outcome }),
    countCache: (outcome) => countCacheRead(outcome),
    countWebhook: (outcome) => webhookDeliveries.inc({ outcome }),
    setRedisUp: (up) => redisUp.set(up ? 1 : 0),
    watchQueues(read) {
      readQueues = read;
    },
  };
}

/**
 * Increments of a counter on the hot path (every request): each label set's child is resolved
 * once, so an increment does no label hashing. Values come in the order of the label names.
 */
function perLabelSet(counter: Counter<string>, names: string[]): (...values: string[]) => void {
  const children = new Map<string, { inc(): void }>();
  return (...values) => {
    const key = values.join('\u0000');
    let child = children.get(key);
    if (!child) {
      child = counter.labels(Object.fromEntries(names.map((n, i) => [n, values[i] as string])));
      children.set(key, child);
    }
    child.inc();
  };
}
