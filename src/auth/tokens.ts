/**
 * Access tokens: short-lived JWTs signed with the active Ed25519 key. Signing is node:crypto's
 * one-shot Ed25519 over the compact JWS (RFC 7515 §3.1; ~30 µs, synchronous) rather than jose's
 * WebCrypto path (~90 µs and a thread-pool hop): it runs on every sign-in and refresh. Everything
 * that checks tokens uses jose (a test verifies what we sign with it). Verification pins the
 * algorithm, takes keys only from our own key set by `kid` (never from `jku`, `x5u` or `jwk`
 * headers), and checks `typ`, `iss`, `aud`, `exp`, `nbf`, `iat`, `sub` and `jti`. Verified tokens
 * are remembered until they expire (a signature check costs ~0.3 ms; the cache makes repeat
 * requests cheap), keyed by the whole token, so only a byte-identical token hits.
 */
import { randomUUID, sign } from 'node:crypto';
import { errors as joseErrors, jwtVerify } from 'jose';
import type { Clock } from '../core/clock.js';
import type { AuthConfig } from '../core/config.js';
import { RampartError } from '../core/errors.js';
import { type SigningKeys, TOKEN_ALG } from './keys.js';

const TYP = 'at+jwt';
const b64 = (s: string) => Buffer.from(s).toString('base64url');
const CACHE_MAX = 10_000;
/** Tolerated clock difference between nodes, seconds. */
const SKEW_S = 5;

/** What an access token says about its bearer. */
export interface AccessClaims {
  /** User id. */
  sub: string;
  /** Session id. */
  sid: string;
  role: string;
  email: string;
  email_verified: boolean;
  /** Expiry, seconds since the epoch. */
  exp: number;
}

const invalid = (why: string) =>
  new RampartError('E_INVALID_TOKEN', `the access token is not valid: ${why}`, {
    headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
  });

export class AccessTokens {
  private readonly cache = new Map<string, AccessClaims>();

  constructor(
    private readonly keys: SigningKeys,
    private readonly config: Pick<AuthConfig, 'issuer' | 'audience' | 'accessTtlS'>,
    private readonly clock: Clock,
  ) {}

  /** Sign an access token; returns it with its lifetime in seconds. */
  async sign(claims: Omit<AccessClaims, 'exp'>): Promise<{ token: string; expiresIn: number }> {
    const { kid, key } = this.keys.signing();
    const now = Math.floor(this.clock.now() / 1000);
    const header = b64(JSON.stringify({ alg: TOKEN_ALG, kid, typ: TYP }));
    const payload = b64(
      JSON.stringify({
        sid: claims.sid,
        role: claims.role,
        email: claims.email,
        email_verified: claims.email_verified,
        sub: claims.sub,
        iss: this.config.issuer,
        aud: this.config.audience,
        iat: now,
        exp: now + this.config.accessTtlS,
        jti: randomUUID(),
      }),
    );
    const input = `${header}.${payload}`;
    const signature = sign(null, Buffer.from(input), key).toString('base64url');
    return { token: `${input}.${signature}`, expiresIn: this.config.accessTtlS };
  }

  /** Verify a bearer token; throws E_INVALID_TOKEN saying why (without echoing the token). */
  async verify(token: string): Promise<AccessClaims> {
    const nowS = this.clock.now() / 1000;
    const hit = this.cache.get(token);
    if (hit) {
      if (hit.exp > nowS - SKEW_S) return hit;
      this.cache.delete(token);
      throw invalid('it has expired');
    }
    if (token.length > 4096 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) throw invalid('malformed');
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(
        token,
        async (header) => {
          if (header.alg !== TOKEN_ALG) throw invalid('algorithm not allowed');
          if (header.jku !== undefined || header.x5u !== undefined || header.jwk !== undefined || header.crit !== undefined) {
            throw invalid('key headers are not accepted');
          }
          const key = typeof header.kid === 'string' && header.kid.length <= 64 ? await this.keys.verifying(header.kid) : undefined;
          if (!key) throw invalid('unknown signing key');
          return key;
        },
        {
          algorithms: [TOKEN_ALG],
          issuer: this.config.issuer,
          audience: this.config.audience,
          typ: TYP,
          requiredClaims: ['exp', 'iat', 'sub', 'jti'],
          currentDate: new Date(this.clock.now()),
          clockTolerance: SKEW_S,
        },
      ));
    } catch (err) {
      if (err instanceof RampartError) throw err;
      if (err instanceof joseErrors.JWTExpired) throw invalid('it has expired');
      if (err instanceof joseErrors.JOSEError)
        throw invalid(err.code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' ? 'bad signature' : 'rejected');
      throw invalid('malformed');
    }
    const p = payload;
    if (typeof p.iat !== 'number' || p.iat > nowS + SKEW_S) throw invalid('issued in the future');
    if (typeof p.sub !== 'string' || typeof p.sid !== 'string' || typeof p.role !== 'string' || typeof p.exp !== 'number') {
      throw invalid('missing claims');
    }
    const claims: AccessClaims = {
      sub: p.sub,
      sid: p.sid,
      role: p.role,
      email: typeof p.email === 'string' ? p.email : '',
      email_verified: p.email_verified === true,
      exp: p.exp,
    };
    if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(token, claims);
    return claims;
  }
}
