/**
 * Password hashing: argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane). Hashing runs on
 * libuv's thread pool, never on the event loop, and through a bounded gate: at most
 * `concurrency` hashes at once (each holds ~19 MiB) and at most `queue` waiting; beyond that a
 * login gets 503 with Retry-After instead of piling up memory. The parameters are stored in
 * each hash (PHC string), so raising them later re-hashes each password at its next login.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { hash, verify } from '@node-rs/argon2';

/** `Algorithm.Argon2id` of @node-rs/argon2 (a const enum, which isolated modules cannot import). */
const ARGON2ID = 2;

import { RampartError } from '../core/errors.js';

/** argon2id cost parameters. */
export interface HashParams {
  /** Memory in KiB. */
  memoryCost: number;
  /** Passes. */
  timeCost: number;
  /** Lanes. */
  parallelism: number;
}

/** OWASP Password Storage Cheat Sheet, argon2id option 2 (m = 19 MiB, t = 2, p = 1). */
export const OWASP_PARAMS: HashParams = { memoryCost: 19_456, timeCost: 2, parallelism: 1 };

const PHC_RE = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/;

/** Gate figures, for metrics. */
export interface HasherStats {
  active: number;
  waiting: number;
  rejected: number;
}

export class PasswordHasher {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private rejected = 0;
  private dummy: Promise<string> | undefined;
  private readonly concurrency: number;
  private readonly queueMax: number;

  constructor(
    opts: { concurrency: number; queue: number },
    private readonly params: HashParams = OWASP_PARAMS,
  ) {
    this.concurrency = opts.concurrency > 0 ? opts.concurrency : Math.min(4, availableParallelism());
    this.queueMax = opts.queue;
  }

  private async gate<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.concurrency) {
      if (this.waiting.length >= this.queueMax) {
        this.rejected++;
        throw new RampartError('E_OVERLOADED', 'too many sign-ins at once; retry in a moment', { headers: { 'Retry-After': '1' } });
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.active++;
    }
    try {
      return await fn();
    } finally {
      // Hand the slot straight to the next waiter (active stays the same), or free it.
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }

  /** Hash a password with the current parameters. */
  hash(password: string): Promise<string> {
    return this.gate(() => hash(password, { ...this.params, algorithm: ARGON2ID }));
  }

  /**
   * Check a password. `rehash` is true when the stored hash used weaker parameters than the
   * current ones (the caller stores a fresh hash). A malformed stored hash never matches.
   */
  async verify(stored: string, password: string): Promise<{ ok: boolean; rehash: boolean }> {
    const m = PHC_RE.exec(stored);
    if (!m) {
      await this.verifyNothing(password);
      return { ok: false, rehash: false };
    }
    const ok = await this.gate(() => verify(stored, password).catch(() => false));
    const [memory, time, lanes] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const weaker = memory < this.params.memoryCost || time < this.params.timeCost || lanes !== this.params.parallelism;
    return { ok, rehash: ok && weaker };
  }

  /**
   * Spend the time of a verification without a real hash, for unknown accounts: a login for an
   * email that does not exist must take as long as one with a wrong password.
   */
  async verifyNothing(password: string): Promise<void> {
    this.dummy ??= hash(randomBytes(16).toString('hex'), { ...this.params, algorithm: ARGON2ID });
    const dummy = await this.dummy;
    await this.gate(() => verify(dummy, password).catch(() => false));
  }

  stats(): HasherStats {
    return { active: this.active, waiting: this.waiting.length, rejected: this.rejected };
  }
}
