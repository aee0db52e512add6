/**
 * Accounts and the session: sign up, log in (password, or an OAuth/OIDC provider through the
 * server's redirect flow), log out. The tokens live in the configured store. The access token is
 * refreshed shortly before it expires — one refresh at a time, shared by every call that needs a
 * token meanwhile — and again once if the server refuses it. A refresh the server refuses (the
 * refresh token was reused, the session was revoked, the account disabled) ends the session
 * here too: listeners hear `signed-out` with the reason.
 */

import type { Problem } from './errors.js';
import { ApiError, SignedOutError } from './errors.js';
import type { TokenSource, Transport } from './http.js';
import type { KeyValueStore } from './storage.js';

/** The signed-in user, as the server returns it. */
export type User = { id: string; email: string; role: string; email_verified?: boolean } & Record<string, unknown>;

export interface Session {
  user: User;
  accessToken: string;
  refreshToken: string;
  sessionId: string;
  /** When the access token expires, epoch ms (by this device's clock). */
  expiresAt: number;
}

export type AuthEvent =
  | { type: 'signed-in'; session: Session }
  | { type: 'refreshed'; session: Session }
  | { type: 'signed-out'; reason: 'logout' | 'session-ended' | 'refresh-token-reused'; problem?: Problem };

interface TokenAnswer {
  user: User;
  access_token: string;
  refresh_token: string;
  expires_in: number;
  session_id: string;
}

const KEY = 'session';

export class Auth implements TokenSource {
  private session?: Session;
  private loaded?: Promise<void>;
  private refreshing?: Promise<Session>;
  private readonly listeners = new Set<(e: AuthEvent) => void>();
  /** Refreshes performed (the refresh requests this client sent). */
  refreshes = 0;

  constructor(
    private readonly http: Transport,
    private readonly store: KeyValueStore,
    private readonly o: { refreshMarginMs?: number; now?: () => number } = {},
  ) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  /** Read a stored session once. */
  private load(): Promise<void> {
    this.loaded ??= (async () => {
      const text = await this.store.get(KEY);
      if (!text) return;
      try {
        this.session = JSON.parse(text) as Session;
      } catch {
        await this.store.delete(KEY);
      }
    })();
    return this.loaded;
  }

  /** Listen to sign-in, refresh and sign-out; returns the way to stop. */
  onChange(fn: (e: AuthEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(e: AuthEvent): void {
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch {}
    }
  }

  /** The current session (after reading the store), or undefined. */
  async current(): Promise<Session | undefined> {
    await this.load();
    return this.session;
  }

  private async adopt(a: TokenAnswer, kind: 'signed-in' | 'refreshed'): Promise<Session> {
    const session: Session = {
      user: a.user,
      accessToken: a.access_token,
      refreshToken: a.refresh_token,
      sessionId: a.session_id,
      expiresAt: this.now() + a.expires_in * 1000,
    };
    this.session = session;
    await this.store.set(KEY, JSON.stringify(session));
    this.emit(kind === 'signed-in' ? { type: 'signed-in', session } : { type: 'refreshed', session });
    return session;
  }

  /** Create an account (and sign in). `fields` are the app's own fields of `users`. */
  async signUp(email: string, password: string, fields: Record<string, unknown> = {}): Promise<Session> {
    const r = await this.http.request<TokenAnswer>({
      method: 'POST',
      path: '/auth/signup',
      body: { ...fields, email, password },
      auth: false,
    });
    return this.adopt(r.body, 'signed-in');
  }

  async logIn(email: string, password: string): Promise<Session> {
    const r = await this.http.request<TokenAnswer>({ method: 'POST', path: '/auth/login', body: { email, password }, auth: false });
    return this.adopt(r.body, 'signed-in');
  }

  /**
   * Where to send the browser to sign in with a provider (`github`, `google`, an OIDC issuer the
   * server knows). The provider returns to the server, which redirects to `redirectTo` with
   * `?code=…`; pass that code to `completeOAuth`.
   */
  oauthUrl(provider: string, redirectTo: string): string {
    const u = new URL(`${this.http.base}/auth/oauth/${encodeURIComponent(provider)}/start`);
    u.searchParams.set('redirect_to', redirectTo);
    return u.toString();
  }

  /** Trade the code the server's redirect carried for a session. */
  async completeOAuth(code: string): Promise<Session> {
    const r = await this.http.request<TokenAnswer>({ method: 'POST', path: '/auth/oauth/exchange', body: { code }, auth: false });
    return this.adopt(r.body, 'signed-in');
  }

  /** End the session on the server (when reachable) and here. */
  async logOut(): Promise<void> {
    await this.load();
    if (this.session) {
      await this.http.request({ method: 'POST', path: '/auth/logout', idempotencyKey: false }).catch(() => {});
    }
    await this.clear({ type: 'signed-out', reason: 'logout' });
  }

  private async clear(e: AuthEvent): Promise<void> {
    const had = this.session !== undefined;
    this.session = undefined;
    await this.store.delete(KEY);
    if (had) this.emit(e);
  }

  /** Refresh now: one refresh in flight at a time, whoever asks. */
  refresh(): Promise<Session> {
    this.refreshing ??= (async () => {
      await this.load();
      const s = this.session;
      if (!s) throw new SignedOutError();
      try {
        this.refreshes++;
        const r = await this.http.request<TokenAnswer>({
          method: 'POST',
          path: '/auth/refresh',
          body: { refresh_token: s.refreshToken },
          auth: false,
          // Refresh tokens are single use: a refresh is not replayed by an idempotency key (the
          // server ignores it there), and a lost answer is covered by the server's grace window.
          idempotencyKey: false,
        });
        return await this.adopt(r.body, 'refreshed');
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
          const reused = /already used/.test(err.problem.detail ?? '');
          await this.clear({ type: 'signed-out', reason: reused ? 'refresh-token-reused' : 'session-ended', problem: err.problem });
          throw new SignedOutError(err.message);
        }
        throw err;
      }
    })().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  // --- TokenSource ----------------------------------------------------------------------------

  async token(): Promise<string | undefined> {
    if (this.refreshing) return (await this.refreshing).accessToken;
    await this.load();
    const s = this.session;
    if (!s) return undefined;
    if (s.expiresAt - this.now() > (this.o.refreshMarginMs ?? 60_000)) return s.accessToken;
    return (await this.refresh()).accessToken;
  }

  async rejected(used: string, problem: Problem): Promise<boolean> {
    if (problem.code === 'E_SESSION_REVOKED') {
      await this.clear({ type: 'signed-out', reason: 'session-ended', problem });
      return false;
    }
    if (problem.code !== 'E_INVALID_TOKEN' && problem.code !== 'E_UNAUTHENTICATED') return false;
    // Someone else refreshed meanwhile: retry with the new token.
    if (this.session && this.session.accessToken !== used) return true;
    try {
      await this.refresh();
      return true;
    } catch {
      return false;
    }
  }
}
