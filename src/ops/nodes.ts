/**
 * Every process reports itself every 30 s in `_rampart_nodes`: its kind, when it started and
 * was last seen, and its figures (request counters, latency buckets, rate-limit decisions, API
 * versions, breakers and their transitions), with the previous report's, so readers get rates
 * over the last interval without a time-series store. The console lists the cluster from it;
 * the error-rate check adds the nodes' figures up.
 */
import type { Logger } from 'pino';
import type { NodeStats } from '../observability/metrics.js';
import type { Storage } from '../storage/types.js';

export const NODE_REPORT_MS = 30_000;

export class NodeReporter {
  private timer?: NodeJS.Timeout;
  private readonly startedAt = Date.now();
  constructor(
    private readonly storage: Storage,
    private readonly node: string,
    private readonly kind: 'api' | 'worker',
    private readonly stats: () => Promise<NodeStats>,
    private readonly log: Logger,
  ) {}

  start(): void {
    void this.report();
    this.timer = setInterval(() => void this.report(), NODE_REPORT_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async report(): Promise<void> {
    const now = Date.now();
    const db = this.storage.db;
    try {
      const stats = await this.stats();
      const prev = await db.selectFrom('_rampart_nodes').selectAll().where('node', '=', this.node).executeTakeFirst();
      // A restarted process starts its counters at zero: no interval across the restart.
      const restarted = !prev || Number(prev.started_at) !== this.startedAt;
      const row = {
        kind: this.kind,
        started_at: this.startedAt,
        seen_at: now,
        stats: JSON.stringify(stats),
        prev_stats: restarted ? null : (prev.stats ?? null),
      };
      if (prev) await db.updateTable('_rampart_nodes').set(row).where('node', '=', this.node).execute();
      else
        await db
          .insertInto('_rampart_nodes')
          .values({ node: this.node, ...row })
          .execute();
      // Nodes gone for a day leave the list.
      await db
        .deleteFrom('_rampart_nodes')
        .where('seen_at', '<', now - 86_400_000)
        .execute();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'node report failed; retrying at the next interval');
    }
  }
}

/** A process of the cluster as the console shows it. */
export interface NodeInfo {
  node: string;
  kind: string;
  started_at: number;
  seen_at: number;
  /** Not heard from for two report intervals. */
  stale: boolean;
  stats: NodeStats | null;
  prev_stats: NodeStats | null;
}

/** The processes that reported in the last day, API nodes first. */
export async function listNodes(storage: Storage, now: number, kind?: 'api' | 'worker'): Promise<NodeInfo[]> {
  let q = storage.db.selectFrom('_rampart_nodes').selectAll().orderBy('kind').orderBy('node');
  if (kind) q = q.where('kind', '=', kind);
  const rows = await q.execute();
  const parse = (v: unknown) => (typeof v === 'string' ? (JSON.parse(v) as NodeStats) : null);
  return rows.map((r) => ({
    node: String(r.node),
    kind: String(r.kind),
    started_at: Number(r.started_at),
    seen_at: Number(r.seen_at),
    stale: now - Number(r.seen_at) > 2 * NODE_REPORT_MS,
    stats: parse(r.stats),
    prev_stats: parse(r.prev_stats),
  }));
}
