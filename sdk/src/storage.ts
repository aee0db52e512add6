/**
 * Where the SDK keeps what must outlive the page or the app process: the session's tokens and
 * the offline mutation queue. Pass one of these (or your own: React Native's AsyncStorage has
 * the same three methods under other names, see the README) as `storage`.
 */

export interface KeyValueStore {
  get(key: string): Promise<string | null>;
  set(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
}

/** In memory: gone with the process (the default; tests, server-side use). */
export function memoryStore(): KeyValueStore {
  const m = new Map<string, string>();
  return {
    get: async (k) => m.get(k) ?? null,
    set: async (k, v) => {
      m.set(k, v);
    },
    delete: async (k) => {
      m.delete(k);
    },
  };
}

/** The shape of `window.localStorage` (also `sessionStorage`). */
export interface WebStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** The browser's localStorage (synchronous, ~5 MB): fine for tokens and a modest queue. */
export function localStorageStore(prefix = 'rampart:', storage?: WebStorageLike): KeyValueStore {
  const s = storage ?? (globalThis as { localStorage?: WebStorageLike }).localStorage;
  if (!s) throw new Error('localStorage is not available here: pass a storage object or use another store');
  return {
    get: async (k) => s.getItem(prefix + k),
    set: async (k, v) => s.setItem(prefix + k, v),
    delete: async (k) => s.removeItem(prefix + k),
  };
}

/* Just what this adapter uses of IndexedDB (so the package needs no DOM typings of its users). */
interface IdbRequest<T> {
  result: T;
  error: unknown;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
}
interface IdbOpenRequest extends IdbRequest<IdbDatabase> {
  onupgradeneeded: (() => void) | null;
}
interface IdbDatabase {
  objectStoreNames: { contains(name: string): boolean };
  createObjectStore(name: string): unknown;
  transaction(
    store: string,
    mode: 'readonly' | 'readwrite',
  ): {
    objectStore(name: string): {
      get(key: string): IdbRequest<unknown>;
      put(value: unknown, key: string): IdbRequest<unknown>;
      delete(key: string): IdbRequest<unknown>;
    };
  };
}
export interface IdbFactoryLike {
  open(name: string, version?: number): IdbOpenRequest;
}

const done = <T>(r: IdbRequest<T>) =>
  new Promise<T>((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });

/** IndexedDB: asynchronous and roomy, for larger offline queues (browsers, and React Native with a polyfill). */
export function indexedDbStore(dbName = 'rampart', factory?: IdbFactoryLike): KeyValueStore {
  const idb = factory ?? (globalThis as { indexedDB?: IdbFactoryLike }).indexedDB;
  if (!idb) throw new Error('IndexedDB is not available here: pass a factory or use another store');
  const STORE = 'kv';
  let db: Promise<IdbDatabase> | undefined;
  const open = () => {
    db ??= (() => {
      const req = idb.open(dbName, 1);
      req.onupgradeneeded = () => {
        if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE);
      };
      return done(req);
    })();
    return db;
  };
  const store = async (mode: 'readonly' | 'readwrite') => (await open()).transaction(STORE, mode).objectStore(STORE);
  return {
    get: async (k) => {
      const v = await done((await store('readonly')).get(k));
      return typeof v === 'string' ? v : null;
    },
    set: async (k, v) => {
      await done((await store('readwrite')).put(v, k));
    },
    delete: async (k) => {
      await done((await store('readwrite')).delete(k));
    },
  };
}
