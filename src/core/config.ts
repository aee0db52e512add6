import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getHeapStatistics } from 'node:v8';
import { EVENTS_KEYS, type EventsConfig, eventsSlice } from './config-events.js';
import { type BackupConfig, backupSlice, type ChecksConfig, checksSlice, type DataKeysConfig, OPS_KEYS } from './config-ops.js';
import { bool, httpUrl, int, jsonObject, type KeySpec, list, nonEmpty, oneOf, type Parser } from './config-parsers.js';
import { type PushConfig, pushSlice, REALTIME_KEYS, type RealtimeConfig, realtimeSlice } from './config-realtime.js';

/**
 * The only module that reads the environment. Sources, later wins: defaults, the JSON config
 * file (`RAMPART_CONFIG`, keys named like the variables), environment variables, `NAME_FILE`
 * variables (a path whose contents is the value; for secrets), then explicit overrides (CLI flags).
 * Everything is validated once; the result is deeply frozen and handed out in slices.
 */

/** HTTP server settings. */
export interface HttpConfig {
  /** Interface to listen on. */
  host: string;
  /** TCP port to listen on (0 picks a free port). */
  port: number;
  /** Largest accepted request body in bytes. */
  bodyLimit: number;
  /** How long in-flight requests may take to finish on shutdown, in ms. */
  shutdownTimeoutMs: number;
  /**
   * On SIGTERM, how long the node keeps serving (readiness failing, every answer closing its
   * connection) before it stops listening, so a proxy's kept-alive connections end cleanly.
   */
  drainDelayMs: number;
  /** Per-request timeout in ms (0 disables). */
  requestTimeoutMs: number;
  /**
   * Proxies whose `X-Forwarded-For` is believed (IPs or CIDRs); empty means the socket's
   * address is the client's, so a spoofed header changes nothing.
   */
  trustProxy: string[];
  /** The URL clients reach this server at (links in mails, OAuth callbacks); derived from host and port when unset. */
  publicUrl: string | undefined;
  /** Browser origins allowed to call the API (CORS); `*` for any; empty for none but the server's own. */
  corsOrigins: string[];
  /** `Strict-Transport-Security` max-age on responses to HTTPS requests (0: never sent). */
  hstsMaxAgeS: number;
  /** Longest time to receive a request's headers, in ms (slow senders are cut off). */
  headersTimeoutMs: number;
  /** Shed API requests (503) while the event loop's mean delay is above this, in ms (0: never). */
  shedEventLoopDelayMs: number;
  /** Shed API requests while the V8 heap holds more than this, in bytes (default 90% of its limit). */
  shedHeapUsedBytes: number;
  /** Shed API requests while the process's resident memory is above this, in bytes (0: never). */
  shedRssBytes: number;
  /** Deprecated API versions (`v1`) with their deprecation and sunset dates. */
  apiDeprecations: Record<string, { deprecated: Date; sunset?: Date }>;
  /** Serve HTTPS with this certificate and key (PEM files, reloaded when they change); undefined: plain HTTP. */
  tls: { certPath: string; keyPath: string; reloadMs: number } | undefined;
}

/** Accounts, tokens and login settings. */
export interface AuthConfig {
  /** `iss` of access tokens. */
  issuer: string;
  /** `aud` of access tokens. */
  audience: string;
  /** Access token lifetime in seconds. */
  accessTtlS: number;
  /** Refresh token lifetime in seconds (each rotation starts a new one). */
  refreshTtlS: number;
  /** Longest a session lives, however often it is refreshed, in seconds. */
  sessionMaxAgeS: number;
  /** Window in which a rotated refresh token, presented again, returns the same successor (seconds). */
  refreshGraceS: number;
  /** Password hashes computed at once (each takes ~19 MiB); 0 means one per CPU, at most 4. */
  hashConcurrency: number;
  /** Password hashes allowed to wait; beyond that logins get 503 with Retry-After. */
  hashQueue: number;
  /** Failed logins per account (by email) per hour before further attempts are refused. */
  maxFailuresPerAccount: number;
  /** Failed logins per client IP per hour. */
  maxFailuresPerIp: number;
  /** Days a deleted account is kept (restorable by admins) before it is purged. */
  accountRetentionDays: number;
  /** SMTP server for account mails (`smtp://user:pass@host:port`, `smtps://…`); unset writes mails to files. */
  smtpUrl: string | undefined;
  /** Sender of account mails. */
  mailFrom: string;
  /** First retry delay of a failed mail, in ms (doubling, with jitter, up to 10 minutes; 6 attempts in all). */
  mailRetryBaseMs: number;
  /** Where the links in account mails point; `{public url}/auth` when unset. */
  linkBaseUrl: string | undefined;
  /** OAuth / OpenID Connect providers by name (JSON; see README). */
  oauthProviders: Record<string, OAuthProviderConfig>;
  /** URL prefixes an OAuth login may send the user back to (open-redirect protection). */
  redirectUrls: string[];
}

/** One OAuth / OIDC login provider. */
export interface OAuthProviderConfig {
  /** `google`, `apple`, `microsoft`, `github` fill in the provider's specifics. */
  preset?: 'google' | 'apple' | 'microsoft' | 'github';
  /** OpenID issuer URL (its discovery document is fetched); presets set it. */
  issuer?: string;
  /** OAuth client id. */
  clientId: string;
  /** OAuth client secret (Apple: the key to sign the client secret JWT is given via appleKey). */
  clientSecret?: string;
  /** Scopes; default `openid email profile`. */
  scopes?: string[];
  /** GitHub only: the URL of a GitHub Enterprise Server (default github.com). */
  githubUrl?: string;
  /** Apple only: team id, key id and the PKCS#8 private key that sign the client secret. */
  apple?: { teamId: string; keyId: string; privateKey: string };
  /** Ask the provider to POST the callback (`response_mode=form_post`); Apple always does. */
  formPost?: boolean;
  /** Timeout of each call to the provider, ms (default 5000). */
  timeoutMs?: number;
}

/** Storage settings. */
export interface StorageConfig {
  /** `postgres://…` selects PostgreSQL; undefined means embedded SQLite. */
  databaseUrl: string | undefined;
  /** Directory for the SQLite file and other local state. */
  dataDir: string;
  /** Maximum PostgreSQL pool size. */
  poolMax: number;
  /** PostgreSQL connect timeout in ms; short, so an unreachable database fails fast. */
  connectTimeoutMs: number;
  /** PostgreSQL statement timeout in ms. */
  statementTimeoutMs: number;
  /**
   * How long a session may idle inside a transaction before PostgreSQL ends it: a node frozen
   * mid-write (a stopped process, a VM pause) releases its locks after this.
   */
  idleInTransactionMs: number;
  /** How long a SQLite write waits for a lock held by another process, in ms (waited asynchronously). */
  busyTimeoutMs: number;
  /** PostgreSQL read replicas (streaming standbys) that record reads may use. */
  replicaUrls: string[];
  /** A replica is used only while it has replayed everything the primary had this long ago (ms). */
  replicaMaxLagMs: number;
  /** Apply pending migrations when `serve` starts (destructive changes still need the CLI). */
  autoMigrate: boolean;
}

/** Observability settings. */
export interface ObservabilityConfig {
  /** pino level: fatal, error, warn, info, debug, trace or silent. */
  logLevel: string;
  /** Timeout of each readiness check in ms. */
  readyTimeoutMs: number;
  /** Write log lines to this file (appended) instead of standard output. */
  logFile?: string;
}

/** Jobs, workers, cron and housekeeping settings. */
export interface JobsConfig {
  /** Run job workers inside `serve` (embedded mode); cluster deployments run `rampart worker` and set this false. */
  inProcess: boolean;
  /** Jobs one worker runs at once per queue, unless the queue sets its own. */
  concurrency: number;
  /** How long a fetched job stays leased to its worker without a heartbeat, in ms (renewed every third of it). */
  leaseMs: number;
  /** How often an idle worker looks for due jobs when not woken by a notification, in ms. */
  pollMs: number;
  /** How long a stopping worker lets running jobs finish before releasing them to other workers, in ms. */
  shutdownGraceMs: number;
  /** Hours completed and cancelled jobs are kept before cleanup. */
  keepCompletedHours: number;
  /** Days dead-lettered jobs are kept before cleanup. */
  keepDeadDays: number;
  /** `/readyz` fails when a queue's oldest due job has waited longer than this, in seconds (0: not checked). */
  readyMaxLagS: number;
  /** Take part in the election of the node that fires cron schedules. */
  scheduler: boolean;
  /** Lease of the schedule-firing node, in ms; another node takes over within it (plus one tick) when that node dies. */
  schedulerLeaseMs: number;
  /** Name of this node in job and schedule records; host name and process id when unset. */
  nodeName: string | undefined;
  /** Days soft-deleted records stay in the trash before the purge schedule removes them (0: kept forever). */
  trashRetentionDays: number;
  /** Days files in `<data dir>/tmp` are kept. */
  tempRetentionDays: number;
}

/** One rate-limit window: at most `points` requests per `durationS` seconds. */
export interface LimitWindow {
  /** Requests allowed in a window. */
  points: number;
  /** Window length in seconds. */
  durationS: number;
}

/** Rate limits by class of caller; an empty list means no limit for that class. */
export interface RateLimitRules {
  /** Requests without a token, per client IP. */
  anonymous: LimitWindow[];
  /** Requests with a valid access token, per user. */
  user: LimitWindow[];
  /** Sign-up, login, password-reset and verification routes, per client IP (on top of the above). */
  auth: LimitWindow[];
}

/** Traffic protection settings. */
export interface ProtectConfig {
  /** Rate limits by class of caller. */
  rateLimits: RateLimitRules;
  /** Where counters live: `auto` is Redis when configured, else PostgreSQL in cluster mode, else memory. */
  rateLimitStore: 'auto' | 'memory' | 'redis' | 'postgres';
  /** While the shared store is unreachable: `memory` (an in-process limiter per node), `open` (no limit) or `closed` (503). */
  rateLimitFallback: 'memory' | 'open' | 'closed';
  /** How long answers to requests with an Idempotency-Key are kept, in seconds. */
  idempotencyTtlS: number;
  /** How long record reads and lists are served from the read cache, in ms (0: no cache). */
  cacheTtlMs: number;
  /** How old a cached answer may be to be served (marked stale) while the database is down, in seconds. */
  cacheStaleS: number;
  /** Entries in each node's in-process read cache. */
  cacheMaxEntries: number;
  /** Outbound HTTP dependencies by name, over the app's declarations (see resilience/http-client.ts). */
  dependencies: Record<string, Record<string, unknown>>;
}

/** Outgoing webhooks settings. */
export interface WebhooksConfig {
  /** Retries of a failed delivery. */
  retries: number;
  /** First retry delay in ms (doubling with jitter, up to an hour). */
  retryBaseMs: number;
  /** Failed deliveries in a row (after their retries) that disable a subscription. */
  disableAfter: number;
  /** Deliver to loopback, private and link-local addresses (development only). */
  allowPrivate: boolean;
  /** Per-attempt timeout of a delivery, ms. */
  timeoutMs: number;
  /** Days finished deliveries stay in the log. */
  keepDays: number;
}

/** The whole validated configuration. */
export interface Config {
  /** HTTP server slice. */
  http: HttpConfig;
  /** Storage slice. */
  storage: StorageConfig;
  /** Logging, metrics and health slice. */
  observability: ObservabilityConfig;
  /** Optional Redis URL (used by later cluster features). */
  redisUrl: string | undefined;
  /** The CA file that verifies a rediss:// server (else the system's CAs). */
  redisTlsCaPath: string | undefined;
  /** Accounts slice. */
  auth: AuthConfig;
  /** Jobs and cron slice. */
  jobs: JobsConfig;
  /** Rate limits, idempotency and caching slice. */
  protect: ProtectConfig;
  /** Outgoing webhooks slice. */
  webhooks: WebhooksConfig;
  /** Realtime slice. */
  realtime: RealtimeConfig;
  /** Push providers and notifications slice. */
  push: PushConfig;
  /** Domain events to message brokers slice. */
  events: EventsConfig;
  /** Backups slice. */
  backup: BackupConfig;
  /** Routine checks and alerts slice. */
  checks: ChecksConfig;
  /** Encryption at rest slice. */
  dataKeys: DataKeysConfig;
  /** Days audit log entries are kept. */
  auditKeepDays: number;
}

/** Raised for invalid configuration; the CLI prints it and exits non-zero. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** `{"v1": {"deprecated": "2026-12-01", "sunset": "2027-06-30"}}`: each version an existing one, dates valid, sunset after. */
function apiDeprecations(raw: string): Record<string, { deprecated: Date; sunset?: Date }> | undefined {
  const parsed = jsonObject(raw);
  if (!parsed) return undefined;
  const out: Record<string, { deprecated: Date; sunset?: Date }> = {};
  const date = (v: unknown) =>
    typeof v === 'string' && /^\d{4}-\d{2}-\d{2}/.test(v) && !Number.isNaN(Date.parse(v)) ? new Date(v) : undefined;
  for (const [version, d] of Object.entries(parsed)) {
    if (!/^v[12]$/.test(version) || typeof d !== 'object' || d === null) return undefined;
    const { deprecated, sunset, ...rest } = d as Record<string, unknown>;
    const since = date(deprecated);
    const until = sunset === undefined ? undefined : date(sunset);
    if (!since || (sunset !== undefined && (!until || until <= since)) || Object.keys(rest).length > 0) return undefined;
    out[version] = until ? { deprecated: since, sunset: until } : { deprecated: since };
  }
  return out;
}

const UNITS: Record<string, number> = { s: 1, sec: 1, second: 1, m: 60, min: 60, minute: 60, h: 3600, hour: 3600, d: 86_400, day: 86_400 };
/** `300/min, 10000/day, 20/10s`: windows of a rate-limit class; `off` for none. */
function limitWindows(raw: unknown): LimitWindow[] | undefined {
  if (typeof raw !== 'string') return undefined;
  if (raw.trim() === 'off') return [];
  const out: LimitWindow[] = [];
  for (const part of raw.split(',')) {
    const m = /^\s*(\d{1,9})\s*\/\s*(\d{1,6})?\s*([a-z]+?)s?\s*$/.exec(part);
    const unit = m ? UNITS[m[3] as string] : undefined;
    if (!m || unit === undefined || Number(m[1]) < 1) return undefined;
    const durationS = Number(m[2] ?? 1) * unit;
    if (durationS < 1 || durationS > 31 * 86_400 || out.some((w) => w.durationS === durationS)) return undefined;
    out.push({ points: Number(m[1]), durationS });
  }
  return out.sort((a, b) => a.durationS - b.durationS);
}
const DEFAULT_RATE_LIMITS: RateLimitRules = {
  anonymous: [
    { points: 600, durationS: 60 },
    { points: 50_000, durationS: 86_400 },
  ],
  user: [
    { points: 1200, durationS: 60 },
    { points: 200_000, durationS: 86_400 },
  ],
  auth: [
    { points: 30, durationS: 60 },
    { points: 500, durationS: 86_400 },
  ],
};
/** `{"anonymous": "100/min, 1000/day", "user": "…", "auth": "…"}`; classes left out keep their defaults; `off` turns all off. */
function rateLimits(raw: string): RateLimitRules | undefined {
  if (raw.trim() === 'off') return { anonymous: [], user: [], auth: [] };
  const parsed = jsonObject(raw);
  if (!parsed) return undefined;
  const out: RateLimitRules = { ...DEFAULT_RATE_LIMITS };
  for (const [cls, v] of Object.entries(parsed)) {
    if (!(cls in out)) return undefined;
    const windows = limitWindows(v);
    if (!windows) return undefined;
    out[cls as keyof RateLimitRules] = windows;
  }
  return out;
}
const DEPENDENCY_KEYS: Record<string, 'number' | 'string' | 'object'> = {
  baseUrl: 'string',
  timeoutMs: 'number',
  retries: 'number',
  retryBaseMs: 'number',
  retryMaxDelayMs: 'number',
  halfOpenAfterMs: 'number',
  concurrency: 'number',
  queue: 'number',
  breaker: 'object',
  headers: 'object',
};
/** Outbound dependencies: names to options of known keys and types (the client checks ranges). */
function dependencies(raw: string): Record<string, Record<string, unknown>> | undefined {
  const parsed = jsonObject(raw);
  if (!parsed) return undefined;
  for (const [name, d] of Object.entries(parsed)) {
    if (!/^[a-z][a-z0-9_.:-]{0,63}$/i.test(name) || typeof d !== 'object' || d === null || Array.isArray(d)) return undefined;
    for (const [k, v] of Object.entries(d)) {
      const want = DEPENDENCY_KEYS[k];
      // `"breaker": false` turns the breaker off.
      if (k === 'breaker' && v === false) continue;
      if (!want || typeof v !== want || v === null) return undefined;
      if (want === 'number' && (!Number.isFinite(v) || (v as number) < 0)) return undefined;
      if (k === 'baseUrl' && !httpUrl(v as string)) return undefined;
    }
  }
  return parsed as Record<string, Record<string, unknown>>;
}
/** A URL an OAuth sign-in may return to: http(s) or a mobile app's own scheme, never a script or file. */
const redirectPrefix = (raw: string): boolean => {
  try {
    const u = new URL(raw);
    return !['javascript:', 'data:', 'file:', 'vbscript:', 'blob:'].includes(u.protocol);
  } catch {
    return false;
  }
};
const IP_OR_CIDR = /^(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f:]+)(?:\/\d{1,3})?$/;
const PROVIDER_NAME = /^[a-z][a-z0-9_-]{0,31}$/;
const providers: Parser<Record<string, OAuthProviderConfig> | undefined> = (raw) => {
  const parsed = jsonObject(raw);
  if (!parsed) return undefined;
  for (const [name, p] of Object.entries(parsed as Record<string, Record<string, unknown>>)) {
    if (!PROVIDER_NAME.test(name) || typeof p !== 'object' || p === null || typeof p.clientId !== 'string') return undefined;
    if (p.preset !== undefined && !['google', 'apple', 'microsoft', 'github'].includes(p.preset as string)) return undefined;
    if (p.githubUrl !== undefined && (typeof p.githubUrl !== 'string' || !httpUrl(p.githubUrl))) return undefined;
    const needsIssuer = p.preset === undefined || p.preset === 'microsoft';
    if (needsIssuer && (typeof p.issuer !== 'string' || !httpUrl(p.issuer))) return undefined;
  }
  return parsed as Record<string, OAuthProviderConfig>;
};

const KEYS = {
  PORT: { expected: 'an integer from 0 to 65535', parse: int(0, 65535), default: 8090 },
  HOST: { expected: 'a host name or IP address', parse: nonEmpty, default: '127.0.0.1' },
  RAMPART_DATA_DIR: { expected: 'a directory path', parse: nonEmpty, default: './data' },
  DATABASE_URL: {
    expected: 'a postgres:// or postgresql:// URL (leave unset for embedded SQLite)',
    parse: (raw: string) => (/^postgres(ql)?:\/\/.+/.test(raw.trim()) ? raw.trim() : undefined),
    default: undefined as string | undefined,
    secret: true,
  },
  DATABASE_REPLICA_URLS: {
    expected: 'postgres:// URLs separated by commas or spaces (streaming standbys of DATABASE_URL)',
    parse: (raw: string) => {
      const urls = raw.trim() === '' ? [] : raw.trim().split(/[\s,]+(?=postgres(?:ql)?:\/\/)/);
      return urls.every((u) => /^postgres(ql)?:\/\/[^\s,]+$/.test(u)) ? urls : undefined;
    },
    default: [] as string[],
    secret: true,
  },
  RAMPART_REPLICA_MAX_LAG_MS: { expected: 'milliseconds, 0 to 600000', parse: int(0, 600_000), default: 1_000 },
  RAMPART_TLS_CERT_PATH: { expected: 'a PEM certificate file (with its chain)', parse: nonEmpty, default: undefined as string | undefined },
  RAMPART_TLS_KEY_PATH: { expected: 'a PEM private key file', parse: nonEmpty, default: undefined as string | undefined },
  RAMPART_TLS_RELOAD_MS: { expected: 'milliseconds, 1000 to 3600000', parse: int(1000, 3_600_000), default: 10_000 },
  RAMPART_REDIS_TLS_CA_PATH: {
    expected: 'a PEM file of the CA that signed the Redis server certificate (rediss://)',
    parse: nonEmpty,
    default: undefined as string | undefined,
  },
  REDIS_URL: {
    expected: 'a redis:// or rediss:// URL',
    parse: (raw: string) => (/^rediss?:\/\/.+/.test(raw.trim()) ? raw.trim() : undefined),
    default: undefined as string | undefined,
    secret: true,
  },
  LOG_LEVEL: {
    expected: 'one of fatal, error, warn, info, debug, trace, silent',
    parse: (raw: string) => (['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(raw.trim()) ? raw.trim() : undefined),
    default: 'info',
  },
  RAMPART_LOG_FILE: {
    expected: 'a file path (logs go there instead of standard output)',
    parse: nonEmpty,
    default: undefined as string | undefined,
  },
  RAMPART_SECRETS_DIR: {
    expected: 'a directory of files named after configuration keys (Docker and Kubernetes secrets)',
    parse: nonEmpty,
    default: undefined as string | undefined,
  },
  RAMPART_SECRETS_PROVIDER: {
    expected: 'a module whose default export is a secrets provider (see docs/operations.md)',
    parse: nonEmpty,
    default: undefined as string | undefined,
  },
  RAMPART_PUBLIC_URL: { expected: 'an http(s) URL', parse: httpUrl, default: undefined as string | undefined },
  RAMPART_TRUST_PROXY: {
    expected: 'comma-separated IP addresses or CIDR ranges',
    parse: list((s) => IP_OR_CIDR.test(s)),
    default: [] as string[],
  },
  RAMPART_CORS_ORIGINS: {
    expected: 'comma-separated origins (https://app.example.com, http://localhost:5173) or *',
    parse: list((s) => s === '*' || /^https?:\/\/[a-z0-9.-]+(:\d{1,5})?$/i.test(s)),
    default: [] as string[],
  },
  RAMPART_HSTS_MAX_AGE_S: { expected: 'seconds, 0 to 63072000 (0: no HSTS)', parse: int(0, 63_072_000), default: 15_552_000 },
  RAMPART_API_DEPRECATIONS: {
    expected: 'a JSON object of versions: {"v1": {"deprecated": "2026-12-01", "sunset": "2027-06-30"}} (ISO dates; sunset optional)',
    parse: apiDeprecations,
    default: {} as Record<string, { deprecated: Date; sunset?: Date }>,
  },
  RAMPART_RATE_LIMITS: {
    expected:
      'off, or a JSON object of classes (anonymous, user, auth) with windows: {"anonymous": "100/min, 1000/day", "auth": "10/min"} (units s, min, hour, day; "off" for none)',
    parse: rateLimits,
    default: DEFAULT_RATE_LIMITS,
  },
  RAMPART_RATE_LIMIT_STORE: {
    expected: 'auto, memory, redis or postgres',
    parse: oneOf('auto', 'memory', 'redis', 'postgres'),
    default: 'auto' as 'auto' | 'memory' | 'redis' | 'postgres',
  },
  RAMPART_RATE_LIMIT_FALLBACK: {
    expected: 'memory (a limiter per node), open (no limit) or closed (503) while the shared store is unreachable',
    parse: oneOf('memory', 'open', 'closed'),
    default: 'memory' as 'memory' | 'open' | 'closed',
  },
  RAMPART_IDEMPOTENCY_TTL_S: { expected: 'seconds, 60 to 2592000', parse: int(60, 2_592_000), default: 86_400 },
  RAMPART_CACHE_TTL_MS: { expected: 'milliseconds, 0 (no read cache) to 3600000', parse: int(0, 3_600_000), default: 30_000 },
  RAMPART_CACHE_STALE_S: { expected: 'seconds, 0 to 86400', parse: int(0, 86_400), default: 300 },
  RAMPART_CACHE_MAX_ENTRIES: { expected: 'an integer from 100 to 10000000', parse: int(100, 10_000_000), default: 10_000 },
  RAMPART_DEPENDENCIES: {
    expected:
      'a JSON object of outbound dependencies: {"payments": {"baseUrl": "https://…", "timeoutMs": 3000, "retries": 2, "concurrency": 10, "queue": 20, "breaker": {"failures": 5}}}',
    parse: dependencies,
    default: {} as Record<string, Record<string, unknown>>,
    secret: true,
  },
  RAMPART_WEBHOOK_RETRIES: { expected: 'an integer from 0 to 20', parse: int(0, 20), default: 6 },
  RAMPART_WEBHOOK_RETRY_BASE_MS: { expected: 'milliseconds, 10 to 3600000', parse: int(10, 3_600_000), default: 10_000 },
  RAMPART_WEBHOOK_DISABLE_AFTER: { expected: 'an integer from 1 to 1000', parse: int(1, 1000), default: 10 },
  RAMPART_WEBHOOKS_ALLOW_PRIVATE: { expected: 'true or false', parse: bool, default: false },
  RAMPART_WEBHOOK_TIMEOUT_MS: { expected: 'milliseconds, 100 to 60000', parse: int(100, 60_000), default: 10_000 },
  RAMPART_WEBHOOK_KEEP_DAYS: { expected: 'days, 1 to 3650', parse: int(1, 3650), default: 30 },
  RAMPART_JWT_ISSUER: { expected: 'a non-empty string', parse: nonEmpty, default: 'rampart' },
  RAMPART_JWT_AUDIENCE: { expected: 'a non-empty string', parse: nonEmpty, default: 'rampart-api' },
  RAMPART_ACCESS_TOKEN_TTL_S: { expected: 'seconds, 30 to 86400', parse: int(30, 86_400), default: 900 },
  RAMPART_REFRESH_TOKEN_TTL_S: { expected: 'seconds, 300 to 31536000', parse: int(300, 31_536_000), default: 2_592_000 },
  RAMPART_SESSION_MAX_AGE_S: { expected: 'seconds, 300 to 63072000', parse: int(300, 63_072_000), default: 7_776_000 },
  RAMPART_REFRESH_GRACE_S: { expected: 'seconds, 0 to 60', parse: int(0, 60), default: 10 },
  RAMPART_PASSWORD_CONCURRENCY: { expected: 'an integer from 0 (auto) to 64', parse: int(0, 64), default: 0 },
  RAMPART_PASSWORD_QUEUE: { expected: 'an integer from 0 to 10000', parse: int(0, 10_000), default: 100 },
  RAMPART_LOGIN_MAX_FAILURES: { expected: 'an integer from 1 to 100', parse: int(1, 100), default: 100 },
  RAMPART_LOGIN_IP_MAX_FAILURES: { expected: 'an integer from 1 to 100000', parse: int(1, 100_000), default: 500 },
  RAMPART_ACCOUNT_RETENTION_DAYS: { expected: 'days, 0 to 3650', parse: int(0, 3650), default: 30 },
  RAMPART_SMTP_URL: {
    expected: 'an smtp:// or smtps:// URL',
    parse: (raw: string) => (/^smtps?:\/\/.+/.test(raw.trim()) ? raw.trim() : undefined),
    default: undefined as string | undefined,
    secret: true,
  },
  RAMPART_MAIL_FROM: { expected: 'a sender address', parse: nonEmpty, default: 'Rampart <no-reply@localhost>' },
  RAMPART_MAIL_RETRY_BASE_MS: { expected: 'milliseconds, 1 to 600000', parse: int(1, 600_000), default: 5000 },
  RAMPART_AUTH_LINK_URL: { expected: 'an http(s) URL', parse: httpUrl, default: undefined as string | undefined },
  RAMPART_OAUTH_PROVIDERS: {
    expected:
      'a JSON object of providers: {"name": {"preset" (google, apple, microsoft, github) and/or "issuer", "clientId", "clientSecret", …}}; microsoft needs its tenant issuer',
    parse: providers,
    default: {} as Record<string, OAuthProviderConfig>,
    secret: true,
  },
  RAMPART_AUTH_REDIRECT_URLS: {
    expected: 'comma-separated URL prefixes (https://app.example/auth/, or an app scheme such as myapp://callback)',
    parse: list(redirectPrefix),
    default: [] as string[],
  },
  RAMPART_BODY_LIMIT: { expected: 'bytes, 1024 to 104857600', parse: int(1024, 104_857_600), default: 1_048_576 },
  RAMPART_SHUTDOWN_TIMEOUT_MS: { expected: 'milliseconds, 0 to 600000', parse: int(0, 600_000), default: 10_000 },
  // Unset: 3 s on PostgreSQL (nodes behind a proxy), none on embedded SQLite.
  RAMPART_DRAIN_DELAY_MS: { expected: 'milliseconds, 0 to 600000', parse: int(0, 600_000), default: undefined as number | undefined },
  RAMPART_REQUEST_TIMEOUT_MS: { expected: 'milliseconds, 0 to 600000', parse: int(0, 600_000), default: 30_000 },
  RAMPART_HEADERS_TIMEOUT_MS: { expected: 'milliseconds, 500 to 120000', parse: int(500, 120_000), default: 10_000 },
  RAMPART_SHED_EVENT_LOOP_DELAY_MS: { expected: 'milliseconds, 0 to 60000 (0: off)', parse: int(0, 60_000), default: 250 },
  RAMPART_SHED_HEAP_MB: { expected: 'megabytes, 0 to 1048576 (0: 90% of the heap limit)', parse: int(0, 1_048_576), default: 0 },
  RAMPART_SHED_RSS_MB: { expected: 'megabytes, 0 to 1048576 (0: off)', parse: int(0, 1_048_576), default: 0 },
  RAMPART_DB_POOL_MAX: { expected: 'an integer from 1 to 500', parse: int(1, 500), default: 10 },
  RAMPART_DB_CONNECT_TIMEOUT_MS: { expected: 'milliseconds, 100 to 60000', parse: int(100, 60_000), default: 2000 },
  RAMPART_DB_STATEMENT_TIMEOUT_MS: { expected: 'milliseconds, 100 to 600000', parse: int(100, 600_000), default: 15_000 },
  RAMPART_DB_IDLE_IN_TRANSACTION_MS: { expected: 'milliseconds, 100 to 600000', parse: int(100, 600_000), default: 5_000 },
  RAMPART_SQLITE_BUSY_TIMEOUT_MS: { expected: 'milliseconds, 0 to 60000', parse: int(0, 60_000), default: 5000 },
  RAMPART_AUTO_MIGRATE: { expected: 'true or false', parse: bool, default: true },
  RAMPART_READY_TIMEOUT_MS: { expected: 'milliseconds, 50 to 30000', parse: int(50, 30_000), default: 2000 },
  RAMPART_JOBS_IN_PROCESS: { expected: 'true or false', parse: bool, default: true },
  RAMPART_JOBS_CONCURRENCY: { expected: 'an integer from 1 to 1000', parse: int(1, 1000), default: 10 },
  RAMPART_JOBS_LEASE_MS: { expected: 'milliseconds, 500 to 3600000', parse: int(500, 3_600_000), default: 30_000 },
  RAMPART_JOBS_POLL_MS: { expected: 'milliseconds, 10 to 60000', parse: int(10, 60_000), default: 1000 },
  RAMPART_JOBS_SHUTDOWN_GRACE_MS: { expected: 'milliseconds, 0 to 600000', parse: int(0, 600_000), default: 10_000 },
  RAMPART_JOBS_KEEP_COMPLETED_HOURS: { expected: 'hours, 0 to 8760', parse: int(0, 8760), default: 24 },
  RAMPART_JOBS_KEEP_DEAD_DAYS: { expected: 'days, 1 to 3650', parse: int(1, 3650), default: 30 },
  RAMPART_JOBS_READY_MAX_LAG_S: { expected: 'seconds, 0 (off) to 86400', parse: int(0, 86_400), default: 0 },
  RAMPART_SCHEDULER: { expected: 'true or false', parse: bool, default: true },
  RAMPART_SCHEDULER_LEASE_MS: { expected: 'milliseconds, 1000 to 600000', parse: int(1000, 600_000), default: 10_000 },
  RAMPART_NODE_NAME: { expected: 'a non-empty name', parse: nonEmpty, default: undefined as string | undefined },
  RAMPART_TRASH_RETENTION_DAYS: { expected: 'days, 0 (keep) to 3650', parse: int(0, 3650), default: 30 },
  RAMPART_TEMP_RETENTION_DAYS: { expected: 'days, 1 to 3650', parse: int(1, 3650), default: 7 },
  ...REALTIME_KEYS,
  ...EVENTS_KEYS,
  ...OPS_KEYS,
} satisfies Record<string, KeySpec<unknown>>;

export type { AlertChannel, BackupConfig, ChecksConfig, DataKeysConfig } from './config-ops.js';

/** A configuration key, named like its environment variable. */
export type ConfigKey = keyof typeof KEYS;
type Values = { [K in ConfigKey]: (typeof KEYS)[K]['default'] };

/** Where the loader reads from; tests pass their own. */
export interface ConfigSources {
  env?: Record<string, string | undefined>;
  /** Values that win over everything (CLI flags). */
  overrides?: Partial<Record<ConfigKey, string>>;
  /** Values from a secrets provider (below the environment, `_FILE` and the secrets directory). */
  secrets?: Record<string, string>;
}

const SECRETS = new WeakMap<object, string[]>();

/**
 * The secret values a configuration was loaded with (and the passwords inside secret URLs), so
 * the logger can scrub them from every line whatever logged them.
 */
export function configSecrets(config: Config): string[] {
  return SECRETS.get(config) ?? [];
}

function secretStrings(raw: string): string[] {
  const out = [raw];
  // Passwords inside connection URLs (also inside JSON objects of URLs, and URL-encoded).
  for (const m of raw.matchAll(/\/\/[^:/@\s"]*:([^@\s"]+)@/g)) {
    const pw = m[1] as string;
    out.push(pw);
    try {
      out.push(decodeURIComponent(pw));
    } catch {
      // Not URL-encoded: the raw form is there already.
    }
  }
  // JSON values (alert channels, brokers, a service account): each longer string in them, such
  // as a webhook URL that is itself the credential.
  try {
    const leaves = (v: unknown): string[] =>
      typeof v === 'string' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(leaves) : [];
    out.push(...leaves(JSON.parse(raw)).filter((x) => x.length >= 16));
  } catch {
    // Not JSON.
  }
  return [...new Set(out.filter((v) => v.length >= 8))];
}

function describe(key: ConfigKey, raw: string): string {
  return (KEYS[key] as KeySpec<unknown>).secret ? '[redacted]' : JSON.stringify(raw);
}

function readConfigFile(path: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(resolve(path), 'utf8');
  } catch (err) {
    throw new ConfigError(`RAMPART_CONFIG: cannot read ${JSON.stringify(path)} (${(err as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigError(`RAMPART_CONFIG: ${JSON.stringify(path)} is not valid JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`RAMPART_CONFIG: ${JSON.stringify(path)} must hold a JSON object`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (!(k in KEYS)) throw new ConfigError(`RAMPART_CONFIG: unknown key ${JSON.stringify(k)} in ${path}`);
    out[k] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  return out;
}

/** Read, validate and freeze the configuration. Throws ConfigError naming the first bad key. */
export function loadConfig(sources: ConfigSources = {}): Config {
  const env = sources.env ?? process.env;
  const raw: Record<string, string> = {};
  const configPath = env.RAMPART_CONFIG;
  if (configPath) Object.assign(raw, readConfigFile(configPath));
  const errors: string[] = [];
  // Precedence, lowest first: the config file, a secrets provider, the secrets directory, the
  // environment, NAME_FILE, CLI flags.
  for (const [k, v] of Object.entries(sources.secrets ?? {})) if (k in KEYS) raw[k] = v;
  const secretsDir = env.RAMPART_SECRETS_DIR ?? raw.RAMPART_SECRETS_DIR;
  if (secretsDir) {
    if (!existsSync(secretsDir)) errors.push(`RAMPART_SECRETS_DIR: ${JSON.stringify(secretsDir)} does not exist`);
    else {
      for (const key of Object.keys(KEYS) as ConfigKey[]) {
        // Docker names secrets as given; Kubernetes keys are often lower case.
        for (const name of [key, key.toLowerCase()]) {
          const path = resolve(secretsDir, name);
          if (existsSync(path)) {
            raw[key] = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
            break;
          }
        }
      }
    }
  }
  for (const key of Object.keys(KEYS) as ConfigKey[]) {
    const fileVar = env[`${key}_FILE`];
    if (env[key] !== undefined) raw[key] = env[key] as string;
    if (fileVar !== undefined) {
      try {
        raw[key] = readFileSync(fileVar, 'utf8').replace(/\r?\n$/, '');
      } catch (err) {
        errors.push(`${key}_FILE: cannot read ${JSON.stringify(fileVar)} (${(err as NodeJS.ErrnoException).code})`);
      }
    }
    const override = sources.overrides?.[key];
    if (override !== undefined) raw[key] = override;
  }
  const values = {} as Record<string, unknown>;
  for (const key of Object.keys(KEYS) as ConfigKey[]) {
    const spec = KEYS[key] as KeySpec<unknown>;
    const given = raw[key];
    if (given === undefined || given === '') {
      values[key] = spec.default;
      continue;
    }
    const parsed = spec.parse(given);
    if (parsed === undefined) errors.push(`${key}=${describe(key, given)}: expected ${spec.expected}`);
    else values[key] = parsed;
  }
  if ((values.RAMPART_TLS_CERT_PATH === undefined) !== (values.RAMPART_TLS_KEY_PATH === undefined)) {
    errors.push('RAMPART_TLS_CERT_PATH and RAMPART_TLS_KEY_PATH: set both to serve HTTPS, or neither');
  }
  for (const key of ['RAMPART_TLS_CERT_PATH', 'RAMPART_TLS_KEY_PATH', 'RAMPART_REDIS_TLS_CA_PATH'] as const) {
    const path = values[key];
    if (typeof path === 'string' && !existsSync(path)) errors.push(`${key}=${path}: no such file`);
  }
  if (errors.length > 0) throw new ConfigError(`Invalid configuration:\n  ${errors.join('\n  ')}`);
  const v = values as Values;
  const secrets = (Object.keys(KEYS) as ConfigKey[])
    .filter((k) => (KEYS[k] as KeySpec<unknown>).secret && raw[k])
    .flatMap((k) => secretStrings(raw[k] as string));
  const config = deepFreeze({
    http: {
      host: v.HOST,
      port: v.PORT,
      bodyLimit: v.RAMPART_BODY_LIMIT,
      shutdownTimeoutMs: v.RAMPART_SHUTDOWN_TIMEOUT_MS,
      drainDelayMs: v.RAMPART_DRAIN_DELAY_MS ?? (v.DATABASE_URL ? 3000 : 0),
      requestTimeoutMs: v.RAMPART_REQUEST_TIMEOUT_MS,
      headersTimeoutMs: v.RAMPART_HEADERS_TIMEOUT_MS,
      shedEventLoopDelayMs: v.RAMPART_SHED_EVENT_LOOP_DELAY_MS,
      shedHeapUsedBytes: (v.RAMPART_SHED_HEAP_MB || Math.floor((getHeapStatistics().heap_size_limit * 0.9) / 1_048_576)) * 1_048_576,
      shedRssBytes: v.RAMPART_SHED_RSS_MB * 1_048_576,
      trustProxy: v.RAMPART_TRUST_PROXY,
      publicUrl: v.RAMPART_PUBLIC_URL,
      corsOrigins: v.RAMPART_CORS_ORIGINS,
      hstsMaxAgeS: v.RAMPART_HSTS_MAX_AGE_S,
      apiDeprecations: v.RAMPART_API_DEPRECATIONS,
      tls:
        v.RAMPART_TLS_CERT_PATH && v.RAMPART_TLS_KEY_PATH
          ? { certPath: resolve(v.RAMPART_TLS_CERT_PATH), keyPath: resolve(v.RAMPART_TLS_KEY_PATH), reloadMs: v.RAMPART_TLS_RELOAD_MS }
          : undefined,
    },
    storage: {
      databaseUrl: v.DATABASE_URL,
      dataDir: resolve(v.RAMPART_DATA_DIR),
      poolMax: v.RAMPART_DB_POOL_MAX,
      connectTimeoutMs: v.RAMPART_DB_CONNECT_TIMEOUT_MS,
      statementTimeoutMs: v.RAMPART_DB_STATEMENT_TIMEOUT_MS,
      idleInTransactionMs: v.RAMPART_DB_IDLE_IN_TRANSACTION_MS,
      busyTimeoutMs: v.RAMPART_SQLITE_BUSY_TIMEOUT_MS,
      replicaUrls: v.DATABASE_URL ? v.DATABASE_REPLICA_URLS : [],
      replicaMaxLagMs: v.RAMPART_REPLICA_MAX_LAG_MS,
      autoMigrate: v.RAMPART_AUTO_MIGRATE,
    },
    observability: { logLevel: v.LOG_LEVEL, readyTimeoutMs: v.RAMPART_READY_TIMEOUT_MS, logFile: v.RAMPART_LOG_FILE },
    redisUrl: v.REDIS_URL,
    redisTlsCaPath: v.RAMPART_REDIS_TLS_CA_PATH,
    auth: {
      issuer: v.RAMPART_JWT_ISSUER,
      audience: v.RAMPART_JWT_AUDIENCE,
      accessTtlS: v.RAMPART_ACCESS_TOKEN_TTL_S,
      refreshTtlS: v.RAMPART_REFRESH_TOKEN_TTL_S,
      sessionMaxAgeS: v.RAMPART_SESSION_MAX_AGE_S,
      refreshGraceS: v.RAMPART_REFRESH_GRACE_S,
      hashConcurrency: v.RAMPART_PASSWORD_CONCURRENCY,
      hashQueue: v.RAMPART_PASSWORD_QUEUE,
      maxFailuresPerAccount: v.RAMPART_LOGIN_MAX_FAILURES,
      maxFailuresPerIp: v.RAMPART_LOGIN_IP_MAX_FAILURES,
      accountRetentionDays: v.RAMPART_ACCOUNT_RETENTION_DAYS,
      smtpUrl: v.RAMPART_SMTP_URL,
      mailFrom: v.RAMPART_MAIL_FROM,
      mailRetryBaseMs: v.RAMPART_MAIL_RETRY_BASE_MS,
      linkBaseUrl: v.RAMPART_AUTH_LINK_URL,
      oauthProviders: v.RAMPART_OAUTH_PROVIDERS,
      redirectUrls: v.RAMPART_AUTH_REDIRECT_URLS,
    },
    jobs: {
      inProcess: v.RAMPART_JOBS_IN_PROCESS,
      concurrency: v.RAMPART_JOBS_CONCURRENCY,
      leaseMs: v.RAMPART_JOBS_LEASE_MS,
      pollMs: v.RAMPART_JOBS_POLL_MS,
      shutdownGraceMs: v.RAMPART_JOBS_SHUTDOWN_GRACE_MS,
      keepCompletedHours: v.RAMPART_JOBS_KEEP_COMPLETED_HOURS,
      keepDeadDays: v.RAMPART_JOBS_KEEP_DEAD_DAYS,
      readyMaxLagS: v.RAMPART_JOBS_READY_MAX_LAG_S,
      scheduler: v.RAMPART_SCHEDULER,
      schedulerLeaseMs: v.RAMPART_SCHEDULER_LEASE_MS,
      nodeName: v.RAMPART_NODE_NAME,
      trashRetentionDays: v.RAMPART_TRASH_RETENTION_DAYS,
      tempRetentionDays: v.RAMPART_TEMP_RETENTION_DAYS,
    },
    webhooks: {
      retries: v.RAMPART_WEBHOOK_RETRIES,
      retryBaseMs: v.RAMPART_WEBHOOK_RETRY_BASE_MS,
      disableAfter: v.RAMPART_WEBHOOK_DISABLE_AFTER,
      allowPrivate: v.RAMPART_WEBHOOKS_ALLOW_PRIVATE,
      timeoutMs: v.RAMPART_WEBHOOK_TIMEOUT_MS,
      keepDays: v.RAMPART_WEBHOOK_KEEP_DAYS,
    },
    protect: {
      rateLimits: v.RAMPART_RATE_LIMITS,
      rateLimitStore: v.RAMPART_RATE_LIMIT_STORE,
      rateLimitFallback: v.RAMPART_RATE_LIMIT_FALLBACK,
      idempotencyTtlS: v.RAMPART_IDEMPOTENCY_TTL_S,
      cacheTtlMs: v.RAMPART_CACHE_TTL_MS,
      cacheStaleS: v.RAMPART_CACHE_STALE_S,
      cacheMaxEntries: v.RAMPART_CACHE_MAX_ENTRIES,
      dependencies: v.RAMPART_DEPENDENCIES,
    },
    realtime: realtimeSlice(v),
    push: pushSlice(v),
    events: eventsSlice(v),
    backup: backupSlice(v, resolve(v.RAMPART_DATA_DIR)),
    checks: checksSlice(v),
    dataKeys: { masterKey: v.RAMPART_MASTER_KEY, reloadMs: v.RAMPART_DATA_KEY_RELOAD_MS },
    auditKeepDays: v.RAMPART_AUDIT_KEEP_DAYS,
  });
  SECRETS.set(config, secrets);
  return config;
}

/** Every key with its expectation and default, for `rampart --help`. */
export function describeConfigKeys(): string[] {
  return (Object.keys(KEYS) as ConfigKey[]).map((k) => {
    const spec = KEYS[k] as KeySpec<unknown>;
    const d = spec.default;
    const def =
      d === undefined
        ? '(unset)'
        : typeof d === 'object' && d !== null
          ? Object.keys(d).length === 0
            ? '(none)'
            : JSON.stringify(d)
          : String(d);
    return `${k.padEnd(32)} ${spec.expected}; default ${def}${spec.secret ? ' (secret; _FILE accepted)' : ''}`;
  });
}

function deepFreeze<T>(obj: T): T {
  // Keys stay Buffers (a typed array with elements cannot be frozen).
  if (obj && typeof obj === 'object' && !ArrayBuffer.isView(obj)) {
    for (const v of Object.values(obj)) deepFreeze(v);
    Object.freeze(obj);
  }
  return obj;
}

/** An external secrets manager (Vault, AWS Secrets Manager, …) that supplies configuration values. */
export interface SecretsProvider {
  /** For messages. */
  name: string;
  /** Values for some of these configuration keys (the secret ones are asked for); others are ignored. */
  load(keys: string[]): Promise<Record<string, string>>;
}

/**
 * `loadConfig`, with the values of the secrets provider named by RAMPART_SECRETS_PROVIDER (a
 * module whose default export is a SecretsProvider) loaded first. A provider that cannot be
 * loaded, or fails, or takes over 30 s, is a configuration error naming it (never a value).
 */
export async function loadConfigWithSecrets(sources: ConfigSources = {}): Promise<Config> {
  const env = sources.env ?? process.env;
  const modulePath = sources.overrides?.RAMPART_SECRETS_PROVIDER ?? env.RAMPART_SECRETS_PROVIDER;
  if (!modulePath) return loadConfig(sources);
  let provider: SecretsProvider;
  try {
    const mod = (await import(pathToFileURL(resolve(modulePath)).href)) as { default?: SecretsProvider };
    provider = mod.default as SecretsProvider;
  } catch (err) {
    throw new ConfigError(`RAMPART_SECRETS_PROVIDER: cannot load ${JSON.stringify(modulePath)} (${(err as Error).message})`);
  }
  if (!provider || typeof provider.load !== 'function') {
    throw new ConfigError(`RAMPART_SECRETS_PROVIDER: ${JSON.stringify(modulePath)} must export default { name, load(keys) }`);
  }
  const keys = (Object.keys(KEYS) as ConfigKey[]).filter((k) => (KEYS[k] as KeySpec<unknown>).secret);
  let timer: NodeJS.Timeout | undefined;
  let values: Record<string, unknown>;
  try {
    values = await Promise.race([
      provider.load(keys),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no answer within 30 s')), 30_000);
      }),
    ]);
  } catch (err) {
    throw new ConfigError(`RAMPART_SECRETS_PROVIDER: ${provider.name ?? modulePath} failed: ${(err as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
  const secrets = Object.fromEntries(Object.entries(values ?? {}).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
  return loadConfig({ ...sources, secrets });
}
