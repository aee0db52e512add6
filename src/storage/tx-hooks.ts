/**
 * Work tied to the end of one transaction, for both backends: steps that must be the last
 * statements before its commit, and cleanups that must run once it has ended, committed or not.
 */
export class TransactionHooks {
  private readonly pre = new WeakMap<object, (() => Promise<void>)[]>();
  private readonly end = new WeakMap<object, (() => void)[]>();

  beforeCommit(trx: object, fn: () => Promise<void>): void {
    const list = this.pre.get(trx);
    if (list) list.push(fn);
    else this.pre.set(trx, [fn]);
  }

  afterEnd(trx: object, fn: () => void): void {
    const list = this.end.get(trx);
    if (list) list.push(fn);
    else this.end.set(trx, [fn]);
  }

  /** The transaction's work is done: run its last steps (they may register more). */
  async flush(trx: object): Promise<void> {
    for (let list = this.pre.get(trx); list && list.length > 0; list = this.pre.get(trx)) {
      this.pre.delete(trx);
      for (const fn of list) await fn();
    }
  }

  /** The transaction has committed or rolled back. */
  ended(trx: object): void {
    this.pre.delete(trx);
    const list = this.end.get(trx);
    this.end.delete(trx);
    for (const fn of list ?? []) fn();
  }
}
