/**
 * The Rampart client: `createClient({ url })` gives auth, typed collections, realtime and an
 * offline write queue sharing one transport (retries, breaker, timeouts, app-version headers) and
 * one store (tokens, the queue).
 */
import { Auth } from './auth.js';
import { type BatchOp, batch, Collection, type CollectionMap } from './collections.js';
import { Transport, type TransportOptions } from './http.js';
import { type OfflineOptions, OfflineQueue } from './offline.js';
import { Realtime, type RealtimeOptions } from './realtime.js';
import { type KeyValueStore, memoryStore } from './storage.js';

export * from './auth.js';
export * from './collections.js';
export * from './errors.js';
export { type Answer, endpointOf, newKey, type RequestOptions, retryAfterMs, Transport, type TransportOptions } from './http.js';
export * from './offline.js';
export * from './realtime.js';
export * from './storage.js';

export interface ClientOptions extends TransportOptions, RealtimeOptions {
  /** Where the session and the offline queue are kept (default in memory). */
  storage?: KeyValueStore;
  /** Refresh the access token this long before it expires, ms (default 60000). */
  refreshMarginMs?: number;
  /** Offline queue callbacks and retry period. */
  offline?: OfflineOptions;
}

export interface RampartClient<C extends CollectionMap = CollectionMap> {
  auth: Auth;
  realtime: Realtime;
  offline: OfflineQueue;
  /** The transport (raw requests: `client.http.request({ method: 'GET', path: '/notifications' })`). */
  http: Transport;
  collection<K extends keyof C & string>(name: K): Collection<C[K]>;
  /** Up to 100 writes in one transaction. */
  batch(operations: BatchOp[], o?: { idempotencyKey?: string; signal?: AbortSignal }): ReturnType<typeof batch>;
  /** Close the realtime connection and stop the queue's timer. */
  close(): void;
}

export function createClient<C extends CollectionMap = CollectionMap>(o: ClientOptions): RampartClient<C> {
  const http = new Transport(o);
  const store = o.storage ?? memoryStore();
  const auth = new Auth(http, store, { refreshMarginMs: o.refreshMarginMs, now: o.now });
  http.tokens = auth;
  const realtime = new Realtime(http, auth, o);
  const offline = new OfflineQueue(http, store, o.offline);
  // Queued writes go out when the connection is back: the realtime socket reopened, or the browser online again.
  const stopState = realtime.onState((s) => {
    if (s === 'open') void offline.flush().catch(() => {});
  });
  const g = globalThis as {
    addEventListener?: (t: string, fn: () => void) => void;
    removeEventListener?: (t: string, fn: () => void) => void;
  };
  const online = () => void offline.flush().catch(() => {});
  g.addEventListener?.('online', online);
  return {
    auth,
    realtime,
    offline,
    http,
    collection: <K extends keyof C & string>(name: K) => new Collection<C[K]>(http, name),
    batch: (operations, opts) => batch(http, operations, opts),
    close() {
      stopState();
      g.removeEventListener?.('online', online);
      realtime.close();
      offline.close();
    },
  };
}
