/** A job queue as `GET /admin/queues` lists it, and the columns the overview and the jobs page show of it. */
import { Badge, type Column } from './ui.js';

export interface Queue {
  queue: string;
  paused: boolean;
  counts: Record<string, number>;
  /** Jobs due now and not started. */
  due: number;
  oldest_due_seconds: number;
  concurrency: number | null;
}

/** Every column but the queue's name (the overview links it, the jobs page adds actions). */
export const queueColumns: Column<Queue>[] = [
  { label: 'Due', num: true, cell: (q) => q.due },
  { label: 'Waiting', num: true, cell: (q) => q.counts.waiting ?? 0 },
  { label: 'Active', num: true, cell: (q) => q.counts.active ?? 0 },
  { label: 'Dead', num: true, cell: (q) => q.counts.dead ?? 0 },
  { label: 'Lag', num: true, cell: (q) => `${q.oldest_due_seconds.toFixed(1)} s` },
  { label: 'State', cell: (q) => <Badge tone={q.paused ? 'warn' : 'ok'}>{q.paused ? 'paused' : 'running'}</Badge> },
];
