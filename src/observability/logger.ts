import pino, { type Logger } from 'pino';
import { logIds } from './tracing.js';

/**
 * Anything that can carry a credential is redacted wherever it appears in a log line:
 * request headers, and body-like objects logged by app code.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'req.headers["x-admin-token"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  '*.secret',
  '*.databaseUrl',
  '*.redisUrl',
];

/**
 * Replaces each secret value (and its JSON-escaped form) in a line. The last line of defence:
 * whatever logged a configured secret (an error message quoting a URL, app code), it does not
 * reach the log.
 */
export function secretScrubber(secrets: string[]): ((line: string) => string) | undefined {
  const forms = [...new Set(secrets.filter((s) => s.length >= 8).flatMap((s) => [s, JSON.stringify(s).slice(1, -1)]))].sort(
    (a, b) => b.length - a.length,
  );
  if (forms.length === 0) return undefined;
  return (line) => {
    let out = line;
    for (const f of forms) if (out.includes(f)) out = out.split(f).join('[redacted]');
    return out;
  };
}

/** The process logger: JSON lines on stdout, or appended to `file`, or to a given stream (tests); configured secrets scrubbed. */
export function createLogger(
  level: string,
  destination?: pino.DestinationStream,
  opts: { secrets?: string[]; file?: string } = {},
): Logger {
  const scrub = secretScrubber(opts.secrets ?? []);
  const dest = destination ?? (opts.file ? pino.destination({ dest: opts.file, append: true, mkdir: true, sync: true }) : undefined);
  return pino(
    {
      level,
      ...(scrub ? { hooks: { streamWrite: scrub } } : {}),
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      // While a trace span is active, each line names it (no cost when tracing is off).
      mixin: logIds,
    },
    dest,
  );
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

/**
 * The per-request logger. Fastify asks for a child logger on every request; a pino child
 * serializes its bindings and sets up redaction, which is wasted on requests that log nothing
 * at an enabled level. This one makes the child on the first line actually written.
 */
class LazyRequestLogger {
  private real: Logger | undefined;
  constructor(
    private readonly parent: Logger,
    private readonly bindings: Record<string, unknown>,
    private readonly options: object,
  ) {}
  private get logger(): Logger {
    this.real ??= this.parent.child(this.bindings, this.options);
    return this.real;
  }
  get level(): string {
    return this.parent.level;
  }
  set level(value: string) {
    this.logger.level = value;
  }
  isLevelEnabled(level: string): boolean {
    return (this.real ?? this.parent).isLevelEnabled(level);
  }
  child(bindings: Record<string, unknown>, options?: object): Logger {
    return this.logger.child(bindings, options);
  }
  silent(): void {}
}
for (const level of LEVELS) {
  Object.defineProperty(LazyRequestLogger.prototype, level, {
    value(this: LazyRequestLogger, ...args: unknown[]) {
      if (this.isLevelEnabled(level)) (this as unknown as { logger: Logger }).logger[level](...(args as [string]));
    },
  });
}

/** Fastify `childLoggerFactory` that defers creating the pino child (see LazyRequestLogger). */
export function lazyChildLoggerFactory(this: unknown, logger: Logger, bindings: Record<string, unknown>, options: object): Logger {
  return new LazyRequestLogger(logger, bindings, options) as unknown as Logger;
}

/** A request's logger as the pino Logger it is (Fastify types it as its narrower base logger). */
export function requestLog(req: { log: unknown }): Logger {
  return req.log as Logger;
}
