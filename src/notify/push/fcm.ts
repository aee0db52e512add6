/**
 * FCM HTTP v1: `POST {base}/v1/projects/{project}/messages:send` with an OAuth access token
 * obtained from the service account (a JWT signed with its key, exchanged at its `token_uri`;
 * cached until shortly before it expires, dropped when FCM answers 401).
 * Token errors: 404 / `UNREGISTERED` means the app was uninstalled (prune the device).
 */
import { importPKCS8, SignJWT } from 'jose';
import type { HttpDependency } from '../../resilience/http-client.js';
import { classifyStatus, type Device, type PushMessage, type PushProvider, type PushResult } from './types.js';

const SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';

export class FcmProvider implements PushProvider {
  readonly name = 'fcm' as const;
  private token: { value: string; until: number } | undefined;

  constructor(
    private readonly account: Record<string, unknown>,
    private readonly baseUrl: string,
    private readonly http: HttpDependency,
  ) {}

  private async accessToken(): Promise<string> {
    if (this.token && this.token.until > Date.now()) return this.token.value;
    const tokenUri = String(this.account.token_uri ?? 'https://oauth2.googleapis.com/token');
    const key = await importPKCS8(String(this.account.private_key), 'RS256');
    const assertion = await new SignJWT({ scope: SCOPE })
      .setProtectedHeader({
        alg: 'RS256',
        typ: 'JWT',
        ...(this.account.private_key_id ? { kid: String(this.account.private_key_id) } : {}),
      })
      .setIssuer(String(this.account.client_email))
      .setAudience(tokenUri)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(key);
    const r = await this.http.fetch(tokenUri, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }).toString(),
    });
    const body = (await r.json().catch(() => ({}))) as { access_token?: string; expires_in?: number };
    if (r.status !== 200 || typeof body.access_token !== 'string') throw new Error(`FCM token exchange failed (${r.status})`);
    this.token = { value: body.access_token, until: Date.now() + Math.max(60, (body.expires_in ?? 3600) - 120) * 1000 };
    return body.access_token;
  }

  async send(device: Device, msg: PushMessage): Promise<PushResult> {
    const token = await this.accessToken();
    const data = Object.fromEntries(Object.entries(msg.data ?? {}).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
    const r = await this.http.fetch(`${this.baseUrl}/v1/projects/${encodeURIComponent(String(this.account.project_id))}/messages:send`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        message: {
          token: device.token,
          notification: { title: msg.title, ...(msg.body ? { body: msg.body } : {}) },
          data: { notification_id: msg.id, ...data },
          android: { collapse_key: msg.id.slice(-32) },
          apns: { headers: { 'apns-collapse-id': msg.id } },
        },
      }),
    });
    if (r.status === 200) {
      await r.body?.cancel();
      return { outcome: 'ok' };
    }
    const err = (await r.json().catch(() => ({}))) as {
      error?: { status?: string; message?: string; details?: Array<{ errorCode?: string }> };
    };
    const code = err.error?.details?.find((d) => d.errorCode)?.errorCode ?? err.error?.status ?? '';
    const reason = `${code || r.status} ${err.error?.message ?? ''}`.trim();
    if (r.status === 404 || code === 'UNREGISTERED') return { outcome: 'invalid-token', status: r.status, reason };
    if (r.status === 401) {
      // The access token was refused (revoked, expired early): get a new one on the retry.
      this.token = undefined;
      return { outcome: 'retry', status: r.status, reason };
    }
    return classifyStatus(r.status, reason, r.headers.get('retry-after'));
  }

  async close(): Promise<void> {}
}
