/**
 * Typed access to collections: list with filters, sort and cursor pages (or iterate over every
 * page), search, read, create, update with `If-Match`, soft delete, restore, purge, and batches.
 * Types come from `rampart types` (the app's declarations as TypeScript).
 */
import type { Transport } from './http.js';

/** What every record has. */
export interface RecordBase {
  id: string;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
  version: number;
}

/** The collections of an app by name (what `rampart types` generates). */
export type CollectionMap = Record<string, Record<string, unknown>>;

/** A record of a collection whose fields are `T`. */
export type Rec<T> = RecordBase & T;

export interface ListParams {
  /** The list filter language: `room = "…" && created_at >= "2026-01-01"`. */
  filter?: string;
  /** `-created_at,name`. */
  sort?: string;
  /** 1–200 (default 20). */
  limit?: number;
  cursor?: string;
  /** Ask for the total. */
  count?: boolean;
  /** Only these fields. */
  fields?: string[];
  /** Full-text search. */
  q?: string;
  /** The trash: `only` or `include`. */
  deleted?: 'only' | 'include';
  signal?: AbortSignal;
}

export interface Page<T> {
  items: Rec<T>[];
  nextCursor: string | null;
  total?: number;
}

export interface WriteOptions {
  /** Apply only if the record is still at this version (else `412`). */
  ifMatch?: number;
  /** Use this Idempotency-Key (a retry of the same write after a reload); default a fresh one. */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

export type BatchOp =
  | { op: 'create'; collection: string; data: Record<string, unknown> }
  | { op: 'update'; collection: string; id: string; data: Record<string, unknown>; if_match?: number }
  | { op: 'delete'; collection: string; id: string; if_match?: number }
  | { op: 'restore'; collection: string; id: string };

const seg = (s: string) => encodeURIComponent(s);

export class Collection<T extends Record<string, unknown>> {
  constructor(
    private readonly http: Transport,
    readonly name: string,
  ) {}

  private path(id?: string, tail = ''): string {
    return `/collections/${seg(this.name)}/records${id === undefined ? '' : `/${seg(id)}`}${tail}`;
  }

  async list(p: ListParams = {}): Promise<Page<T>> {
    const r = await this.http.request<{
      items?: Rec<T>[];
      next_cursor?: string | null;
      total?: number;
      data?: Rec<T>[];
      page?: { next_cursor: string | null; total?: number };
    }>({
      method: 'GET',
      path: this.path(),
      query: {
        filter: p.filter,
        sort: p.sort,
        limit: p.limit,
        cursor: p.cursor,
        count: p.count ? 'true' : undefined,
        fields: p.fields?.join(','),
        q: p.q,
        deleted: p.deleted,
      },
      signal: p.signal,
    });
    // v1 answers {items, next_cursor, total}; v2 {data, page: {next_cursor, total}}.
    const b = r.body;
    return b.data
      ? { items: b.data, nextCursor: b.page?.next_cursor ?? null, total: b.page?.total }
      : { items: b.items ?? [], nextCursor: b.next_cursor ?? null, total: b.total };
  }

  /** Every matching record, page after page (keyset pages: nothing skipped or repeated while others write). */
  async *iterate(p: Omit<ListParams, 'cursor'> = {}): AsyncGenerator<Rec<T>> {
    let cursor: string | undefined;
    do {
      const page = await this.list({ ...p, cursor });
      yield* page.items;
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  }

  /** Full-text search (relevance order unless `sort` is given). */
  search(q: string, p: Omit<ListParams, 'q'> = {}): Promise<Page<T>> {
    return this.list({ ...p, q });
  }

  async get(id: string, o: { signal?: AbortSignal; deleted?: 'only' } = {}): Promise<Rec<T>> {
    return (await this.http.request<Rec<T>>({ method: 'GET', path: this.path(id), query: { deleted: o.deleted }, signal: o.signal })).body;
  }

  async create(data: Partial<T>, o: WriteOptions = {}): Promise<Rec<T>> {
    return (
      await this.http.request<Rec<T>>({ method: 'POST', path: this.path(), body: data, idempotencyKey: o.idempotencyKey, signal: o.signal })
    ).body;
  }

  async update(id: string, data: Partial<T>, o: WriteOptions = {}): Promise<Rec<T>> {
    return (
      await this.http.request<Rec<T>>({
        method: 'PATCH',
        path: this.path(id),
        body: data,
        headers: o.ifMatch === undefined ? undefined : { 'if-match': `"${o.ifMatch}"` },
        idempotencyKey: o.idempotencyKey,
        signal: o.signal,
      })
    ).body;
  }

  /** Soft delete (restorable); `purge: true` removes it for good (admins). */
  async delete(id: string, o: WriteOptions & { purge?: boolean } = {}): Promise<void> {
    await this.http.request({
      method: 'DELETE',
      path: this.path(id),
      query: { purge: o.purge ? 'true' : undefined },
      headers: o.ifMatch === undefined ? undefined : { 'if-match': `"${o.ifMatch}"` },
      idempotencyKey: o.idempotencyKey,
      signal: o.signal,
    });
  }

  async restore(id: string, o: WriteOptions = {}): Promise<Rec<T>> {
    return (
      await this.http.request<Rec<T>>({
        method: 'POST',
        path: this.path(id, '/restore'),
        idempotencyKey: o.idempotencyKey,
        signal: o.signal,
      })
    ).body;
  }
}

/** Up to 100 writes in one transaction: all apply or none. */
export async function batch(http: Transport, operations: BatchOp[], o: { idempotencyKey?: string; signal?: AbortSignal } = {}) {
  const r = await http.request<{ results: Array<{ status: number; record: RecordBase & Record<string, unknown> }> }>({
    method: 'POST',
    path: '/batch',
    body: { operations },
    idempotencyKey: o.idempotencyKey,
    signal: o.signal,
  });
  return r.body.results;
}
