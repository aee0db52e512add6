/**
 * HTTPS served by Rampart itself: the certificate (with its chain) and key read from files, and
 * read again when they change — a renewed certificate (certbot, cert-manager, a Kubernetes secret
 * update) is used for new connections without a restart. A pair that does not load (a half-written
 * file, a key that does not match) is logged and the previous one stays in use.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:https';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';

export interface TlsFiles {
  certPath: string;
  keyPath: string;
  reloadMs: number;
}

export interface TlsPair {
  cert: Buffer;
  key: Buffer;
  /** When the leaf certificate expires. */
  notAfter: Date;
  /** A digest of both files, to notice a change. */
  digest: string;
}

/** Read and check a certificate and key (throws with the reason when they do not make a pair). */
export function loadTls(files: TlsFiles): TlsPair {
  const cert = readFileSync(files.certPath);
  const key = readFileSync(files.keyPath);
  // Throws on a malformed certificate or key, or a key that does not match the certificate.
  createSecureContext({ cert, key });
  const leaf = new X509Certificate(cert);
  return { cert, key, notAfter: new Date(leaf.validTo), digest: createHash('sha256').update(cert).update(key).digest('hex') };
}

/** Look at the files every `reloadMs`; use a changed pair for new connections. Returns the way to stop. */
export function watchTls(server: Server, files: TlsFiles, current: TlsPair, log: Logger, onLoaded: (p: TlsPair) => void): () => void {
  let inUse = current;
  let lastError = '';
  const timer = setInterval(() => {
    let next: TlsPair;
    try {
      next = loadTls(files);
    } catch (err) {
      const msg = (err as Error).message;
      if (msg !== lastError)
        log.error(
          { err: msg, cert: files.certPath, key: files.keyPath },
          'TLS certificate or key does not load; still serving the previous one',
        );
      lastError = msg;
      return;
    }
    lastError = '';
    if (next.digest === inUse.digest) return;
    server.setSecureContext({ cert: next.cert, key: next.key });
    inUse = next;
    onLoaded(next);
    log.info({ cert: files.certPath, not_after: next.notAfter.toISOString() }, 'TLS certificate reloaded');
  }, files.reloadMs);
  timer.unref();
  return () => clearInterval(timer);
}
