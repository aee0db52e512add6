/**
 * Several PostgreSQL hosts in one URL (`postgres://user@db1:5432,db2:5432/app`, libpq's syntax),
 * with `target_session_attrs=read-write` semantics: every connection goes to the current
 * primary. A connection that fails, or that lands on a standby, makes the locator look for the
 * primary again among all hosts, so after a failover (a standby promoted by Patroni or by hand)
 * new connections reach the new primary without a restart.
 */
import pg from 'pg';
import { TLS_CERT_ERRORS } from '../../core/errors.js';

/** One host of a URL. */
export interface PgHost {
  host: string;
  port: number;
}

const URL_RE = /^(postgres(?:ql)?:\/\/)([^@/?#]*@)?([^/?#]*)(.*)$/;

/** The hosts of a PostgreSQL URL, and the URL with only the first (what the driver can parse). */
export function parseHosts(url: string): { hosts: PgHost[]; single: string } {
  const m = URL_RE.exec(url);
  if (!m) return { hosts: [], single: url };
  const [, scheme, auth = '', list = '', rest = ''] = m;
  const hosts = list.split(',').map((h) => {
    const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(h);
    if (v6) return { host: v6[1] as string, port: Number(v6[2] ?? 5432) };
    const [host = '', port] = h.split(':');
    return { host: decodeURIComponent(host) || 'localhost', port: Number(port ?? 5432) };
  });
  // libpq's own parameter; the driver does not know it (the locator implements it).
  const tail = rest.replace(/([?&])target_session_attrs=[^&]*&?/, '$1').replace(/[?&]$/, '');
  return { hosts, single: `${scheme}${auth}${list.split(',')[0]}${tail}` };
}

/** An error that means "this host cannot take writes now": reconnect elsewhere. */
function standbyError(h: PgHost): Error {
  return Object.assign(new Error(`${h.host}:${h.port} is a standby (read-only); looking for the primary`), { code: '25006' });
}

export class PrimaryLocator {
  readonly hosts: PgHost[];
  private current = 0;
  private searching: Promise<void> | undefined;
  /** A pg.Client whose connections go to the current primary (for pools and listeners). */
  readonly Client: typeof pg.Client;

  constructor(
    url: string,
    private readonly connectTimeoutMs: number,
    private readonly onSwitch: (from: PgHost, to: PgHost) => void = () => {},
  ) {
    this.hosts = parseHosts(url).hosts;
    const locator = this;
    class PrimaryClient extends pg.Client {
      // pg-pool calls connect(callback); our callers await connect().
      override connect(): Promise<pg.Client>;
      override connect(callback: ((err: Error) => void) | ((err: null, c: pg.Client) => void)): void;
      override connect(callback?: ((err: Error) => void) | ((err: null, c: pg.Client) => void)): Promise<pg.Client> | undefined {
        const target = locator.target();
        const self = this as unknown as { host: string; port: number; connectionParameters: { host: string; port: number } };
        self.host = self.connectionParameters.host = target.host;
        self.port = self.connectionParameters.port = target.port;
        const done = (async () => {
          try {
            await super.connect();
          } catch (err) {
            locator.lost(target);
            const code = (err as NodeJS.ErrnoException).code;
            if (code && TLS_CERT_ERRORS.has(code)) {
              // Not an outage: the configuration does not trust this server. Say which setting to look at.
              throw Object.assign(
                new Error(
                  `TLS to PostgreSQL at ${target.host}:${target.port}: ${(err as Error).message} — the server's certificate is not signed by the CA in sslrootcert, or does not name this host (sslmode=verify-full)`,
                  { cause: err },
                ),
                { code },
              );
            }
            throw err;
          }
          if (locator.hosts.length > 1) {
            const r = await super.query<{ standby: boolean }>('select pg_is_in_recovery() as standby');
            if (r.rows[0]?.standby) {
              locator.lost(target);
              await this.end().catch(() => {});
              throw standbyError(target);
            }
          }
          return this as pg.Client;
        })();
        if (!callback) return done;
        const cb = callback as (err: Error | null, c?: pg.Client) => void;
        done.then((c) => cb(null, c), cb);
        return undefined;
      }
    }
    this.Client = PrimaryClient;
  }

  /** Where new connections go. */
  target(): PgHost {
    return this.hosts[this.current] ?? { host: 'localhost', port: 5432 };
  }

  /** A connection to `h` failed or found a standby: look for the primary (once at a time). */
  lost(h: PgHost): void {
    if (this.hosts.length < 2 || this.searching || this.target() !== h) return;
    this.searching = this.search().finally(() => {
      this.searching = undefined;
    });
  }

  private async search(): Promise<void> {
    for (let i = 1; i <= this.hosts.length; i++) {
      const idx = (this.current + i) % this.hosts.length;
      const h = this.hosts[idx] as PgHost;
      const c = new pg.Client({
        host: h.host,
        port: h.port,
        connectionTimeoutMillis: this.connectTimeoutMs,
        user: this.user,
        database: this.database,
        password: this.password,
      });
      c.on('error', () => {});
      try {
        await c.connect();
        const r = await c.query<{ standby: boolean }>('select pg_is_in_recovery() as standby');
        if (!r.rows[0]?.standby) {
          if (idx !== this.current) {
            const from = this.target();
            this.current = idx;
            this.onSwitch(from, h);
          }
          return;
        }
      } catch {
        // Down or unreachable: try the next.
      } finally {
        await c.end().catch(() => {});
      }
    }
  }

  private user: string | undefined;
  private database: string | undefined;
  private password: string | undefined;

  /** Credentials for the search's own probes (the same as the pool's). */
  credentials(c: { user?: string; database?: string; password?: string }): this {
    this.user = c.user;
    this.database = c.database;
    this.password = c.password;
    return this;
  }
}

const locators = new Map<string, PrimaryLocator>();

/**
 * The locator of a URL, shared by every pool and listener of this process on it (one view of
 * where the primary is).
 */
export function primaryLocator(url: string, connectTimeoutMs: number, onSwitch?: (from: PgHost, to: PgHost) => void): PrimaryLocator {
  let l = locators.get(url);
  if (!l) {
    const u = new URL(parseHosts(url).single);
    l = new PrimaryLocator(url, connectTimeoutMs, onSwitch).credentials({
      user: decodeURIComponent(u.username) || undefined,
      password: decodeURIComponent(u.password) || undefined,
      database: decodeURIComponent(u.pathname.slice(1)) || undefined,
    });
    locators.set(url, l);
  }
  return l;
}
