/**
 * App-version policy for mobile and web clients: per platform, the latest version and the
 * minimum supported one, with a store URL and a message. Stored in the database and editable
 * at runtime by admins; every node keeps the policies in memory and reloads them when one
 * changes (a notification on commit, PostgreSQL NOTIFY across nodes) and, as a safety net for a
 * lost notification, every REFRESH_MS.
 *
 * A client's version below the minimum must update (`hard`: the API answers 426), below the
 * latest may update (`soft`), else `none`. Versions compare as semantic versions, pre-releases
 * included (`2.0.0-beta.2` < `2.0.0-rc.1` < `2.0.0`); `2.1` is read as `2.1.0`, as app stores
 * show versions.
 */
import type { Logger } from 'pino';
import semver from 'semver';
import type { Clock } from '../core/clock.js';
import { RampartError, validationError } from '../core/errors.js';
import type { Storage } from '../storage/types.js';

export const PLATFORMS = ['ios', 'android', 'web'] as const;
export type Platform = (typeof PLATFORMS)[number];
export type UpdateStatus = 'none' | 'soft' | 'hard';

/** A platform's policy. */
export interface AppVersionPolicy {
  platform: Platform;
  /** The newest release: older versions get a soft update prompt. */
  latest: string;
  /** The oldest supported release: older versions must update (426). */
  minimum: string;
  /** Where to update (App Store, Play Store, or the web app's URL). */
  store_url: string | null;
  /** Shown to the user with the prompt. */
  message: string | null;
  updated_at: string;
  /** The admin who last changed it. */
  updated_by: string | null;
}

const TABLE = '_rampart_app_versions';
const CHANNEL = 'rampart_app_versions';
/** Reload interval, in case a change notification was lost. */
const REFRESH_MS = 30_000;
const VERSION_RE =
  /^v?(0|[1-9]\d{0,8})(?:\.(0|[1-9]\d{0,8}))?(?:\.(0|[1-9]\d{0,8}))?(-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

/** A version as a full semantic version (`2.1` → `2.1.0`, `v3` → `3.0.0`), or undefined if it is not one. */
export function parseVersion(raw: unknown): string | undefined {
  if (typeof raw !== 'string' || raw.length > 64) return undefined;
  const m = VERSION_RE.exec(raw.trim());
  if (!m) return undefined;
  const full = `${m[1]}.${m[2] ?? '0'}.${m[3] ?? '0'}${m[4] ?? ''}${m[5] ?? ''}`;
  return semver.valid(full) ?? undefined;
}

export const isPlatform = (p: unknown): p is Platform => typeof p === 'string' && (PLATFORMS as readonly string[]).includes(p);

/** What a client at `version` must do under `policy` (none without a policy). */
export function updateStatus(policy: AppVersionPolicy | undefined, version: string): UpdateStatus {
  if (!policy) return 'none';
  if (semver.lt(version, policy.minimum)) return 'hard';
  if (semver.lt(version, policy.latest)) return 'soft';
  return 'none';
}

/** Check an admin's policy input; returns the normalized values or throws E_VALIDATION naming each field. */
function checkInput(body: unknown): Pick<AppVersionPolicy, 'latest' | 'minimum' | 'store_url' | 'message'> {
  const errors: Array<{ field: string; code: string; message: string }> = [];
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw validationError([{ field: '', code: 'type', message: 'must be an object' }]);
  }
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) {
    if (!['latest', 'minimum', 'store_url', 'message'].includes(k))
      errors.push({ field: k, code: 'unknown', message: 'is not a policy field' });
  }
  const latest = parseVersion(b.latest);
  const minimum = parseVersion(b.minimum);
  if (!latest) errors.push({ field: 'latest', code: 'version', message: 'must be a semantic version (1.4.0, 2.0.0-beta.1)' });
  if (!minimum) errors.push({ field: 'minimum', code: 'version', message: 'must be a semantic version (1.4.0, 2.0.0-beta.1)' });
  if (latest && minimum && semver.gt(minimum, latest)) {
    errors.push({ field: 'minimum', code: 'range', message: 'must not be newer than latest' });
  }
  const url = b.store_url ?? null;
  if (url !== null) {
    // An https store page or an app's own scheme (itms-apps://, market://).
    let ok = typeof url === 'string' && url.length <= 2048;
    try {
      ok = ok && !/^(javascript|data|file|vbscript):/i.test(new URL(url as string).protocol);
    } catch {
      ok = false;
    }
    if (!ok) errors.push({ field: 'store_url', code: 'url', message: 'must be a URL (https://…, itms-apps://…, market://…)' });
  }
  const message = b.message ?? null;
  if (message !== null && (typeof message !== 'string' || message.length > 500)) {
    errors.push({ field: 'message', code: 'type', message: 'must be text of at most 500 characters' });
  }
  if (errors.length > 0) throw validationError(errors);
  return { latest: latest as string, minimum: minimum as string, store_url: url as string | null, message: message as string | null };
}

export class AppVersionPolicies {
  private byPlatform = new Map<Platform, AppVersionPolicy>();
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => void) | undefined;

  constructor(
    private readonly storage: Storage,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Load the policies and follow their changes. */
  async start(): Promise<void> {
    this.unlisten = await this.storage.listen(
      CHANNEL,
      () => void this.reload(),
      // (Re)connected: a change may have been missed meanwhile.
      (connected) => {
        if (connected) void this.reload();
      },
    );
    await this.reload();
    this.timer = setInterval(() => void this.reload(), REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.unlisten?.();
  }

  /** Read every policy from the database into memory; keeps the old ones if the read fails. */
  async reload(): Promise<void> {
    try {
      const rows = await this.storage.db.selectFrom(TABLE).selectAll().execute();
      this.byPlatform = new Map(rows.map((r) => [r.platform as Platform, present(r)]));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'app-version policies could not be reloaded; keeping the ones in memory');
    }
  }

  get(platform: Platform): AppVersionPolicy | undefined {
    return this.byPlatform.get(platform);
  }

  list(): AppVersionPolicy[] {
    return PLATFORMS.flatMap((p) => this.byPlatform.get(p) ?? []);
  }

  /** Create or replace a platform's policy; every node applies it once the change commits. */
  async set(platform: Platform, body: unknown, by: string | null): Promise<AppVersionPolicy> {
    const input = checkInput(body);
    const row = { platform, ...input, updated_at: this.clock.now(), updated_by: by };
    await this.storage.transaction(async (db) => {
      await db
        .insertInto(TABLE)
        .values(row)
        .onConflict((oc) => oc.column('platform').doUpdateSet({ ...input, updated_at: row.updated_at, updated_by: by }))
        .execute();
      await this.storage.notify(db, CHANNEL, platform);
    });
    await this.reload();
    return present(row);
  }

  /** Remove a platform's policy (its clients are then never prompted). */
  async remove(platform: Platform): Promise<void> {
    const removed = await this.storage.transaction(async (db) => {
      const r = await db.deleteFrom(TABLE).where('platform', '=', platform).executeTakeFirst();
      await this.storage.notify(db, CHANNEL, platform);
      return Number(r.numDeletedRows);
    });
    await this.reload();
    if (removed === 0) throw new RampartError('E_POLICY_NOT_FOUND', `there is no app-version policy for ${platform}`);
  }
}

function present(r: Record<string, unknown>): AppVersionPolicy {
  return {
    platform: r.platform as Platform,
    latest: r.latest as string,
    minimum: r.minimum as string,
    store_url: (r.store_url as string | null) ?? null,
    message: (r.message as string | null) ?? null,
    updated_at: new Date(Number(r.updated_at)).toISOString(),
    updated_by: (r.updated_by as string | null) ?? null,
  };
}
