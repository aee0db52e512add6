import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import { createApp, type RampartApp } from '../../src/app.js';
import type { Clock } from '../../src/core/clock.js';
import type { AppDef } from '../../src/records/schema.js';
import chat from '../fixtures/open-chat.ts';
import { makeBackend, type TestBackend } from './backends.js';

export { chat };

/** A migrated app on a fresh backend, listening on a free loopback port. */
export interface TestApp {
  app: RampartApp;
  backend: TestBackend;
  url: string;
  /** Create a user with a password and sign them in; `role: 'admin'` makes an admin. */
  signIn(opts?: { role?: 'admin' | 'user'; email?: string; password?: string }): Promise<SignedIn>;
  /** Mails written for `to` (the file transport, used when no SMTP server is configured), oldest first. */
  mails(to: string): Promise<string[]>;
  /** In-process request (Fastify inject); the body is parsed when it is JSON. */
  req(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<TestResponse>;
  close(): Promise<void>;
}

/** A signed-in test user. */
export interface SignedIn {
  id: string;
  email: string;
  password: string;
  access: string;
  refresh: string;
  sessionId: string;
  /** `{ authorization: 'Bearer …' }` */
  auth: Record<string, string>;
}

let userSeq = 0;

export interface TestResponse {
  status: number;
  headers: LightMyRequestResponse['headers'];
  body: any;
  raw: string;
}

/** A clock tests move by hand: leases, expiries and windows without sleeping. */
export class TestClock implements Clock {
  constructor(private t = Date.now()) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

export async function startTestApp(
  backendName: 'sqlite' | 'postgres',
  def: AppDef = chat,
  env: Record<string, string> = {},
  opts: { clock?: Clock } = {},
): Promise<TestApp> {
  const backend = await makeBackend(backendName, env);
  const app = await createApp(backend.config, def, { clock: opts.clock });
  const url = await app.start();
  const inject = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<TestResponse> => {
    const res = await app.server.inject({
      method: method as 'GET',
      url: path,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      payload: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    let parsed: unknown = res.body;
    if (/json/.test(String(res.headers['content-type'] ?? ''))) parsed = res.body ? JSON.parse(res.body) : undefined;
    return { status: res.statusCode, headers: res.headers, body: parsed, raw: res.body };
  };
  return {
    app,
    backend,
    url,
    async signIn(opts = {}) {
      const email = opts.email ?? `user${++userSeq}-${process.pid}-${Date.now()}@example.com`;
      const password = opts.password ?? 'correct horse battery';
      if (opts.role === 'admin') await app.auth.accounts.createAdmin(email, password);
      else {
        const r = await inject('POST', '/api/v1/auth/signup', { email, password });
        if (r.status !== 201) throw new Error(`signup failed: ${r.raw}`);
      }
      const r = await inject('POST', '/api/v1/auth/login', { email, password });
      if (r.status !== 200) throw new Error(`login failed: ${r.raw}`);
      return {
        id: r.body.user.id,
        email,
        password,
        access: r.body.access_token,
        refresh: r.body.refresh_token,
        sessionId: r.body.session_id,
        auth: { authorization: `Bearer ${r.body.access_token}` },
      };
    },
    req: inject,
    async mails(to) {
      await app.jobs.settle({ queues: ['rampart.mail'] });
      const dir = join(backend.config.storage.dataDir, 'mail');
      if (!existsSync(dir)) return [];
      return readdirSync(dir)
        .sort()
        .map((f) => readFileSync(join(dir, f), 'utf8'))
        .filter((m) => m.includes(`\r\nTo: ${to}\r\n`));
    },
    async close() {
      await app.stop();
      await backend.cleanup();
    },
  };
}
