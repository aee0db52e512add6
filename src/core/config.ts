import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

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
  /** Per-request timeout in ms (0 disables). */
  requestTimeoutMs: number;
  /**
   * Bearer token for operator-only operations (hard purge) until accounts and roles exist;
   * unset means those operations are refused for everyone.
   */
  adminToken: string | undefined;
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
  /** How long a SQLite write waits for a lock held by another process, in ms (waited asynchronously). */
  busyTimeoutMs: number;
  /** Apply pending migrations when `serve` starts (destructive changes still need the CLI). */
  autoMigrate: boolean;
}

/** Observability settings. */
export interface ObservabilityConfig {
  /** pino level: fatal, error, warn, info, debug, trace or silent. */
  logLevel: string;
  /** Timeout of each readiness check in ms. */
  readyTimeoutMs: number;
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
}

/** Raised for invalid configuration; the CLI prints it and exits non-zero. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Parser<T> = (raw: string) => T;

interface KeySpec<T> {
  /** What a valid value looks like, for the error message. */
  expected: string;
  parse: Parser<T | undefined>;
  default: T;
  secret?: boolean;
}

const int =
  (min: number, max: number): Parser<number | undefined> =>
  (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) return undefined;
    const n = Number(raw);
    return n >= min && n <= max ? n : undefined;
  };
const bool: Parser<boolean | undefined> = (raw) => {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  return undefined;
};
const nonEmpty: Parser<string | undefined> = (raw) => (raw.trim() === '' ? undefined : raw.trim());

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
  RAMPART_ADMIN_TOKEN: {
    expected: 'at least 32 characters',
    parse: (raw: string) => (raw.trim().length >= 32 ? raw.trim() : undefined),
    default: undefined as string | undefined,
    secret: true,
  },
  RAMPART_BODY_LIMIT: { expected: 'bytes, 1024 to 104857600', parse: int(1024, 104_857_600), default: 1_048_576 },
  RAMPART_SHUTDOWN_TIMEOUT_MS: { expected: 'milliseconds, 0 to 600000', parse: int(0, 600_000), default: 10_000 },
  RAMPART_REQUEST_TIMEOUT_MS: { expected: 'milliseconds, 0 to 600000', parse: int(0, 600_000), default: 30_000 },
  RAMPART_DB_POOL_MAX: { expected: 'an integer from 1 to 500', parse: int(1, 500), default: 10 },
  RAMPART_DB_CONNECT_TIMEOUT_MS: { expected: 'milliseconds, 100 to 60000', parse: int(100, 60_000), default: 2000 },
  RAMPART_DB_STATEMENT_TIMEOUT_MS: { expected: 'milliseconds, 100 to 600000', parse: int(100, 600_000), default: 15_000 },
  RAMPART_SQLITE_BUSY_TIMEOUT_MS: { expected: 'milliseconds, 0 to 60000', parse: int(0, 60_000), default: 5000 },
  RAMPART_AUTO_MIGRATE: { expected: 'true or false', parse: bool, default: true },
  RAMPART_READY_TIMEOUT_MS: { expected: 'milliseconds, 50 to 30000', parse: int(50, 30_000), default: 2000 },
} satisfies Record<string, KeySpec<unknown>>;

/** A configuration key, named like its environment variable. */
export type ConfigKey = keyof typeof KEYS;
type Values = { [K in ConfigKey]: (typeof KEYS)[K]['default'] };

/** Where the loader reads from; tests pass their own. */
export interface ConfigSources {
  env?: Record<string, string | undefined>;
  /** Values that win over everything (CLI flags). */
  overrides?: Partial<Record<ConfigKey, string>>;
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
  if (errors.length > 0) throw new ConfigError(`Invalid configuration:\n  ${errors.join('\n  ')}`);
  const v = values as Values;
  return deepFreeze({
    http: {
      host: v.HOST,
      port: v.PORT,
      bodyLimit: v.RAMPART_BODY_LIMIT,
      shutdownTimeoutMs: v.RAMPART_SHUTDOWN_TIMEOUT_MS,
      requestTimeoutMs: v.RAMPART_REQUEST_TIMEOUT_MS,
      adminToken: v.RAMPART_ADMIN_TOKEN,
    },
    storage: {
      databaseUrl: v.DATABASE_URL,
      dataDir: resolve(v.RAMPART_DATA_DIR),
      poolMax: v.RAMPART_DB_POOL_MAX,
      connectTimeoutMs: v.RAMPART_DB_CONNECT_TIMEOUT_MS,
      statementTimeoutMs: v.RAMPART_DB_STATEMENT_TIMEOUT_MS,
      busyTimeoutMs: v.RAMPART_SQLITE_BUSY_TIMEOUT_MS,
      autoMigrate: v.RAMPART_AUTO_MIGRATE,
    },
    observability: { logLevel: v.LOG_LEVEL, readyTimeoutMs: v.RAMPART_READY_TIMEOUT_MS },
    redisUrl: v.REDIS_URL,
  });
}

/** Every key with its expectation and default, for `rampart --help`. */
export function describeConfigKeys(): string[] {
  return (Object.keys(KEYS) as ConfigKey[]).map((k) => {
    const spec = KEYS[k] as KeySpec<unknown>;
    const def = spec.default === undefined ? '(unset)' : String(spec.default);
    return `${k.padEnd(32)} ${spec.expected}; default ${def}${spec.secret ? ' (secret; _FILE accepted)' : ''}`;
  });
}

function deepFreeze<T>(obj: T): T {
  if (obj && typeof obj === 'object') {
    for (const v of Object.values(obj)) deepFreeze(v);
    Object.freeze(obj);
  }
  return obj;
}
