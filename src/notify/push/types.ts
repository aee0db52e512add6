/** What every push provider implements, and the shape of what it is given. */

/** A registered device. */
export interface Device {
  id: string;
  user_id: string;
  /** `fcm`, `apns` or `webpush`. */
  provider: ProviderName;
  /** The provider's token (Web Push: the subscription's endpoint). */
  token: string;
  /** Web Push: the subscription's `p256dh` and `auth` keys. */
  keys: { p256dh: string; auth: string } | null;
}

export type ProviderName = 'fcm' | 'apns' | 'webpush';

/** One push to one device. */
export interface PushMessage {
  /** The notification's id: providers collapse repeats of it (a retried send shows once). */
  id: string;
  title: string;
  body: string | null;
  data: Record<string, unknown> | null;
}

/**
 * How a send went: `ok`; `invalid-token` (the device is gone: prune it); `retry` (the provider
 * failed or asked us to slow down; `retryAfterMs` when it said how long); `permanent` (this
 * message cannot be delivered as it is).
 */
export type PushResult =
  | { outcome: 'ok' }
  | { outcome: 'invalid-token' | 'permanent'; status: number; reason: string }
  | { outcome: 'retry'; status: number; reason: string; retryAfterMs?: number };

export interface PushProvider {
  readonly name: ProviderName;
  /** Send; rejects only for transport failures (OutboundError from its policy). */
  send(device: Device, msg: PushMessage): Promise<PushResult>;
  close(): Promise<void>;
}

/** `Retry-After` as seconds or an HTTP date, in ms. */
export function retryAfter(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** How an HTTP status that is not a success is treated by every provider (each adds its own token rules). */
export function classifyStatus(status: number, reason: string, retryAfterHeader?: string | null): PushResult {
  if (status === 429 || status >= 500 || status === 408)
    return { outcome: 'retry', status, reason, retryAfterMs: retryAfter(retryAfterHeader) };
  return { outcome: 'permanent', status, reason };
}
