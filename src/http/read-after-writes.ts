/**
 * Read-your-writes over read replicas. When a mutation succeeds, the node notes where the
 * primary's WAL is now (every write it acknowledged is at or below that position) for the
 * caller — a user id, or the address of an anonymous client — in memory and in Redis (so any
 * node knows it), and sends it as `Rampart-Read-After`. A later read by that caller goes to a
 * replica only if the replica has replayed that far; a client may also send the header back
 * itself (the SDK does), which works on any node without Redis. Positions are kept a minute:
 * longer than any replica is allowed to lag.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Guard } from '../auth/guard.js';
import { lsnValue } from '../storage/postgres/replicas.js';
import type { RedisHandle } from '../storage/redis.js';
import type { ReadPlan, ReplicaRouter } from '../storage/types.js';

const KEEP_MS = 60_000;
const LSN_RE = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i;
const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const HEADER = 'rampart-read-after';

export class ReadAfterWrites {
  private readonly local = new LRUCache<string, string>({ max: 100_000, ttl: KEEP_MS });

  constructor(
    private readonly replicas: ReplicaRouter,
    private readonly redis: RedisHandle | undefined,
    /** Namespace of the keys in Redis (one cluster's). */
    private readonly prefix: string,
    private readonly log: Logger,
  ) {}

  /** Attach the hooks: note the position after every successful API mutation. */
  register(app: FastifyInstance, guard: Guard): void {
    app.addHook('onSend', async (req, reply, payload) => {
      if (!MUTATIONS.has(req.method) || reply.statusCode >= 400 || !req.url.startsWith('/api/')) return payload;
      try {
        const position = await this.wrote(await this.who(req, guard));
        reply.header(HEADER, position);
      } catch (err) {
        // The write stands; only this caller's next read may be served from the primary's past.
        this.log.warn({ err: (err as Error).message }, 'could not note the position of a write (read-your-writes)');
      }
      return payload;
    });
  }

  private async who(req: FastifyRequest, guard: Guard): Promise<string> {
    const p = await guard(req);
    return p.kind === 'user' ? `u:${p.id}` : `ip:${req.ip}`;
  }

  private async wrote(who: string): Promise<string> {
    const position = await this.replicas.position();
    this.local.set(who, position);
    if (this.redis?.isUp()) await this.redis.client.set(`${this.prefix}:raw:${who}`, position, 'PX', KEEP_MS).catch(() => {});
    return position;
  }

  /** The read plan of a GET request: replicas allowed, after the caller's last known write. */
  async planFor(req: FastifyRequest, guard: Guard): Promise<ReadPlan> {
    const who = await this.who(req, guard);
    const given = req.headers[HEADER];
    const candidates = [typeof given === 'string' && LSN_RE.test(given) ? given : undefined, this.local.get(who)];
    if (this.redis?.isUp()) candidates.push((await this.redis.client.get(`${this.prefix}:raw:${who}`).catch(() => null)) ?? undefined);
    let after: string | undefined;
    for (const c of candidates) if (c && (!after || lsnValue(c) > lsnValue(after))) after = c;
    return after ? { replica: true, after } : { replica: true };
  }
}
