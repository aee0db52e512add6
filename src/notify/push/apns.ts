/**
 * APNs over HTTP/2 with token authentication: an ES256 JWT (`kid` = key id, `iss` = team id)
 * from the .p8 key, renewed every 50 minutes (APNs refuses tokens older than an hour and
 * throttles renewals more often than every 20). One HTTP/2 session per node, reconnected when
 * it closes; each request runs under the provider's policy (timeout, breaker).
 * Token errors: 410 Unregistered, 400 BadDeviceToken / DeviceTokenNotForTopic (prune the device).
 */
import http2 from 'node:http2';
import { importPKCS8, SignJWT } from 'jose';
import type { OutboundPolicy } from '../../resilience/policy.js';
import { classifyStatus, type Device, type PushMessage, type PushProvider, type PushResult, retryAfter } from './types.js';

const TOKEN_TTL_MS = 50 * 60_000;
const GONE = new Set(['BadDeviceToken', 'Unregistered', 'DeviceTokenNotForTopic']);

export interface ApnsOptions {
  key: string;
  keyId: string;
  teamId: string;
  topic: string;
  url: string;
}

interface Answer {
  status: number;
  body: string;
  headers: http2.IncomingHttpHeaders;
}

export class ApnsProvider implements PushProvider {
  readonly name = 'apns' as const;
  private session: http2.ClientHttp2Session | undefined;
  private jwt: { value: string; until: number } | undefined;

  constructor(
    private readonly o: ApnsOptions,
    private readonly policy: OutboundPolicy,
  ) {}

  private async token(): Promise<string> {
    if (this.jwt && this.jwt.until > Date.now()) return this.jwt.value;
    const key = await importPKCS8(this.o.key, 'ES256');
    const value = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: this.o.keyId })
      .setIssuer(this.o.teamId)
      .setIssuedAt()
      .sign(key);
    this.jwt = { value, until: Date.now() + TOKEN_TTL_MS };
    return value;
  }

  private connect(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const s = http2.connect(this.o.url);
    s.on('error', () => {});
    s.on('close', () => {
      if (this.session === s) this.session = undefined;
    });
    s.unref();
    this.session = s;
    return s;
  }

  private request(path: string, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const session = this.connect();
      const req = session.request({ ':method': 'POST', ':path': path, ...headers });
      const abort = () => {
        req.close(http2.constants.NGHTTP2_CANCEL);
        reject(signal.reason ?? new Error('aborted'));
      };
      if (signal.aborted) return abort();
      signal.addEventListener('abort', abort, { once: true });
      let status = 0;
      let answerHeaders: http2.IncomingHttpHeaders = {};
      let text = '';
      req.setEncoding('utf8');
      req.on('response', (h) => {
        status = Number(h[':status']);
        answerHeaders = h;
      });
      req.on('data', (d: string) => {
        text += d;
      });
      req.on('end', () => {
        signal.removeEventListener('abort', abort);
        resolve({ status, body: text, headers: answerHeaders });
      });
      req.on('error', (err) => {
        signal.removeEventListener('abort', abort);
        // A broken session is replaced on the next call.
        session.destroy();
        reject(err);
      });
      req.end(body);
    });
  }

  async send(device: Device, msg: PushMessage): Promise<PushResult> {
    const jwt = await this.token();
    const payload = JSON.stringify({
      aps: { alert: { title: msg.title, ...(msg.body ? { body: msg.body } : {}) }, sound: 'default' },
      ...msg.data,
      notification_id: msg.id,
    });
    const a = await this.policy.execute((signal) =>
      this.request(
        `/3/device/${encodeURIComponent(device.token)}`,
        {
          authorization: `bearer ${jwt}`,
          'apns-topic': this.o.topic,
          'apns-push-type': 'alert',
          'apns-priority': '10',
          'apns-expiration': String(Math.floor(Date.now() / 1000) + 86_400),
          // A retried send of the same notification replaces the shown one instead of adding a second.
          'apns-collapse-id': msg.id,
          'content-type': 'application/json',
        },
        payload,
        signal,
      ),
    );
    if (a.status === 200) return { outcome: 'ok' };
    const reason = (() => {
      try {
        return String((JSON.parse(a.body) as { reason?: string }).reason ?? a.status);
      } catch {
        return String(a.status);
      }
    })();
    if (a.status === 410 || (a.status === 400 && GONE.has(reason))) return { outcome: 'invalid-token', status: a.status, reason };
    if (a.status === 403 && reason === 'ExpiredProviderToken') {
      this.jwt = undefined;
      return { outcome: 'retry', status: a.status, reason };
    }
    const header = a.headers['retry-after'];
    const result = classifyStatus(a.status, reason, typeof header === 'string' ? header : undefined);
    if (result.outcome === 'retry' && result.retryAfterMs === undefined && typeof header === 'string')
      result.retryAfterMs = retryAfter(header);
    return result;
  }

  async close(): Promise<void> {
    this.session?.close();
  }
}
