/**
 * The backup file format: gzip, then AES-256-GCM, streamed (a backup never sits in memory).
 *
 *   RPBKUP01 (8 bytes) | nonce (12) | ciphertext | tag (16)
 *
 * The backup's id is the additional authenticated data, so a file renamed or swapped under
 * another backup's manifest fails to decrypt. Manifests are authenticated with an HMAC under a
 * key derived from the same backup key: a manifest edited by hand, or written with another key
 * (a foreign backup), is refused before anything is restored.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';

const MAGIC = Buffer.from('RPBKUP01');
const NONCE = 12;
const TAG = 16;

/** A backup key: 32 bytes, and the short id that names it in manifests. */
export interface BackupKey {
  /** The AES-256 key. */
  key: Buffer;
  /** First 16 hex digits of SHA-256(key): tells which key made a backup without revealing it. */
  id: string;
}

export function backupKey(key: Buffer): BackupKey {
  return { key, id: createHash('sha256').update(key).digest('hex').slice(0, 16) };
}

/** Counts bytes going through, for progress. */
function counter(onBytes: (n: number) => void): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      n += chunk.length;
      onBytes(n);
      done(null, chunk);
    },
  });
}

/** Compress and encrypt `src` into `dest`; returns the SHA-256 and size of what was written. */
export async function sealFile(
  src: string,
  dest: string,
  k: BackupKey,
  aad: string,
  onBytes: (read: number) => void = () => {},
): Promise<{ sha256: string; bytes: number }> {
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv('aes-256-gcm', k.key, nonce);
  cipher.setAAD(Buffer.from(aad));
  const out = createWriteStream(dest);
  out.write(MAGIC);
  out.write(nonce);
  await pipeline(createReadStream(src), counter(onBytes), createGzip({ level: 6 }), cipher, out, { end: false });
  const tag = cipher.getAuthTag();
  await new Promise<void>((resolve, reject) => out.end(tag, (err?: Error | null) => (err ? reject(err) : resolve())));
  return { sha256: await sha256File(dest), bytes: (await stat(dest)).size };
}

/** Decrypt and decompress `src` into `dest`; throws when the file was altered or made with another key. */
export async function openSealedFile(src: string, dest: string, k: BackupKey, aad: string): Promise<void> {
  const { size } = await stat(src);
  if (size < MAGIC.length + NONCE + TAG) throw new BackupFormatError('the backup file is truncated');
  const fh = await open(src, 'r');
  const head = Buffer.alloc(MAGIC.length + NONCE);
  const tag = Buffer.alloc(TAG);
  try {
    await fh.read(head, 0, head.length, 0);
    await fh.read(tag, 0, TAG, size - TAG);
  } finally {
    await fh.close();
  }
  if (!head.subarray(0, MAGIC.length).equals(MAGIC)) throw new BackupFormatError('not a Rampart backup file');
  const decipher = createDecipheriv('aes-256-gcm', k.key, head.subarray(MAGIC.length));
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(tag);
  try {
    await pipeline(createReadStream(src, { start: head.length, end: size - TAG - 1 }), decipher, createGunzip(), createWriteStream(dest));
  } catch (err) {
    // GCM checks the tag at the end: any altered byte (or another key) ends here.
    throw new BackupFormatError(
      `the backup does not decrypt with this backup key (altered, truncated or made with another key): ${(err as Error).message}`,
    );
  }
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

function macKey(k: BackupKey): Buffer {
  return Buffer.from(hkdfSync('sha256', k.key, Buffer.alloc(0), 'rampart backup manifest', 32));
}

/** Canonical JSON (sorted keys), so the MAC does not depend on how a manifest was formatted. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical((v as Record<string, unknown>)[key])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export function signManifest<T extends object>(m: T, k: BackupKey): T & { mac: string } {
  return { ...m, mac: createHmac('sha256', macKey(k)).update(canonical(m)).digest('hex') };
}

/** Whether a manifest's MAC holds under this key. */
export function manifestAuthentic(m: { mac?: unknown } & Record<string, unknown>, k: BackupKey): boolean {
  if (typeof m.mac !== 'string' || !/^[0-9a-f]{64}$/.test(m.mac)) return false;
  const { mac, ...rest } = m;
  const expected = createHmac('sha256', macKey(k)).update(canonical(rest)).digest();
  return timingSafeEqual(expected, Buffer.from(mac as string, 'hex'));
}

/** A backup that cannot be trusted: not ours, altered, truncated, or made with another key. */
export class BackupFormatError extends Error {}
