/**
 * Builds the accounts components from configuration and runs their upkeep: key reloads and
 * the ended-session poll. The sweep that removes expired tokens and purges deleted accounts
 * past retention runs as the built-in `rampart.clean-auth` cron job.
 */

import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { Config } from '../core/config.js';
import type { Mail } from '../notify/mail.js';
import type { Metrics } from '../observability/metrics.js';
import type { HookRegistry } from '../records/hooks.js';
import type { RecordsService } from '../records/service.js';
import type { OutboundHttp } from '../resilience/http-client.js';
import type { Storage } from '../storage/types.js';
import { AccountService, type LinkKind } from './accounts.js';
import { type Guard, makeGuard } from './guard.js';
import { SigningKeys } from './keys.js';
import { OAuthService } from './oauth.js';
import { OneTimeTokens } from './one-time-tokens.js';
import { PasswordHasher } from './passwords.js';
import { RevokedSessions } from './revocations.js';
import { SessionStore } from './sessions.js';
import { LoginThrottle } from './throttle.js';
import { AccessTokens } from './tokens.js';
import { USERS } from './users.js';

export interface Auth {
  accounts: AccountService;
  sessions: SessionStore;
  keys: SigningKeys;
  tokens: AccessTokens;
  revoked: RevokedSessions;
  hasher: PasswordHasher;
  oauth: OAuthService;
  guard: Guard;
  /** Load keys and ended sessions. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** One housekeeping pass (the `rampart.clean-auth` job runs it every 10 minutes). */
  sweep(): Promise<void>;
}

export interface AuthOptions {
  config: Config;
  storage: Storage;
  records: RecordsService;
  hooks: HookRegistry;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  /** Outbound HTTP dependencies (the OAuth providers register theirs). */
  outbound: OutboundHttp;
  /** The server's public URL (known once it listens). */
  publicUrl(): string;
  /** Queue a mail. */
  sendMail(mail: Mail): Promise<unknown>;
  /** Queue a link mail requested by address. */
  requestLink(kind: LinkKind, email: string): Promise<unknown>;
}

export function createAuth(o: AuthOptions): Auth {
  const { config, storage, clock, log } = o;
  const c = config.auth;
  const keys = new SigningKeys(storage, clock, log);
  const tokens = new AccessTokens(keys, c, clock);
  const sessions = new SessionStore(storage, c, clock, USERS);
  const revoked = new RevokedSessions(sessions, clock, c.accessTtlS * 1000, log);
  const hasher = new PasswordHasher({ concurrency: c.hashConcurrency, queue: c.hashQueue });
  const throttle = new LoginThrottle(storage, clock, { perAccount: c.maxFailuresPerAccount, perIp: c.maxFailuresPerIp });
  const oneTime = new OneTimeTokens(storage, clock);
  const accounts = new AccountService({
    storage,
    records: o.records,
    hasher,
    tokens,
    sessions,
    revoked,
    oneTime,
    throttle,
    sendMail: o.sendMail,
    requestLink: o.requestLink,
    config: c,
    clock,
    log,
    linkBase: () => c.linkBaseUrl ?? `${o.publicUrl()}/auth`,
    onLogin: (method, outcome) => o.metrics.countLogin(method, outcome),
  });
  const oauth = new OAuthService({
    storage,
    records: o.records,
    accounts,
    oneTime,
    config: c,
    clock,
    log,
    publicUrl: o.publicUrl,
    outbound: o.outbound,
  });

  // Emails are compared in lower case everywhere, whoever writes them.
  const lowerEmail = (data: Record<string, unknown>) =>
    typeof data.email === 'string' ? { ...data, email: data.email.trim().toLowerCase() } : undefined;
  o.hooks.add(USERS, 'beforeCreate', { id: 'rampart.users.email', priority: -1000, fn: lowerEmail });
  o.hooks.add(USERS, 'beforeUpdate', { id: 'rampart.users.email', priority: -1000, fn: lowerEmail });
  // Disabling an account ends its sessions at once (refresh stops; access tokens via the revocation set).
  const endSessions = async (user: { id: string; disabled?: unknown }) => {
    if (user.disabled !== true) return;
    const n = await sessions.revokeAll(user.id, 'account_disabled');
    if (n > 0) await revoked.refreshNow();
  };
  o.hooks.add(USERS, 'afterUpdate', { id: 'rampart.users.disabled', priority: -1000, fn: endSessions });

  const sweep = async () => {
    await sessions.cleanup();
    await oneTime.cleanup();
    await throttle.cleanup();
    await accounts.purgeExpired();
    await oauth.cleanup();
  };
  return {
    accounts,
    sessions,
    keys,
    tokens,
    revoked,
    hasher,
    oauth,
    guard: makeGuard(tokens, revoked),
    sweep,
    async start() {
      await keys.start();
      await revoked.start();
    },
    async stop() {
      keys.stop();
      revoked.stop();
    },
  };
}
