/** A WebSocket test client of the realtime protocol: it keeps every message and waits for ones it wants. */
import WebSocket from 'ws';

export type Msg = Record<string, any>;

export class RtClient {
  readonly messages: Msg[] = [];
  closed: { code: number; reason: string } | undefined;
  private waiters: Array<() => void> = [];
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.messages.push(JSON.parse(data.toString()));
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on('error', () => {});
  }

  /** Connect to `<base>/api/v1/realtime`, optionally with a bearer token; resolves after `welcome`. */
  static async connect(base: string, token?: string): Promise<RtClient> {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/api/v1/realtime`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const c = new RtClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
    await c.next((m) => m.type === 'welcome');
    return c;
  }

  send(msg: Msg): void {
    this.ws.send(JSON.stringify(msg));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** The first message (from `from` on) matching `pred`, waiting up to `timeoutMs`. */
  async next(pred: (m: Msg) => boolean, timeoutMs = 5000, from = 0): Promise<Msg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(from).find(pred);
      if (found) return found;
      if (this.closed) throw new Error(`closed (${this.closed.code} ${this.closed.reason}) while waiting`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; last messages: ${JSON.stringify(this.messages.slice(-3))}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Subscribe and wait until the server says it is live; resolves to that message. */
  async subscribe(spec: Msg): Promise<Msg> {
    this.send({ type: 'subscribe', ...spec });
    return this.next((m) => (m.type === 'subscribed' || m.type === 'error') && m.id === spec.id);
  }

  /** Events received (for subscription `sub`, if given). */
  events(sub?: string): Msg[] {
    return this.messages.filter((m) => m.type === 'event' && (sub === undefined || m.subs.includes(sub)));
  }

  /** Wait until `pred` holds of the events. */
  async until(pred: (events: Msg[]) => boolean, timeoutMs = 10_000): Promise<void> {
    await this.next(() => pred(this.events()), timeoutMs).catch((err) => {
      throw new Error(`${(err as Error).message}; ${this.events().length} events`);
    });
  }

  /** Wait for the close frame. */
  async closedWith(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (!this.closed) throw new Error('not closed');
    return this.closed;
  }

  close(): void {
    this.ws.terminate();
  }
}
