import type { LightMyRequestResponse } from 'fastify';
import chat from '../../examples/chat/rampart.config.ts';
import { createApp, type RampartApp } from '../../src/app.js';
import type { AppDef } from '../../src/records/schema.js';
import { makeBackend, type TestBackend } from './backends.js';

export { chat };

/** A migrated app on a fresh backend, listening on a free loopback port. */
export interface TestApp {
  app: RampartApp;
  backend: TestBackend;
  url: string;
  /** In-process request (Fastify inject); the body is parsed when it is JSON. */
  req(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<TestResponse>;
  close(): Promise<void>;
}

export interface TestResponse {
  status: number;
  headers: LightMyRequestResponse['headers'];
  body: any;
  raw: string;
}

export async function startTestApp(
  backendName: 'sqlite' | 'postgres',
  def: AppDef = chat,
  env: Record<string, string> = {},
): Promise<TestApp> {
  const backend = await makeBackend(backendName, env);
  const app = await createApp(backend.config, def);
  const url = await app.start();
  return {
    app,
    backend,
    url,
    async req(method, path, body, headers = {}) {
      const res = await app.server.inject({
        method: method as 'GET',
        url: path,
        headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
        payload: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      let parsed: unknown = res.body;
      if (/json/.test(String(res.headers['content-type'] ?? ''))) parsed = res.body ? JSON.parse(res.body) : undefined;
      return { status: res.statusCode, headers: res.headers, body: parsed, raw: res.body };
    },
    async close() {
      await app.stop();
      await backend.cleanup();
    },
  };
}
