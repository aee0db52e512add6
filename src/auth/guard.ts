/**
 * Who a request is from: a valid `Authorization: Bearer <access token>` names a user, no header
 * means anonymous, and anything else is refused with 401 (a broken token is never quietly
 * treated as anonymous). The answer is computed once per request.
 */
import type { FastifyRequest } from 'fastify';
import { RampartError } from '../core/errors.js';
import { ANONYMOUS, accessOf, denied, type Principal } from '../records/access.js';
import type { RevokedSessions } from './revocations.js';
import type { AccessTokens } from './tokens.js';

const SEEN = Symbol('principal');
type WithPrincipal = FastifyRequest & { [SEEN]?: Promise<Principal> };

export type Guard = (req: FastifyRequest) => Promise<Principal>;

/** The caller of `req`, who must be an admin (or app code): otherwise 401/403 naming `what`. */
export async function requireAdmin(guard: Guard, req: FastifyRequest, what: string): Promise<Principal> {
  const p = await guard(req);
  if (accessOf(p) === 'client') throw denied(p, `${what} (admins only)`);
  return p;
}

/** The user an access token names and when the token expires (epoch ms); E_INVALID_TOKEN or E_SESSION_REVOKED otherwise. */
export async function verifyAccessToken(
  tokens: AccessTokens,
  revoked: RevokedSessions,
  token: string,
): Promise<{ principal: Principal; expiresAt: number }> {
  const claims = await tokens.verify(token);
  if (revoked.has(claims.sid)) {
    throw new RampartError('E_SESSION_REVOKED', 'the session of this token has ended', {
      headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
    });
  }
  return {
    principal: {
      kind: 'user',
      id: claims.sub,
      role: claims.role,
      email: claims.email,
      verified: claims.email_verified,
      sessionId: claims.sid,
    },
    expiresAt: claims.exp * 1000,
  };
}

/** The caller a request's guard already resolved (for its trace span), if it did. */
export function seenPrincipal(req: FastifyRequest): Promise<Principal> | undefined {
  return (req as WithPrincipal)[SEEN];
}

export function makeGuard(tokens: AccessTokens, revoked: RevokedSessions): Guard {
  const resolve = async (req: FastifyRequest): Promise<Principal> => {
    const header = req.headers.authorization;
    if (header === undefined) return ANONYMOUS;
    const m = /^Bearer ([^\s]+)$/i.exec(header);
    if (!m) {
      throw new RampartError('E_INVALID_TOKEN', 'Authorization must be "Bearer <access token>"', {
        headers: { 'WWW-Authenticate': 'Bearer error="invalid_request"' },
      });
    }
    return (await verifyAccessToken(tokens, revoked, m[1] as string)).principal;
  };
  return (req) => {
    const r = req as WithPrincipal;
    r[SEEN] ??= resolve(req);
    return r[SEEN];
  };
}
