import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, stop } from 'esbuild';
import type { AppDef } from '../records/schema.js';

const DEFAULTS = ['rampart.config.ts', 'rampart.config.js', 'rampart.config.mjs', 'rampart.config.json'];

/**
 * Compile a TypeScript app declaration to one ES module beside it and import that. Its own
 * relative imports are bundled in; packages (`rampart` itself included) stay imports, so they
 * resolve exactly as the app's code would. No loader hook stays registered in the process.
 */
async function importTypeScript(file: string): Promise<unknown> {
  const out = join(dirname(file), `.${basename(file)}.${process.pid}.${Date.now()}.mjs`);
  const result = await build({
    entryPoints: [file],
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    sourcemap: 'inline',
    logLevel: 'silent',
  }).finally(() => stop()); // esbuild keeps a service process alive until told to stop
  writeFileSync(out, result.outputFiles[0]?.text ?? '');
  try {
    return await import(pathToFileURL(out).href);
  } finally {
    unlinkSync(out);
  }
}

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
  let mod: { default?: AppDef };
  try {
    mod = (await (/\.[mc]?ts$/.test(file) ? importTypeScript(file) : import(pathToFileURL(file).href))) as { default?: AppDef };
  } catch (err) {
    const errors = (err as { errors?: Array<{ text: string; location?: { file: string; line: number } }> }).errors;
    if (errors?.length) {
      throw new Error(
        `${file} does not compile:\n  ${errors.map((e) => `${e.location ? `${e.location.file}:${e.location.line}: ` : ''}${e.text}`).join('\n  ')}`,
      );
    }
    throw err;
  }
  if (!mod.default || typeof mod.default !== 'object')
    throw new Error(`${file} must export the app as default (export default defineApp({...}))`);
  return { def: mod.default, path: file };
}
