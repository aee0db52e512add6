import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AppDef } from '../records/schema.js';

const DEFAULTS = ['rampart.config.ts', 'rampart.config.js', 'rampart.config.json'];

/** Load the app declaration: a TS/JS module's default export, or a JSON file. */
export async function loadAppDef(path: string | undefined): Promise<{ def: AppDef; path: string }> {
  const file = path ? resolve(path) : DEFAULTS.map((p) => resolve(p)).find((p) => existsSync(p));
  if (!file || !existsSync(file)) {
    throw new Error(path ? `app file not found: ${path}` : `no app found: pass --app <file> or create ${DEFAULTS.join(' or ')}`);
  }
  if (file.endsWith('.json')) {
    try {
      return { def: JSON.parse(readFileSync(file, 'utf8')) as AppDef, path: file };
    } catch (err) {
      throw new Error(`${file} is not valid JSON: ${(err as Error).message}`);
    }
  }
  const mod = (await import(pathToFileURL(file).href)) as { default?: AppDef };
  if (!mod.default || typeof mod.default !== 'object')
    throw new Error(`${file} must export the app as default (export default defineApp({...}))`);
  return { def: mod.default, path: file };
}
