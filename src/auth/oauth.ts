/**
 * Sign-in with OAuth 2.0 / OpenID Connect providers (openid-client): the authorization code
 * flow with PKCE, `state` and `nonce`, and ID token validation (signature, issuer, audience,
 * expiry, nonce). The flow's secrets wait in the database (any node can take the callback).
 *
 *   app → GET /auth/oauth/{p}/start?redirect_to=<app url>  → 302 to the provider
 *   provider → GET|POST /auth/oauth/{p}/callback            → 302 to <app url>?code=<login code>
 *   app → POST /auth/oauth/exchange { code }                → tokens (the code works once, for 2 minutes)
 *
 * Tokens never travel in a URL. Every call to a provider goes through a timeout and a circuit
 * breaker: an unreachable provider makes its own login routes answer 503, nothing else.
 *
 * Accounts: a known (provider, subject) signs in its user; otherwise an email the provider
 * says is verified links to the account with that email or creates one. An unverified email
 * that belongs to an existing account is refused (that would hand the account to whoever
 * controls the provider account).
 */
import { importPKCS8, SignJWT } from 'jose';
import * as oidc from 'openid-client';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { AuthConfig, OAuthProviderConfig } from '../core/config.js';
import { RampartError } from '../core/errors.js';
import type { RecordData } from '../records/hooks.js';
import type { RecordsService } from '../records/service.js';
import type { HttpDependency, OutboundHttp } from '../resilience/http-client.js';
import { OutboundError } from '../resilience/policy.js';
import type { Storage } from '../storage/types.js';
import type { AccountService, ClientMeta, TokenResponse } from './accounts.js';
import type { OneTimeTokens } from './one-time-tokens.js';
import { tokenHash } from './sessions.js';
import { USERS } from './users.js';

const FLOWS = '_rampart_oauth_flows';
const IDENTITIES = '_rampart_identities';
const FLOW_TTL_MS = 10 * 60_000;
const LOGIN_CODE_TTL_MS = 2 * 60_000;

/** The differences of well-known providers. */
const PRESETS: Record<NonNullable<OAuthProviderConfig['preset']>, { issuer?: string; scopes: string[] }> = {
  google: { issuer: 'https://accounts.google.com', scopes: ['openid', 'email', 'profile'] },
  // Apple posts the callback (response_mode=form_post) and signs no userinfo endpoint; the client secret is a JWT.
  apple: { issuer: 'https://appleid.apple.com', scopes: ['openid', 'email', 'name'] },
  // One tenant per configuration, named by `issuer` (https://login.microsoftonline.com/<tenant>/v2.0):
  // the multi-tenant endpoint has no fixed issuer to check ID tokens against.
  microsoft: { scopes: ['openid', 'email', 'profile'] },
  // GitHub speaks OAuth 2.0, not OpenID Connect: no ID token; the verified primary email comes from its API.
  github: { scopes: ['read:user', 'user:email'] },
};
/** GitHub's endpoints: github.com, or a GitHub Enterprise Server at `githubUrl`. */
function githubEndpoints(base: string | undefined) {
  const root = base?.replace(/\/+$/, '');
  const web = root ?? 'https://github.com';
  return {
    issuer: web,
    authorization_endpoint: `${web}/login/oauth/authorize`,
    token_endpoint: `${web}/login/oauth/access_token`,
    api: root ? `${root}/api/v3` : 'https://api.github.com',
  };
}

const isLoopback = (url: string) => ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(url).hostname);

/** Who the provider says the user is. */
interface ProviderIdentity {
  subject: string;
  email?: string;
  emailVerified: boolean;
}

interface Provider {
  name: string;
  config: OAuthProviderConfig;
  /** Its HTTP calls: a timeout on each, retries of safe ones, the breaker (`oauth:<name>`). */
  http: HttpDependency;
  discovered?: oidc.Configuration;
}

const unavailable = (name: string, err: unknown) =>
  new RampartError('E_PROVIDER_UNAVAILABLE', `sign-in with ${name} is unavailable right now; try again shortly or use another method`, {
    headers: { 'Retry-After': '30' },
    cause: err,
  });

export interface OAuthDeps {
  storage: Storage;
  records: RecordsService;
  accounts: AccountService;
  oneTime: OneTimeTokens;
  config: AuthConfig;
  clock: Clock;
  log: Logger;
  /** Where the providers' HTTP dependencies are registered. */
  outbound: OutboundHttp;
  /** The server's public URL (callbacks are built on it). */
  publicUrl(): string;
}

export class OAuthService {
  private readonly providers = new Map<string, Provider>();

  constructor(private readonly d: OAuthDeps) {
    for (const [name, config] of Object.entries(d.config.oauthProviders)) {
      const http = d.outbound.add(`oauth:${name}`, {
        timeoutMs: config.timeoutMs ?? 5000,
        retries: 1,
        breaker: { failures: 5 },
        halfOpenAfterMs: 30_000,
        concurrency: 20,
        queue: 100,
      });
      this.providers.set(name, { name, config, http });
    }
  }

  /** Configured provider names. */
  names(): string[] {
    return [...this.providers.keys()];
  }

  private provider(name: string): Provider {
    const p = this.providers.get(name);
    if (!p) throw new RampartError('E_ROUTE_NOT_FOUND', `no sign-in provider ${JSON.stringify(name.slice(0, 40))} is configured`);
    return p;
  }

  callbackUrl(name: string): string {
    return `${this.d.publicUrl()}/api/v1/auth/oauth/${name}/callback`;
  }

  /** Provider calls, each HTTP request through the provider's dependency policy. */
  private async call<T>(p: Provider, fn: (fetchImpl: oidc.CustomFetch) => Promise<T>): Promise<T> {
    try {
      return await fn(async (url, options) => {
        const res = await p.http.fetch(url, options as never);
        // openid-client reads a fetch-API Response: hand it the platform's own class.
        return new Response(res.body as ReadableStream | null, {
          status: res.status,
          statusText: res.statusText,
          headers: [...res.headers],
        });
      });
    } catch (caught) {
      if (caught instanceof RampartError) throw caught;
      const err =
        caught instanceof OutboundError
          ? caught
          : (caught as { cause?: unknown })?.cause instanceof OutboundError
            ? (caught as { cause: OutboundError }).cause
            : caught;
      if (err instanceof OutboundError || providerDown(err)) {
        this.d.log.warn(
          err instanceof OutboundError
            ? { provider: p.name, reason: err.reason, err: (err.cause as Error | undefined)?.message }
            : { provider: p.name, reason: 'error', err: (err as Error).message },
          'OAuth provider unavailable',
        );
        throw unavailable(p.name, err);
      }
      // The provider answered and refused, or its answer failed validation: this sign-in fails, the provider is fine.
      this.d.log.warn({ provider: p.name, err: (err as Error).message }, 'OAuth sign-in refused');
      throw new RampartError('E_INVALID_TOKEN', `${p.name} did not complete the sign-in (${(err as Error).message.slice(0, 120)})`);
    }
  }

  private async clientSecret(p: Provider): Promise<string | undefined> {
    const apple = p.config.apple;
    if (!apple) return p.config.clientSecret;
    // Apple's client secret is a short-lived ES256 JWT signed with the team's key.
    const now = Math.floor(this.d.clock.now() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: apple.keyId })
      .setIssuer(apple.teamId)
      .setSubject(p.config.clientId)
      .setAudience('https://appleid.apple.com')
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(await importPKCS8(apple.privateKey, 'ES256'));
  }

  private async configuration(p: Provider): Promise<oidc.Configuration> {
    if (p.config.preset === 'github') {
      const { api: _, ...endpoints } = githubEndpoints(p.config.githubUrl);
      const cfg = new oidc.Configuration(endpoints, p.config.clientId, p.config.clientSecret);
      if (isLoopback(endpoints.issuer)) oidc.allowInsecureRequests(cfg);
      return cfg;
    }
    if (p.discovered && !p.config.apple) return p.discovered;
    const issuer = new URL(p.config.issuer ?? (PRESETS[p.config.preset as 'google'].issuer as string));
    const loopback = isLoopback(issuer.href);
    const secret = await this.clientSecret(p);
    const cfg = await this.call(p, (customFetch) =>
      oidc.discovery(issuer, p.config.clientId, secret, undefined, {
        [oidc.customFetch]: customFetch,
        // Plain HTTP only to a provider on this machine (development, tests).
        execute: loopback ? [oidc.allowInsecureRequests] : [],
      }),
    );
    p.discovered = cfg;
    return cfg;
  }

  /** Begin a sign-in: remember the flow's secrets and return the provider's authorization URL. */
  async start(name: string, redirectTo: string | undefined): Promise<string> {
    const p = this.provider(name);
    const target = this.checkRedirect(redirectTo);
    const cfg = await this.configuration(p);
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    await this.d.storage.db
      .insertInto(FLOWS)
      .values({
        state_hash: tokenHash(state),
        provider: name,
        code_verifier: verifier,
        nonce,
        redirect_to: target,
        expires_at: this.d.clock.now() + FLOW_TTL_MS,
      })
      .execute();
    const scopes = p.config.scopes ?? (p.config.preset ? PRESETS[p.config.preset].scopes : ['openid', 'email', 'profile']);
    const params: Record<string, string> = {
      redirect_uri: this.callbackUrl(name),
      scope: scopes.join(' '),
      state,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    };
    if (p.config.preset !== 'github') params.nonce = nonce;
    // Apple always posts the callback; any provider may be asked to (the code then stays out of URLs and logs).
    if (p.config.preset === 'apple' || p.config.formPost) params.response_mode = 'form_post';
    return oidc.buildAuthorizationUrl(cfg, params).href;
  }

  /** `redirect_to` must start with a configured prefix (or be on this server): no open redirects. */
  private checkRedirect(raw: string | undefined): string {
    if (!raw) throw new RampartError('E_INVALID_QUERY', 'redirect_to is required: where to send the user after signing in');
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new RampartError('E_INVALID_QUERY', 'redirect_to must be an absolute URL');
    }
    const allowed = this.d.config.redirectUrls.length > 0 ? this.d.config.redirectUrls : [`${this.d.publicUrl()}/`];
    const ok = !url.username && !url.password && allowed.some((prefix) => withinPrefix(url.href, new URL(prefix).href));
    if (!ok) throw new RampartError('E_INVALID_QUERY', 'redirect_to is not an allowed URL (see RAMPART_AUTH_REDIRECT_URLS)');
    return url.href;
  }

  /**
   * The provider sent the user back. Returns where to send them: the app's URL with a one-time
   * login code, or with `error=` when the sign-in failed for a reason the user can act on.
   */
  async callback(name: string, params: URLSearchParams): Promise<string> {
    const p = this.provider(name);
    const state = params.get('state') ?? '';
    const flow = await this.d.storage.db
      .deleteFrom(FLOWS)
      .where('state_hash', '=', tokenHash(state))
      .where('provider', '=', name)
      .returningAll()
      .executeTakeFirst();
    if (!flow || Number(flow.expires_at) < this.d.clock.now()) {
      throw new RampartError('E_INVALID_TOKEN', 'this sign-in is unknown or expired; start again');
    }
    const back = (query: Record<string, string>) => {
      const url = new URL(flow.redirect_to);
      for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
      return url.href;
    };
    if (params.get('error')) return back({ error: params.get('error')?.slice(0, 64) ?? 'access_denied' });
    const cfg = await this.configuration(p);
    const current = new URL(this.callbackUrl(name));
    for (const [k, v] of params) current.searchParams.set(k, v);
    const identity = await this.identify(p, cfg, current, flow as { code_verifier: string; nonce: string }, state);
    let user: RecordData;
    try {
      user = await this.userFor(name, identity);
    } catch (err) {
      if (err instanceof RampartError && (err.code === 'E_CONFLICT' || err.code === 'E_ACCOUNT_DISABLED')) {
        return back({ error: err.code === 'E_CONFLICT' ? 'account_exists' : 'account_disabled' });
      }
      throw err;
    }
    const code = await this.d.oneTime.issue('oauth_login', user.id, LOGIN_CODE_TTL_MS, { provider: name });
    return back({ code });
  }

  private async identify(
    p: Provider,
    cfg: oidc.Configuration,
    current: URL,
    flow: { code_verifier: string; nonce: string },
    state: string,
  ): Promise<ProviderIdentity> {
    const github = p.config.preset === 'github';
    const tokens = await this.call(p, (customFetch) => {
      cfg[oidc.customFetch] = customFetch;
      return oidc.authorizationCodeGrant(cfg, current, {
        pkceCodeVerifier: flow.code_verifier,
        expectedState: state,
        expectedNonce: github ? undefined : flow.nonce,
        idTokenExpected: !github,
      });
    });
    if (!github) {
      const idToken = tokens.claims();
      if (!idToken) throw new RampartError('E_INVALID_TOKEN', 'the provider returned no ID token');
      let claims: Record<string, unknown> = idToken;
      // Many providers put profile claims in the userinfo answer only (OIDC Core 5.4).
      if (idToken.email === undefined && cfg.serverMetadata().userinfo_endpoint) {
        claims = await this.call(p, (customFetch) => {
          cfg[oidc.customFetch] = customFetch;
          return oidc.fetchUserInfo(cfg, tokens.access_token, idToken.sub);
        });
      }
      const email = typeof claims.email === 'string' ? claims.email.toLowerCase() : undefined;
      // Apple sends email_verified as the string "true".
      const verified = claims.email_verified === true || claims.email_verified === 'true';
      return { subject: idToken.sub, email, emailVerified: verified };
    }
    const api = async (path: string) =>
      this.call(p, async (customFetch) => {
        const res = await customFetch(`${githubEndpoints(p.config.githubUrl).api}${path}`, {
          headers: { authorization: `Bearer ${tokens.access_token}`, accept: 'application/vnd.github+json', 'user-agent': 'rampart' },
        } as never);
        if (!res.ok) throw new Error(`GitHub API ${path} answered ${res.status}`);
        return res.json() as Promise<unknown>;
      });
    const me = (await api('/user')) as { id: number };
    const emails = (await api('/user/emails')) as Array<{ email: string; primary: boolean; verified: boolean }>;
    const primary = emails.find((e) => e.primary && e.verified) ?? emails.find((e) => e.verified);
    return { subject: String(me.id), email: primary?.email.toLowerCase(), emailVerified: !!primary };
  }

  /** The user an identity signs in: linked before, linked now by verified email, or created. */
  private async userFor(provider: string, id: ProviderIdentity): Promise<RecordData> {
    const linked = await this.d.storage.db
      .selectFrom(IDENTITIES)
      .select('user_id')
      .where('provider', '=', provider)
      .where('subject', '=', id.subject)
      .executeTakeFirst();
    if (linked) {
      try {
        return await this.d.records.get(USERS, linked.user_id);
      } catch {
        throw new RampartError('E_ACCOUNT_DISABLED', 'the account of this sign-in was deleted');
      }
    }
    if (!id.email) throw new RampartError('E_CONFLICT', 'the provider shared no email address');
    const existing = await this.d.accounts.findByEmail(id.email);
    if (existing && !id.emailVerified) throw new RampartError('E_CONFLICT', 'an account with this email exists; sign in with it first');
    const user = existing ?? (await this.d.records.create(USERS, { email: id.email, email_verified: id.emailVerified, role: 'user' }));
    if (existing && existing.email_verified !== true) await this.d.records.update(USERS, existing.id, { email_verified: true });
    await this.d.storage.db
      .insertInto(IDENTITIES)
      .values({ provider, subject: id.subject, user_id: user.id, email: id.email, created_at: this.d.clock.now() })
      .onConflict((oc) => oc.columns(['provider', 'subject']).doNothing())
      .execute();
    this.d.log.info(
      { provider, user_id: user.id, created: !existing },
      existing ? 'OAuth identity linked by verified email' : 'account created by OAuth sign-in',
    );
    return user;
  }

  /** Trade a login code for a session. */
  async exchange(body: unknown, meta: ClientMeta): Promise<TokenResponse> {
    const code = (body as { code?: unknown } | null)?.code;
    const used = await this.d.oneTime.consume('oauth_login', typeof code === 'string' ? code : '');
    if (!used) throw new RampartError('E_INVALID_TOKEN', 'the login code is not valid, was already used or has expired');
    const user = await this.d.records.get(USERS, used.userId);
    return this.d.accounts.startSession(user, `oauth:${(used.data as { provider: string }).provider}`, meta);
  }

  /** Drop abandoned flows. */
  async cleanup(): Promise<void> {
    await this.d.storage.db.deleteFrom(FLOWS).where('expires_at', '<', this.d.clock.now()).execute();
  }
}

/**
 * `href` starts with `prefix` at a boundary: `https://app.example/auth` admits
 * `https://app.example/auth/done` but not `https://app.example/authority` or another host.
 */
export function withinPrefix(href: string, prefix: string): boolean {
  if (!href.startsWith(prefix)) return false;
  return prefix.endsWith('/') || href.length === prefix.length || '/?#'.includes(href[prefix.length] as string);
}

/**
 * Whether an error means the provider is failing (unreachable, timing out, 5xx, not speaking
 * OAuth), as opposed to refusing this one sign-in (an OAuth error answer, a check that failed).
 */
function providerDown(err: unknown): boolean {
  if (err instanceof oidc.ResponseBodyError) return err.status >= 500;
  if (err instanceof oidc.AuthorizationResponseError || err instanceof oidc.WWWAuthenticateChallengeError) return false;
  if (err instanceof oidc.ClientError) return /NOT_CONFORM|NOT_JSON|INVALID_RESPONSE|REQUEST_FAILED/.test(err.code ?? '');
  return true;
}
