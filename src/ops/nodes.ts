/**
 * Every process reports itself every 30 s in `_rampart_nodes`: its kind, when it started and
 * was last seen, and its request counters (with the previous report's, so readers get a rate
 * over the last interval without a time-series store). The console lists the cluster from it;
 * the error-rate check adds the nodes' figures up.
 */
import type { Logger } from 'pino';
import type { Storage } from '../storage/types.js';

export const NODE_REPORT_MS = 30_000;

export class NodeReporter {
  private timer?: NodeJS.Timeout;
  private readonly startedAt = Date.now();
  constructor(
    private readonly storage: Storage,
    private readonly node: string,
    private readonly kind: 'api' | 'worker',
    private readonly totals: () => { requests: number; errors: number },
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
    const { requests, errors } = this.totals();
    const db = this.storage.db;
    try {
      const prev = await db.selectFrom('_rampart_nodes').selectAll().where('node', '=', this.node).executeTakeFirst();
      // A restarted process starts its counters at zero: its previous figures then count as zero.
      const restarted = !prev || Number(prev.started_at) !== this.startedAt;
      const row = {
        kind: this.kind,
        started_at: this.startedAt,
        seen_at: now,
        requests,
        errors,
        prev_requests: restarted ? 0 : Number(prev.requests),
        prev_errors: restarted ? 0 : Number(prev.errors),
        prev_at: restarted ? this.startedAt : Number(prev.seen_at),
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
