/**
 * Fast failure while the database is unreachable. A request that hits a connection error makes
 * the node ask the database at once; if it does not answer, the database is marked down and,
 * until a background probe succeeds, requests fail at once (503 + Retry-After) instead of each
 * waiting out a connect timeout. One lost connection (a session the server ended, a node that
 * was frozen past its transactions' idle limit) does not mark a database that answers as down.
 * The probe keeps trying, so the node recovers by itself when the database returns.
 */
export class DbAvailability {
  private down = false;
  private checking = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly ping: () => Promise<void>,
    private readonly onChange: (up: boolean) => void,
    private readonly probeEveryMs = 250,
  ) {}

  /** True while requests should fail fast. */
  isDown(): boolean {
    return this.down;
  }

  /**
   * Report a connection-level failure: check the database now, and mark it down if it does not
   * answer twice in a row (the first check may itself draw a pooled connection the server ended
   * while this process was frozen; a database that is really gone refuses both at once).
   */
  reportFailure(): void {
    if (this.down || this.checking || this.stopped) return;
    this.checking = true;
    this.ping()
      .catch(() => this.ping())
      .then(
        () => {
          this.checking = false;
        },
        () => {
          this.checking = false;
          if (this.stopped) return;
          this.down = true;
          this.onChange(false);
          this.schedule();
        },
      );
  }

  private schedule(): void {
    const probe = async () => {
      try {
        await this.ping();
        this.down = false;
        this.timer = undefined;
        this.onChange(true);
      } catch {
        if (!this.stopped) this.schedule();
      }
    };
    this.timer = setTimeout(probe, this.probeEveryMs);
    this.timer.unref();
  }

  /** Stop probing (shutdown). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
