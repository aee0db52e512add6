/**
 * Configuration keys of operations: backups, routine checks and alerts, encryption at rest and
 * the audit log (read by config.ts with the others).
 */
import { join } from 'node:path';
import { Cron } from 'croner';
import { bool, httpUrl, int, type KeySpec, list, nonEmpty } from './config-parsers.js';

/** Backups: the key, where they go, when they run, how many are kept. */
export interface BackupConfig {
  /** The AES-256 key that seals backups (32 bytes); without it backups refuse to run. */
  key?: Buffer;
  /** A directory, or `s3://bucket/prefix`. */
  target: string;
  /** S3-compatible storage settings (credentials fall back to the AWS SDK's own chain). */
  s3: { endpoint?: string; region: string; accessKeyId?: string; secretAccessKey?: string; forcePathStyle: boolean };
  /** Cron of the scheduled backup, or undefined when off. */
  cron?: string;
  /** Cron of the scheduled verify of the latest backup, or undefined when off. */
  verifyCron?: string;
  /** Keep the newest backup of each of the last N days. */
  keepDaily: number;
  /** Keep the newest backup of each of the last M weeks. */
  keepWeekly: number;
  /** Directory of pg_dump and pg_restore (their version must be at least the server's); PATH when unset. */
  pgBinDir?: string;
}

/** An alert channel. */
export type AlertChannel =
  | { type: 'webhook'; url: string; name?: string }
  | { type: 'slack'; url: string; name?: string }
  | { type: 'email'; to: string[]; name?: string };

/** Routine checks and the alerts they raise. */
export interface ChecksConfig {
  /** Cron of the scheduled checks (once across the cluster), or undefined when off. */
  cron?: string;
  /** Where alerts go. */
  channels: AlertChannel[];
  /** Hours between reminders while a problem persists (0: only the first alert). */
  repeatHours: number;
  /** The last good backup may be this old. */
  backupMaxAgeHours: number;
  /** Jobs dead-lettered in the last hour that count as growth. */
  deadLettersPerHour: number;
  /** A due job may wait this long. */
  queueLagS: number;
  /** Share of 5xx answers (of this node, over the last interval) that fails the check. */
  errorRate: number;
  /** Free space of the data directory's file system, percent, below which the check fails. */
  diskMinFreePct: number;
  /** Replication lag that fails the check, seconds. */
  replicaLagS: number;
  /** https URLs whose certificates are watched. */
  tlsUrls: string[];
  /** Days before a certificate's expiry the check fails. */
  tlsMinDays: number;
}

/** Encryption at rest of fields declared `encrypted`. */
export interface DataKeysConfig {
  /** The key that wraps the data keys (32 bytes); needed by apps with encrypted fields. */
  masterKey?: Buffer;
  /** How often nodes reload the data keys; a new key encrypts after twice this, ms. */
  reloadMs: number;
}

/** Parse 32 bytes given as 64 hex digits or base64. */
export const key32 = (raw: string): Buffer | undefined => {
  const s = raw.trim();
  const b = /^[0-9a-fA-F]{64}$/.test(s) ? Buffer.from(s, 'hex') : /^[A-Za-z0-9+/_-]{43}=?$/.test(s) ? Buffer.from(s, 'base64') : undefined;
  return b && b.length === 32 ? b : undefined;
};

const cronOrOff = (raw: string): string | null | undefined => {
  const s = raw.trim();
  if (s === 'off') return null;
  try {
    new Cron(s, { paused: true });
    return s;
  } catch {
    return undefined;
  }
};

const target = (raw: string): string | undefined => {
  const s = raw.trim();
  if (s === '') return undefined;
  if (s.startsWith('s3://')) return /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[^\s]*)?$/.test(s) ? s : undefined;
  return s;
};

const channels = (raw: string): AlertChannel[] | undefined => {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v)) return undefined;
  for (const c of v as Array<Record<string, unknown>>) {
    if (!c || typeof c !== 'object') return undefined;
    if (c.type === 'webhook' || c.type === 'slack') {
      if (typeof c.url !== 'string' || httpUrl(c.url) === undefined) return undefined;
    } else if (c.type === 'email') {
      if (!Array.isArray(c.to) || c.to.length === 0 || !c.to.every((t) => typeof t === 'string' && /^[^@\s]+@[^@\s]+$/.test(t))) {
        return undefined;
      }
    } else return undefined;
    if (c.name !== undefined && typeof c.name !== 'string') return undefined;
  }
  return v as AlertChannel[];
};

const ratio = (raw: string): number | undefined => {
  const n = Number(raw.trim());
  return /^\d*\.?\d+$/.test(raw.trim()) && n >= 0 && n <= 1 ? n : undefined;
};

export const OPS_KEYS = {
  RAMPART_BACKUP_KEY: {
    expected: '32 random bytes as 64 hex digits or base64 (openssl rand -base64 32)',
    parse: key32,
    default: undefined as Buffer | undefined,
    secret: true,
  },
  RAMPART_BACKUP_TARGET: {
    expected: 'a directory, or s3://bucket/prefix',
    parse: target,
    default: undefined as string | undefined,
  },
  RAMPART_BACKUP_S3_ENDPOINT: {
    expected: 'an http(s) URL (S3-compatible storage)',
    parse: httpUrl,
    default: undefined as string | undefined,
  },
  RAMPART_BACKUP_S3_REGION: { expected: 'a region name', parse: nonEmpty, default: 'us-east-1' as string | undefined },
  RAMPART_BACKUP_S3_ACCESS_KEY_ID: { expected: 'an access key id', parse: nonEmpty, default: undefined as string | undefined },
  RAMPART_BACKUP_S3_SECRET_ACCESS_KEY: {
    expected: 'a secret access key',
    parse: nonEmpty,
    default: undefined as string | undefined,
    secret: true,
  },
  RAMPART_BACKUP_S3_FORCE_PATH_STYLE: {
    expected: 'true or false (default: true with an endpoint)',
    parse: bool,
    default: undefined as boolean | undefined,
  },
  RAMPART_BACKUP_CRON: { expected: "a cron expression, or 'off'", parse: cronOrOff, default: '0 3 * * *' as string | null },
  RAMPART_BACKUP_VERIFY_CRON: { expected: "a cron expression, or 'off'", parse: cronOrOff, default: '30 4 * * 0' as string | null },
  RAMPART_BACKUP_KEEP_DAILY: { expected: 'an integer from 1 to 3650', parse: int(1, 3650), default: 7 },
  RAMPART_BACKUP_KEEP_WEEKLY: { expected: 'an integer from 0 to 520', parse: int(0, 520), default: 4 },
  RAMPART_PG_BIN_DIR: { expected: 'the directory of pg_dump and pg_restore', parse: nonEmpty, default: undefined as string | undefined },
  RAMPART_CHECKS_CRON: { expected: "a cron expression, or 'off'", parse: cronOrOff, default: '* * * * *' as string | null },
  RAMPART_ALERT_CHANNELS: {
    expected: 'a JSON array of channels: {"type":"webhook","url":…}, {"type":"slack","url":…}, {"type":"email","to":["ops@example.com"]}',
    parse: channels,
    default: [] as AlertChannel[],
    secret: true,
  },
  RAMPART_ALERT_REPEAT_HOURS: { expected: 'hours, 0 (never) to 720', parse: int(0, 720), default: 24 },
  RAMPART_CHECK_BACKUP_MAX_AGE_HOURS: { expected: 'hours, 1 to 8760', parse: int(1, 8760), default: 26 },
  RAMPART_CHECK_DEAD_LETTERS_PER_HOUR: { expected: 'an integer from 1 to 1000000', parse: int(1, 1_000_000), default: 10 },
  RAMPART_CHECK_QUEUE_LAG_S: { expected: 'seconds, 1 to 86400', parse: int(1, 86_400), default: 300 },
  RAMPART_CHECK_ERROR_RATE: { expected: 'a ratio from 0 to 1', parse: ratio, default: 0.05 },
  RAMPART_CHECK_DISK_MIN_FREE_PCT: { expected: 'percent, 0 to 99', parse: int(0, 99), default: 10 },
  RAMPART_CHECK_REPLICA_LAG_S: { expected: 'seconds, 1 to 86400', parse: int(1, 86_400), default: 30 },
  RAMPART_CHECK_TLS_URLS: {
    expected: 'comma-separated https URLs',
    parse: list((s) => s.startsWith('https://') && httpUrl(s) !== undefined),
    default: [] as string[],
  },
  RAMPART_CHECK_TLS_MIN_DAYS: { expected: 'days, 1 to 365', parse: int(1, 365), default: 14 },
  RAMPART_MASTER_KEY: {
    expected: '32 random bytes as 64 hex digits or base64: wraps the keys of encrypted fields',
    parse: key32,
    default: undefined as Buffer | undefined,
    secret: true,
  },
  RAMPART_DATA_KEY_RELOAD_MS: { expected: 'milliseconds, 100 to 600000', parse: int(100, 600_000), default: 30_000 },
  RAMPART_AUDIT_KEEP_DAYS: { expected: 'days, 1 to 36500', parse: int(1, 36_500), default: 365 },
} satisfies Record<string, KeySpec<unknown>>;

type V = { [K in keyof typeof OPS_KEYS]: (typeof OPS_KEYS)[K]['default'] };

export function backupSlice(v: V, dataDir: string): BackupConfig {
  return {
    key: v.RAMPART_BACKUP_KEY,
    target: v.RAMPART_BACKUP_TARGET ?? join(dataDir, 'backups'),
    s3: {
      endpoint: v.RAMPART_BACKUP_S3_ENDPOINT,
      region: v.RAMPART_BACKUP_S3_REGION ?? 'us-east-1',
      accessKeyId: v.RAMPART_BACKUP_S3_ACCESS_KEY_ID,
      secretAccessKey: v.RAMPART_BACKUP_S3_SECRET_ACCESS_KEY,
      forcePathStyle: v.RAMPART_BACKUP_S3_FORCE_PATH_STYLE ?? v.RAMPART_BACKUP_S3_ENDPOINT !== undefined,
    },
    cron: v.RAMPART_BACKUP_CRON ?? undefined,
    verifyCron: v.RAMPART_BACKUP_VERIFY_CRON ?? undefined,
    keepDaily: v.RAMPART_BACKUP_KEEP_DAILY,
    keepWeekly: v.RAMPART_BACKUP_KEEP_WEEKLY,
    pgBinDir: v.RAMPART_PG_BIN_DIR,
  };
}

export function checksSlice(v: V): ChecksConfig {
  return {
    cron: v.RAMPART_CHECKS_CRON ?? undefined,
    channels: v.RAMPART_ALERT_CHANNELS,
    repeatHours: v.RAMPART_ALERT_REPEAT_HOURS,
    backupMaxAgeHours: v.RAMPART_CHECK_BACKUP_MAX_AGE_HOURS,
    deadLettersPerHour: v.RAMPART_CHECK_DEAD_LETTERS_PER_HOUR,
    queueLagS: v.RAMPART_CHECK_QUEUE_LAG_S,
    errorRate: v.RAMPART_CHECK_ERROR_RATE,
    diskMinFreePct: v.RAMPART_CHECK_DISK_MIN_FREE_PCT,
    replicaLagS: v.RAMPART_CHECK_REPLICA_LAG_S,
    tlsUrls: v.RAMPART_CHECK_TLS_URLS,
    tlsMinDays: v.RAMPART_CHECK_TLS_MIN_DAYS,
  };
}
