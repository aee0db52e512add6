/**
 * Fast failure while the database is unreachable. The first request that hits a connection
 * error marks the database down; until a background probe succeeds, requests fail at once
 * (503 + Retry-After) instead of each waiting out a connect timeout. The probe keeps trying,
 * so the node recovers by itself when the database returns.
 */
export class DbAvailability {
  private down = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ping: () => Promise<void>,
    private readonly onChange: (up: boolean) => void,
    private readonly probeEveryMs = 250,
  ) {}

  /** True while requests should fail fast. */
  isDown(): boolean {
    return this.down;
  }

  /** Report a connection-level failure; starts probing. */
  reportFailure(): void {
    if (this.down) return;
    this.down = true;
    this.onChange(false);
    const probe = async () => {
      try {
        await this.ping();
        this.down = false;
        this.timer = undefined;
        this.onChange(true);
      } catch {
        this.timer = setTimeout(probe, this.probeEveryMs);
        this.timer.unref();
      }
    };
    this.timer = setTimeout(probe, this.probeEveryMs);
    this.timer.unref();
  }

  /** Stop probing (shutdown). */
  stop(): void {
    clearTimeout(this.timer);
  }
}
