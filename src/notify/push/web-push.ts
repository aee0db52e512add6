/**
 * Web Push with VAPID (RFC 8030 / 8291 / 8292): the `web-push` package encrypts the payload and
 * signs the VAPID header; the request itself goes through the provider's outbound policy.
 * 404 and 410 mean the subscription is gone (prune it).
 */
import webpush from 'web-push';
import type { HttpDependency } from '../../resilience/http-client.js';
import { classifyStatus, type Device, type PushMessage, type PushProvider, type PushResult } from './types.js';

export class WebPushProvider implements PushProvider {
  readonly name = 'webpush' as const;

  constructor(
    private readonly vapid: { subject: string; publicKey: string; privateKey: string },
    private readonly http: HttpDependency,
    private readonly allowHttp: boolean,
  ) {}

  async send(device: Device, msg: PushMessage): Promise<PushResult> {
    if (!device.keys) return { outcome: 'invalid-token', status: 0, reason: 'the subscription has no keys' };
    if (!this.allowHttp && !device.token.startsWith('https://'))
      return { outcome: 'invalid-token', status: 0, reason: 'endpoint is not https' };
    const details = webpush.generateRequestDetails(
      { endpoint: device.token, keys: device.keys },
      JSON.stringify({ id: msg.id, title: msg.title, body: msg.body, data: msg.data }),
      {
        vapidDetails: this.vapid,
        TTL: 86_400,
        // A repeat of the same notification replaces the pending one (Topic: up to 32 URL-safe characters).
        topic: msg.id.replaceAll('-', '').slice(0, 32),
        urgency: 'high',
      },
    );
    const r = await this.http.fetch(details.endpoint, {
      method: 'POST',
      headers: details.headers as Record<string, string>,
      body: details.body ?? undefined,
    });
    await r.body?.cancel();
    if (r.status >= 200 && r.status < 300) return { outcome: 'ok' };
    if (r.status === 404 || r.status === 410)
      return { outcome: 'invalid-token', status: r.status, reason: 'subscription expired or unsubscribed' };
    return classifyStatus(r.status, `push service answered ${r.status}`, r.headers.get('retry-after'));
  }

  async close(): Promise<void> {}
}
