/**
 * Local stand-ins for the push services, speaking their protocols and failing on demand:
 *  - FCM HTTP v1: an OAuth token endpoint (checks the service account's signed JWT) and
 *    `POST /v1/projects/{project}/messages:send` (checks the bearer token);
 *  - APNs: HTTP/2 (cleartext, prior knowledge) `POST /3/device/{token}` (checks the ES256
 *    provider token against the team's public key, and the topic);
 *  - Web Push: `POST /push/{id}` (checks the VAPID signature and the aes128gcm encoding).
 * `mode` makes every send fail (500, 429 with Retry-After, a hang) until set back to `ok`;
 * tokens in `gone` are answered as unregistered. Every call is recorded.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { importSPKI, jwtVerify } from 'jose';
import webpush from 'web-push';

export type FailMode = 'ok' | '500' | '429' | 'hang';

export interface PushCall {
  provider: 'fcm' | 'apns' | 'webpush';
  at: number;
  token: string;
  notification: string | undefined;
  status: number;
}

export class FakePush {
  mode: FailMode = 'ok';
  retryAfterS = 2;
  readonly gone = new Set<string>();
  readonly calls: PushCall[] = [];
  tokenExchanges = 0;
  private http: Server | undefined;
  private h2: http2.Http2Server | undefined;
  private readonly fcmKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
  private readonly apnsKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  readonly vapid = webpush.generateVAPIDKeys();
  private issued = new Set<string>();
  httpUrl = '';
  h2Url = '';

  async start(): Promise<void> {
    this.http = createServer((req, res) => void this.onHttp(req, res).catch(() => res.destroy()));
    await new Promise<void>((r) => this.http?.listen(0, '127.0.0.1', r));
    this.httpUrl = `http://127.0.0.1:${(this.http.address() as AddressInfo).port}`;
    this.h2 = http2.createServer();
    this.h2.on('stream', (stream, headers) => void this.onApns(stream, headers).catch(() => stream.close()));
    await new Promise<void>((r) => this.h2?.listen(0, '127.0.0.1', r));
    this.h2Url = `http://127.0.0.1:${(this.h2.address() as AddressInfo).port}`;
  }

  /** Configuration for a Rampart node using these fakes. */
  env(): Record<string, string> {
    return {
      RAMPART_FCM_SERVICE_ACCOUNT: JSON.stringify({
        type: 'service_account',
        project_id: 'demo-project',
        client_email: 'rampart@demo-project.iam.gserviceaccount.com',
        private_key: this.fcmKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        private_key_id: 'k1',
        token_uri: `${this.httpUrl}/token`,
      }),
      RAMPART_FCM_URL: this.httpUrl,
      RAMPART_APNS_KEY: this.apnsKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      RAMPART_APNS_KEY_ID: 'ABC123DEFG',
      RAMPART_APNS_TEAM_ID: 'TEAM123456',
      RAMPART_APNS_TOPIC: 'com.example.chat',
      RAMPART_APNS_URL: this.h2Url,
      RAMPART_VAPID_PUBLIC_KEY: this.vapid.publicKey,
      RAMPART_VAPID_PRIVATE_KEY: this.vapid.privateKey,
      RAMPART_VAPID_SUBJECT: 'mailto:ops@example.com',
      RAMPART_PUSH_ALLOW_HTTP: 'true',
    };
  }

  /** A browser's push subscription on this fake. */
  subscription(id: string): { endpoint: string; keys: { p256dh: string; auth: string } } {
    const ecdh = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const raw = ecdh.publicKey.export({ type: 'spki', format: 'der' }).subarray(-65);
    return {
      endpoint: `${this.httpUrl}/push/${id}`,
      keys: { p256dh: raw.toString('base64url'), auth: Buffer.alloc(16, 7).toString('base64url') },
    };
  }

  /** Successful sends per token and notification (more than 1: a duplicate). */
  delivered(): Map<string, number> {
    const out = new Map<string, number>();
    for (const c of this.calls)
      if (c.status === 200 || c.status === 201) out.set(`${c.token}|${c.notification}`, (out.get(`${c.token}|${c.notification}`) ?? 0) + 1);
    return out;
  }

  async stop(): Promise<void> {
    this.http?.closeAllConnections();
    await new Promise((r) => this.http?.close(r));
    await new Promise((r) => this.h2?.close(r));
  }

  /** The failure the current mode calls for, or undefined to go on. */
  private failure(): { status: number; headers: Record<string, string>; hang?: boolean } | undefined {
    if (this.mode === '500') return { status: 500, headers: {} };
    if (this.mode === '429') return { status: 429, headers: { 'retry-after': String(this.retryAfterS) } };
    if (this.mode === 'hang') return { status: 0, headers: {}, hang: true };
    return undefined;
  }

  private async onHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const url = req.url ?? '';
    const json = (status: number, o: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(o));
    };
    if (url === '/token') {
      const form = new URLSearchParams(body.toString());
      const pub = await importSPKI(this.fcmKeys.publicKey.export({ type: 'spki', format: 'pem' }).toString(), 'RS256');
      try {
        const { payload } = await jwtVerify(form.get('assertion') ?? '', pub, { audience: `${this.httpUrl}/token` });
        if (payload.scope !== 'https://www.googleapis.com/auth/firebase.messaging') throw new Error('scope');
      } catch {
        return json(400, { error: 'invalid_grant' });
      }
      this.tokenExchanges++;
      const token = `ya29.fake-${this.tokenExchanges}`;
      this.issued.add(token);
      return json(200, { access_token: token, expires_in: 3600, token_type: 'Bearer' });
    }
    const fcm = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(url);
    if (fcm) {
      const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
      const msg = (JSON.parse(body.toString()) as { message: { token: string; data?: Record<string, string> } }).message;
      const record = (status: number) => {
        this.calls.push({ provider: 'fcm', at: Date.now(), token: msg.token, notification: msg.data?.notification_id, status });
      };
      if (!this.issued.has(auth)) {
        record(401);
        return json(401, { error: { code: 401, status: 'UNAUTHENTICATED', message: 'bad token' } });
      }
      const f = this.failure();
      if (f?.hang) return record(0);
      if (f) {
        record(f.status);
        return json(f.status, { error: { code: f.status, status: f.status === 429 ? 'RESOURCE_EXHAUSTED' : 'INTERNAL' } }, f.headers);
      }
      if (this.gone.has(msg.token)) {
        record(404);
        return json(404, { error: { code: 404, status: 'NOT_FOUND', details: [{ errorCode: 'UNREGISTERED' }] } });
      }
      record(200);
      return json(200, { name: `projects/${fcm[1]}/messages/${Date.now()}` });
    }
    const wp = /^\/push\/(.+)$/.exec(url);
    if (wp) {
      const token = `${this.httpUrl}/push/${wp[1]}`;
      const record = (status: number) => {
        this.calls.push({ provider: 'webpush', at: Date.now(), token, notification: req.headers.topic as string, status });
      };
      const vapid = /^vapid t=([^,]+), k=(.+)$/.exec(req.headers.authorization ?? '');
      const ok = vapid && vapid[2] === this.vapid.publicKey && req.headers['content-encoding'] === 'aes128gcm' && body.length > 86;
      if (!ok || !(await this.vapidValid(vapid?.[1] ?? ''))) {
        record(403);
        res.writeHead(403).end();
        return;
      }
      const f = this.failure();
      if (f?.hang) return record(0);
      if (f) {
        record(f.status);
        res.writeHead(f.status, f.headers).end();
        return;
      }
      if (this.gone.has(token)) {
        record(410);
        res.writeHead(410).end();
        return;
      }
      record(201);
      res.writeHead(201).end();
      return;
    }
    json(404, {});
  }

  private async vapidValid(jwt: string): Promise<boolean> {
    // The VAPID public key is the raw P-256 point; as SPKI it gets the fixed prefix.
    const raw = Buffer.from(this.vapid.publicKey, 'base64url');
    const spki = Buffer.concat([Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'), raw]);
    const pem = `-----BEGIN PUBLIC KEY-----\n${spki.toString('base64')}\n-----END PUBLIC KEY-----`;
    try {
      await jwtVerify(jwt, await importSPKI(pem, 'ES256'), { audience: this.httpUrl });
      return true;
    } catch {
      return false;
    }
  }

  private async onApns(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    const token = /^\/3\/device\/(.+)$/.exec(String(headers[':path']))?.[1] ?? '';
    const record = (status: number) => {
      this.calls.push({ provider: 'apns', at: Date.now(), token, notification: headers['apns-collapse-id'] as string, status });
    };
    const answer = (status: number, reason?: string, extra: Record<string, string> = {}) => {
      record(status);
      stream.respond({ ':status': status, 'apns-id': 'fake', ...extra });
      stream.end(reason ? JSON.stringify({ reason }) : undefined);
    };
    const jwt = /^bearer (.+)$/.exec(String(headers.authorization))?.[1] ?? '';
    try {
      const { payload, protectedHeader } = await jwtVerify(jwt, this.apnsKeys.publicKey as KeyObject);
      if (payload.iss !== 'TEAM123456' || protectedHeader.kid !== 'ABC123DEFG') throw new Error('claims');
    } catch {
      return answer(403, 'InvalidProviderToken');
    }
    if (headers['apns-topic'] !== 'com.example.chat') return answer(400, 'TopicDisallowed');
    const f = this.failure();
    if (f?.hang) return record(0);
    if (f) return answer(f.status, f.status === 429 ? 'TooManyRequests' : 'InternalServerError', f.headers);
    if (this.gone.has(token)) return answer(410, 'Unregistered');
    answer(200);
  }
}
