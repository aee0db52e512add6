/**
 * Load through the cluster's front door for chaos tests and bench/cluster: many clients, each
 * with its own kept-alive connection from its own loopback address (127.0.x.y), so nginx's
 * per-address limits see clients, not one flooding address. Clients behave as the SDK does
 * (Idempotency-Key on creates, one resend after a stale kept-alive connection). Records every
 * request's outcome.
 */
import { Agent, request } from 'node:http';

/** One request's outcome. */
export interface Outcome {
  method: string;
  /** HTTP status, or 0 for a network error. */
  status: number;
  ms: number;
  /** When it ended, ms since the load started. */
  at: number;
  retryAfter?: string;
  /** The record id a create returned. */
  id?: string;
  /** The unique token a create carried. */
  token?: string;
  /** Sent a second time after meeting a stale kept-alive connection. */
  resent?: boolean;
}

export interface LoadPlan {
  /** The front door (http://127.0.0.1:port). */
  url: string;
  clients: number;
  /** Share of requests that are creates (the rest read one record by id). */
  writeShare: number;
  /** Records to read. */
  readIds: string[];
  /** The body of a create carrying `token` (unique per request). */
  createBody: (token: string) => Record<string, unknown>;
  collection: string;
  /** Pause after a failed request (ms), as a client backing off. */
  pauseOnFailureMs?: number;
  /**
   * Requests per second one client sends at most (each client has its own address): keep it under
   * nginx's per-address limit (limit_req, 100 r/s) when the test is not about that limit. While
   * answers come fast (quick 503s during an outage) an unpaced client would outrun it.
   */
  maxRatePerClient?: number;
}

/** A request that failed on a kept-alive connection the server closed before answering: safe to send again. */
class StaleConnection extends Error {}

function sendOnce(
  agent: Agent,
  url: URL,
  method: string,
  body?: string,
  key?: string,
): Promise<{ status: number; text: string; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = body
      ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
      : {};
    if (key) headers['idempotency-key'] = key;
    const req = request(url, { method, agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, retryAfter: res.headers['retry-after'] }));
      res.on('error', reject);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      // What Node's docs advise for keep-alive: a reused socket reset before any answer means the
      // server (or proxy) closed it as the request left; the request never reached a handler.
      if (req.reusedSocket && (err.code === 'ECONNRESET' || err.message === 'socket hang up')) reject(new StaleConnection(err.message));
      else reject(err);
    });
    req.setTimeout(60_000, () => req.destroy(new Error('client timeout')));
    req.end(body);
  });
}

/**
 * Send like a well-behaved client (a browser, the Rampart SDK): every create carries an
 * Idempotency-Key, and a request that met a stale kept-alive connection is sent once more.
 */
async function send(agent: Agent, url: URL, method: string, body?: string, key?: string) {
  try {
    return { ...(await sendOnce(agent, url, method, body, key)), resent: false };
  } catch (err) {
    if (!(err instanceof StaleConnection)) throw err;
    return { ...(await sendOnce(agent, url, method, body, key)), resent: true };
  }
}

/** Run the plan until `stop()` is called; `done` resolves with every outcome. */
export function startLoad(plan: LoadPlan): { stop(): void; done: Promise<Outcome[]>; outcomes: Outcome[]; t0: number } {
  const outcomes: Outcome[] = [];
  const t0 = performance.now();
  let stopped = false;
  let seq = 0;
  // Tokens unique across runs too, so a check never confuses two runs' creates.
  const run = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const client = async (i: number) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, localAddress: `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}` });
    try {
      while (!stopped) {
        const write = Math.random() < plan.writeShare;
        const started = performance.now();
        const o: Outcome = { method: write ? 'POST' : 'GET', status: 0, ms: 0, at: 0 };
        try {
          if (write) {
            o.token = `t${run}-${seq++}`;
            const r = await send(
              agent,
              new URL(`/api/v1/collections/${plan.collection}/records`, plan.url),
              'POST',
              JSON.stringify(plan.createBody(o.token)),
              o.token,
            );
            o.status = r.status;
            o.retryAfter = r.retryAfter;
            o.resent = r.resent;
            if (r.status === 201) o.id = (JSON.parse(r.text) as { id: string }).id;
          } else {
            const id = plan.readIds[Math.floor(Math.random() * plan.readIds.length)];
            const r = await send(agent, new URL(`/api/v1/collections/${plan.collection}/records/${id}`, plan.url), 'GET');
            o.status = r.status;
            o.retryAfter = r.retryAfter;
            o.resent = r.resent;
          }
        } catch {
          o.status = 0;
        }
        o.ms = performance.now() - started;
        o.at = performance.now() - t0;
        outcomes.push(o);
        if ((o.status === 0 || o.status >= 400) && plan.pauseOnFailureMs) await new Promise((r) => setTimeout(r, plan.pauseOnFailureMs));
        const rest = plan.maxRatePerClient ? 1000 / plan.maxRatePerClient - (performance.now() - started) : 0;
        if (rest > 0) await new Promise((r) => setTimeout(r, rest));
      }
    } finally {
      agent.destroy();
    }
  };
  const all = Promise.all(Array.from({ length: plan.clients }, (_, i) => client(i)));
  return {
    outcomes,
    /** performance.now() when the load started: the origin of every outcome's `at`. */
    t0,
    stop() {
      stopped = true;
    },
    done: all.then(() => outcomes),
  };
}

/** Counts and latency of a set of outcomes. */
export function summarize(outcomes: Outcome[]) {
  const ok = (o: Outcome) => o.status >= 200 && o.status < 300;
  const sorted = outcomes.map((o) => o.ms).sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;
  const byStatus: Record<string, number> = {};
  for (const o of outcomes) byStatus[`${o.method} ${o.status}`] = (byStatus[`${o.method} ${o.status}`] ?? 0) + 1;
  const failed = outcomes.filter((o) => !ok(o));
  return {
    total: outcomes.length,
    failed: failed.length,
    failedGets: failed.filter((o) => o.method === 'GET').length,
    failedShare: outcomes.length ? failed.length / outcomes.length : 0,
    resent: outcomes.filter((o) => o.resent).length,
    p50: pct(50),
    p99: pct(99),
    max: sorted.at(-1) ?? 0,
    byStatus,
  };
}

/** A room and `messages` messages in it (the open-chat fixture), created through the API at `url`. */
export async function seedChat(
  url: string,
  messages: number,
  progress: (done: number) => void = () => {},
): Promise<{ room: string; ids: string[] }> {
  const post = async (collection: string, body: unknown) => {
    const r = await fetch(`${url}/api/v1/collections/${collection}/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (r.status !== 201) throw new Error(`seeding ${collection}: ${r.status} ${await r.text()}`);
    return ((await r.json()) as { id: string }).id;
  };
  const room = await post('rooms', { name: `seed-${Math.random().toString(36).slice(2, 8)}` });
  const ids: string[] = [];
  for (let i = 0; i < messages; i++) {
    ids.push(await post('messages', { room, body: `seed ${i}`, author: 'seed' }));
    if ((i + 1) % 250 === 0) progress(i + 1);
  }
  return { room, ids };
}
