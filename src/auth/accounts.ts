/**
 * Accounts: sign-up, password login, refresh, logout, password and email changes, email
 * verification, password reset, account deletion and the retention purge. Users are records
 * of the `users` collection (so app hooks, relations and rules apply to them); this service
 * owns the fields clients cannot write.
 *
 * Enumeration: login answers the same for an unknown email and a wrong password (and spends
 * the same hashing time); verification and reset requests always answer 202, whether or not
 * the address exists, and mail is sent after the response.
 */
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { AuthConfig } from '../core/config.js';
import { RampartError, validationError } from '../core/errors.js';
import type { Mail } from '../notify/mail.js';
import type { Principal } from '../records/access.js';
import type { RecordData } from '../records/hooks.js';
import type { RecordsService } from '../records/service.js';
import { checkValue, validateInput } from '../records/validate.js';
import type { Storage } from '../storage/types.js';
import { accountMail } from './mails.js';
import type { OneTimeTokens } from './one-time-tokens.js';
import type { PasswordHasher } from './passwords.js';
import type { RevokedSessions } from './revocations.js';
import type { SessionStore } from './sessions.js';
import { accountKey, ipKey, type LoginThrottle } from './throttle.js';
import type { AccessTokens } from './tokens.js';
import { USERS } from './users.js';

/** What a successful sign-in returns. */
export interface TokenResponse {
  user: RecordData;
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token: string;
  session_id: string;
}

/** Where a request comes from, stored with its session. */
export interface ClientMeta {
  ip: string;
  userAgent?: string;
}

export const PASSWORD = { min: 8, max: 256 };
const HOUR = 3_600_000;
const TTL = { verify_email: 24 * HOUR, reset_password: HOUR, change_email: HOUR };

/** Lower-cased, trimmed email, or a validation error. */
export function normalizeEmail(raw: unknown, field = 'email'): string {
  if (typeof raw !== 'string') throw validationError([{ field, code: 'required', message: 'is required' }]);
  const email = raw.trim().toLowerCase();
  const r = checkValue({ type: 'email' }, email);
  if (!r.ok) throw validationError([{ field, code: r.code, message: r.message }]);
  return email;
}

function checkPassword(raw: unknown, field = 'password'): string {
  if (typeof raw !== 'string') throw validationError([{ field, code: 'required', message: 'is required' }]);
  const len = [...raw].length;
  if (len < PASSWORD.min) throw validationError([{ field, code: 'min_length', message: `must be at least ${PASSWORD.min} characters` }]);
  if (len > PASSWORD.max) throw validationError([{ field, code: 'max_length', message: `must be at most ${PASSWORD.max} characters` }]);
  return raw;
}

const badCredentials = () => new RampartError('E_INVALID_CREDENTIALS', 'the email or the password is wrong');

export interface AccountDeps {
  storage: Storage;
  /** The records service acting as the system. */
  records: RecordsService;
  hasher: PasswordHasher;
  tokens: AccessTokens;
  sessions: SessionStore;
  revoked: RevokedSessions;
  oneTime: OneTimeTokens;
  throttle: LoginThrottle;
  /** Queue a mail (the built-in mail job: retried, never sent inside the request). */
  sendMail(mail: Mail): Promise<unknown>;
  /**
   * Queue a link mail requested by address (the built-in account-link job): the request does
   * the same work whether or not the account exists; the job looks it up.
   */
  requestLink(kind: LinkKind, email: string): Promise<unknown>;
  config: AuthConfig;
  clock: Clock;
  log: Logger;
  /** Base of links in mails (`…/auth`). */
  linkBase(): string;
  /** Told the outcome of each password sign-in, for metrics. */
  onLogin(method: string, outcome: 'ok' | 'bad_credentials' | 'throttled' | 'disabled'): void;
}

/** Links mailed on request by address. */
export type LinkKind = 'verify_email' | 'reset_password';

export class AccountService {
  constructor(private readonly d: AccountDeps) {}

  /** A users record without hidden fields. */
  publicUser(user: RecordData): RecordData {
    const { password_hash: _, ...rest } = user;
    return rest as RecordData;
  }

  /** The live user with this email (hidden fields included), if any. */
  async findByEmail(email: string): Promise<RecordData | undefined> {
    const { items } = await this.d.records.list(USERS, { filter: `email = ${JSON.stringify(email)}`, limit: 1 });
    return items[0];
  }

  private async issue(user: RecordData, sessionId: string, refreshToken: string): Promise<TokenResponse> {
    const { token, expiresIn } = await this.d.tokens.sign({
      sub: user.id,
      sid: sessionId,
      role: String(user.role),
      email: String(user.email),
      email_verified: user.email_verified === true,
    });
    return {
      user: this.publicUser(user),
      access_token: token,
      token_type: 'Bearer',
      expires_in: expiresIn,
      refresh_token: refreshToken,
      session_id: sessionId,
    };
  }

  /** Start a session for a user who has just proven who they are. */
  async startSession(user: RecordData, method: string, meta: ClientMeta): Promise<TokenResponse> {
    if (user.disabled === true) throw new RampartError('E_ACCOUNT_DISABLED', 'this account is disabled');
    const { sessionId, refreshToken } = await this.d.sessions.create(user.id, { method, ip: meta.ip, userAgent: meta.userAgent });
    return this.issue(user, sessionId, refreshToken);
  }

  /** Create an account with a password and sign it in; a verification mail follows. */
  async signup(body: unknown, meta: ClientMeta): Promise<TokenResponse> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw validationError([{ field: 'body', code: 'type', message: 'must be a JSON object' }]);
    }
    const { email: rawEmail, password: rawPassword, ...extra } = body as Record<string, unknown>;
    const email = normalizeEmail(rawEmail);
    const password = checkPassword(rawPassword);
    // App fields are checked as a client's input: role, verification and hashes cannot be set here.
    const fields = validateInput(this.d.records.schema(USERS), extra, 'update', '', 'client');
    const hash = await this.d.hasher.hash(password);
    const user = await this.d.records.create(USERS, { ...fields, email, password_hash: hash, email_verified: false, role: 'user' });
    this.d.log.info({ user_id: user.id }, 'account created');
    await this.sendVerification(user);
    return this.startSession(user, 'password', meta);
  }

  /** Password login, throttled per account and per IP before the password is checked. */
  async login(body: unknown, meta: ClientMeta): Promise<TokenResponse> {
    const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    const email = normalizeEmail(b.email);
    if (typeof b.password !== 'string' || b.password.length === 0 || b.password.length > 4 * PASSWORD.max) {
      throw validationError([{ field: 'password', code: 'required', message: 'is required' }]);
    }
    try {
      await this.d.throttle.claim(this.d.throttle.keysFor(email, meta.ip));
    } catch (err) {
      this.d.onLogin('password', 'throttled');
      throw err;
    }
    const user = await this.findByEmail(email);
    if (!user || typeof user.password_hash !== 'string') {
      await this.d.hasher.verifyNothing(b.password);
      this.d.onLogin('password', 'bad_credentials');
      throw badCredentials();
    }
    const { ok, rehash } = await this.d.hasher.verify(user.password_hash, b.password);
    if (!ok) {
      this.d.onLogin('password', 'bad_credentials');
      throw badCredentials();
    }
    this.d.onLogin('password', user.disabled === true ? 'disabled' : 'ok');
    await this.d.throttle.clear(accountKey(email));
    await this.d.throttle.forgive(ipKey(meta.ip));
    if (rehash) await this.d.records.update(USERS, user.id, { password_hash: await this.d.hasher.hash(b.password) });
    return this.startSession(user, 'password', meta);
  }

  /** Rotate a refresh token into a new pair. */
  async refresh(body: unknown): Promise<TokenResponse> {
    const token = (body as { refresh_token?: unknown } | null)?.refresh_token;
    if (typeof token !== 'string') throw validationError([{ field: 'refresh_token', code: 'required', message: 'is required' }]);
    const outcome = await this.d.sessions.rotate(token);
    switch (outcome.kind) {
      case 'ok': {
        const user = await this.d.records.get(USERS, outcome.userId);
        return this.issue(user, outcome.sessionId, outcome.refreshToken);
      }
      case 'reused':
        this.d.revoked.add(outcome.sessionId);
        this.d.log.warn({ session_id: outcome.sessionId }, 'refresh token reused: session revoked (possible token theft)');
        throw new RampartError('E_SESSION_REVOKED', 'this refresh token was already used; the session has been ended for safety');
      case 'revoked':
        throw new RampartError('E_SESSION_REVOKED', `the session has ended (${outcome.reason})`);
      case 'invalid':
        throw new RampartError('E_INVALID_TOKEN', 'the refresh token is not valid or has expired');
    }
  }

  /** End the caller's current session. */
  async logout(p: Principal): Promise<void> {
    const user = this.requireUser(p);
    if (user.sessionId && (await this.d.sessions.revoke(user.id, user.sessionId, 'logout'))) this.d.revoked.add(user.sessionId);
  }

  requireUser(p: Principal): Extract<Principal, { kind: 'user' }> {
    if (p.kind !== 'user') throw new RampartError('E_UNAUTHENTICATED', 'sign in first', { headers: { 'WWW-Authenticate': 'Bearer' } });
    return p;
  }

  /** The caller's user record. */
  async me(p: Principal): Promise<RecordData> {
    return this.publicUser(await this.d.records.get(USERS, this.requireUser(p).id));
  }

  private async checkCurrentPassword(userId: string, password: unknown, meta: ClientMeta): Promise<RecordData> {
    const user = await this.d.records.get(USERS, userId);
    if (typeof password !== 'string') throw validationError([{ field: 'password', code: 'required', message: 'is required' }]);
    // The same throttle as login: these routes must not become a password oracle.
    await this.d.throttle.claim(this.d.throttle.keysFor(String(user.email), meta.ip));
    const ok = typeof user.password_hash === 'string' && (await this.d.hasher.verify(user.password_hash, password)).ok;
    if (!ok) throw new RampartError('E_INVALID_CREDENTIALS', 'the current password is wrong');
    await this.d.throttle.clear(accountKey(String(user.email)));
    return user;
  }

  /** Change the password; every other session of the user ends. */
  async changePassword(p: Principal, body: unknown, meta: ClientMeta): Promise<void> {
    const u = this.requireUser(p);
    const b = (body ?? {}) as Record<string, unknown>;
    const next = checkPassword(b.new_password, 'new_password');
    await this.checkCurrentPassword(u.id, b.current_password, meta);
    await this.d.records.update(USERS, u.id, { password_hash: await this.d.hasher.hash(next) });
    await this.endSessions(u.id, 'password_changed', u.sessionId);
  }

  /** End the user's sessions (all but `keep` when given), and stop their access tokens here at once. */
  private async endSessions(userId: string, reason: string, keep?: string): Promise<void> {
    await this.d.sessions.revokeAll(userId, reason, keep);
    await this.d.revoked.refreshNow();
  }

  /** Ask to change the email: a confirmation link goes to the new address. */
  async requestEmailChange(p: Principal, body: unknown, meta: ClientMeta): Promise<void> {
    const u = this.requireUser(p);
    const b = (body ?? {}) as Record<string, unknown>;
    const email = normalizeEmail(b.new_email, 'new_email');
    const user = await this.checkCurrentPassword(u.id, b.password, meta);
    // An address that is taken gets no mail, and the answer is the same (no enumeration).
    if (email === user.email || (await this.findByEmail(email))) return;
    const token = await this.d.oneTime.issue('change_email', u.id, TTL.change_email, { email });
    await this.d.sendMail(accountMail('change_email', email, `${this.d.linkBase()}/confirm-email?token=${token}`));
  }

  /** Confirm an email change with the mailed token. */
  async confirmEmailChange(body: unknown): Promise<RecordData> {
    const used = await this.d.oneTime.consume('change_email', (body as { token?: string } | null)?.token ?? '');
    if (!used) throw new RampartError('E_INVALID_TOKEN', 'the link is not valid, was already used or has expired');
    const email = (used.data as { email: string }).email;
    const before = await this.d.records.get(USERS, used.userId);
    const user = await this.d.records.update(USERS, used.userId, { email, email_verified: true });
    await this.d.sendMail(accountMail('email_changed', String(before.email), email));
    return this.publicUser(user);
  }

  private async sendVerification(user: RecordData): Promise<void> {
    const token = await this.d.oneTime.issue('verify_email', user.id, TTL.verify_email);
    await this.d.sendMail(accountMail('verify_email', String(user.email), `${this.d.linkBase()}/verify-email?token=${token}`));
  }

  /** Send (again) a verification mail; the same work and answer whether or not the address exists. */
  async requestVerification(body: unknown): Promise<void> {
    await this.d.requestLink('verify_email', normalizeEmail((body as { email?: unknown } | null)?.email));
  }

  /**
   * Run by the account-link job: issue the link and mail it, when the account exists (and, for
   * verification, is not verified yet). Returns what it did, for the job's result.
   */
  async sendLink(kind: LinkKind, email: string, send: (mail: Mail) => Promise<void>): Promise<string> {
    const user = await this.findByEmail(email);
    if (!user) return 'no account';
    if (kind === 'verify_email') {
      if (user.email_verified === true) return 'already verified';
      const token = await this.d.oneTime.issue('verify_email', user.id, TTL.verify_email);
      await send(accountMail('verify_email', email, `${this.d.linkBase()}/verify-email?token=${token}`));
    } else {
      const token = await this.d.oneTime.issue('reset_password', user.id, TTL.reset_password);
      await send(accountMail('reset_password', email, `${this.d.linkBase()}/reset-password?token=${token}`));
    }
    return 'sent';
  }

  /** Mark the email verified with the mailed token. */
  async verifyEmail(body: unknown): Promise<void> {
    const used = await this.d.oneTime.consume('verify_email', (body as { token?: string } | null)?.token ?? '');
    if (!used) throw new RampartError('E_INVALID_TOKEN', 'the link is not valid, was already used or has expired');
    await this.d.records.update(USERS, used.userId, { email_verified: true });
  }

  /** Send a password reset link; the same work and answer whether or not the address exists. */
  async requestPasswordReset(body: unknown): Promise<void> {
    await this.d.requestLink('reset_password', normalizeEmail((body as { email?: unknown } | null)?.email));
  }

  /**
   * Set a new password with the mailed token. It proves the mailbox, so it also verifies the
   * email, ends every session and lifts the login throttle of the account.
   */
  async resetPassword(body: unknown): Promise<void> {
    const b = (body ?? {}) as Record<string, unknown>;
    const password = checkPassword(b.password);
    const used = await this.d.oneTime.consume('reset_password', typeof b.token === 'string' ? b.token : '');
    if (!used) throw new RampartError('E_INVALID_TOKEN', 'the link is not valid, was already used or has expired');
    const user = await this.d.records.update(USERS, used.userId, {
      password_hash: await this.d.hasher.hash(password),
      email_verified: true,
    });
    await this.d.throttle.clear(accountKey(String(user.email)));
    await this.endSessions(user.id, 'password_reset');
  }

  /** Delete the caller's account (soft: restorable by an admin until the retention purge). */
  async deleteAccount(p: Principal, body: unknown, meta: ClientMeta): Promise<void> {
    const u = this.requireUser(p);
    await this.checkCurrentPassword(u.id, (body as { password?: unknown } | null)?.password, meta);
    await this.d.records.delete(USERS, u.id);
    await this.endSessions(u.id, 'account_deleted');
    this.d.log.info({ user_id: u.id }, 'account deleted (purged after the retention period)');
  }

  /** Purge accounts deleted longer ago than the retention period; returns how many. */
  async purgeExpired(): Promise<number> {
    const cutoff = new Date(this.d.clock.now() - this.d.config.accountRetentionDays * 86_400_000).toISOString();
    const { items } = await this.d.records.list(USERS, {
      deleted: 'only',
      filter: `deleted_at < ${JSON.stringify(cutoff)}`,
      limit: 100,
      fields: 'id',
    });
    for (const { id } of items) {
      await this.d.records.purge(USERS, id);
      await this.d.storage.transaction(async (db) => {
        for (const t of ['_rampart_identities', '_rampart_one_time_tokens', '_rampart_sessions']) {
          await db.deleteFrom(t).where('user_id', '=', id).execute();
        }
      });
    }
    if (items.length > 0) this.d.log.info({ purged: items.length }, 'purged deleted accounts past retention');
    return items.length;
  }

  /** Create (or promote) an admin with a password: `rampart admin create`. */
  async createAdmin(rawEmail: string, password: string): Promise<{ user: RecordData; created: boolean }> {
    const email = normalizeEmail(rawEmail);
    checkPassword(password);
    const hash = await this.d.hasher.hash(password);
    const existing = await this.findByEmail(email);
    if (existing) {
      const user = await this.d.records.update(USERS, existing.id, {
        role: 'admin',
        password_hash: hash,
        email_verified: true,
        disabled: false,
      });
      return { user: this.publicUser(user), created: false };
    }
    const user = await this.d.records.create(USERS, { email, password_hash: hash, role: 'admin', email_verified: true });
    return { user: this.publicUser(user), created: true };
  }
}
