/**
 * LISTEN on a dedicated connection (a pooled one would lose its LISTENs when returned). When
 * the connection drops it is re-established with backoff and every channel listened again;
 * each (re)connect is reported, so callers can look for work announced while it was down.
 */
import type pg from 'pg';

type Listener = { fn: (payload: string) => void; onState?: (connected: boolean) => void };

export class PgListener {
  private client: pg.Client | undefined;
  private connecting: Promise<void> | undefined;
  private readonly channels = new Map<string, Set<Listener>>();
  private closed = false;
  private retryMs = 100;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly url: string | undefined,
    /** The client class (one that connects to the current primary). */
    private readonly Client: typeof pg.Client,
    private readonly connectTimeoutMs: number,
    private readonly report: (err: Error) => void,
  ) {}

  async listen(channel: string, listener: Listener): Promise<() => void> {
    let set = this.channels.get(channel);
    const fresh = !set;
    if (!set) {
      set = new Set();
      this.channels.set(channel, set);
    }
    set.add(listener);
    if (!this.client && !this.connecting) this.connecting = this.connect();
    else if (this.client && fresh) await this.client.query(`listen ${quoteIdent(channel)}`).catch((err) => this.report(err));
    if (this.client) listener.onState?.(true);
    return () => {
      set.delete(listener);
    };
  }

  private async connect(): Promise<void> {
    const client = new this.Client({
      connectionString: this.url,
      connectionTimeoutMillis: this.connectTimeoutMs,
      keepAlive: true,
      application_name: 'rampart-listen',
    });
    const lost = (err?: Error) => {
      if (err) this.report(err);
      if (this.client !== client) return;
      this.client = undefined;
      client.removeAllListeners('notification');
      client.end().catch(() => {});
      this.notifyState(false);
      this.schedule();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    try {
      await client.connect();
      for (const channel of this.channels.keys()) await client.query(`listen ${quoteIdent(channel)}`);
      if (this.closed) {
        await client.end();
        return;
      }
      client.on('notification', (n) => {
        for (const l of this.channels.get(n.channel) ?? []) l.fn(n.payload ?? '');
      });
      this.client = client;
      this.retryMs = 100;
      this.notifyState(true);
    } catch (err) {
      client.removeAllListeners('end');
      client.end().catch(() => {});
      this.report(err as Error);
      this.schedule();
    } finally {
      this.connecting = undefined;
    }
  }

  private schedule(): void {
    if (this.closed || this.timer) return;
    const delay = this.retryMs / 2 + Math.random() * (this.retryMs / 2);
    this.retryMs = Math.min(5000, this.retryMs * 2);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.closed && !this.client && !this.connecting) this.connecting = this.connect();
    }, delay);
    this.timer.unref();
  }

  private notifyState(up: boolean): void {
    for (const set of this.channels.values()) for (const l of set) l.onState?.(up);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.connecting;
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => {});
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
