import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { PoolStats, QueryEvent } from '../storage/types.js';

/** The app's metrics; one registry per app instance (no global state, so tests can run several). */
export interface Metrics {
  /** The registry `/metrics` renders. */
  registry: Registry;
  /** Record one finished HTTP request. */
  observeRequest(method: string, route: string, status: number, seconds: number): void;
  /** Record one database query. */
  observeQuery(e: QueryEvent): void;
  /** Set whether the database is currently reachable. */
  setDbAvailable(up: boolean): void;
}

export function createMetrics(backend: string, pool: () => PoolStats): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
  const http = new Histogram({
    name: 'rampart_http_request_duration_seconds',
    help: 'HTTP request duration by route pattern, method and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const query = new Histogram({
    name: 'rampart_db_query_duration_seconds',
    help: 'Database query duration by statement kind',
    labelNames: ['backend', 'op'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  });
  const queryErrors = new Counter({
    name: 'rampart_db_query_errors_total',
    help: 'Database queries that failed',
    labelNames: ['backend'],
    registers: [registry],
  });
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
  // Labelled children are looked up once per label set: observing by a label object hashes
  // the labels on every call, and these run on every request and every query.
  const httpChildren = new Map<string, { observe(v: number): void }>();
  const queryChildren = new Map<string, { observe(v: number): void }>();
  return {
    registry,
    observeRequest(method, route, status, seconds) {
      const key = `${method} ${status} ${route}`;
      let child = httpChildren.get(key);
      if (!child) {
        child = http.labels({ method, route, status: String(status) });
        httpChildren.set(key, child);
      }
      child.observe(seconds);
    },
    observeQuery(e) {
      let child = queryChildren.get(e.op);
      if (!child) {
        child = query.labels({ backend, op: e.op });
        queryChildren.set(e.op, child);
      }
      child.observe(e.durationMs / 1000);
      if (e.failed) queryErrors.inc({ backend });
    },
    setDbAvailable: (up) => available.set({ backend }, up ? 1 : 0),
  };
}
