/**
 * Writes made while offline (or while the server is down): a queue persisted in the client's
 * store, sent in order, each with the Idempotency-Key it was given when queued — so a write whose
 * answer was lost (the connection, or the server, died after it committed) is answered from the
 * server's record of it when sent again, never applied twice. A `412` (the record changed since
 * the version the write was based on) is reported as a conflict and dropped from the queue; other
 * refusals (validation, access) are reported as failures and dropped; a network error, a `5xx`, a
 * `429` or an open breaker stops the replay until the next try.
 */
import type { BatchOp } from './collections.js';
import { ApiError, type Problem } from './errors.js';
import { newKey, type Transport } from './http.js';
import type { KeyValueStore } from './storage.js';

export interface QueuedWrite {
  /** The Idempotency-Key, fixed when queued. */
  key: string;
  method: 'POST' | 'PATCH' | 'DELETE';
  path: string;
  body?: unknown;
  ifMatch?: number;
  queuedAt: number;
  /** What it is, for the app's UI. */
  what: { op: BatchOp['op']; collection: string; id?: string };
}

export interface OfflineOptions {
  /** The server refused the write with `412`: the record changed meanwhile. */
  onConflict?(w: QueuedWrite, problem: Problem): void;
  /** The server refused the write for good (validation, access, a missing record). */
  onFailed?(w: QueuedWrite, err: ApiError): void;
  /** The write was applied (or had been, before its answer was lost). */
  onApplied?(w: QueuedWrite, result: unknown): void;
  /** How often to try again while writes wait, ms (default 5000; 0: only when asked). */
  retryMs?: number;
}

export interface FlushResult {
  applied: number;
  conflicts: number;
  failed: number;
  /** Still queued (the replay stopped at a write the server could not take now). */
  remaining: number;
}

const KEY = 'outbox';

export class OfflineQueue {
  private chain: Promise<unknown> = Promise.resolve();
  private flushing?: Promise<FlushResult>;
  private timer?: ReturnType<typeof setInterval>;

  constructor(
    private readonly http: Transport,
    private readonly store: KeyValueStore,
    private readonly o: OfflineOptions = {},
  ) {}

  /** Serialize reads and writes of the stored queue. */
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }

  private async read(): Promise<QueuedWrite[]> {
    const text = await this.store.get(KEY);
    return text ? (JSON.parse(text) as QueuedWrite[]) : [];
  }

  private async write(q: QueuedWrite[]): Promise<void> {
    if (q.length === 0) await this.store.delete(KEY);
    else await this.store.set(KEY, JSON.stringify(q));
  }

  /** What waits, oldest first. */
  pending(): Promise<QueuedWrite[]> {
    return this.locked(() => this.read());
  }

  private async add(w: Omit<QueuedWrite, 'key' | 'queuedAt'>): Promise<QueuedWrite> {
    const entry: QueuedWrite = { ...w, key: newKey(), queuedAt: Date.now() };
    await this.locked(async () => this.write([...(await this.read()), entry]));
    this.arm();
    void this.flush().catch(() => {});
    return entry;
  }

  private recordPath(collection: string, id?: string, tail = ''): string {
    return `/collections/${encodeURIComponent(collection)}/records${id ? `/${encodeURIComponent(id)}` : ''}${tail}`;
  }

  /** Queue a create; give `data.id` (a UUID you make) to refer to the record before it is sent. */
  create(collection: string, data: Record<string, unknown>): Promise<QueuedWrite> {
    return this.add({
      method: 'POST',
      path: this.recordPath(collection),
      body: data,
      what: { op: 'create', collection, id: data.id as string | undefined },
    });
  }

  update(collection: string, id: string, data: Record<string, unknown>, o: { ifMatch?: number } = {}): Promise<QueuedWrite> {
    return this.add({
      method: 'PATCH',
      path: this.recordPath(collection, id),
      body: data,
      ifMatch: o.ifMatch,
      what: { op: 'update', collection, id },
    });
  }

  delete(collection: string, id: string, o: { ifMatch?: number } = {}): Promise<QueuedWrite> {
    return this.add({
      method: 'DELETE',
      path: this.recordPath(collection, id),
      ifMatch: o.ifMatch,
      what: { op: 'delete', collection, id },
    });
  }

  restore(collection: string, id: string): Promise<QueuedWrite> {
    return this.add({ method: 'POST', path: this.recordPath(collection, id, '/restore'), what: { op: 'restore', collection, id } });
  }

  /** Send what waits, in order; one replay at a time. */
  flush(): Promise<FlushResult> {
    this.flushing ??= this.replay().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async replay(): Promise<FlushResult> {
    const r: FlushResult = { applied: 0, conflicts: 0, failed: 0, remaining: 0 };
    for (;;) {
      const head = (await this.pending())[0];
      if (!head) break;
      let outcome: 'applied' | 'conflict' | 'failed' | 'stop';
      let result: unknown;
      try {
        result = (
          await this.http.request({
            method: head.method,
            path: head.path,
            body: head.body,
            idempotencyKey: head.key,
            headers: head.ifMatch === undefined ? undefined : { 'if-match': `"${head.ifMatch}"` },
          })
        ).body;
        outcome = 'applied';
      } catch (err) {
        if (err instanceof ApiError && err.status === 412) {
          outcome = 'conflict';
          this.o.onConflict?.(head, err.problem);
        } else if (err instanceof ApiError && err.status >= 400 && err.status < 500 && ![408, 409, 425, 429].includes(err.status)) {
          outcome = 'failed';
          this.o.onFailed?.(head, err);
        } else {
          outcome = 'stop';
        }
      }
      if (outcome === 'stop') break;
      await this.locked(async () => this.write((await this.read()).filter((w) => w.key !== head.key)));
      if (outcome === 'applied') {
        r.applied++;
        this.o.onApplied?.(head, result);
      } else if (outcome === 'conflict') r.conflicts++;
      else r.failed++;
    }
    r.remaining = (await this.pending()).length;
    if (r.remaining === 0) this.disarm();
    return r;
  }

  /** Try again every `retryMs` while writes wait, and when the browser says it is online. */
  private arm(): void {
    const every = this.o.retryMs ?? 5000;
    if (this.timer || every === 0) return;
    this.timer = setInterval(() => void this.flush().catch(() => {}), every);
    (this.timer as { unref?: () => void }).unref?.();
  }

  private disarm(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Stop the retry timer. */
  close(): void {
    this.disarm();
  }
}
