/**
 * Who is asking. Every records call runs as a principal: app code as `SYSTEM` (no rules, every
 * field), HTTP requests as the caller their token names, or `ANONYMOUS`.
 */
import { RampartError } from '../core/errors.js';
import type { RuleAuth } from './rules-sql.js';

/** The caller of a records operation. */
export type Principal =
  | { kind: 'system' }
  | { kind: 'anonymous' }
  | {
      kind: 'user';
      /** The user's id. */
      id: string;
      /** `admin`, `user` or an app-defined role. */
      role: string;
      /** The user's email address. */
      email: string;
      /** The email address has been confirmed. */
      verified: boolean;
      /** The session the access token belongs to. */
      sessionId?: string;
    };

/** App code: rules do not apply and hidden fields are visible. */
export const SYSTEM: Principal = Object.freeze({ kind: 'system' });
/** A caller without a valid token. */
export const ANONYMOUS: Principal = Object.freeze({ kind: 'anonymous' });

/**
 * How much a principal may do: `system` everything; `admin` passes every rule and may write
 * read-only fields but never sees hidden ones; `client` is bound by rules and field protection.
 */
export type Access = 'system' | 'admin' | 'client';

export function accessOf(p: Principal): Access {
  if (p.kind === 'system') return 'system';
  return p.kind === 'user' && p.role === 'admin' ? 'admin' : 'client';
}

/** The identity values rules see. */
export function ruleAuthOf(p: Principal): RuleAuth {
  return p.kind === 'user'
    ? { id: p.id, role: p.role, email: p.email, verified: p.verified }
    : { id: '', role: '', email: '', verified: false };
}

/** 401 for anonymous callers (signing in may help), 403 for signed-in ones. */
export function denied(p: Principal, what: string): RampartError {
  return p.kind === 'anonymous'
    ? new RampartError('E_UNAUTHENTICATED', `sign in to ${what}`, { headers: { 'WWW-Authenticate': 'Bearer' } })
    : new RampartError('E_FORBIDDEN', `you may not ${what}`);
}
