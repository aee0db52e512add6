/**
 * Notifications inside one process, for backends whose database cannot carry them between
 * processes (SQLite). A notification sent inside a transaction is held until that transaction
 * commits and dropped if it rolls back, the same as PostgreSQL's NOTIFY.
 */
import { EventEmitter } from 'node:events';
import type { Kysely } from 'kysely';

export class LocalNotifier {
  private readonly emitter = new EventEmitter();
  private readonly held = new WeakMap<Kysely<any>, Array<[string, string]>>();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  /** Called when a transaction starts on `trx`. */
  begin(trx: Kysely<any>): void {
    this.held.set(trx, []);
  }

  /** Called when the transaction on `trx` ended; delivers what it sent if it committed. */
  end(trx: Kysely<any>, committed: boolean): void {
    const list = this.held.get(trx);
    this.held.delete(trx);
    if (committed) for (const [channel, payload] of list ?? []) this.emitter.emit(channel, payload);
  }

  notify(trx: Kysely<any>, channel: string, payload: string): void {
    const list = this.held.get(trx);
    if (list) list.push([channel, payload]);
    else this.emitter.emit(channel, payload);
  }

  listen(channel: string, fn: (payload: string) => void, onState?: (connected: boolean) => void): () => void {
    this.emitter.on(channel, fn);
    onState?.(true);
    return () => this.emitter.off(channel, fn);
  }
}
