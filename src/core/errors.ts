/**
 * The one registry of error codes. Every error a client can see has a stable code here;
 * the HTTP layer turns a RampartError into application/problem+json (RFC 9457).
 * Codes are part of the public contract: never rename one, only add.
 */
export const ERRORS = {
  E_BAD_REQUEST: { status: 400, title: 'Bad request' },
  E_INVALID_JSON: { status: 400, title: 'Malformed JSON body' },
  E_VALIDATION: { status: 400, title: 'Validation failed' },
  E_INVALID_FILTER: { status: 400, title: 'Invalid filter' },
  E_INVALID_SORT: { status: 400, title: 'Invalid sort' },
  E_INVALID_FIELDS: { status: 400, title: 'Invalid field selection' },
  E_INVALID_CURSOR: { status: 400, title: 'Invalid cursor' },
  E_INVALID_QUERY: { status: 400, title: 'Invalid query parameter' },
  E_UNAUTHENTICATED: { status: 401, title: 'Authentication required' },
  E_INVALID_TOKEN: { status: 401, title: 'Invalid or expired token' },
  E_INVALID_CREDENTIALS: { status: 401, title: 'Invalid email or password' },
  E_SESSION_REVOKED: { status: 401, title: 'Session ended' },
  E_FORBIDDEN: { status: 403, title: 'Forbidden' },
  E_ACCOUNT_DISABLED: { status: 403, title: 'Account disabled' },
  E_ROUTE_NOT_FOUND: { status: 404, title: 'Route not found' },
  E_COLLECTION_NOT_FOUND: { status: 404, title: 'Collection not found' },
  E_RECORD_NOT_FOUND: { status: 404, title: 'Record not found' },
  E_JOB_NOT_FOUND: { status: 404, title: 'Job not found' },
  E_SCHEDULE_NOT_FOUND: { status: 404, title: 'Schedule not found' },
  E_QUEUE_NOT_FOUND: { status: 404, title: 'Queue not found' },
  E_METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  E_CONFLICT: { status: 409, title: 'Conflict' },
  E_JOB_STATE: { status: 409, title: 'Job state does not allow this' },
  E_UNIQUE_VIOLATION: { status: 409, title: 'Unique constraint violated' },
  E_RELATION_RESTRICT: { status: 409, title: 'Record is still referenced' },
  E_WEBHOOK_NOT_FOUND: { status: 404, title: 'Webhook subscription not found' },
  E_POLICY_NOT_FOUND: { status: 404, title: 'App-version policy not found' },
  E_CHANNEL_NOT_FOUND: { status: 404, title: 'Channel not found' },
  E_NOTIFICATION_NOT_FOUND: { status: 404, title: 'Notification not found' },
  E_DEVICE_NOT_FOUND: { status: 404, title: 'Device not found' },
  E_INVALID_MESSAGE: { status: 400, title: 'Invalid realtime message' },
  E_TOO_MANY_SUBSCRIPTIONS: { status: 429, title: 'Too many subscriptions on this connection' },
  E_TOO_MANY_CONNECTIONS: { status: 429, title: 'Too many realtime connections' },
  E_IDEMPOTENCY_IN_PROGRESS: { status: 409, title: 'A request with this Idempotency-Key is in progress' },
  E_IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'Idempotency-Key reused for a different request' },
  E_PRECONDITION_FAILED: { status: 412, title: 'Precondition failed' },
  E_PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload too large' },
  E_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  E_UPGRADE_REQUIRED: { status: 426, title: 'App update required' },
  E_TOO_MANY_ATTEMPTS: { status: 429, title: 'Too many attempts' },
  E_RATE_LIMITED: { status: 429, title: 'Rate limit exceeded' },
  E_INTERNAL: { status: 500, title: 'Internal server error' },
  E_DB_UNAVAILABLE: { status: 503, title: 'Database unavailable' },
  E_SHUTTING_DOWN: { status: 503, title: 'Server is shutting down' },
  E_OVERLOADED: { status: 503, title: 'Server is busy' },
  E_DEPENDENCY_UNAVAILABLE: { status: 503, title: 'A service this request needs is unavailable' },
  E_RATE_LIMIT_UNAVAILABLE: { status: 503, title: 'Rate limiting unavailable' },
  E_PROVIDER_UNAVAILABLE: { status: 503, title: 'Login provider unavailable' },
  E_CONSOLE_NOT_BUILT: { status: 503, title: 'Admin console not built' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** One invalid input field, listed in validation problems. */
export interface FieldError {
  /** Field name or JSON pointer-like path (`body`, `operations/3/body/name`). */
  field: string;
  /** Machine-readable reason: `required`, `type`, `max_length`, `unknown_field`, … */
  code: string;
  /** Human-readable explanation. */
  message: string;
}

/** An error with a stable code that the HTTP layer renders as problem+json. */
export class RampartError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra members for the problem document (`errors`, `results`, …). */
  readonly extras: Record<string, unknown>;
  /** Response headers the error implies (`Retry-After`, `Allow`). */
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    detail?: string,
    options: { extras?: Record<string, unknown>; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(detail ?? ERRORS[code].title, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RampartError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.extras = options.extras ?? {};
    this.headers = options.headers ?? {};
  }
}

/** A 400 listing every invalid field. */
export function validationError(errors: FieldError[], detail = 'The request body has invalid fields.'): RampartError {
  return new RampartError('E_VALIDATION', detail, { extras: { errors } });
}

/** Node's codes for a TLS peer whose certificate is not trusted (wrong CA, self-signed, expired, another name). */
export const TLS_CERT_ERRORS = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);
