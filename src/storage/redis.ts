/**
 * The Redis connection of a node (rate-limit counters, the shared level of the read cache).
 * Redis is an accelerator, never a dependency the API waits on: commands are not queued while
 * the connection is down and time out quickly, so callers fall back at once (in-process
 * limiter, database reads) instead of hanging; the client reconnects on its own, within a
 * second of Redis coming back.
 */
import type { Redis } from 'ioredis';

/** ioredis, loaded only by nodes configured with Redis (it adds ~130 ms to every start-up). */
type RedisClass = typeof import('ioredis').Redis;

/** What the rest of the node sees of Redis. */
export interface RedisHandle {
  /** The command connection (ioredis). */
  client: Redis;
  /** True while the connection is ready for commands. */
  isUp(): boolean;
  /** Wait until the connection is ready, at most `timeoutMs`; false if it is not. */
  ready(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** How the connection reports its state. */
export interface RedisEvents {
  onState(up: boolean): void;
  onError(err: Error): void;
}

/** Longest a command may take before the caller falls back, in ms. */
const COMMAND_TIMEOUT_MS = 500;

function connect(Redis: RedisClass, url: string, events: RedisEvents | undefined, name: string, ca?: Buffer): Redis {
  const client = new Redis(url, {
    // rediss://: TLS, verified against the given CA (else the system's); the realtime subscriber duplicates it.
    ...(url.startsWith('rediss:') ? { tls: ca ? { ca } : {} } : {}),
    connectionName: name,
    // Fail fast while disconnected instead of piling commands up in memory.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: COMMAND_TIMEOUT_MS,
    connectTimeout: 1000,
    // Retry every 100 ms … 500 ms for ever: Redis coming back is noticed within half a second.
    retryStrategy: (attempt) => Math.min(100 * attempt, 500),
    lazyConnect: false,
    // Commands issued in the same tick go out as one pipeline (many requests' limit checks at once).
    enableAutoPipelining: true,
  });
  let up = false;
  client.on('ready', () => {
    if (!up) events?.onState(true);
    up = true;
  });
  client.on('close', () => {
    if (up) events?.onState(false);
    up = false;
  });
  client.on('error', (err) => events?.onError(err));
  return client;
}

export async function openRedis(url: string, events?: RedisEvents, tls?: { ca?: Buffer }): Promise<RedisHandle> {
  const { Redis } = await import('ioredis');
  const client = connect(Redis, url, events, 'rampart', tls?.ca);
  return {
    client,
    isUp: () => client.status === 'ready',
    ready(timeoutMs) {
      if (client.status === 'ready') return Promise.resolve(true);
      return new Promise((resolve) => {
        const done = (ok: boolean) => {
          clearTimeout(timer);
          client.off('ready', onReady);
          resolve(ok);
        };
        const onReady = () => done(true);
        const timer = setTimeout(() => done(false), timeoutMs);
        client.on('ready', onReady);
      });
    },
    async close() {
      client.disconnect();
    },
  };
}
